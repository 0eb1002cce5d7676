"""Detectors: one module per detector on the shared ``BaseDetector`` workflow.

``DETECTORS`` maps a name to its class (``alerts.detectors.registry`` resolves names); ``run_detectors`` runs several over an interchange table,
each on the parcels whose land use it handles (parcels no detector handles are reported, not errors).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from alerts.detectors import registry
from alerts.detectors.base import BaseDetector, DetectorState, Watermark
from alerts.detectors.harvest import HarvestDetector, HarvestParams
from alerts.detectors.mowing import MowingDetector, MowingParams
from alerts.detectors.solar import SolarDetector, SolarParams
from alerts.detectors.solar_pixels import PixelSolarParams, detect_solar_pixels
from alerts.types import Event

DETECTORS: dict[str, type[BaseDetector]] = {name: registry.detector_class(name) for name in registry.names()}


def make_detectors(names: Sequence[str]) -> list[BaseDetector]:
    """Detectors by registry name (``AlertsError`` naming the choices for an unknown one)."""
    return [registry.make_detector(n) for n in names]


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
