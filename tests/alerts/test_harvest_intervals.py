"""Harvest records as intervals: the bracket of clear views around a harvest in a cloud gap, and
scoring by interval (the truth inside the interval ± tolerance) beside the point date."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from alerts.detectors import HarvestDetector
from alerts.detectors.harvest import HarvestParams
from alerts.evaluation import match_dates, score_events
from alerts.evaluation_intervals import interval_lengths, match_intervals, score_intervals
from alerts.intervals import add_intervals
from alerts.series import from_days, iter_observations, to_days
from tests.alerts.test_harvest import _views, crop

DAY0 = to_days("2024-01-01")


def _iso(day: float) -> str:
    return from_days(DAY0 + day).date().isoformat()


@pytest.mark.parametrize("kind", ["green", "dry"])
def test_a_harvest_in_a_cloud_gap_is_bracketed_by_the_clear_views_around_it(kind):
    """Views every 10 days, none between day 170 and 240 (a cloudy summer), harvest on day 204: the
    event's window and its interval record run from the last clear view before (170) to the first
    showing the harvest (240), and hold the truth; the former 40-day limit refused to bracket it."""
    df = crop(kind, 204.0)
    df = df[~((df.days > DAY0 + 170.5) & (df.days < DAY0 + 239.5))]
    lu = "maize" if kind == "green" else "cereal"
    assert HarvestDetector(HarvestParams(s2_max_gap_days=40.0)).run("C", lu, iter_observations(df)) == []
    events = HarvestDetector().run("C", lu, iter_observations(df))
    assert len(events) == 1 and events[0].sensor == "S2"
    lo, hi = (d - DAY0 for d in events[0].window)
    assert round(lo) == 170 and round(hi) == 240 and lo <= 204.0 <= hi
    (e,) = add_intervals(events, df)
    rec = e.evidence["interval"]
    assert rec["before"] == _iso(170.0) and rec["start"] == _iso(240.0)
    assert rec["confirmed"] == _iso(240.0)  # a strong drop where no S1 is held: emitted on that view


def test_match_intervals_holds_the_truth_within_the_interval_and_tolerance():
    starts, ends, dates = np.array([100.0, 165.0]), np.array([170.0, 175.0]), np.array([135.0, 170.0])
    # truth 120 lies inside the first interval only; 168 inside both: one-to-one gives each its own
    m = match_intervals(starts, ends, dates, np.array([168.0, 120.0]), 12.0)
    assert sorted((i, j) for i, j, _ in m) == [(0, 1), (1, 0)]
    assert match_dates(dates, np.array([168.0, 120.0]), 12.0) == [(1, 0, 2.0)]  # 135 is 15 days from 120
    assert [o for *_, o in match_intervals(starts[:1], ends[:1], dates[:1], np.array([181.0]), 12.0)] == [11.0]
    assert match_intervals(starts[:1], ends[:1], dates[:1], np.array([183.0]), 12.0) == []
    assert match_intervals(starts, ends, dates, np.empty(0), 12.0) == []


def test_score_intervals_beside_the_point_date():
    det = pd.DataFrame({
        "parcel_id": ["A", "B", "C"], "date": ["2024-07-20", "2024-08-01", "2024-08-01"],
        "window_start": ["2024-06-20", "2024-07-30", "2024-07-30"],
        "window_end": ["2024-08-19", "2024-08-03", "2024-08-03"],
    })
    ref = pd.DataFrame({"parcel_id": ["A", "B", "D"], "date": ["2024-08-10", "2024-08-02", "2024-08-01"]})
    py = [(p, 2024) for p in "ABCD"]
    s = score_intervals(det, ref, py, tolerance_days=12.0)
    assert (s.tp, s.fp, s.fn) == (2, 1, 1) and s.mae_days == pytest.approx((21 + 1) / 2)
    point = score_events(det, ref, py, tolerance_days=12.0, doy_range=None)["all"]
    assert (point.tp, point.fp, point.fn) == (1, 2, 2)  # A's midpoint is 21 days off
    lengths = interval_lengths(det, 12.0)
    assert lengths["n"] == 3 and lengths["median_days"] == 4.0 and lengths["max_days"] == 60.0
    assert lengths["share_within_2_tolerances"] == pytest.approx(2 / 3, abs=1e-3)


SENESCING = [(170.0, 0.40, 0.16), (180.0, 0.34, 0.155), (190.0, 0.31, 0.15)]  # straw, no longer greening
RESOWN = HarvestParams(s2_max_gap_days=90.0, resown_ndvi=0.1)


def test_straw_before_a_cloudy_summer_and_a_new_crop_after_it_is_a_harvest_between():
    """The stubble was never seen: straw on day 190, the next clear view (day 275) shows a catch crop.
    A senesced crop cannot green up again unless harvested: one harvest bracketed by days 190 and 275."""
    df = _views(*SENESCING, (275.0, 0.55, 0.18), (285.0, 0.56, 0.18))
    assert HarvestDetector(replace(RESOWN, resown_ndvi=math.inf)).run("C", "cereal", iter_observations(df)) == []
    (e,) = HarvestDetector(RESOWN).run("C", "cereal", iter_observations(df))
    assert e.evidence["harvest_kind"] == "resown" and e.sensor == "S2"
    assert [round(d - DAY0) for d in e.window] == [190, 275]
    assert e.evidence["confirmed_day"] == e.window[1]  # the new crop is the confirmation


@pytest.mark.parametrize("case", ["emergence", "seedbed", "too_soon", "too_long"])
def test_a_crop_greening_up_is_not_a_resown_harvest(case):
    """Spring emergence (greener with every view), a bare seedbed (soil NDTI), a rise within
    ``regrowth_days``, or a gap longer than ``s2_max_gap_days``: no harvest."""
    rows = {
        "emergence": [(150.0, 0.22, 0.15), (160.0, 0.28, 0.15), (170.0, 0.33, 0.15), (230.0, 0.80, 0.30)],
        "seedbed": [(150.0, 0.20, 0.08), (160.0, 0.20, 0.08), (170.0, 0.20, 0.08), (230.0, 0.80, 0.30)],
        "too_soon": [*SENESCING, (200.0, 0.55, 0.18)],
        "too_long": [*SENESCING, (285.0, 0.55, 0.18)],
    }[case]
    assert HarvestDetector(RESOWN).run("C", "maize", iter_observations(_views(*rows))) == []
