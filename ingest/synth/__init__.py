"""Realistic synthetic Sentinel-1/Sentinel-2 archive with ground truth (``sitsmon synth``).

See docs/archive-format.md for what is written. Public API:
``SynthConfig``, ``generate_archive``, ``simulate_parcel_series`` and the errors.
"""

from ingest.synth.config import ArchiveExistsError, SynthConfig, SynthConfigError, SynthError
from ingest.synth.generate import generate_archive, simulate_parcel_series

__all__ = [
    "ArchiveExistsError",
    "SynthConfig",
    "SynthConfigError",
    "SynthError",
    "generate_archive",
    "simulate_parcel_series",
]
