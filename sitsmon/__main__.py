"""``python -m sitsmon``: the same entry point as the ``sitsmon`` console script."""

import sys

from sitsmon.cli import main

sys.exit(main())
