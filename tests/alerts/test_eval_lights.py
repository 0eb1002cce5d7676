"""`sitsmon eval lights`: scoring of lights against reference events, cross-validated constants."""

from __future__ import annotations

import json
from datetime import date

import pandas as pd

from alerts.decisions import WindowEvidence
from alerts.evaluation_lights import Case, cross_validate, grid_of, judge, score, with_params
from alerts.lights_rules import default_scheme
from alerts.series import to_days
from alerts.traffic_light import Light
from alerts.types import Event
from sitsmon.cli import main


def _evidence(drop: float) -> WindowEvidence:
    return WindowEvidence(n_clear_s2=20, max_s2_gap_days=10.0, n_s1=30, max_s1_gap_days=6.0, max_drop=drop,
                          drop_day=float("nan"), min_residual_z=float("nan"), n_rows=50)


def _case(pid: str, year: int, active: bool, drop: float, conf: float | None) -> Case:
    d = to_days(f"{year}-07-01")
    events = () if conf is None else (Event(pid, "mowing", d, (d - 3, d + 2), conf),)
    return Case(pid, "grassland", year, date(year, 10, 15), _evidence(drop), events, active, False)


def test_score_counts_right_reds_and_greens():
    cases = [_case("a", 2021, True, 0.3, 0.95), _case("b", 2021, False, 0.3, 0.95),
             _case("c", 2021, False, 0.01, None), _case("d", 2021, True, 0.01, None),
             _case("e", 2021, False, 0.2, None)]
    s = score(cases, judge(cases, default_scheme()))
    assert s["counts"] == {"green": 2, "orange": 1, "red": 2, "not_analysable": 0}
    assert s["green_precision"] == 0.5 and s["red_precision"] == 0.5


def test_cross_validation_chooses_on_training_folds_only():
    # 2 years x 20 plots: in 2021 a 0.05 drop means "not mown", in 2022 the undetected mown plots have it
    cases = []
    for i in range(20):
        mown = i % 2 == 0
        cases.append(_case(f"p{i}", 2021, mown, 0.2 if mown else 0.05, 0.95 if mown else None))
        cases.append(_case(f"p{i}", 2022, mown, 0.05 if mown else 0.02, None))
    grid = [[{"max_red_drop": d} for d in (0.03, 0.1)], [{"min_green_confidence": 0.0}]]
    r = cross_validate(cases, default_scheme(), grid, folds=4, seed=1, target=0.9)
    folds = r["plot_kfold"]["per_fold"]
    assert len(folds) == 4 and sum(f["parcel_years"] for f in folds) == len(cases)
    assert sum(f["counts"]["red"] for f in folds) == r["plot_kfold"]["pooled"]["counts"]["red"]
    loyo = {f["fold"]: f for f in r["leave_one_year_out"]["per_fold"]}
    # trained on 2021 alone, 0.1 looks safe and is chosen; held out on 2022 it turns mown plots red
    assert loyo["2022"]["chosen"]["grassland"]["max_red_drop"] == 0.1
    assert loyo["2022"]["red_precision"] == 0.5
    # trained on 2022, only the strict 0.03 keeps reds right; held out on 2021 it leaves them orange
    assert loyo["2021"]["chosen"]["grassland"]["max_red_drop"] == 0.03
    assert loyo["2021"]["red_precision"] is None and loyo["2021"]["share"]["orange"] == 0.5
    strict = judge(cases, with_params(default_scheme(), grid_of(grid)[0]))
    assert score(cases, strict)["red_precision"] == 1.0 and score(cases, strict)["counts"]["red"] == 10


def _write_dataset(folder, real_small) -> None:
    """The small real set as a dataset folder of the kind ``eval lights --data`` reads."""
    obs, parcels, events = real_small
    out = obs.drop(columns=["days"]).copy()
    out["time"] = out["time"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    out.to_csv(folder / "observations.csv", index=False)
    parcels.to_csv(folder / "parcels.csv", index=False)
    pd.DataFrame(events).to_csv(folder / "events.csv", index=False)


def test_eval_lights_command_prints_per_fold_figures(tmp_path, real_small, capsys):
    _write_dataset(tmp_path, real_small)
    assert main(["eval", "lights", "--data", str(tmp_path), "--only", "real", "--folds", "3", "--no-encoder"]) == 0
    r = json.loads(capsys.readouterr().out)["real"]
    assert r["parcel_years"] == 36
    cv = r["cv_rule_only"]
    assert [f["fold"] for f in cv["leave_one_year_out"]["per_fold"]] == ["2021", "2022", "2023"]
    assert len(cv["plot_kfold"]["per_fold"]) == 3
    for key in ("red_precision", "green_precision", "share"):
        assert key in cv["plot_kfold"]["pooled"] and key in r["shipped_defaults_in_sample"]["per_campaign"]["2022"]
    assert sum(r["shipped_defaults_in_sample"]["all"]["counts"].values()) == 36
    assert set(r["shipped_defaults_in_sample"]["all"]["counts"]) == {x.value for x in Light}


def test_eval_lights_s2_only_drops_the_s1_rows(tmp_path, real_small, capsys):
    _write_dataset(tmp_path, real_small)
    args = ["eval", "lights", "--data", str(tmp_path), "--only", "real", "--folds", "3", "--no-encoder"]
    assert main([*args, "--sensors", "S2"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["sensors"] == ["S2"] and printed["real"]["parcel_years"] == 36
