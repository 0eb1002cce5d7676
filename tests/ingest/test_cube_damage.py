"""A cube left incomplete or damaged: `ingest status` says so, a poll rebuilds an empty one and refuses
one holding data (left as it was); a plain-CSV parcel layer is refused with its name; a failing item is
found by the id its error carries."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from ingest import pipeline as pipeline_mod
from ingest.cube import SCHEMA, check_cube, open_cube
from ingest.errors import AssetError, CubeError
from ingest.ledger import open_ledger
from ingest.poller import Poller, WatchConfig
from ingest.series import read_series
from ingest.types import Sensor
from sitsmon.cli import main
from tests.ingest.helpers import ListSource, served_basic_archive


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    yield from served_basic_archive(tmp_path_factory, "damage")


def poll_argv(served, work: Path, *extra: str) -> list[str]:
    archive, endpoint, parcels = served
    return ["ingest", "poll", "--once", "--stac-url", endpoint.url, "--tiles", "33UXP", "--since", "2024-04-01",
            "--grids", str(archive.root), "--parcels", str(parcels), "--cubes", str(work / "cubes"),
            "--series", str(work / "series"), "--ledger", str(work / "ledger.sqlite"), "--bus", "none",
            "--chunk", "32", *extra]


def status(work: Path, capsys) -> tuple[int, dict, str]:
    rc = main(["ingest", "status", "--ledger", str(work / "ledger.sqlite"), "--cubes", str(work / "cubes")])
    out = capsys.readouterr()
    return rc, json.loads(out.out), out.err


def digest(*roots: Path) -> str:
    h = hashlib.sha256()
    for root in roots:
        for p in sorted(root.rglob("*")):
            if p.is_file():
                h.update(str(p).encode() + p.read_bytes())
    return h.hexdigest()


def cube_values(work: Path) -> dict:
    return {s: open_cube(work / "cubes" / "33UXP.zarr", s).load().drop_vars("ingested_at") for s in Sensor}


@pytest.fixture(scope="module")
def reference(served, tmp_path_factory):
    work = tmp_path_factory.mktemp("damage_ref")
    assert main(poll_argv(served, work)) == 0
    return work


def test_interrupted_creation_is_reported_then_rebuilt(served, reference, tmp_path, capsys):
    archive = served[0]
    # what a kill during creation left before creation was made atomic: a root and part of one group
    root = zarr.open_group(str(tmp_path / "cubes" / "33UXP.zarr"), mode="w")
    root.attrs.update({"schema": SCHEMA, "grid": archive.grid.to_dict()})
    g = root.create_group("s2")
    g.create_array("x", shape=(64,), dtype="float64")
    open_ledger(tmp_path / "ledger.sqlite").close()
    assert check_cube(tmp_path / "cubes" / "33UXP.zarr") == "no array s2/y"
    with pytest.raises(CubeError, match="is incomplete: no array s2/y"):
        open_cube(tmp_path / "cubes" / "33UXP.zarr", "S2")
    rc, out, err = status(tmp_path, capsys)
    assert rc == 1 and out["cubes"][0]["problem"].startswith("no array s2/y")
    assert err.strip().splitlines() == [f"sitsmon ingest status: cube {tmp_path / 'cubes' / '33UXP.zarr'} is "
                                        "incomplete or damaged: no array s2/y (no committed step: the next poll "
                                        "rebuilds it)"]
    capsys.readouterr()
    assert main(poll_argv(served, tmp_path)) == 0  # the empty, incomplete cube is rebuilt
    capsys.readouterr()
    got, want = cube_values(tmp_path), cube_values(reference)
    for s in Sensor:
        assert got[s].identical(want[s]), s
    rc, out, err = status(tmp_path, capsys)
    assert rc == 0 and err == "" and out["cubes"] == [
        {"tile_id": "33UXP", "path": str(tmp_path / "cubes" / "33UXP.zarr"), "steps": {"S2": 3, "S1": 2}, "problem": ""}]


def test_damaged_cube_holding_data_is_refused_and_left_as_it_was(served, tmp_path, capsys):
    assert main(poll_argv(served, tmp_path, "--collections", "sentinel-2-l2a")) == 0
    shutil.rmtree(tmp_path / "cubes" / "33UXP.zarr" / "s1" / "backscatter")  # damaged by hand
    before = digest(tmp_path / "cubes", tmp_path / "series")
    rows = read_series(tmp_path / "series").num_rows
    capsys.readouterr()
    assert main(poll_argv(served, tmp_path)) == 1  # new S1 items need the cube
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is damaged (no array s1/backscatter) but holds committed " \
                              "data: move it away to rebuild it" in err[0], err
    assert digest(tmp_path / "cubes", tmp_path / "series") == before
    assert read_series(tmp_path / "series").num_rows == rows
    rc, out, _ = status(tmp_path, capsys)
    assert rc == 1 and out["cubes"][0]["problem"] == ("no array s1/backscatter (it holds committed steps: move it "
                                                      "away to rebuild it)")


def test_plain_csv_parcel_layer_is_named(served, reference, tmp_path, capsys):
    work = tmp_path / "work"
    shutil.copytree(reference, work)
    before = digest(work)
    csv = tmp_path / "x.csv"
    csv.write_text("parcel_id,area_ha\nP001,1.5\n")
    capsys.readouterr()
    assert main(poll_argv(served, work)[:-4] + ["--parcels", str(csv), "--bus", "none"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"sitsmon ingest: error: parcel layer {csv} has no geometry (a plain table?): give GeoParquet, "
                   "GeoPackage or GeoJSON with parcel polygons and a CRS"], err
    assert "'DataFrame' object" not in "".join(err)
    assert digest(work) == before


def test_failing_item_is_found_by_its_id_not_its_message(served, tmp_path, monkeypatch):
    """An asset error whose text does not name the item still quarantines that item (and only it)."""
    archive = served[0]
    broken = "S2B_33UXP_20240503_0_L2A"  # the second of the two same-day items (sorted by id)
    original = pipeline_mod.read_block

    def read_block(it, window):
        if it.info.item_id == broken:
            raise AssetError("reading window failed: truncated TIFF")
        return original(it, window)

    monkeypatch.setattr(pipeline_mod, "read_block", read_block)
    poller = Poller([ListSource(archive.items)], open_ledger(tmp_path / "ledger.sqlite"), tmp_path / "cubes",
                    tmp_path / "series", WatchConfig(tiles=("33UXP",), start_s=0), grids={"33UXP": archive.grid},
                    asset_root=archive.root, chunk=32)
    report = poller.poll_once()
    assert [q[0] for q in report.quarantined] == [broken]
    assert "truncated TIFF" in report.quarantined[0][1]
    slots = open_cube(tmp_path / "cubes" / "33UXP.zarr", "S2")
    assert list(slots.item_ids.values)[0] == "S2A_33UXP_20240503_0_L2A" and slots.sizes["time"] == 3
    assert np.all(slots.item_ids.values != "")


def test_a_foreign_store_under_the_cube_name_is_never_deleted(served, tmp_path, capsys):
    foreign = tmp_path / "cubes" / "33UXP.zarr"
    zarr.open_group(str(foreign), mode="w", zarr_format=2).attrs["owner"] = "someone else"  # a zarr v2 store
    (foreign / "notes.txt").write_text("keep me")
    before = digest(foreign)
    assert main(poll_argv(served, tmp_path)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{foreign} is not a sitsmon cube (no zarr.json): move it away" in err[0], err
    assert digest(foreign) == before
    open_ledger(tmp_path / "ledger.sqlite").close()
    rc, out, _ = status(tmp_path, capsys)
    assert rc == 1 and out["cubes"][0]["problem"] == "no zarr.json (not a sitsmon cube: move it away)"
