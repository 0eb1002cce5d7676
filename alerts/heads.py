"""The encoder's representation of a parcel-year, for a small learned head (``alerts.confidence_cv``).

The encoder folds each acquisition into a per-parcel state and emits an embedding after it
(``StepOutput.embedding`` ``[N, d_model]``). A parcel-year's representation here is the mean
embedding over the acquisitions inside its window and the last one there minus the first (what the
season did to the state): ``[2 * d_model]`` float64, zeros where the window saw no acquisition.
A logistic head on it, with the detected event's confidence beside it, is fitted inside each fold.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd


def window_representation(obs: pd.DataFrame, model: Any, windows: Sequence[tuple[str, float, float]]) -> np.ndarray:
    """``[len(windows), 2 * d_model]``: per (parcel_id, start day, end day) the mean embedding of the
    acquisitions in ``[start, end]`` and the last minus the first; ``obs`` a normalised table."""
    import sits

    d = model.config.d_model
    out = np.zeros((len(windows), 2 * d))
    if obs.empty or not windows:
        return out
    parcels = pd.Index(obs["parcel_id"].astype(str).unique())
    row_parcel = parcels.get_indexer(obs["parcel_id"].astype(str))
    n = len(parcels)
    w_parcel = parcels.get_indexer([str(w[0]) for w in windows])
    w_start = np.asarray([w[1] for w in windows], float)
    w_end = np.asarray([w[2] for w in windows], float)
    total = np.zeros((len(windows), d))
    count = np.zeros(len(windows))
    first = np.zeros((len(windows), d))
    last = np.zeros((len(windows), d))
    seconds = (obs["days"].to_numpy(float) * 86400.0).round().astype(np.int64)
    is_s2 = obs["sensor"].to_numpy() == "S2"
    order = np.lexsort((is_s2, seconds))
    state = model.init_state(n)
    keys = np.c_[seconds[order], is_s2[order]]
    starts = np.flatnonzero(np.r_[True, np.any(keys[1:] != keys[:-1], axis=1)])
    for begin, end in zip(starts, np.r_[starts[1:], len(order)], strict=True):
        rows = order[begin:end]
        sensor = "S2" if keys[begin, 1] else "S1"
        names = list(model.bands.s2 if sensor == "S2" else model.bands.s1)
        values = np.full((n, len(names)), np.nan, np.float32)
        values[row_parcel[rows]] = obs.iloc[rows][names].to_numpy(np.float32)
        extra = {"clear": np.zeros(n, np.float32)} if sensor == "S2" else {"orbit": np.zeros(n, np.int64)}
        if sensor == "S2":
            extra["clear"][row_parcel[rows]] = obs.iloc[rows]["clear"].fillna(0).to_numpy(np.float32)
        else:
            extra["orbit"][row_parcel[rows]] = obs.iloc[rows]["orbit"].fillna(0).to_numpy(np.int64)
        state, step = model.step(state, sits.Observation(time=int(keys[begin, 0]), sensor=sensor, values=values,
                                                         **extra))
        emb = step.embedding.detach().cpu().numpy().astype(float)
        day = keys[begin, 0] / 86400.0
        hit = (w_start <= day) & (day <= w_end)
        hit &= np.isin(w_parcel, row_parcel[rows])
        if hit.any():
            e = emb[w_parcel[hit]]
            new = count[hit] == 0
            first[np.flatnonzero(hit)[new]] = e[new]
            total[hit] += e
            last[hit] = e
            count[hit] += 1
    seen = count > 0
    out[seen, :d] = total[seen] / count[seen, None]
    out[seen, d:] = last[seen] - first[seen]
    return out


def representation_names(d_model: int) -> tuple[str, ...]:
    return (*(f"emb_mean_{i}" for i in range(d_model)), *(f"emb_change_{i}" for i in range(d_model)))
