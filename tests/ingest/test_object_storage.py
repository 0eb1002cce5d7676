"""Cubes and parcel series on S3-compatible object storage (a moto server the tests start): the same
arrays as on local disk, and the same crash safety without a rename (docs/storage.md)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from contracts import storage
from ingest import cube as cube_mod
from ingest.cube import CubeWriter, cube_exists, open_cube
from ingest.errors import CubeError
from ingest.series import read_series
from ingest.types import Sensor
from tests.ingest.helpers import basic_archive
from tests.ingest.kill_runner import poll

ROOT = Path(__file__).resolve().parents[2]
TILE = "33UXP"


def run(work: Path, archive: Path, kill: str = "", stores: str = "") -> subprocess.CompletedProcess:
    """tests/ingest/kill_runner.py in a subprocess (its cubes and series under ``stores`` when given)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "tests.ingest.kill_runner", str(work), str(archive), kill, stores],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """An uninterrupted poll of the mini archive into local folders: the reference."""
    base = tmp_path_factory.mktemp("s3-reference")
    archive = basic_archive(base / "archive")
    assert poll(base / "local", archive.root).ingested_slots == 5
    return archive, base / "local"


def snapshot(cubes, series) -> dict:
    out: dict = {s: open_cube(storage.join(cubes, f"{TILE}.zarr"), s).load().drop_vars("ingested_at") for s in Sensor}
    out["series"] = read_series(series).to_pandas()
    return out


def assert_same(got: dict, want: dict) -> None:
    for sensor in Sensor:
        assert got[sensor].identical(want[sensor]), sensor  # values, times, slots, item ids, attributes
    assert got["series"].equals(want["series"])


def test_ingest_into_s3_equals_local(local_run, s3_bucket, tmp_path):
    archive, local = local_run
    report = poll(tmp_path, archive.root, "", f"{s3_bucket}/data")
    assert report.ingested_slots == 5 and not report.errors
    assert not (tmp_path / "cubes").exists() and not (tmp_path / "series").exists()  # nothing went to disk
    fs = storage.filesystem()
    keys = fs.find(storage.fs_path(s3_bucket))
    assert f"{storage.fs_path(s3_bucket)}/data/series/{TILE}/compact.parquet" in keys  # compacted on S3 too
    assert not [k for k in keys if ".creating-" in k]  # the layout's temporary prefix is gone
    assert_same(snapshot(f"{s3_bucket}/data/cubes", f"{s3_bucket}/data/series"),
                snapshot(local / "cubes", local / "series"))


# commit:3 dies in the third step's commit, after its data and provenance, before its time index (a kill
# in the layout's creation is the interrupted copy below; tests/ingest/test_crash_restart.py sweeps the
# kill points on disk: on S3 the same code runs, only the objects differ)
@pytest.mark.parametrize("kill", ["commit:3"])
def test_writer_killed_mid_write_leaves_the_committed_state_and_the_restart_completes(local_run, s3_bucket,
                                                                                      tmp_path, kill):
    archive, local = local_run
    stores = f"{s3_bucket}/data"
    cube = f"{stores}/cubes/{TILE}.zarr"
    killed = run(tmp_path, archive.root, kill, stores)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    want = snapshot(local / "cubes", local / "series")
    # what the killed run left opens, holding only whole steps, each equal to the reference's
    partial = open_cube(cube, "S2").load()
    assert 0 < partial.sizes["time"] < want[Sensor.S2].sizes["time"]
    ref = want[Sensor.S2].set_index(time="slot")
    for i, slot in enumerate(partial["slot"].values):
        np.testing.assert_array_equal(partial["reflectance"].values[i], ref["reflectance"].sel(time=slot).values)
    resumed = poll(tmp_path, archive.root, "", stores)  # the restart
    assert resumed.ingested_slots >= 1 and not resumed.quarantined and not resumed.errors
    assert_same(snapshot(f"{stores}/cubes", f"{stores}/series"), want)
    assert not [k for k in storage.filesystem().find(storage.fs_path(s3_bucket)) if ".creating-" in k]


