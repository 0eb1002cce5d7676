"""`sitsmon detect | gapfill | eval` through the CLI entry point (main(argv) -> int)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from sitsmon.cli import main


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory, real_small):
    obs, parcels, events = real_small
    d = tmp_path_factory.mktemp("sk")
    out = obs.drop(columns=["days"]).copy()
    out["time"] = out["time"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    out.to_csv(d / "observations.csv", index=False)
    parcels.to_csv(d / "parcels.csv", index=False)
    events.to_csv(d / "events.csv", index=False)
    return d


def _detect(observations, parcels, out, *extra: str) -> int:
    """``sitsmon detect`` on the given files, with extra options."""
    return main(
        ["detect", "--observations", str(observations), "--parcels", str(parcels), "--out", str(out), *extra]
    )


def test_detect_writes_alert_rows(small_dir, tmp_path, capsys):
    out = tmp_path / "alerts.csv"
    rc = _detect(small_dir / "observations.csv", small_dir / "parcels.csv", out)
    assert rc == 0
    df = pd.read_csv(out)
    assert {"parcel_id", "event", "date", "confidence", "alert_id", "evidence"} <= set(df.columns)
    assert len(df) > 5 and set(df.event) == {"mowing"}
    assert df.alert_id.is_unique
    lights = tmp_path / "lights.csv"
    assert (
        _detect(small_dir / "observations.csv", small_dir / "parcels.csv", out,
                "--lights", str(lights), "--campaign", "2022", "--as-of", "2022-09-30")
        == 0
    )
    tl = pd.read_csv(lights)
    assert len(tl) == 12 and set(tl.light) <= {"green", "orange", "red", "not_analysable"}
    assert tl.reasons.notna().all() and tl.reason_codes.notna().all()
    # green only where a mowing of the campaign was detected; red only where the window was observed
    mown_2022 = set(df[df.date.str.startswith("2022")].parcel_id)
    assert set(tl[tl.light == "green"].parcel_id) <= mown_2022
    assert tl[tl.light == "red"].reason_codes.str.contains("coverage_ok").all()
    gj = tmp_path / "alerts.geojson"
    assert _detect(small_dir / "observations.csv", small_dir / "parcels.csv", gj, "--detectors", "mowing") == 0
    fc = json.loads(gj.read_text())
    assert len(fc["features"]) == len(df) and fc["features"][0]["geometry"]["type"] == "Point"


def test_detect_into_store_replay_makes_no_duplicate(small_dir, tmp_path, capsys):
    from alerts.store.sqlite import SqliteAlertStore

    db = tmp_path / "alerts.sqlite"
    argv = [
        "detect",
        "--observations",
        str(small_dir / "observations.csv"),
        "--parcels",
        str(small_dir / "parcels.csv"),
        "--out",
        str(tmp_path / "a.csv"),
        "--store",
        str(db),
    ]
    assert main(argv) == 0
    with SqliteAlertStore(db) as store:
        first = store.count()
    assert first == len(pd.read_csv(tmp_path / "a.csv")) > 0
    assert main(argv) == 0  # replay
    assert f"0 new alerts, {first} already stored" in capsys.readouterr().err
    with SqliteAlertStore(db) as store:
        assert store.count() == first


def test_detect_bad_input_is_one_line_error(small_dir, tmp_path, capsys):
    parcels = pd.read_csv(small_dir / "parcels.csv").iloc[1:]
    parcels.to_csv(tmp_path / "p.csv", index=False)
    rc = _detect(small_dir / "observations.csv", tmp_path / "p.csv", tmp_path / "a.csv")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and err[-1].startswith("sitsmon detect: error: observations name unknown parcel id")
    rc = _detect(tmp_path / "nope.csv", tmp_path / "p.csv", tmp_path / "a.csv")
    assert rc == 1 and "file not found" in capsys.readouterr().err
    rc = _detect(small_dir / "observations.csv", small_dir / "parcels.csv", tmp_path / "a.csv", "--detectors", "flood")
    assert rc == 1 and "unknown detector 'flood'" in capsys.readouterr().err


def test_gapfill_command(small_dir, tmp_path):
    q = pd.DataFrame(
        {
            "parcel_id": ["LR100", "LR100", "LR100"],
            "time": ["2022-06-15T10:00:00Z", "2022-07-30T10:00:00Z", "2030-01-01T00:00:00Z"],
        }
    )
    q.to_csv(tmp_path / "q.csv", index=False)
    rc = main(
        [
            "gapfill",
            "--observations",
            str(small_dir / "observations.csv"),
            "--parcels",
            str(small_dir / "parcels.csv"),
            "--at",
            str(tmp_path / "q.csv"),
            "--out",
            str(tmp_path / "f.csv"),
        ]
    )
    assert rc == 0
    f = pd.read_csv(tmp_path / "f.csv")
    assert list(f.status) == ["ok", "ok", "out_of_range"]
    assert (f.filled == 1).all()
    assert f.NDVI.iloc[:2].between(-1, 1).all() and f.uncertainty.iloc[:2].gt(0).all()
    assert pd.isna(f.NDVI.iloc[2])


def test_eval_mowing_and_gapfill_print_json(small_dir, capsys):
    assert main(["eval", "mowing", "--data", str(small_dir), "--folds", "3", "--quick"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["task"] == "mowing" and r["cv"]["folds"] == 3
    assert 0.0 <= r["cv"]["with_event"]["f1"] <= 1.0 and len(r["cv"]["chosen_per_fold"]) == 3
    assert main(["eval", "gapfill", "--data", str(small_dir)]) == 0
    r = json.loads(capsys.readouterr().out)
    assert [x["mode"] for x in r["runs"]] == ["random", "window"]
    assert all(x["ndvi_mae"] > 0 for x in r["runs"])


def test_eval_harvest_on_synthetic_truth(capsys):
    assert main(["eval", "harvest", "--parcels", "120", "--seed", "1"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["all_sensors"]["median_abs_date_error_days"] <= 7
    assert r["s2_clouded_over"]["tp"] > 0
    # the interval scores the same detections more leniently than the point date, never less
    assert r["s2_only"]["interval"]["tp"] >= r["s2_only"]["tp"]
    (summary,) = r["summary"]
    for name in ("all_sensors", "s1_only", "s2_only"):
        assert summary[name]["interval_f1"] >= summary[name]["point_f1"]
        assert len(summary[name]["per_fold_interval_f1"]) == 5
    assert summary["s2_only"]["interval_p90_days"] <= 90.0  # bounded by the largest S2 gap of the grid


def test_eval_solar_parcel_and_pixel_level(capsys):
    """Parcel level on synthetic series; pixel level on one rendered synthetic archive (COGs)."""
    assert main(["eval", "solar", "--parcels", "200", "--seed", "1", "--pixels", "1"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["all_sensors"]["precision"] >= 0.9 and r["all_sensors"]["tp"] >= 5
    pix = r["pixel_level"]
    assert pix["runs"][0]["sites"] == pix["tp"] + pix["fn"]
    assert pix["tp"] >= 2 and pix["runs"][0]["median_iou"] > 0.5
