"""Event records as intervals, as the markers paying agencies use (Sen4CAP L4B/L4C style).

A detector dates an event by one day inside a window; a scheme's date window is better checked
against the whole departure: when the series left its level, when it was confirmed, its bottom, and
when (if) it came back. :func:`add_intervals` adds, without changing anything else, one key
``interval`` to each event's evidence, computed from the parcel's clear S2 NDVI up to ``as_of``:

- ``start``: the first clear view of the departure (the first low view at or after the event's
  window start), ``before``/``ndvi_before``: the last view before it;
- ``confirmed``: the evidence's ``confirmed_day`` if the detector set one, else the view after
  ``start`` (the one that showed the drop held);
- ``bottom``/``ndvi_bottom``: the lowest view within ``bottom_days`` after the start;
- ``end``/``ndvi_after``: the first later view back within half the drop of the level before
  (regrowth), else the last view (``recovered`` False);
- ``n_obs``: clear views from start to end; ``drop`` = ndvi_before − ndvi_bottom.

Dates are ISO days; events without a clear view after their window start are left unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from alerts.series import from_days, ndvi_frame
from alerts.types import Event

BOTTOM_DAYS = 30.0  # a cut's or harvest's lowest point comes within a month of its start


def _iso(day: float) -> str:
    return from_days(day).date().isoformat()


@dataclass(frozen=True, slots=True)
class Departure:
    """Indices into the clear views of one event's departure (see the module docstring): the last
    view at the level (``before``, -1 if none), the first of the departure, its bottom, and the first
    later view back within ``recovery`` of the drop (``end``; the last view when not ``recovered``)."""

    before: int
    start: int
    bottom: int
    end: int
    recovered: bool
    level: float
    drop: float


def departure(window_start: float, t: np.ndarray, v: np.ndarray, bottom_days: float = BOTTOM_DAYS,
              recovery: float = 0.5) -> Departure | None:
    """The departure of an event whose window starts on ``window_start``, on clear views ``t`` (days,
    sorted) with NDVI ``v``; ``recovery``: the share of the drop that may still be missing when it
    counts as recovered (0.5: "back within half the drop"). None without a view after the start."""
    after = np.flatnonzero(t >= window_start - 1e-9)
    before = np.flatnonzero(t < window_start - 1e-9)
    if not len(after):
        return None
    i0 = int(after[0])
    if t[i0] <= window_start + 1e-9 and i0 + 1 < len(t):  # the window's first day is the last high view
        before = np.r_[before, i0]
        i0 += 1
    level = float(v[before[-1]]) if len(before) else float("nan")
    near = np.flatnonzero((t >= t[i0]) & (t <= t[i0] + bottom_days))
    ib = int(near[np.argmin(v[near])])
    drop = level - float(v[ib]) if math.isfinite(level) else float("nan")
    end, recovered = len(t) - 1, False
    if math.isfinite(drop) and drop > 0:
        back = np.flatnonzero((np.arange(len(t)) > ib) & (v >= level - recovery * drop))
        if len(back):
            end, recovered = int(back[0]), True
    return Departure(int(before[-1]) if len(before) else -1, i0, ib, end, recovered, level, drop)


def interval_of(event: Event, t: np.ndarray, v: np.ndarray, bottom_days: float = BOTTOM_DAYS) -> dict | None:
    """The interval record of ``event`` on clear views ``t`` (days, sorted) with NDVI ``v``."""
    d = departure(event.window[0], t, v, bottom_days)
    if d is None:
        return None
    i0, ib, end, level, drop = d.start, d.bottom, d.end, d.level, d.drop
    confirmed = event.evidence.get("confirmed_day") if event.evidence else None
    if confirmed is None:
        confirmed = float(t[i0 + 1]) if i0 + 1 < len(t) else float("nan")
    return {
        "before": _iso(float(t[d.before])) if d.before >= 0 else None,
        "start": _iso(float(t[i0])),
        "confirmed": _iso(float(confirmed)) if math.isfinite(float(confirmed)) else None,
        "bottom": _iso(float(t[ib])),
        "end": _iso(float(t[end])),
        "recovered": d.recovered,
        "n_obs": int(end - i0 + 1),
        "ndvi_before": round(level, 4) if math.isfinite(level) else None,
        "ndvi_bottom": round(float(v[ib]), 4),
        "ndvi_after": round(float(v[end]), 4),
        "drop": round(drop, 4) if math.isfinite(drop) else None,
    }


def add_intervals(events: Sequence[Event], obs: pd.DataFrame, as_of_day: float | None = None) -> list[Event]:
    """``events`` with ``evidence["interval"]`` added (see the module docstring); ``obs`` normalised."""
    table = obs if as_of_day is None else obs[obs["days"] <= as_of_day]
    nd = ndvi_frame(table)
    ok = nd.notna()
    views = {
        pid: (g["days"].to_numpy(float), nd[g.index].to_numpy(float))
        for pid, g in table[ok].sort_values("days").groupby("parcel_id", sort=False)
    }
    return _with_intervals(events, views)


def add_view_intervals(
    events: Sequence[Event], frames: Sequence[pd.DataFrame], ndvi_column: str = "observed_ndvi"
) -> list[Event]:
    """The same from already computed clear views: frames of ``parcel_id, days`` and ``ndvi_column``
    (the monitor's recent views, ``monitor.step.TileState.recent``); NaN NDVI is skipped."""
    if not events or not frames:
        return list(events)
    table = pd.concat([f[["parcel_id", "days", ndvi_column]] for f in frames], ignore_index=True)
    table = table[table["parcel_id"].isin({e.parcel_id for e in events}) & table[ndvi_column].notna()]
    table = table.drop_duplicates(["parcel_id", "days"], keep="last").sort_values("days")
    views = {
        pid: (g["days"].to_numpy(float), g[ndvi_column].to_numpy(float))
        for pid, g in table.groupby("parcel_id", sort=False)
    }
    return _with_intervals(events, views)


def _with_intervals(events: Sequence[Event], views: dict[str, tuple[np.ndarray, np.ndarray]]) -> list[Event]:
    out = []
    for e in events:
        tv = views.get(e.parcel_id)
        rec = interval_of(e, *tv) if tv is not None else None
        out.append(e if rec is None else replace(e, evidence={**e.evidence, "interval": rec}))
    return out
