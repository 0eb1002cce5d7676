"""The calibrated light: the logistic fit, the in-fold thresholds, and the light it gives."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

from alerts.confidence import FEATURES, PACKAGED, LogisticModel, fit_logistic, load_calibration
from alerts.confidence_cv import counted_events, lights_of, table, thresholds
from alerts.detectors import make_detectors, run_detectors
from alerts.evaluation_lights import build_cases
from alerts.lights_rules import load_rules, rules_from_dict
from alerts.series import normalise_observations
from alerts.traffic_light import Light, Reason, assess
from sitsmon.cli import main
from tests.alerts.conftest import s1_row, s2_row
from tests.alerts.test_eval_lights import _write_dataset
from tests.alerts.test_traffic_light import PARCELS, codes, day_of, ev, one, season


def test_fit_logistic_matches_a_general_optimiser():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 3)) * [1.0, 5.0, 0.2] + [0.0, 10.0, 1.0]
    y = (rng.random(200) < 1 / (1 + np.exp(-(x[:, 0] - 0.3 * (x[:, 1] - 10))))).astype(float)
    m = fit_logistic(x, y, ("a", "b", "c"), l2=2.0)
    z = np.c_[np.ones(200), (x - m.mean) / np.asarray(m.scale)]

    def loss(w):  # the same penalised likelihood, minimised by BFGS instead of Newton
        s = z @ w
        return float(np.sum(np.logaddexp(0, s) - y * s) + 0.5 * 2.0 * np.sum(w[1:] ** 2))

    ref = minimize(loss, np.zeros(4), method="BFGS", options={"gtol": 1e-9}).x
    assert np.allclose([m.bias, *m.weights], ref, atol=1e-4)
    assert LogisticModel.from_dict(json.loads(json.dumps(m.as_dict()))).probability(dict(a=0.5, b=9.0, c=1.0)) == \
        pytest.approx(m.probability(dict(a=0.5, b=9.0, c=1.0)))


def test_thresholds_hold_the_target_and_none_decides_more():
    rng = np.random.default_rng(0)
    p = rng.random(300)
    active = rng.random(300) < p  # calibrated by construction
    has_event = rng.random(300) < 0.6
    covered = rng.random(300) < 0.9
    after = np.ones(300, bool)
    red_p, green_p, decided = thresholds(p, active, has_event, covered, after, 0.9)
    lights = lights_of(p, has_event, covered, after, red_p, green_p)
    assert (~active[lights == 0]).mean() >= 0.9 and active[lights == 2].mean() >= 0.9
    assert decided == int((lights != 1).sum()) > 50
    # brute force over every pair of cut points: none feasible decides more
    cuts = np.r_[-1.0, np.sort(p), 2.0]
    best = 0
    for g in cuts:
        gl = has_event & (p >= g)
        if gl.any() and active[gl].mean() < 0.9:
            continue
        for r in cuts[cuts < g]:
            rl = after & covered & (p <= r) & ~gl
            if rl.any() and (~active[rl]).mean() < 0.9:
                continue
            best = max(best, int(gl.sum() + rl.sum()))
    assert decided == best


@pytest.fixture(scope="module")
def real_cases(real_small):
    obs, parcels, events = real_small
    detected, _ = run_detectors(obs, parcels, make_detectors(["mowing"]))
    return build_cases(obs, parcels, detected, events, load_rules().scheme("mowing-calibrated"))


def test_vectorised_lights_equal_assess_on_real_plots(real_cases):
    scheme = load_rules().scheme("mowing-calibrated")
    rule = scheme.rules[0]
    tab = table(real_cases, rule)
    model = fit_logistic(tab.x, tab.active, FEATURES, 1.0)
    seen = set()
    for red_p, green_p in ((0.2, 0.8), (0.4, 0.6), (0.05, 0.95)):
        cal = rule.model_copy(update={"red_probability": red_p, "green_probability": green_p})
        sc = scheme.model_copy(update={"rules": (cal, *scheme.rules[1:])})
        ref = [assess(c.parcel_id, c.land_use, c.campaign, c.events, as_of=c.as_of, evidence=c.evidence, scheme=sc,
                      calibration=model).light for c in real_cases]
        fast = lights_of(model.predict(tab.x), tab.has_event, tab.covered[rule.max_s2_gap_days], tab.after_deadline,
                         red_p, green_p)
        assert [(Light.RED, Light.ORANGE, Light.GREEN)[int(k)] for k in fast] == ref
        seen |= set(ref)
    assert seen == {Light.RED, Light.ORANGE, Light.GREEN}
    assert any(counted_events(c, rule) for c in real_cases)


def _cut_season() -> pd.DataFrame:
    """Flat NDVI 0.8, cut to 0.4 on 2024-07-01 and regrowing over six weeks; clear S2 every 5 days,
    S1 every 6."""
    cut = day_of("2024-07-01")
    rows = [s2_row("G", float(d), float(np.clip(0.4 + 0.4 * (d - cut) / 42.0, 0.4, 0.8)) if d >= cut else 0.8)
            for d in np.arange(day_of("2024-03-01"), day_of("2024-10-31"), 5.0)]
    rows += [s1_row("G", float(d), -16.0) for d in np.arange(day_of("2024-03-02"), day_of("2024-10-31"), 6.0)]
    return normalise_observations(pd.DataFrame(rows))


def test_calibrated_light_red_green_and_as_of():
    flat = season(s2_every=5.0)
    sc = "mowing-calibrated"
    rules = load_rules()
    row = one(flat, [], date(2024, 10, 15), rules=rules, scheme=sc)
    assert row.light == Light.RED
    assert codes(row) == {Reason.NO_ACTIVITY, Reason.COVERAGE_OK, Reason.LOW_ACTIVITY_PROBABILITY}
    assert "probability of mowing" in row.reasons and "(calibrated" in row.reasons
    cut = _cut_season()
    detected, _ = run_detectors(cut, PARCELS, make_detectors(["mowing"]))
    assert len(detected) == 1
    green = one(cut, detected, date(2024, 10, 15), rules=rules, scheme=sc)
    assert green.light == Light.GREEN and codes(green) == {Reason.ACTIVITY_DETECTED}
    # before the cut is known it never counts, and the season is not over: orange, not red
    for as_of in (date(2024, 6, 1), date(2024, 7, 2)):
        early = one(cut, detected, as_of, rules=rules, scheme=sc)
        assert early.light == Light.ORANGE and Reason.BEFORE_DEADLINE in codes(early)
    # the same drop with no detection: the drop alone keeps the calibrated light from red
    assert one(cut, [], date(2024, 10, 15), rules=rules, scheme=sc).light == Light.ORANGE
    # a clouded season is never red, whatever the probability
    gap = season(s2_every=5.0, gap=("2024-06-01", "2024-07-31"))
    clouded = one(gap, [], date(2024, 10, 15), rules=rules, scheme=sc)
    assert clouded.light == Light.ORANGE and Reason.S2_GAP_TOO_LONG in codes(clouded)


def test_an_event_outside_the_window_does_not_make_a_calibrated_green():
    cut = _cut_season()
    late = [ev("G", "mowing", "2024-10-10", 0.99)]
    row = one(cut, late, date(2024, 10, 31), rules=load_rules(), scheme="mowing-calibrated")
    assert row.light != Light.GREEN and Reason.EVENTS_OUTSIDE_WINDOW_IGNORED in codes(row)


def test_packaged_calibration_and_bad_files(tmp_path):
    m = load_calibration()
    assert set(m.names) <= set(FEATURES) and "eval lights" in m.provenance["command"]
    assert m.provenance["parcel_years"] == 348
    # the shipped scheme's thresholds are the ones the fit chose and recorded beside the model
    rule = load_rules().scheme("mowing-calibrated").rules[0]
    fit = m.provenance["thresholds"]
    assert (rule.green_probability, rule.red_probability, rule.max_s2_gap_days) == (
        fit["green_probability"], fit["red_probability"], fit["max_s2_gap_days"])
    assert list(m.names) == fit["features"]
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: not valid JSON"):
        load_calibration(bad)
    (tmp_path / "empty.json").write_text("{}")
    with pytest.raises(ValueError, match="empty.json: not a logistic model"):
        load_calibration(tmp_path / "empty.json")
    rules = rules_from_dict({"rules": [{"land_uses": ["grassland"], "events": ["mowing"], "window": ["04-15", "09-30"],
                                        "decision": "calibrated", "calibration": str(tmp_path / "missing.json")}]})
    with pytest.raises(ValueError, match="calibration file not found"):
        one(season(), [], date(2024, 10, 15), rules=rules)
    assert PACKAGED.name == "confidence_mowing.json"


def test_eval_lights_compares_the_variants_and_fits_the_calibration(tmp_path, real_small, capsys):
    _write_dataset(tmp_path, real_small)
    fitted = tmp_path / "cal.json"
    args = ["eval", "lights", "--data", str(tmp_path), "--only", "real", "--folds", "3", "--no-encoder",
            "--scheme", "mowing-calibrated", "--fit-calibration", str(fitted)]
    assert main(args) == 0
    r = json.loads(capsys.readouterr().out)
    cv = r["real"]["cv_calibrated"]
    assert len(cv["plot_kfold"]["per_fold"]) == 3 and [f["fold"] for f in cv["leave_one_year_out"]["per_fold"]] == [
        "2021", "2022", "2023"]
    assert sum(f["parcel_years"] for f in cv["plot_kfold"]["per_fold"]) == 36
    variants = {row["variant"] for row in r["real"]["comparison"]}
    assert variants == {"rule", "calibrated", "calibrated_s2_visibility_in_fold"}  # every variant by default
    model = load_calibration(fitted)
    assert model.provenance["parcel_years"] == 36 and r["fitted_calibration"]["file"] == str(fitted)


def test_detect_lights_with_the_calibrated_scheme(tmp_path, real_small):
    _write_dataset(tmp_path, real_small)
    lights = tmp_path / "lights.csv"
    argv = ["detect", "--observations", str(tmp_path / "observations.csv"), "--parcels", str(tmp_path / "parcels.csv"),
            "--out", str(tmp_path / "alerts.csv"), "--lights", str(lights), "--campaign", "2022",
            "--as-of", "2022-10-15", "--lights-scheme", "mowing-calibrated"]
    assert main(argv) == 0
    tl = pd.read_csv(lights, keep_default_na=False)
    assert len(tl) == 12 and set(tl.scheme) == {"mowing-calibrated"}
    assert tl[tl.light == "red"].reason_codes.str.contains("low_activity_probability").all()
    assert tl.reasons.str.contains("calibrated").sum() >= 6
    _, _, truth = real_small  # in sample for the packaged fit, so only a regression check
    mown = set(truth[truth.date.str.startswith("2022")].parcel_id)
    assert not set(tl[tl.light == "red"].parcel_id) & mown and len(tl[tl.light == "red"]) >= 5
    detected = pd.read_csv(tmp_path / "alerts.csv")
    assert set(tl[tl.light == "green"].parcel_id) <= set(detected[detected.date.str.startswith("2022")].parcel_id)
    # as of 1 June nothing of the season is known yet: no green, no red
    early = tmp_path / "early.csv"
    assert main([*argv[:-8], "--lights", str(early), "--campaign", "2022", "--as-of", "2022-06-01",
                 "--lights-scheme", "mowing-calibrated"]) == 0
    assert set(pd.read_csv(early).light) == {"orange"}
