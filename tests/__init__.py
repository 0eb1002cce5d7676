"""sitsmon's tests. ``SHARED_DATA``: the project's shared reference data, beside the repository."""

from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
