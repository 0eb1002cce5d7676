"""A process killed while ingesting, then restarted, ends with the same cube and series as an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ingest.cube import CubeWriter, open_cube
from ingest.ledger import open_ledger
from ingest.series import read_series
from ingest.types import ItemStatus, Sensor
from tests.ingest.helpers import basic_archive
from tests.ingest.kill_runner import poll

ROOT = Path(__file__).resolve().parents[2]


def run(work: Path, archive: Path, kill: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "tests.ingest.kill_runner", str(work), str(archive), kill],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    base = tmp_path_factory.mktemp("crash")
    archive = basic_archive(base / "archive")
    work = base / "reference"
    assert poll(work, archive.root).ingested_slots == 5  # uninterrupted, in this process
    return archive, work


def snapshot(work: Path) -> dict:
    out = {}
    for sensor in Sensor:
        ds = open_cube(work / "cubes" / "33UXP.zarr", sensor).load()
        out[sensor] = ds.drop_vars("ingested_at")
    table = read_series(work / "series").to_pandas()
    out["series"] = table
    return out


@pytest.mark.parametrize("kill", ["block:7", "commit:3", "publish:2"])
def test_kill_then_restart_equals_uninterrupted(reference, tmp_path, kill):
    archive, ref_work = reference
    killed = run(tmp_path, archive.root, kill)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    # the cube left behind opens, with only committed time steps
    partial = open_cube(tmp_path / "cubes" / "33UXP.zarr", "S2")
    assert partial.sizes["time"] <= 3
    assert all(partial.item_ids.values)
    ledger = open_ledger(tmp_path / "ledger.sqlite")
    assert ledger.entries(status=ItemStatus.PENDING)  # the interrupted slot is remembered
    ledger.close()
    resumed = poll(tmp_path, archive.root)  # the restart
    assert resumed.ingested_slots >= 1 and not resumed.quarantined
    got, want = snapshot(tmp_path), snapshot(ref_work)
    for sensor in Sensor:
        assert got[sensor].identical(want[sensor]), sensor
    cols = [c for c in want["series"].columns]
    assert got["series"][cols].equals(want["series"][cols])
    ledger = open_ledger(tmp_path / "ledger.sqlite")
    assert {e.status for e in ledger.entries()} == {ItemStatus.INGESTED}


def test_writer_trims_an_unfinished_new_step(reference, tmp_path):
    archive, ref_work = reference
    import shutil

    shutil.copytree(ref_work / "cubes", tmp_path / "cubes")
    writer = CubeWriter(tmp_path / "cubes" / "33UXP.zarr", archive.grid)
    index, new = writer.begin_slot(Sensor.S2, "20991231")
    assert new and index == 3
    writer.write_block(Sensor.S2, index, (0, 32, 0, 32), np.ones((10, 32, 32), np.uint16), np.ones((32, 32), np.uint8))
    # a reader sees only the committed steps
    assert open_cube(tmp_path / "cubes" / "33UXP.zarr", "S2").sizes["time"] == 3
    reopened = CubeWriter(tmp_path / "cubes" / "33UXP.zarr", archive.grid)
    assert reopened.group(Sensor.S2)["reflectance"].shape[0] == 3
