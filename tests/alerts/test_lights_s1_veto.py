"""The S1 veto of a red: the VH fall in units of the parcel's own noise, the light it keeps orange,
and its choice inside the folds of a dataset the calibration never saw."""

from __future__ import annotations

import json
import math
from datetime import date

import numpy as np
import pandas as pd
import pytest

from alerts.decisions import S1_LEAD_DAYS, S1_MIN_NOISE_DB, S1_MIN_VIEWS, WindowEvidence, s1_drop_z
from alerts.evaluation_lights import Case, score
from alerts.lights_cv import S1_Z_GRID, cross_validate_s1_veto
from alerts.lights_rules import load_rules, rules_from_dict
from alerts.series import normalise_observations, to_days
from alerts.traffic_light import Light, Reason
from tests.alerts.conftest import s1_row, s2_row
from tests.alerts.test_traffic_light import codes, day_of, one


def _plain_s1_drop_z(days, vh, orbit, start, stop):
    """The statistic written out view by view (the module's is vectorised per orbit)."""
    best, best_day = 0.0, math.nan
    for o in sorted(set(orbit.tolist())):
        pts = sorted((t, 10 * math.log10(v)) for t, v, b in zip(days, vh, orbit, strict=True)
                     if b == o and start - S1_LEAD_DAYS <= t <= stop)
        if len(pts) < S1_MIN_VIEWS:
            continue
        noise = max(float(np.median([abs(b[1] - a[1]) for a, b in zip(pts, pts[1:], strict=False)])), S1_MIN_NOISE_DB)
        for i in range(2, len(pts)):
            if pts[i][0] < start:
                continue
            now = [p[1] for p in pts[i:i + 2]]
            fall = ((pts[i - 2][1] + pts[i - 1][1]) / 2 - sum(now) / len(now)) / noise
            if fall > best:
                best, best_day = fall, pts[i][0]
    return best, best_day


def test_s1_drop_z_equals_a_plain_loop_and_finds_a_step():
    rng = np.random.default_rng(5)
    for trial in range(20):
        n = int(rng.integers(3, 60))
        days = np.sort(rng.uniform(0, 200, n))
        orbit = rng.choice([22.0, 95.0, np.nan], n)
        vh = 10 ** (rng.normal(-16, 1.5, n) / 10)
        start, stop = 40.0, float(rng.uniform(60, 200))
        fast = s1_drop_z(days, vh, orbit, start, stop)
        ref = _plain_s1_drop_z(days, vh, np.where(np.isfinite(orbit), orbit, -1.0), start, stop)
        assert fast[0] == pytest.approx(ref[0], abs=1e-9), trial
        assert (math.isnan(fast[1]) and math.isnan(ref[1])) or fast[1] == ref[1]
    # a 4 dB fall on day 60 in a series alternating by 0.5 dB: 4 / 0.5 = 8 noise units, at day 60
    days = np.arange(0.0, 120.0, 6.0)
    db = np.where(np.arange(len(days)) % 2 == 0, -15.0, -15.5) - np.where(days >= 60, 4.0, 0.0)
    z, day = s1_drop_z(days, 10 ** (db / 10), np.full(len(days), 22.0), 30.0, 120.0)
    assert day == 60.0 and z == pytest.approx(4.0 / 0.5)  # each pair averages the alternation out
    # too few views of the orbit, or no S1: S1 says nothing
    assert s1_drop_z(days[:S1_MIN_VIEWS - 1], 10 ** (db[:S1_MIN_VIEWS - 1] / 10), np.full(S1_MIN_VIEWS - 1, 22.0),
                     0.0, 120.0)[0] == 0.0
    assert s1_drop_z(np.array([]), np.array([]), np.array([]), 0.0, 1.0)[0] == 0.0


def _flat_season_with_s1(fall_db: float) -> pd.DataFrame:
    """Flat NDVI 0.8 (clear S2 every 5 days: a red if nothing else speaks), S1 every 6 days
    alternating by 0.5 dB, falling by ``fall_db`` from 2024-07-10 on."""
    rows = [s2_row("G", float(d), 0.8) for d in np.arange(day_of("2024-03-01"), day_of("2024-10-31"), 5.0)]
    fall = day_of("2024-07-10")
    for k, d in enumerate(np.arange(day_of("2024-03-02"), day_of("2024-10-31"), 6.0)):
        rows.append(s1_row("G", float(d), -15.0 - 0.5 * (k % 2) - (fall_db if d >= fall else 0.0)))
    return normalise_observations(pd.DataFrame(rows))


