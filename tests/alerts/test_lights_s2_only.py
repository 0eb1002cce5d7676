"""The S2-only path of a red: where no S1 can veto it, a red needs S2 gaps no longer than
``max_s2_gap_without_s1_days`` (a cut regrowing inside a longer gap leaves no trace in S2)."""

from __future__ import annotations

import json
import math
from datetime import date

import numpy as np
import pandas as pd

from alerts.decisions import S1_LEAD_DAYS, WindowEvidence, orbit_views
from alerts.evaluation_lights import Case
from alerts.lights_cv import S2_GAP_WITHOUT_S1_GRID, cross_validate_s2_gap
from alerts.lights_rules import load_rules, rules_from_dict
from alerts.series import normalise_observations, to_days
from alerts.traffic_light import Light, Reason
from tests.alerts.conftest import s1_row, s2_row
from tests.alerts.test_traffic_light import codes, day_of, one

GRASS = {"land_uses": ["grassland"], "events": ["mowing"], "window": ["04-15", "09-30"], "max_red_drop": 0.1,
         "max_s2_gap_days": 30.0, "max_s2_gap_with_s1_days": 30.0}
AS_OF = date(2024, 10, 15)


def _flat(s2_every: float, s1_every: float | None) -> pd.DataFrame:
    """Flat NDVI 0.8 with clear S2 every ``s2_every`` days and flat S1 (one orbit) every ``s1_every``."""
    rows = [s2_row("G", float(d), 0.8) for d in np.arange(day_of("2024-03-01"), day_of("2024-10-31"), s2_every)]
    if s1_every:
        rows += [s1_row("G", float(d), -15.0 - 0.3 * (k % 2))
                 for k, d in enumerate(np.arange(day_of("2024-03-02"), day_of("2024-10-31"), s1_every))]
    return normalise_observations(pd.DataFrame(rows))


def test_a_red_without_s1_needs_dense_s2_and_flips_only_there():
    limited = rules_from_dict({"rules": [{**GRASS, "max_s2_gap_without_s1_days": 15.0, "max_red_s1_drop_z": 4.5}]})
    plain = rules_from_dict({"rules": [{**GRASS, "max_red_s1_drop_z": 4.5}]})
    sparse_s2 = _flat(20.0, None)
    # S2 every 20 days, no S1: red under the old rule, orange under the limit, with the reason
    assert one(sparse_s2, [], AS_OF, rules=plain).light == Light.RED
    row = one(sparse_s2, [], AS_OF, rules=limited)
    assert row.light == Light.ORANGE and codes(row) == {Reason.S2_GAP_WITHOUT_S1}
    assert "15 days where no S1 series could veto a red" in row.reasons
    # the same S2 with S1 every 6 days: S1 could have seen a cut and did not, so the limit does not bind
    assert one(_flat(20.0, 6.0), [], AS_OF, rules=limited).light == Light.RED
    # dense S2 without S1: nothing to hide in, red
    assert one(_flat(5.0, None), [], AS_OF, rules=limited).light == Light.RED
    # a rule with no S1 veto: S1 vetoes nothing, so the S2 gap limit holds even with S1
    no_veto = rules_from_dict({"rules": [{**GRASS, "max_s2_gap_without_s1_days": 15.0}]})
    assert one(_flat(20.0, 6.0), [], AS_OF, rules=no_veto).light == Light.ORANGE


def test_the_calibrated_scheme_measures_the_limit_and_keeps_s1_parcels_as_they_were():
    rule = load_rules().scheme("mowing-calibrated").rules[0]
    # no fixed limit: it is measured on the judged parcels' cuts (tests/alerts/test_lights_visibility.py)
    assert rule.max_s2_gap_without_s1_days is None and rule.s2_visibility_quantile is not None
    assert rule.max_red_s1_drop_z == 4.5
    # one parcel and no detected cut: nothing to measure on, so no limit (the rule as given)
    assert one(_flat(20.0, None), [], AS_OF, rules=load_rules(), scheme="mowing-calibrated").light == Light.RED
    assert one(_flat(20.0, 6.0), [], AS_OF, rules=load_rules(), scheme="mowing-calibrated").light == Light.RED


