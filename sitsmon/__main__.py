"""``python -m sitsmon``: the same entry point as the ``sitsmon`` command."""

from sitsmon.cli import main

raise SystemExit(main())
