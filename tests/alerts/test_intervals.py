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


def test_detect_writes_intervals_that_hold_the_field_dates(tmp_path, real_small, capsys):
    """`sitsmon detect` on real plots: each mowing matched (±12 days) to a field-recorded one carries an
    interval from the last view before the departure to its end that contains the field date (97 % of
    the matched detections on all of grassland-sk-dev; at least 90 % asked here, on 12 plots)."""
    import json

    import pandas as pd

    from sitsmon.cli import main

    obs, parcels, ref = real_small
    out = obs.drop(columns=["days"]).copy()
    out["time"] = out["time"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    out.to_csv(tmp_path / "obs.csv", index=False)
    parcels.to_csv(tmp_path / "parcels.csv", index=False)
    assert main(["detect", "--observations", str(tmp_path / "obs.csv"), "--parcels", str(tmp_path / "parcels.csv"),
                 "--out", str(tmp_path / "alerts.csv"), "--detectors", "mowing"]) == 0
    alerts = pd.read_csv(tmp_path / "alerts.csv", dtype={"parcel_id": str})
    field = {p: [to_days(pd.Timestamp(d, tz="UTC")) for d in g["date"]] for p, g in ref.groupby("parcel_id")}
    matched = inside = 0
    for pid, date, evidence in zip(alerts["parcel_id"], alerts["date"], alerts["evidence"], strict=True):
        iv = json.loads(evidence)["interval"]
        day = to_days(pd.Timestamp(date, tz="UTC"))
        near = [f for f in field.get(pid, []) if abs(f - day) <= 12.0]
        if not near:
            continue
        f = min(near, key=lambda x: abs(x - day))
        matched += 1
        inside += to_days(pd.Timestamp(iv["before"], tz="UTC")) <= f <= to_days(pd.Timestamp(iv["end"], tz="UTC")) + 1
    assert matched >= 5 and inside / matched >= 0.9


def test_monitor_views_give_the_same_intervals_as_the_observation_table():
    """The monitor's path (frames of clear views with their observed NDVI, in pieces, a view repeated)
    gives each event the record the offline path computes from the observation table."""
    import pandas as pd

    from alerts.intervals import add_view_intervals
    from alerts.series import ndvi_frame

    df = mowing_series("G1", cuts=(160.0,), with_s1=False)
    events = MowingDetector().run("G1", "grassland", iter_observations(df))
    views = df.assign(observed_ndvi=ndvi_frame(df))[["parcel_id", "days", "observed_ndvi"]]
    frames = [views.iloc[: len(views) // 2], views.iloc[len(views) // 2 - 1:]]  # overlapping pieces
    frames.append(pd.DataFrame({"parcel_id": ["G1"], "days": [float(views["days"].iloc[3])],
                                "observed_ndvi": [float("nan")]}))  # a cloudy view carries no NDVI
    (a,) = add_intervals(events, df)
    (b,) = add_view_intervals(events, frames)
    assert b.evidence["interval"] == a.evidence["interval"]
    assert add_view_intervals(events, []) == events