def test_an_s1_fall_keeps_a_calibrated_and_a_rule_red_orange():
    rules = load_rules()
    as_of = date(2024, 10, 15)
    quiet = one(_flat_season_with_s1(0.0), [], as_of, rules=rules, scheme="mowing-calibrated")
    assert quiet.light == Light.RED and Reason.S1_DROP not in codes(quiet)
    cut = one(_flat_season_with_s1(4.0), [], as_of, rules=rules, scheme="mowing-calibrated")
    assert cut.light == Light.ORANGE and codes(cut) == {Reason.S1_DROP, Reason.COVERAGE_OK}
    assert "S1 VH fell" in cut.reasons and "2024-07-1" in cut.reasons and "red only up to 4.5" in cut.reasons
    # the rule decision has the same veto where a scheme sets it, and none where it does not
    grass = {"land_uses": ["grassland"], "events": ["mowing"], "window": ["04-15", "09-30"], "max_red_drop": 0.1}
    vetoing = rules_from_dict({"rules": [{**grass, "max_red_s1_drop_z": 4.0}]})
    plain = rules_from_dict({"rules": [grass]})
    assert one(_flat_season_with_s1(4.0), [], as_of, rules=vetoing).light == Light.ORANGE
    assert one(_flat_season_with_s1(4.0), [], as_of, rules=plain).light == Light.RED
    assert one(_flat_season_with_s1(0.0), [], as_of, rules=vetoing).light == Light.RED
    with pytest.raises(ValueError, match="max_red_s1_drop_z"):
        rules_from_dict({"rules": [{**grass, "max_red_s1_drop_z": 0.0}]})


def _case(pid: str, active: bool, z: float) -> Case:
    """A covered, flat season (a calibrated red if S1 does not veto it) whose S1 fell ``z`` noise units."""
    days = tuple(float(d) for d in np.arange(to_days("2024-04-10"), to_days("2024-10-01"), 5.0))
    evidence = WindowEvidence(n_clear_s2=len(days), max_s2_gap_days=5.0, n_s1=30, max_s1_gap_days=6.0, max_drop=0.02,
                              drop_day=math.nan, min_residual_z=math.nan, max_dip=0.03, n_rows=80, s2_days=days,
                              s1_days=days, as_of_day=to_days("2024-10-15"), s1_drop_z=z)
    return Case(pid, "grassland", 2024, date(2024, 10, 15), evidence, (), active, False)


def test_the_s1_veto_is_chosen_on_training_folds_and_ties_go_to_the_stricter():
    # unmown plots: S1 fell 2 noise units (noise); mown plots whose cut S2 missed: 5.5 units
    cases = [_case(f"u{i}", False, 2.0) for i in range(30)] + [_case(f"m{i}", True, 5.5) for i in range(10)]
    scheme = load_rules().scheme("mowing-calibrated")
    r = cross_validate_s1_veto(cases, scheme, folds=4, seed=2, target=0.92)
    folds = r["plot_kfold"]["per_fold"]
    assert len(folds) == 4 and sum(f["parcel_years"] for f in folds) == len(cases)
    # every veto up to 5 keeps the mown plots orange and decides as much: the strictest is chosen
    assert {f["chosen"]["max_red_s1_drop_z"] for f in folds} == {3.0} and r["chosen_on_all"]["max_red_s1_drop_z"] == 3.0
    pooled = r["plot_kfold"]["pooled"]
    assert pooled["red_precision"] == 1.0 and pooled["counts"]["red"] == 30 and pooled["counts"]["orange"] == 10
    # without it (the grid's None) the mown plots are red: precision 0.75, below the target
    off = cross_validate_s1_veto(cases, scheme, grid=(None,), folds=4, seed=2, target=0.92)
    assert score(cases, [Light.RED] * 40)["red_precision"] == off["plot_kfold"]["pooled"]["red_precision"] == 0.75


def test_eval_lights_chooses_the_veto_on_the_demo_archive_only(capsys):
    from sitsmon.cli import main

    args = ["eval", "lights", "--only", "synthetic", "--parcels", "60", "--no-encoder", "--scheme",
            "mowing-calibrated", "--variants", "s1_veto", "--folds", "3"]
    assert main(args) == 0
    r = json.loads(capsys.readouterr().out)["synthetic"]
    veto = r["cv_s1_veto"]
    assert [f["fold"] for f in veto["plot_kfold"]["per_fold"]] == ["fold1", "fold2", "fold3"]
    assert all(f["chosen"]["max_red_s1_drop_z"] in S1_Z_GRID for f in veto["plot_kfold"]["per_fold"])
    assert veto["plot_kfold"]["pooled"]["parcel_years"] == r["parcel_years"]
    assert {row["variant"] for row in r["comparison"]} == {"calibrated_shipped_s1_veto_in_fold"}