def test_a_reader_during_a_write_sees_the_old_or_the_new_step_never_a_mix(local_run, s3_bucket, monkeypatch):
    """After every single store write of the writer (a chunk, an array's shape) while it adds a step to
    a cube holding one, a fresh reader sees the old step alone or both, each whole."""
    archive, local = local_run
    ref = open_cube(local / "cubes" / f"{TILE}.zarr", "S2", sort=False).load().isel(time=slice(0, 2))
    cube = f"{s3_bucket}/cubes/{TILE}.zarr"
    writer = CubeWriter(cube, archive.grid, chunk=64)  # one block per step: fewer writes to check after
    seen: set[int] = set()

    def write_step(i: int) -> None:
        slot = str(ref["slot"].values[i])
        index, new = writer.begin_slot(Sensor.S2, slot)
        for y0, y1, x0, x1 in writer.blocks():
            writer.write_block(Sensor.S2, index, (y0, y1, x0, x1), ref["reflectance"].values[i, :, y0:y1, x0:x1],
                               ref["clear"].values[i, y0:y1, x0:x1])
        writer.commit_slot(Sensor.S2, index, new, slot, int(ref["time"].values[i].astype("datetime64[s]").astype(int)),
                           tuple(str(ref["item_ids"].values[i]).split(",")), {"baseline": str(ref["baseline"].values[i])})

    def check() -> None:
        got = open_cube(cube, "S2", sort=False).load()
        n = got.sizes["time"]
        seen.add(n)
        assert list(got["slot"].values) == list(ref["slot"].values[:n])
        np.testing.assert_array_equal(got["time"].values, ref["time"].values[:n])
        np.testing.assert_array_equal(got["reflectance"].values, ref["reflectance"].values[:n])
        np.testing.assert_array_equal(got["clear"].values, ref["clear"].values[:n])

    write_step(0)
    for name in ("__setitem__", "resize"):
        original = getattr(zarr.Array, name)

        def wrapped(self, *a, _original=original, **k):
            out = _original(self, *a, **k)
            check()
            return out

        monkeypatch.setattr(zarr.Array, name, wrapped)
    write_step(1)
    assert seen == {1, 2}  # the reader was there while the step was written and after


def test_an_interrupted_layout_upload_is_invisible_and_rebuilt(local_run, s3_bucket, monkeypatch):
    """A new cube's layout is uploaded with the root zarr.json last: an upload cut short before it leaves
    objects but no cube, and the next writer builds the cube over them."""
    archive, _ = local_run
    cube = f"{s3_bucket}/cubes/{TILE}.zarr"
    fs = storage.filesystem()

    def cut(*a, **k):  # the connection drops before the marker (fsspec binds sync methods per instance)
        raise OSError("connection reset (simulated)")

    monkeypatch.setattr(fs, "pipe_file", cut)
    with pytest.raises(OSError, match="simulated"):
        CubeWriter(cube, archive.grid, chunk=32)
    monkeypatch.undo()
    assert "s2" in storage.list_names(cube)  # the arrays' objects are there ...
    assert not cube_exists(cube)  # ... but no cube is visible
    with pytest.raises(CubeError, match="no cube"):
        open_cube(cube, "S2")
    writer = CubeWriter(cube, archive.grid, chunk=32)
    assert cube_mod.check_cube(cube) is None and writer.slots(Sensor.S2) == []


def test_a_storage_url_that_is_not_s3_is_refused_naming_the_setting(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SITSMON_STORAGE__STATES_URL": "/srv/states"}
    done = subprocess.run([sys.executable, "-m", "sitsmon", "monitor", "status", "--data-dir", str(tmp_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "states_url" in lines[0] and "s3://bucket" in lines[0], done.stderr
