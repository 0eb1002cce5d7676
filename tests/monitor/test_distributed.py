"""``monitor replay`` on Dask distributed (issue 12 item 2): on a LocalCluster of two worker processes,
one task per tile, the states, alerts and traffic lights equal the single-process replay's, through the
command line; and a task whose worker process is SIGKILLed mid-task runs again and still ends equal."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from monitor.config import MonitorConfig
from monitor.distributed import replay_distributed
from monitor.replay import replay_period
from monitor.service import Monitor
from tests.alerts.conftest import harvest_series, mowing_series
from tests.dask_kill import kill_first_lock_holder
from tests.monitor.conftest import write_parcels
from tests.monitor.helpers import write_slots
from tests.monitor.test_late_and_replay import _same_state

TILES = ("T31UAA", "T31UAB")
START, END = "2024-01-01", "2024-12-31"


@pytest.fixture(scope="module")
def cluster():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        yield cluster, client


@pytest.fixture(scope="module")
def two_tiles():
    """Two tiles of different parcels (ids unique across tiles, as in a real parcel layer): seven S2 views
    each, over a mowing (one alert per tile), small because every acquisition folds in three processes."""
    from alerts.series import normalise_observations

    frames, layers = {}, []
    for tile_id, (grass, crop) in zip(TILES, ((("G2", (150.0, 210.0), 2), ("C1", 200.0, 5)),
                                            (("G1", (160.0,), 1), ("C2", 215.0, 6))), strict=True):
        obs = normalise_observations(pd.concat([mowing_series(grass[0], cuts=grass[1], seed=grass[2]),
                                                harvest_series(crop[0], harvest=crop[1], seed=crop[2])]))
        day0 = obs.days.min()
        obs = obs[(obs.days >= day0 + 140) & (obs.days <= day0 + 175) & (obs.sensor == "S2")].copy()
        obs["parcel_id"] = tile_id + "-" + obs["parcel_id"]
        frames[tile_id] = obs.reset_index(drop=True)
        layers.append(pd.DataFrame({"parcel_id": [f"{tile_id}-{grass[0]}", f"{tile_id}-{crop[0]}"],
                                    "land_use": ["grassland", "cereal"], "tile_id": tile_id}))
    return frames, pd.concat(layers, ignore_index=True)


def _root(root: Path, frames, parcels) -> MonitorConfig:
    for tile_id, obs in frames.items():
        write_slots(root / "series", obs, tile_id)
    return MonitorConfig(data_dir=root, series_dir=root / "series",
                         parcels=write_parcels(root / "parcels.csv", parcels))


def _outcome(config: MonitorConfig, model):
    """What a replay leaves on disk: each tile's state as loaded back, the alerts, the traffic lights."""
    monitor = Monitor(config, model=model, sinks=[])
    try:
        states = {t: monitor.tile(t).state for t in TILES}
        alerts = sorted((a.alert_id, a.tile_id, a.type, a.event_date, a.confidence) for a in monitor.store.query())
    finally:
        monitor.close()
    lights = pd.read_csv(config.lights_path, dtype=str).sort_values(["tile_id", "parcel_id"], ignore_index=True)
    return states, alerts, lights


@pytest.fixture(scope="module")
def reference(tmp_path_factory, two_tiles, model):
    """The single-process replay (monitor.replay.replay_period over both tiles in one process)."""
    config = _root(tmp_path_factory.mktemp("single"), *two_tiles)
    monitor = Monitor(config, model=model, sinks=[])
    try:
        summary = replay_period(monitor, START, END)
    finally:
        monitor.close()
    return summary, _outcome(config, model)


def _assert_same(got, want) -> None:
    (states, alerts, lights), (ref_states, ref_alerts, ref_lights) = got, want
    for tile_id in TILES:
        # Dask's workers run torch with one thread (its nanny sets OMP_NUM_THREADS=1): the chunkwise form's
        # sums then run in another order than in this process, so the encoder arrays agree to fp32 tolerance.
        _same_state(states[tile_id], ref_states[tile_id], encoder_tolerance=True)
    assert alerts == ref_alerts and alerts, "alerts differ (or none was raised: the comparison would be empty)"
    pd.testing.assert_frame_equal(lights, ref_lights)


def test_the_cli_replay_on_two_worker_processes_equals_the_single_process_replay(
        tmp_path, two_tiles, reference, model, cluster, capsys, monkeypatch):
    from sitsmon.cli import main
    from sitsmon.settings import get_settings

    _, client = cluster
    config = _root(tmp_path / "dask", *two_tiles)
    monkeypatch.delenv("SITSMON_CONFIG", raising=False)
    get_settings.cache_clear()
    rc = main(["monitor", "replay", "--data-dir", str(config.data_dir), "--parcels", str(config.parcels),
               "--start", START, "--end", END, "--scheduler", client.scheduler.address])
    out, err = capsys.readouterr()
    get_settings.cache_clear()
    assert rc == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    ref_summary, ref_outcome = reference
    assert summary["workers"] == 2 and summary["namespace"] == ref_summary["namespace"]
    assert {t: v["acquisitions"] for t, v in summary["tiles"].items()} == \
        {t: v["acquisitions"] for t, v in ref_summary["tiles"].items()}
    assert "replay on tcp://127.0.0.1" in err and "(2/2)" in err  # the progress lines
    _assert_same(_outcome(config, model), ref_outcome)
    # One task per tile, run in the worker processes (not in this one).
    pids = set(client.run(os.getpid).values())
    assert os.getpid() not in pids and len(pids) == 2


def test_a_task_whose_worker_is_killed_runs_again_and_ends_equal(tmp_path, two_tiles, reference, model, cluster):
    _, client = cluster
    config = _root(tmp_path / "killed", *two_tiles)
    worker_pids = set(client.run(os.getpid).values())
    victim_tile = TILES[0]
    # the task holds the tile's state lock from loading the tile until its state is saved
    with kill_first_lock_holder(lambda: config.state_root.glob(f"*/{victim_tile}/.sitsmon-monitor.lock"),
                                worker_pids):
        summary = replay_distributed(config, START, END, client=client)
    assert summary["tiles"][victim_tile]["acquisitions"] > 0
    _assert_same(_outcome(config, model), reference[1])
    # The killed worker was replaced: the cluster still has two.
    client.wait_for_workers(2, timeout=60)
