"""Detectors over all parcels of a tile, one acquisition at a time: what the streaming monitor steps.

``AcquisitionInputs`` is one acquisition of one sensor for the N parcels of a tile (parcel order
fixed by the caller, NaN time where a parcel has no row). A ``BatchDetector`` folds it into the
states of all N parcels in place and returns the events it confirms:

- ``ReferenceBatch(detector)``: the plain reference — the per-parcel ``BaseDetector.update`` on one
  ``ParcelAcquisition`` per parcel, states a list of the detector's frozen dataclasses.
- ``MowingKernel``, ``HarvestKernel``, ``SolarKernel``: the same rules as numba kernels over state
  arrays (``alerts.detectors.kernels``); ``Event`` objects and their evidence are built in Python
  only for the parcels that emit. ``tests/alerts/test_batch_kernels.py`` holds each kernel equal to
  the reference, event for event and state for state.

Parcels whose land use a detector does not handle are skipped (they hold no state). An acquisition
older than a parcel's last one raises ``SeriesError`` before any state changes (the monitor rewinds
the tile to a checkpoint); a re-delivered one is skipped.

Interface notes (for the monitor): input arrays are float64, not float32 — float32 rounding of the
reflectances moves NDVI by ~1e-7 and would let the streamed alerts differ from ``sitsmon detect``
offline whenever a value sits on a threshold; the inputs are transient (one acquisition), only the
states are stored. ``dump``/``load`` give and take plain numpy arrays, one per field, plus
``parcel_id``/``land_use`` (unicode; ``load`` also takes object or StringDType arrays, as a Zarr
store gives them back) and ``handled`` (bool) columns; ``state_version`` names layout
and rules and must match on ``load``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from alerts.detectors.batch_base import AcquisitionInputs, BatchDetector, iter_acquisitions
from alerts.detectors.batch_kernels import (
    KERNELS,
    PORTED_RULES,
    HarvestKernel,
    KernelBatch,
    KernelStates,
    MowingKernel,
    SolarKernel,
    gather_inputs,
    rules_fingerprint,
)
from alerts.detectors.batch_reference import ReferenceBatch, ReferenceStates
from alerts.detectors.registry import detector_class, make_detector

logger = logging.getLogger(__name__)

__all__ = [
    "AcquisitionInputs",
    "BatchDetector",
    "HarvestKernel",
    "KERNELS",
    "KernelBatch",
    "KernelStates",
    "MowingKernel",
    "PORTED_RULES",
    "ReferenceBatch",
    "ReferenceStates",
    "SolarKernel",
    "gather_inputs",
    "iter_acquisitions",
    "make_batch_detectors",
    "rules_fingerprint",
]


def make_batch_detectors(
    names: Sequence[str], kernel: bool = True, params: dict[str, Any] | None = None
) -> list[BatchDetector]:
    """Batch detectors by name (``alerts.detectors.registry`` names): the numba kernel where one is
    ported from the detector's present rules (``PORTED_RULES``), else — and with ``kernel=False`` —
    the plain reference. ``params``: optional parameters per name (the detector's params type)."""
    params = params or {}
    out: list[BatchDetector] = []
    for name in names:
        detector_class(name)  # a clear error for an unknown name
        if kernel and name in KERNELS:
            if rules_fingerprint(name) in PORTED_RULES.get(name, ()):
                out.append(KERNELS[name](params.get(name)))
                continue
            logger.warning(
                "the %s rules changed since its kernel was ported (rules %s, kernel ported from %s): "
                "running the per-parcel reference instead",
                name,
                rules_fingerprint(name),
                PORTED_RULES.get(name),
            )
        out.append(ReferenceBatch(make_detector(name, params.get(name))))
    return out
