"""The model evidence of the stream's (and replay's) events, looked up for all events at once, against
the plain per-event scan of every recent view it replaced (kept here as the reference)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from alerts.expectation import EXPECTED, EXPECTED_STD
from alerts.series import from_days
from alerts.types import Event
from monitor.step import EVIDENCE_HORIZON_DAYS, with_model_evidence


def _reference(event: Event, recent: list[pd.DataFrame], model_version: str) -> Event:
    """The per-event scan (monitor/step.py before the batched lookup): every frame, every event."""
    from dataclasses import replace

    best = None
    for frame in recent:
        rows = frame[(frame["parcel_id"] == event.parcel_id) & (frame["days"] >= event.date)
                     & (frame["days"] <= event.date + EVIDENCE_HORIZON_DAYS)]
        if not rows.empty:
            first = rows.iloc[int(np.argmin(rows["days"].to_numpy()))]
            if best is None or first["days"] < best["days"]:
                best = first
    if best is None:
        return event
    observed, mean, std = float(best["observed_ndvi"]), float(best[EXPECTED]), float(best[EXPECTED_STD])
    model = {
        "version": model_version,
        "date": from_days(float(best["days"])).date().isoformat(),
        "observed_ndvi": round(observed, 4) if math.isfinite(observed) else None,
        "expected_ndvi": round(mean, 4),
        "expected_ndvi_std": round(std, 4),
        "residual_z": round((observed - mean) / max(std, 1e-3), 2) if math.isfinite(observed) else None,
    }
    return replace(event, evidence={**event.evidence, "model": model})


def _views(rng, n_parcels: int, n_views: int) -> list[pd.DataFrame]:
    """Recent clear views as ``TileState.recent`` holds them: one frame per S2 view, a subset of parcels
    each; two views share a day (a tie the first frame must win) and one parcel is listed twice."""
    ids = np.array([f"P{i:04d}" for i in range(n_parcels)])
    frames = []
    for v in range(n_views):
        day = 19800.0 + 5.0 * v - (5.0 if v == 3 else 0.0)  # view 3 on view 2's day
        pick = np.sort(rng.choice(n_parcels, size=n_parcels * 2 // 3, replace=False))
        if v == 1:
            pick = np.r_[pick, pick[:1]]
        n = len(pick)
        observed = rng.uniform(0.2, 0.9, n)
        observed[rng.random(n) < 0.1] = np.nan
        frames.append(pd.DataFrame({
            "parcel_id": ids[pick], "days": np.full(n, day) + (v == 4) * rng.uniform(0, 0.5, n),
            "clear": np.ones(n), "observed_ndvi": observed,
            EXPECTED: rng.uniform(0.2, 0.9, n).astype(np.float32), EXPECTED_STD: rng.uniform(0, 0.2, n).astype(np.float32)}))
    return frames


def test_batched_evidence_equals_the_per_event_scan():
    rng = np.random.default_rng(7)
    recent = _views(rng, 60, 9)
    events = []
    for i in range(400):
        parcel = f"P{int(rng.integers(0, 70)):04d}"  # some parcels have no view at all
        date = float(rng.choice([19790.0, 19800.0, 19805.0, 19810.0, 19812.5, 19840.0, 19850.0])) \
            + float(rng.choice([0.0, 0.25, -EVIDENCE_HORIZON_DAYS]))
        events.append(Event(parcel, "mowing", date, (date - 3, date), 0.8, {"k": i}))
    got = with_model_evidence(events, recent, "m1")
    want = [_reference(e, recent, "m1") for e in events]
    assert [e.evidence for e in got] == [e.evidence for e in want]
    assert got == want
    with_model = sum("model" in e.evidence for e in got)
    assert 50 < with_model < len(events)  # both outcomes are exercised
    assert any(e.evidence.get("model", {}).get("observed_ndvi", 0) is None for e in got)  # a cloudy NaN


def test_no_views_or_no_events():
    event = Event("P0001", "mowing", 19800.0, (19790.0, 19800.0), 0.5, {})
    assert with_model_evidence([event], [], "m") == [event]
    assert with_model_evidence([], _views(np.random.default_rng(0), 5, 2), "m") == []
