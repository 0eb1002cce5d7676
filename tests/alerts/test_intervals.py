"""Event records as intervals: start, confirmation, bottom, end, NDVI before/bottom/after."""

from __future__ import annotations

from alerts.detectors import MowingDetector
from alerts.intervals import add_intervals
from alerts.series import iter_observations, to_days
from tests.alerts.conftest import mowing_series


def _iso(day: float) -> str:
    from alerts.series import from_days

    return from_days(to_days("2024-01-01") + day).date().isoformat()


def test_mowing_interval_from_departure_to_regrowth():
    df = mowing_series("G1", cuts=(160.0,), with_s1=False)  # views every 5 days from day 60
    events = MowingDetector().run("G1", "grassland", iter_observations(df))
    assert len(events) == 1
    (e,) = add_intervals(events, df)
    rec = e.evidence["interval"]
    assert rec["before"] == _iso(155.0) and rec["start"] == _iso(160.0) and rec["confirmed"] == _iso(165.0)
    assert rec["bottom"] == _iso(160.0) and abs(rec["ndvi_bottom"] - 0.45) < 0.03
    # back within half the drop after ~15 days of regrowth (0.45 + 0.35·15/30, noise decides the view)
    assert rec["end"] in (_iso(175.0), _iso(180.0)) and rec["recovered"]
    assert abs(rec["drop"] - 0.35) < 0.04 and rec["n_obs"] == (4 if rec["end"] == _iso(175.0) else 5)
    assert {k: v for k, v in e.evidence.items() if k != "interval"} == events[0].evidence  # additive only


def test_interval_as_of_before_regrowth_is_open():
    df = mowing_series("G1", cuts=(160.0,), with_s1=False)
    events = MowingDetector().run("G1", "grassland", iter_observations(df[df.days <= to_days("2024-01-01") + 167]))
    (e,) = add_intervals(events, df, as_of_day=to_days("2024-01-01") + 167)
    assert not e.evidence["interval"]["recovered"] and e.evidence["interval"]["end"] == _iso(165.0)
