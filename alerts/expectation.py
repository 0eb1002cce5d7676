"""What the encoder expected: its forecast for each clear S2 view, and the residual at each event.

The streaming monitor folds every acquisition into the encoder's state; before it folds in an S2
view, the model's forecast for that date is what the parcel "should" look like given its history
(its own past, the season, and the S1 views in between). A mowing or a harvest is a large negative
residual against that expectation. This module computes the expectation for a whole table with the
same per-acquisition ``step``/``forecast`` calls the monitor makes (acquisitions in time order, all
parcels at once), and attaches the residual at each event to the event's evidence, so that a
controller sees "observed NDVI 0.41, the model expected 0.78 ± 0.06".

The detectors' decisions do not depend on it: their rules are validated on real data without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from alerts.series import from_days
from alerts.types import Event
from contracts.indices import ndvi

EXPECTED = "expected_ndvi"
EXPECTED_STD = "expected_ndvi_std"


def add_model_expectations(obs: pd.DataFrame, model: Any) -> pd.DataFrame:
    """A copy of the normalised table ``obs`` with ``expected_ndvi`` and ``expected_ndvi_std``.

    For every S2 row: the model's NDVI forecast for that parcel and date from the acquisitions
    strictly before it (NaN for S1 rows). ``model``: a ``sits.SitsEncoder`` (``sits.load_model()``).
    """
    import sits

    out = obs.copy()
    out[EXPECTED] = np.nan
    out[EXPECTED_STD] = np.nan
    if out.empty:
        return out
    parcels = pd.Index(out["parcel_id"].unique())
    row_parcel = parcels.get_indexer(out["parcel_id"])
    seconds = (out["days"].to_numpy(float) * 86400.0).round().astype(np.int64)
    state = model.init_state(len(parcels))
    n = len(parcels)
    expected = np.full(len(out), np.nan, np.float32)
    expected_std = np.full(len(out), np.nan, np.float32)
    # One encoder step per (acquisition time, sensor), in time order: the monitor's loop.
    order = np.lexsort((out["sensor"].to_numpy() == "S2", seconds))
    keys = np.stack([seconds[order], (out["sensor"].to_numpy()[order] == "S2").astype(np.int64)], axis=1)
    starts = np.flatnonzero(np.r_[True, np.any(keys[1:] != keys[:-1], axis=1)])
    for begin, end in zip(starts, np.r_[starts[1:], len(order)], strict=True):
        rows = order[begin:end]
        sensor = "S2" if keys[begin, 1] else "S1"
        names = model.bands.s2 if sensor == "S2" else model.bands.s1
        values = np.full((n, len(names)), np.nan, np.float32)
        values[row_parcel[rows]] = out.iloc[rows][list(names)].to_numpy(np.float32)
        clear = np.zeros(n, np.float32)
        orbit = np.zeros(n, np.int64)
        if sensor == "S2":
            prediction = model.forecast(state, int(keys[begin, 0]), "S2")
            mean, std = prediction.ndvi()
            expected[rows] = mean[row_parcel[rows]]
            expected_std[rows] = std[row_parcel[rows]]
            clear[row_parcel[rows]] = out.iloc[rows]["clear"].fillna(0).to_numpy(np.float32)
        else:
            orbit[row_parcel[rows]] = out.iloc[rows]["orbit"].fillna(0).to_numpy(np.int64)
        step = sits.Observation(time=int(keys[begin, 0]), sensor=sensor, values=values, clear=clear, orbit=orbit)
        state, _ = model.step(state, step)
    out[EXPECTED] = expected
    out[EXPECTED_STD] = expected_std
    return out


def annotate_events(events: Sequence[Event], obs: pd.DataFrame, model_version: str) -> list[Event]:
    """Events with the model's expectation at the first clear S2 view on or after each event date.

    ``obs``: a table from :func:`add_model_expectations`. Events with no such view within 30 days
    are returned unchanged.
    """
    s2 = obs[(obs["sensor"] == "S2") & (obs["clear"] >= 0.5) & obs[EXPECTED].notna()]
    by_parcel = {pid: g.sort_values("days") for pid, g in s2.groupby("parcel_id", sort=False)}
    annotated = []
    for event in events:
        views = by_parcel.get(event.parcel_id)
        after = None if views is None else views[(views["days"] >= event.date) & (views["days"] <= event.date + 30)]
        if after is None or after.empty:
            annotated.append(event)
            continue
        view = after.iloc[0]
        red, nir = float(view["B04"]), float(view["B08"])
        observed = ndvi(red, nir)
        expected, std = float(view[EXPECTED]), float(view[EXPECTED_STD])
        evidence = {
            **event.evidence,
            "model": {
                "version": model_version,
                "date": from_days(float(view["days"])).date().isoformat(),
                "observed_ndvi": round(observed, 4),
                "expected_ndvi": round(expected, 4),
                "expected_ndvi_std": round(std, 4),
                "residual_z": round((observed - expected) / max(std, 1e-3), 2),
            },
        }
        annotated.append(replace(event, evidence=evidence))
    return annotated
