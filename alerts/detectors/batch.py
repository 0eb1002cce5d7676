"""Detectors over all parcels of a tile, one acquisition at a time (what the streaming monitor steps).

``AcquisitionInputs`` holds one acquisition of one sensor for the ``N`` parcels of a tile (parcel order
fixed by the caller); a ``BatchDetector`` folds it into its states and returns the confirmed events.
``ReferenceBatch`` is the plain reference: the per-parcel ``BaseDetector.update`` of each parcel.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from alerts.detectors.base import BaseDetector, DetectorState, state_from_dict, state_to_dict
from alerts.series import S2_BANDS, Observation
from alerts.types import Event


@dataclass(frozen=True)
class AcquisitionInputs:
    """One acquisition of one sensor for the ``N`` parcels of a tile (NaN time: no row for that parcel)."""

    sensor: str
    t_days: np.ndarray
    bands: np.ndarray
    clear: np.ndarray
    vv: np.ndarray
    vh: np.ndarray
    orbit: np.ndarray
    vh_ref: np.ndarray
    vv_ref: np.ndarray
    expected_ndvi: np.ndarray
    expected_ndvi_std: np.ndarray

    @property
    def n(self) -> int:
        return int(self.t_days.shape[0])

    @classmethod
    def from_frame(cls, rows: pd.DataFrame, parcel_index: pd.Index) -> AcquisitionInputs:
        """Rows of ONE acquisition (normalised interchange rows, with ``VH_ref``/``VV_ref`` when known)."""
        n = len(parcel_index)
        sensors = set(rows["sensor"].unique())
        if len(sensors) > 1:
            raise ValueError(f"one acquisition holds one sensor, got {sorted(sensors)}")
        sensor = sensors.pop() if sensors else "S2"
        at = parcel_index.get_indexer(rows["parcel_id"])
        if (at < 0).any():
            raise KeyError(f"parcel {rows['parcel_id'].iloc[int(np.flatnonzero(at < 0)[0])]!r} not in the index")

        def col(name: str, dtype=np.float32, fill=np.nan) -> np.ndarray:
            out = np.full(n, fill, dtype=dtype)
            if name in rows.columns:
                values = rows[name].to_numpy(np.float64)
                if np.issubdtype(np.dtype(dtype), np.integer):
                    values = np.where(np.isfinite(values), values, fill)
                out[at] = values.astype(dtype)
            return out

        bands = np.full((n, len(S2_BANDS)), np.nan, np.float32)
        bands[at] = rows[list(S2_BANDS)].to_numpy(np.float32)
        return cls(sensor=sensor, t_days=col("days", np.float64), bands=bands, clear=col("clear"),
                   vv=col("VV"), vh=col("VH"), orbit=col("orbit", np.int16, -1), vh_ref=col("VH_ref"),
                   vv_ref=col("VV_ref"), expected_ndvi=col("expected_ndvi"),
                   expected_ndvi_std=col("expected_ndvi_std"))

    def observation(self, i: int, parcel_id: str) -> Observation | None:
        """Parcel ``i``'s row as the per-parcel detectors' record (None: no row in this acquisition)."""
        t = float(self.t_days[i])
        if not math.isfinite(t):
            return None
        clear = None if not math.isfinite(float(self.clear[i])) else bool(self.clear[i] >= 0.5)
        return Observation(parcel_id=parcel_id, time=t, sensor=self.sensor,
                           bands=tuple(float(x) for x in self.bands[i]), clear=clear, vv=float(self.vv[i]),
                           vh=float(self.vh[i]), orbit=int(self.orbit[i]), vh_ref=float(self.vh_ref[i]),
                           vv_ref=float(self.vv_ref[i]))


class BatchDetector(Protocol):
    event_type: str
    state_version: str

    def init_states(self, parcel_ids: Sequence[str], land_uses: Sequence[str]) -> Any: ...
    def step(self, states: Any, inputs: AcquisitionInputs) -> list[Event]: ...
    def dump(self, states: Any) -> dict[str, np.ndarray]: ...
    def load(self, arrays: dict[str, np.ndarray]) -> Any: ...


class ReferenceBatch:
    """The plain reference: one per-parcel state (the detector's dataclass) and ``update`` per parcel."""

    def __init__(self, detector: BaseDetector) -> None:
        self.detector = detector
        self.event_type = detector.event_type
        self.state_version = f"reference/{type(detector).__name__}/1"

    def init_states(self, parcel_ids: Sequence[str], land_uses: Sequence[str]) -> list[DetectorState | None]:
        return [self.detector.init_state(p, lu) if self.detector.handles(lu) else None
                for p, lu in zip(parcel_ids, land_uses, strict=True)]

    def step(self, states: list[DetectorState | None], inputs: AcquisitionInputs) -> list[Event]:
        events: list[Event] = []
        for i in np.flatnonzero(np.isfinite(inputs.t_days)):
            state = states[i]
            if state is None:
                continue
            obs = inputs.observation(int(i), state.parcel_id)
            states[i], new = self.detector.update(state, obs)
            events.extend(new)
        return events

    def dump(self, states: list[DetectorState | None]) -> dict[str, np.ndarray]:
        text = [json.dumps(state_to_dict(s)) if s is not None else "" for s in states]
        return {"json": np.asarray(text, dtype=object)}

    def load(self, arrays: dict[str, np.ndarray]) -> list[DetectorState | None]:
        return [state_from_dict(json.loads(t)) if t else None for t in arrays["json"].tolist()]


def make_batch_detectors(names: Sequence[str], kernel: bool = True) -> list[ReferenceBatch]:
    from alerts.detectors import make_detectors

    return [ReferenceBatch(d) for d in make_detectors(names)]
