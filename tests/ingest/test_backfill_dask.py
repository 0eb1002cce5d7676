"""``ingest backfill`` on Dask distributed (issue 12 item 2): on a LocalCluster of two worker processes,
tasks by tile and time block, the cubes, parcel series and ledger equal the single-process backfill's
(``Poller.backfill``, tiles in threads); a task whose worker process is SIGKILLed mid-task runs again and
the result is still equal; the command line runs it with ``--scheduler`` and shows progress; and a second
writer of one tile is refused while another tile's writer is not."""

from __future__ import annotations

import functools
import json
import os
from datetime import timedelta

import pandas as pd
import pytest

from ingest.cube import open_cube
from ingest.distributed import backfill_distributed
from ingest.errors import DataDirInUseError
from ingest.ledger import open_ledger
from ingest.locks import tile_lock, tile_lock_dir
from ingest.poller import Poller, WatchConfig
from ingest.series import read_series
from ingest.types import ItemStatus
from tests.dask_kill import kill_first_lock_holder
from tests.ingest.helpers import D0, CountingBar, ListSource, parcels_gdf
from tests.ingest.test_cli_backfill import two_tiles

TILES = ("33UXP", "33UXQ")
START_S, END_S = int((D0 - timedelta(days=1)).timestamp()), int((D0 + timedelta(days=30)).timestamp())


@pytest.fixture(scope="module")
def cluster():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """Two tiles (three S2 dates and one S1 pass each) and parcels on both (ids unique across tiles)."""
    root = tmp_path_factory.mktemp("dask-archive")
    items, grids = two_tiles(root / "src")
    layers = []
    for k, tile_id in enumerate(TILES):
        gdf = parcels_gdf(grids[tile_id], n=6, seed=k)
        gdf["parcel_id"] = tile_id + "-" + gdf["parcel_id"]
        layers.append(gdf)
    return items, grids, pd.concat(layers, ignore_index=True)


def make_poller(items, grids, parcels, work, workers: int = 1) -> Poller:
    """The poller of one run (built in the driver and in each worker process)."""
    return Poller([ListSource(items)], open_ledger(work / "l.sqlite"), work / "cubes", work / "series",
                  WatchConfig(tiles=TILES), grids=grids, parcels=parcels, workers=workers, chunk=48)


def _outcome(work):
    """What a backfill leaves: each cube (less its ingest times), each tile's series rows, the ledger."""
    cubes = {(t, s): open_cube(work / "cubes" / f"{t}.zarr", s).drop_vars("ingested_at").load()
             for t in TILES for s in ("S2", "S1")}
    series = {t: read_series(work / "series", t).to_pandas().sort_values(["parcel_id", "time", "sensor"],
                                                                         ignore_index=True) for t in TILES}
    led = open_ledger(work / "l.sqlite")
    try:
        ledger = sorted((e.collection, e.item_id, e.tile_id, e.sensor, e.slot_key, e.status.value, e.reason)
                        for e in led.entries())
    finally:
        led.close()
    return cubes, series, ledger


def _assert_same(got, want) -> None:
    (cubes, series, ledger), (ref_cubes, ref_series, ref_ledger) = got, want
    for key, cube in ref_cubes.items():
        assert cubes[key].identical(cube), key
    for tile_id, rows in ref_series.items():
        assert len(rows) > 0, "no series rows: the comparison would be empty"
        pd.testing.assert_frame_equal(series[tile_id], rows)
    assert ledger == ref_ledger and {e[5] for e in ledger} == {ItemStatus.INGESTED.value}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, archive):
    """The single-process backfill: Poller.backfill with the two tiles in two threads of this process."""
    work = tmp_path_factory.mktemp("single")
    poller = make_poller(*archive, work, workers=2)
    try:
        report = poller.backfill(START_S, END_S)
    finally:
        poller.ledger.close()
    assert report.ingested_slots == 8 and not report.errors
    return report, _outcome(work)


