"""``sitsmon demo`` end to end on a small archive: archive → STAC API → ingest → bus → alerts.

The second run must find everything already there: no new item, no new event, no new alert.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import zarr

from sitsmon.cli import main
from tests.conftest import DEMO_ARGS


def _run(data_dir: Path, capsys) -> dict:
    code = main(["demo", "--data-dir", str(data_dir), *DEMO_ARGS])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    return json.loads(captured.out.strip().splitlines()[-1])


def test_demo_runs_the_pipeline_and_is_idempotent(tmp_path: Path, capsys, demo_run) -> None:
    """The first run is the session's (``demo_run``, which the dashboard tests read too); the second runs
    on a copy of its data dir."""
    from tests.dashboards.conftest import copy_data_dir

    first_dir, first = demo_run
    work = copy_data_dir(first_dir, tmp_path / "data")
    manifest = json.loads((work / "archive" / "archive.json").read_text())
    in_archive = {c: manifest["counts"][c] for c in ("sentinel-2-l2a", "sentinel-1-grd")}

    assert first["found"] == in_archive  # the search lists every acquisition of the archive
    assert first["ingest"]["ingested_items"] == sum(in_archive.values())
    assert first["quarantined"] == 0
    assert sum(first["events"].values()) == first["ingest"]["ingested_slots"]  # one event per acquisition
    assert first["events"]["S2"] > 0 and first["events"]["S1"] > 0

    cube = zarr.open_group(str(work / "cubes" / f"{manifest['tiles'][0]['tile_id']}.zarr"), mode="r")
    assert cube["s2"]["time"].shape[0] + cube["s1"]["time"].shape[0] == first["ingest"]["ingested_slots"]

    with sqlite3.connect(work / "alerts.sqlite") as db:
        stored = db.execute("select count(*) from alerts").fetchone()[0]
        evidence = [json.loads(row[0]) for row in db.execute("select evidence from alerts")]
    assert stored == first["alerts"] == first["new_alerts"]
    # what the encoder expected is part of the evidence wherever a clear view follows the event
    assert any("model" in e and "expected_ndvi" in e["model"] for e in evidence)
    assert sum(first["lights"].values()) == manifest["counts"]["parcels"]

    second = _run(work, capsys)
    assert second["ingest"]["ingested_items"] == 0
    assert second["ingest"]["duplicates"] == sum(in_archive.values())
    assert second["events"] == {}
    assert second["new_alerts"] == 0 and second["alerts"] == first["alerts"]
    with sqlite3.connect(work / "alerts.sqlite") as db:
        assert db.execute("select count(*) from alerts").fetchone()[0] == stored
