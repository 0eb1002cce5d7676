"""Detectors: one module per detector on the shared ``BaseDetector`` workflow.

``DETECTORS`` maps a name to its class; ``run_detectors`` runs several over an interchange table,
each on the parcels whose land use it handles (parcels no detector handles are reported, not errors).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from alerts.detectors.base import BaseDetector, DetectorState, Watermark
from alerts.detectors.harvest import HarvestDetector, HarvestParams
from alerts.detectors.mowing import MowingDetector, MowingParams
from alerts.detectors.solar import PixelSolarParams, SolarDetector, SolarParams, detect_solar_pixels
from alerts.errors import AlertsError
from alerts.types import Event

DETECTORS: dict[str, type[BaseDetector]] = {
    "mowing": MowingDetector,
    "harvest": HarvestDetector,
    "solar": SolarDetector,
}


def make_detectors(names: Sequence[str]) -> list[BaseDetector]:
    unknown = [n for n in names if n not in DETECTORS]
    if unknown:
        raise AlertsError(f"unknown detector {unknown[0]!r}; choose from {', '.join(DETECTORS)}")
    return [DETECTORS[n]() for n in names]


def run_detectors(
    obs: pd.DataFrame, parcels: pd.DataFrame, detectors: Sequence[BaseDetector]
) -> tuple[list[Event], dict[str, list[str]]]:
    """All events of ``detectors`` on a normalised table, and per detector the parcels it skipped."""
    events: list[Event] = []
    skipped: dict[str, list[str]] = {}
    for det in detectors:
        ev, sk = det.run_frame(obs, parcels)
        events.extend(ev)
        skipped[det.event_type] = sk
    events.sort(key=lambda e: (e.parcel_id, e.date, e.event))
    return events, skipped


__all__ = [
    "BaseDetector",
    "DETECTORS",
    "DetectorState",
    "HarvestDetector",
    "HarvestParams",
    "MowingDetector",
    "MowingParams",
    "PixelSolarParams",
    "SolarDetector",
    "SolarParams",
    "Watermark",
    "detect_solar_pixels",
    "make_detectors",
    "run_detectors",
]