def test_orbit_views_counts_what_the_s1_drop_reads():
    days = np.array([0.0, 6.0, 12.0, 18.0, 100.0, 3.0, 9.0])
    orbit = np.array([73, 73, 73, 73, 73, 22, np.nan])
    vh = np.array([0.03, 0.03, np.nan, 0.03, 0.03, 0.03, 0.03])
    # [start - S1_LEAD_DAYS, stop] = [-30, 20]: orbit 73 has 0, 6, 18 (12 has no VH); 22 has 3; NaN orbit has 9
    assert orbit_views(days, vh, orbit, S1_LEAD_DAYS, 20.0) == 3
    assert orbit_views(np.array([]), np.array([]), np.array([]), 0.0, 1.0) == 0


def _case(pid: str, active: bool, every: float) -> Case:
    """A flat, S2-only season with clear views every ``every`` days (a calibrated red if covered)."""
    days = tuple(float(d) for d in np.arange(to_days("2024-04-12"), to_days("2024-10-01"), every))
    gap = max(b - a for a, b in zip(days, days[1:], strict=False))
    evidence = WindowEvidence(n_clear_s2=len(days), max_s2_gap_days=gap, n_s1=0, max_s1_gap_days=math.inf,
                              max_drop=0.02, drop_day=math.nan, min_residual_z=math.nan, max_dip=0.03, n_rows=40,
                              s2_days=days, as_of_day=to_days("2024-10-15"))
    return Case(pid, "grassland", 2024, AS_OF, evidence, (), active, False)


def test_the_s2_gap_limit_is_chosen_on_training_folds():
    # unmown plots seen every 8 days; mown plots whose cut hid in 20-day gaps look just as flat
    cases = [_case(f"u{i}", False, 8.0) for i in range(30)] + [_case(f"m{i}", True, 20.0) for i in range(10)]
    scheme = load_rules().scheme("mowing-calibrated")
    r = cross_validate_s2_gap(cases, scheme, grid=(10.0, 15.0, 25.0, None), folds=4, seed=1, target=0.92)
    folds = r["plot_kfold"]["per_fold"]
    assert len(folds) == 4 and sum(f["parcel_years"] for f in folds) == len(cases)
    # 10 and 15 keep the mown orange and decide as much: the stricter, 10; 25 or none turn them red
    assert {f["chosen"]["max_s2_gap_without_s1_days"] for f in folds} == {10.0}
    pooled = r["plot_kfold"]["pooled"]
    assert pooled["red_precision"] == 1.0 and pooled["counts"]["red"] == 30 and pooled["counts"]["orange"] == 10
    off = cross_validate_s2_gap(cases, scheme, grid=(None,), folds=4, seed=1, target=0.92)
    assert off["plot_kfold"]["pooled"]["red_precision"] == 0.75


def test_eval_lights_chooses_the_s2_gap_on_s2_only_demo_cases(capsys):
    from sitsmon.cli import main

    base = ["eval", "lights", "--only", "synthetic", "--parcels", "60", "--no-encoder", "--scheme",
            "mowing-calibrated", "--variants", "s2_gap", "--folds", "3"]
    assert main([*base, "--sensors", "S2"]) == 0
    r = json.loads(capsys.readouterr().out)["synthetic"]
    gap = r["cv_s2_gap"]
    assert all(f["chosen"]["max_s2_gap_without_s1_days"] in S2_GAP_WITHOUT_S1_GRID
               for f in gap["plot_kfold"]["per_fold"])
    assert gap["plot_kfold"]["pooled"]["parcel_years"] == r["parcel_years"]
    # with S1 every parcel can be vetoed, the limit never binds, and it is not chosen there
    assert main(base) == 0
    assert "cv_s2_gap" not in json.loads(capsys.readouterr().out)["synthetic"]
