"""The S2-only limit measured on the data's own detected cuts (``alerts.visibility``): how long a cut
stays visible, and a red across a longer S2 gap only where S1 could have vetoed it."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pandas as pd
import pytest

from alerts.decisions import WindowEvidence
from alerts.evaluation_lights import Case
from alerts.lights_cv import cross_validate_s2_visibility, cross_validate_s2_visibility_joint
from alerts.lights_rules import load_rules, rules_from_dict
from alerts.series import normalise_observations, to_days
from alerts.traffic_light import Light, Reason, assess_frame
from alerts.types import Event
from alerts.visibility import cut_traces, limit_from, measured_rule, measured_scheme, visible_days
from tests.alerts.conftest import T0, s1_row, s2_row

LEVEL, LOW = 0.8, 0.3
GRASS = {"land_uses": ["grassland"], "events": ["mowing"], "window": ["04-15", "09-30"], "max_red_drop": 0.1,
         "max_s2_gap_days": 30.0, "max_s2_gap_with_s1_days": 30.0, "max_red_s1_drop_z": 4.5,
         "s2_visibility_quantile": 0.5, "s2_visibility_recovery": 0.1, "min_visibility_cuts": 5}
AS_OF = date(2024, 10, 15)


def sward(day: np.ndarray, cut: float, regrow: float) -> np.ndarray:
    """NDVI of a sward at LEVEL cut to LOW on day ``cut`` and back linearly over ``regrow`` days."""
    back = np.clip((day - cut) / regrow, 0.0, 1.0)
    return np.where(day < cut, LEVEL, LOW + (LEVEL - LOW) * back)


def plain_visible_days(t: list[float], v: list[float], t_hi: float, recovery: float) -> float | None:
    """The reference, view by view: the cut lies between the last view at the level (``t_hi``) and
    the next one; it is back at the first later view within ``recovery`` of the drop, after the
    lowest view of the month after the cut; both days are the middle of the two views around them."""
    i_hi = t.index(t_hi)
    level, i0 = v[i_hi], i_hi + 1
    month = [i for i in range(i0, len(t)) if t[i] <= t[i0] + 30.0]
    ib = min(month, key=lambda i: (v[i], i))
    for i in range(ib + 1, len(t)):
        if v[i] >= level - recovery * (level - v[ib]):
            return (t[i - 1] + t[i]) / 2 - (t[i_hi] + t[i0]) / 2
    return None


@pytest.mark.parametrize("every", [1.0, 3.0, 5.0, 7.0])
@pytest.mark.parametrize("regrow", [10.0, 40.0])
@pytest.mark.parametrize("recovery", [0.1, 0.5])
def test_visible_days_matches_the_reference_and_the_known_regrowth(every, regrow, recovery):
    t = np.arange(0.0, 120.0, every)
    cut = 40.3
    v = sward(t, cut, regrow)
    t_hi = float(t[t < cut][-1])
    got = visible_days(t_hi, t, v, recovery)
    assert got == pytest.approx(plain_visible_days(list(t), list(v), t_hi, recovery))
    # the truth: the sward is back within `recovery` of its drop (1 - recovery) * regrow days after
    # the cut; the estimate knows the cut and the recovery to half a view spacing each
    assert abs(got - (1 - recovery) * regrow) <= every


def test_a_cut_not_back_yet_or_without_a_view_before_is_not_measured():
    t = np.arange(0.0, 60.0, 5.0)
    assert visible_days(float(t[t < 40.3][-1]), t, sward(t, 40.3, 60.0), 0.1) is None  # still down
    assert visible_days(-10.0, t, sward(t, 2.0, 10.0), 0.1) is None  # nothing seen before the cut


def test_the_limit_is_the_quantile_of_the_traces_and_needs_enough_cuts():
    rule = rules_from_dict({"rules": [GRASS]}).scheme().rules[0]
    traces = [10.0, 12.0, 30.0, 31.0, 40.0]
    assert limit_from(traces, 0.5, 5) == 30.0 and limit_from(traces, 0.25, 5) == 12.0
    assert measured_rule(rule, traces).max_s2_gap_without_s1_days == 30.0
    assert measured_rule(rule, traces[:4]).max_s2_gap_without_s1_days is None  # too few: as given (none)


def region(n: int, regrow: float, prefix: str) -> tuple[list[dict], list[Event]]:
    """``n`` mown parcels seen every 3 days, each cut once (a detected mowing) and regrowing in ``regrow`` days."""
    rows, events = [], []
    t = np.arange(float((pd.Timestamp("2024-03-01", tz="UTC") - T0).days), 300.0, 3.0)
    for k in range(n):
        pid, cut = f"{prefix}{k}", 160.3 + 2 * k
        rows += [s2_row(pid, float(d), float(x)) for d, x in zip(t, sward(t, cut, regrow), strict=True)]
        hi, lo = float(t[t < cut][-1]), float(t[t > cut][0])
        base = to_days(T0)
        events.append(Event(parcel_id=pid, event="mowing", date=base + lo, window=(base + hi, base + lo),
                            confidence=0.8))
    return rows, events


def flat(pid: str, every: float, s1: bool = False) -> list[dict]:
    """An unmown parcel at LEVEL, clear S2 every ``every`` days (and S1 every 6 days, one orbit)."""
    rows = [s2_row(pid, float(d), LEVEL) for d in np.arange(60.0, 300.0, every)]
    if s1:
        rows += [s1_row(pid, float(d), -15.0 - 0.3 * (k % 2)) for k, d in enumerate(np.arange(61.0, 300.0, 6.0))]
    return rows


def lights_of(regrow: float, n_cuts: int = 8, rules=None) -> dict[str, pd.Series]:
    rows, events = region(n_cuts, regrow, "m")
    rows += flat("F20", 20.0) + flat("F5", 5.0) + flat("S20", 20.0, s1=True)
    obs = normalise_observations(pd.DataFrame(rows))
    parcels = pd.DataFrame({"parcel_id": sorted({r["parcel_id"] for r in rows}), "land_use": "grassland"})
    out = assess_frame(obs, parcels, events, campaign=2024, as_of=AS_OF, rules=rules or rules_from_dict({"rules": [GRASS]}))
    return {r.parcel_id: r for r in out.itertuples()}


def test_the_limit_follows_the_region_a_flat_parcel_flips_where_it_should():
    # fast regrowth (10 days): 90 % back after ~9 days, so a 20-day S2 gap could hide a cut: orange
    fast = lights_of(10.0)
    assert fast["F20"].light == Light.ORANGE and Reason.S2_GAP_WITHOUT_S1 in fast["F20"].reason_codes
    assert "how long the detected cuts of these parcels stayed visible in S2" in fast["F20"].reasons
    assert fast["F5"].light == Light.RED  # dense S2: nothing could hide
    assert fast["S20"].light == Light.RED  # S1 could have vetoed, and did not: the limit does not bind
    # slow regrowth (40 days, as on the Slovak plots): a 20-day gap cannot hide a cut: red
    slow = lights_of(40.0)
    assert slow["F20"].light == Light.RED and slow["F5"].light == Light.RED
    # too few detected cuts to measure on: the rule's own max_s2_gap_without_s1_days (unset: no limit)
    assert lights_of(10.0, n_cuts=3)["F20"].light == Light.RED


def test_measured_scheme_reads_the_cuts_of_the_parcels_judged():
    rows, events = region(6, 10.0, "m")
    obs = normalise_observations(pd.DataFrame(rows))
    from alerts.decisions import window_evidence

    scheme = rules_from_dict({"rules": [GRASS]}).scheme()
    rule = scheme.rules[0]
    judged, traces = [], []
    for pid, g in obs.groupby("parcel_id"):
        ev = window_evidence(g, to_days("2024-04-15"), to_days("2024-10-01"), to_days("2024-10-16"))
        mine = [e for e in events if e.parcel_id == pid]
        judged.append(("grassland", 2024, ev, mine))
        traces += [visible_days(e.window[0], np.asarray(ev.s2_days), np.asarray(ev.s2_ndvi), 0.1) for e in mine]
    got = measured_scheme(scheme, judged).rules[0].max_s2_gap_without_s1_days
    assert got == round(float(np.median(traces)), 1) and got == pytest.approx(9.0, abs=3.0)
    assert cut_traces(rule, 2023, judged[0][2], judged[0][3], 0.1) == []  # another campaign's window


def test_the_calibrated_scheme_measures_its_limit():
    rule = load_rules().scheme("mowing-calibrated").rules[0]
    assert rule.max_s2_gap_without_s1_days is None
    assert (rule.s2_visibility_quantile, rule.s2_visibility_recovery) == (0.5, 0.1)


def _case(pid: str, active: bool, every: float, cut_trace: float | None) -> Case:
    """An S2-only season, flat (a calibrated red if covered), with clear views every ``every`` days;
    with ``cut_trace`` a detected cut seen on its first view and back ``cut_trace`` days later."""
    days = np.arange(to_days("2024-04-12"), to_days("2024-10-01"), every)
    ndvi = np.full(len(days), LEVEL)
    events: tuple[Event, ...] = ()
    if cut_trace is not None:  # a cut between views 10 and 11, back to the level from view 11 + trace
        ndvi[11] = LOW
        back = np.searchsorted(days, days[11] + cut_trace)
        ndvi[12:back] = LOW
        events = (Event(parcel_id=pid, event="mowing", date=float(days[11]), window=(float(days[10]), float(days[11])),
                        confidence=0.8),)
    gap = float(np.diff(days).max())
    drop = 0.02 if cut_trace is None else LEVEL - LOW  # a cut parcel: a detected, deep drop (green, not red)
    evidence = WindowEvidence(n_clear_s2=len(days), max_s2_gap_days=gap, n_s1=0, max_s1_gap_days=math.inf,
                              max_drop=drop, drop_day=math.nan, min_residual_z=math.nan, max_dip=drop + 0.01, n_rows=40,
                              s2_days=tuple(float(d) for d in days), s2_ndvi=tuple(float(x) for x in ndvi),
                              as_of_day=to_days("2024-10-15"))
    return Case(pid, "grassland", 2024, AS_OF, evidence, events, active, False)


def _region(trace: float) -> list[Case]:
    """Unmown plots seen every 8 days, mown plots whose cut hid in 20-day gaps (just as flat), and
    reference parcels (not judged red: a detected cut) whose cuts stay visible ``trace`` days."""
    return ([_case(f"u{i}", False, 8.0, None) for i in range(30)] + [_case(f"m{i}", True, 20.0, None) for i in range(10)]
            + [_case(f"c{i}", True, 4.0, trace) for i in range(30)])


def test_the_measured_limit_is_chosen_and_measured_on_training_folds():
    scheme = load_rules().scheme("mowing-calibrated")
    grid = ((0.5, 0.1), None)
    fast = cross_validate_s2_visibility(_region(12.0), scheme, grid=grid, folds=4, seed=1, target=0.92)
    for f in fast["plot_kfold"]["per_fold"]:
        # the mown 20-day plots would be wrong reds without the limit; the measured one (~12 days) keeps them orange
        assert f["chosen"]["s2_visibility"] == [0.5, 0.1]
        assert 8.0 <= f["chosen"]["max_s2_gap_without_s1_days"] < 20.0
    assert fast["plot_kfold"]["pooled_calibrated_rule"]["red_precision"] == 1.0
    # where cuts stay visible for 40 days the same option measures a limit that 20-day gaps pass
    slow = cross_validate_s2_visibility(_region(40.0), scheme, grid=((0.5, 0.1),), folds=4, seed=1, target=0.92)
    assert all(f["chosen"]["max_s2_gap_without_s1_days"] > 20.0 for f in slow["plot_kfold"]["per_fold"])


def test_one_option_for_both_regions_each_measuring_its_own_limit():
    scheme = load_rules().scheme("mowing-calibrated")
    sets = {"a": _region(12.0), "b": _region(12.0)[:40] + _region(40.0)[40:]}
    r = cross_validate_s2_visibility_joint(sets, scheme, unseen=("a", "b"), grid=((0.5, 0.1), None), folds=4,
                                           seed=1, target=0.92)
    # the limit keeps region a precise; region b cannot be made precise by any option (its mown
    # 20-day plots are red under its 40-day limit and without one), so it does not veto a's choice
    assert all(c == [0.5, 0.1] for c in r["plot_kfold"]["chosen"].values())
    limits = {n: {f["chosen"]["max_s2_gap_without_s1_days"] for f in r["plot_kfold"][n]["per_fold"]} for n in sets}
    assert max(limits["a"]) < 20.0 < min(limits["b"])


def test_eval_lights_measures_the_limit_in_the_demo_folds(capsys):
    import json

    from alerts.lights_cv import S2_VISIBILITY_GRID
    from sitsmon.cli import main

    argv = ["eval", "lights", "--only", "synthetic", "--parcels", "60", "--no-encoder", "--scheme",
            "mowing-calibrated", "--variants", "s2_visibility", "--folds", "3", "--sensors", "S2"]
    assert main(argv) == 0
    r = json.loads(capsys.readouterr().out)["synthetic"]
    options = [None if o is None else list(o) for o in S2_VISIBILITY_GRID]
    assert all(f["chosen"]["s2_visibility"] in options for f in r["cv_s2_visibility"]["plot_kfold"]["per_fold"])
    shipped = r["cv_s2_visibility_shipped"]["plot_kfold"]
    assert {tuple(f["chosen"]["s2_visibility"]) for f in shipped["per_fold"]} == {(0.5, 0.1)}
    assert shipped["pooled"]["parcel_years"] == r["parcel_years"]
