"""Gap filling: correctness on synthetic series, bad input, and a small real-data comparison."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alerts import gapfill as gf
from alerts.errors import SeriesError, UnknownParcelError
from alerts.evaluation import evaluate_gapfill
from tests.alerts.conftest import mowing_series


def _queries(pid: str, days: list[float]) -> pd.DataFrame:
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    return pd.DataFrame({"parcel_id": pid, "time": [(t0 + pd.Timedelta(days=d)).isoformat() for d in days]})


@pytest.fixture(scope="module")
def many():
    frames = [mowing_series(f"G{i}", cuts=(140.0 + 7 * i,), seed=i) for i in range(6)]
    return pd.concat(frames, ignore_index=True)


def test_fill_outputs_bands_ndvi_uncertainty_and_flags(many):
    model = gf.fit(many)
    out = gf.fill(model, many, _queries("G0", [100.0, 102.5, 250.0]))
    assert list(out.columns[:2]) == ["parcel_id", "time"]
    for col in ("B02", "B04", "B08", "B12", "NDVI", "uncertainty", "filled", "method", "status"):
        assert col in out.columns
    assert (out.filled == 1).all() and (out.status == "ok").all()
    assert np.allclose(out.NDVI, (out.B08 - out.B04) / (out.B08 + out.B04))  # bands agree with NDVI
    assert out.NDVI.between(0.7, 0.9).all()  # steady 0.8 grass at those dates
    assert (out.uncertainty > 0).all()


def test_uncertainty_grows_with_the_gap(many):
    day = many.days - many.days.min() + 60.0  # days since 2024-01-01 (the series starts on day 60)
    visible = many[~((many.sensor == "S2") & (day > 160) & (day < 210))]
    model = gf.fit(visible)
    out = gf.fill(model, visible, _queries("G3", [127.5, 185.0]))
    near, far = out.uncertainty.iloc[0], out.uncertainty.iloc[1]
    assert far > near


def test_bad_queries(many):
    model = gf.fit(many)
    out = gf.fill(model, many, _queries("G0", [5.0, 400.0]))
    assert list(out.status) == ["out_of_range", "out_of_range"]
    assert out.NDVI.isna().all()
    with pytest.raises(UnknownParcelError, match="'ZZ'"):
        gf.fill(model, many, _queries("ZZ", [100.0]))
    with pytest.raises(SeriesError, match="missing column time"):
        gf.fill(model, many, pd.DataFrame({"parcel_id": ["G0"]}))
    cloudy = many.copy()
    cloudy.loc[cloudy.parcel_id == "G1", "clear"] = 0
    out = gf.fill(model, cloudy, _queries("G1", [100.0]))
    assert out.status.iloc[0] == "no_clear_data"
    with pytest.raises(SeriesError, match="at least 3 clear"):
        gf.fit(many.head(2))


def test_beats_linear_interpolation_on_long_gaps_of_real_plots(real_small):
    """Twelve real plots, one 45-day window hidden per plot-year (the full run: `sitsmon eval gapfill`)."""
    obs, _, _ = real_small
    r = evaluate_gapfill(obs, mode="window", seed=0)
    assert r["scored_views"] > 100
    assert r["ndvi_mae"] < r["ndvi_mae_linear"]


def test_season_edges_filled_from_s1_with_wider_bands(many):
    """After the last clear S2 view: filled when S1 is near (status extrapolated), refused without."""
    day = many.days - many.days.min() + 60.0
    late_cloud = many.copy()
    late_cloud.loc[(late_cloud.sensor == "S2") & (day > 250), "clear"] = 0  # last clear view: day 250
    model = gf.fit(late_cloud)
    out = gf.fill(model, late_cloud, _queries("G2", [200.0, 262.0, 290.0]))
    assert list(out.status) == ["ok", "extrapolated", "extrapolated"]
    assert out.NDVI.between(0.6, 0.95).all()
    assert (out.interval90 > out.uncertainty).all()
    assert out.uncertainty.iloc[1] > out.uncertainty.iloc[0]  # wider beyond the edge than inside
    no_s1 = late_cloud[late_cloud.sensor == "S2"]
    out = gf.fill(gf.fit(no_s1), no_s1, _queries("G2", [262.0, 290.0]))
    assert list(out.status) == ["out_of_range", "out_of_range"] and out.NDVI.isna().all()


def test_bands_are_calibrated_on_held_out_errors(real_small):
    """On twelve real plots with 20 % of clear views hidden, the 68 % and 90 % bands hold about that
    share of the held-out errors (the full run: `sitsmon eval gapfill`)."""
    obs, _, _ = real_small
    r = evaluate_gapfill(obs, mode="random", seed=0)
    assert 0.58 <= r["uncertainty_coverage_1sigma"] <= 0.78
    assert 0.83 <= r["uncertainty_coverage_90"] <= 0.96


def _three_years(pid: str, cut: float, seed: int) -> pd.DataFrame:
    """``mowing_series`` of 2024 repeated in 2023 and 2022 (same day of year, other noise)."""
    frames = []
    for k, back in enumerate((0, 365, 730)):
        df = mowing_series(pid, cuts=(cut,), seed=seed + 10 * k, with_s1=False)
        df["time"] = df["time"] - pd.Timedelta(days=back)
        df["days"] = df["days"] - back
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def test_the_parcels_own_other_years_fill_a_long_gap():
    """A parcel cut on the same day every year; its 2024 cut hidden by a 45-day cloud: the prior from
    its own 2022 and 2023 seasons puts the cut back, the region's climatology cannot (others are cut
    at other times). The prior never uses the year it fills (the hidden dip is not in it)."""
    obs = pd.concat([_three_years("P", 160.0, 0)] + [_three_years(f"O{i}", c, i + 1)
                                                     for i, c in enumerate((110.0, 220.0, 240.0, 260.0))],
                    ignore_index=True)
    day = obs["days"] - obs["days"].min() - 2 * 365 + 60.0  # days since 2024-01-01 in the last year
    hidden = (obs.parcel_id == "P") & (day >= 150) & (day <= 195)
    visible, target = obs[~hidden], obs[hidden]
    queries = target[["parcel_id", "time"]].assign(time=target["time"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    truth = gf._ndvi(target[list(gf.S2_BANDS)].to_numpy(float))
    mae = {}
    for days in (0.0, 20.0):
        model = gf.fit(visible, gf.GapFillParams(parcel_prior_days=days))
        mae[days] = float(np.mean(np.abs(gf.fill(model, visible, queries)["NDVI"].to_numpy(float) - truth)))
    assert mae[20.0] < 0.8 * mae[0.0]  # 0.090 vs 0.125 NDVI when written


def test_bands_per_horizon_hold_long_gaps_better_than_one_scale(real_small):
    """Twelve real plots, one 45-day spell per plot-year hidden: the 90 % band calibrated per horizon
    on the fitted model's own hidden views is closer to 90 % than one quantile for all horizons (the
    leave-one-out and block residuals behind that one skip the S1 correction and over-cover). This
    is the smoother's calibration (no trees); with the trees both come from their out-of-fold errors."""
    obs, _, _ = real_small
    per_horizon = evaluate_gapfill(obs, mode="window", seed=0, params=gf.GapFillParams(boost=False))
    one_scale = evaluate_gapfill(obs, mode="window", seed=0,
                                 params=gf.GapFillParams(boost=False, horizon_calibration=False))
    assert per_horizon["ndvi_mae"] == one_scale["ndvi_mae"]  # the same fill, other bands
    assert abs(per_horizon["uncertainty_coverage_90"] - 0.9) < abs(one_scale["uncertainty_coverage_90"] - 0.9)
    assert 0.82 <= per_horizon["uncertainty_coverage_90"] <= 0.96