def test_backfill_on_two_worker_processes_equals_the_single_process_backfill(tmp_path, archive, reference, cluster):
    bar, lines = CountingBar(), []
    # Slots on days 0, 2, 5, 10 of each tile: blocks of 6 days make two tasks per tile, the second
    # depending on the first.
    report = backfill_distributed(functools.partial(make_poller, *archive, tmp_path), START_S, END_S,
                                  client=cluster, block_days=6, progress=bar, say=lines.append)
    ref_report, ref_outcome = reference
    assert report.ingested_slots == ref_report.ingested_slots == 8
    assert (report.ingested_items, report.duplicates, report.errors) == \
        (ref_report.ingested_items, ref_report.duplicates, [])
    assert bar.n == bar.total == 8
    assert lines[0].startswith("backfill on tcp://127.0.0.1") and "4 task(s) over 2 tile(s), 2 worker(s)" in lines[0]
    assert lines[-1].endswith("(4/4 tasks)")
    _assert_same(_outcome(tmp_path), ref_outcome)
    # The steps of each cube were appended in time order across the blocks.
    for tile_id in TILES:
        t = open_cube(tmp_path / "cubes" / f"{tile_id}.zarr", "S2", sort=False).time.values.astype("int64")
        assert (t[1:] > t[:-1]).all()
    # A second run finds everything ingested: nothing to do, nothing changed.
    again = backfill_distributed(functools.partial(make_poller, *archive, tmp_path), START_S, END_S, client=cluster)
    assert again.ingested_slots == 0 and again.duplicates == 8
    _assert_same(_outcome(tmp_path), ref_outcome)


def test_a_task_whose_worker_is_killed_runs_again_and_ends_equal(tmp_path, archive, reference, cluster):
    worker_pids = set(cluster.run(os.getpid).values())
    victim = tile_lock_dir(tmp_path / "cubes", TILES[0]) / ".sitsmon-ingest.lock"
    with kill_first_lock_holder(lambda: [victim], worker_pids):
        # one task per tile: the victim's task has four slots to write when it is killed
        report = backfill_distributed(functools.partial(make_poller, *archive, tmp_path), START_S, END_S,
                                      client=cluster, block_days=0)
    assert not report.errors and report.ingested_slots >= 4  # the other tile's four, and what the rerun wrote
    _assert_same(_outcome(tmp_path), reference[1])
    cluster.wait_for_workers(2, timeout=60)  # the killed worker was replaced


def test_the_cli_backfill_with_a_scheduler(tmp_path, cluster, capsys, monkeypatch):
    """``--scheduler ADDRESS``: the same slots as the single-process command (test_cli_backfill), and
    the progress lines."""
    from ingest.stac_server import running_stac_api
    from sitsmon.cli import main
    from sitsmon.settings import get_settings
    from tests.ingest.helpers import basic_archive

    archive = basic_archive(tmp_path / "archive")
    monkeypatch.delenv("SITSMON_CONFIG", raising=False)
    get_settings.cache_clear()
    try:
        with running_stac_api(archive.root) as endpoint:
            argv = ["ingest", "backfill", "--start", "2024-05-01", "--end", "2024-05-08", "--stac-url", endpoint.url,
                    "--tiles", "33UXP", "--ledger", str(tmp_path / "l.sqlite"), "--bus", "none", "--chunk", "64"]
            assert main([*argv, "--cubes", str(tmp_path / "c"), "--series", str(tmp_path / "s"),
                         "--scheduler", cluster.scheduler.address, "--block-days", "0.5"]) == 0
            out = capsys.readouterr()
    finally:
        get_settings.cache_clear()
    report = json.loads(out.out.splitlines()[-1])
    assert report["ingested_slots"] == 3 and report["errors"] == []  # S2 05-03 (two items), S1 05-04, S2 05-08
    assert "backfill on tcp://127.0.0.1" in out.err and "(3/3 tasks)" in out.err and "slot" in out.err
    assert open_cube(tmp_path / "c" / "33UXP.zarr", "S2").sizes["time"] == 2


def test_a_second_writer_of_one_tile_is_refused_and_another_tile_is_not(tmp_path):
    with tile_lock(tmp_path / "cubes", "33UXP", command="sitsmon ingest backfill task 33UXP"):
        with pytest.raises(DataDirInUseError, match=rf"33UXP is in use by PID {os.getpid()} \(sitsmon ingest backfill"):
            with tile_lock(tmp_path / "cubes", "33UXP"):
                pass
        with tile_lock(tmp_path / "cubes", "33UXQ"):
            pass
    with pytest.raises(ValueError, match="cannot name a lock folder"):
        tile_lock_dir(tmp_path, "../x")
