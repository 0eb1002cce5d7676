"""Health: Prometheus text on the monitor's port while it runs, ``health.json``, and ``monitor status``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from monitor.bus import make_bus
from monitor.config import MonitorConfig
from monitor.service import Monitor, Service
from sitsmon.cli import main
from tests.monitor.conftest import write_parcels
from tests.monitor.helpers import TILE, publish, write_slots

REPO = Path(__file__).resolve().parents[2]


def test_metrics_health_and_status(tmp_path: Path, synthetic_obs, model, capsys) -> None:
    obs, parcels = synthetic_obs
    keep = parcels[parcels.parcel_id.isin(["G1", "C1"])]
    obs = obs[obs.parcel_id.isin(keep.parcel_id)]
    obs = obs[obs.days <= obs.days.min() + 40]
    events = write_slots(tmp_path / "series", obs)
    bus = make_bus("memory", path=tmp_path / "bus.sqlite")
    publish(bus, events)
    config = MonitorConfig(data_dir=tmp_path, series_dir=tmp_path / "series",
                           parcels=write_parcels(tmp_path / "parcels.csv", keep), metrics_port=0)
    service = Service(Monitor(config, model=model), bus)
    try:
        service.run_once()
        url = service.monitor.health.metrics_url
        text = urllib.request.urlopen(url, timeout=10).read().decode()
    finally:
        service.close()
        bus.close()
    assert len(events) > 5
    folded = [line for line in text.splitlines() if line.startswith("sitsmon_monitor_acquisitions_total")]
    assert sum(float(line.split()[-1]) for line in folded) == len(events)
    assert 'sitsmon_monitor_stage_seconds_count{stage="encoder"}' in text
    assert "sitsmon_monitor_lag" in text

    (path,) = (tmp_path / "monitor").glob("health-*.json")  # this worker's own file
    health = json.loads(path.read_text())
    assert health["processed"] == len(events) and health["tiles"][TILE]["acquisitions"] == len(events)

    assert main(["monitor", "status", "--data-dir", str(tmp_path)]) == 0
    status = json.loads(capsys.readouterr().out)
    (tiles,) = status["namespaces"].values()
    assert tiles[TILE]["acquisitions"] == len(events) and tiles[TILE]["parcels"] == len(keep)
    assert tiles[TILE]["state_bytes_per_parcel"] > model.init_state(1).nbytes_per_item / 2
    # the process that wrote it lives, but the monitor closed: not running
    (worker,) = status["health"]["workers"]
    assert worker["pid"] == os.getpid() and worker["stopped_at"] and worker["state"] == "stopped"
    assert status["health"]["running"] is False


@pytest.mark.slow
def test_two_workers_write_their_own_health_and_status_merges_them(tmp_path: Path, synthetic_obs, capsys) -> None:
    """Two ``monitor run`` processes of one group share a data dir: each writes its own health file;
    ``monitor status`` and the dashboard's reader merge them (acquisitions summed over the workers equal
    the events published, each partition's lag comes from one owner), and a SIGKILLed worker reads as
    dead while the one stopped with Ctrl-C reads as stopped."""
    from dashboards.ops import monitor_status as dashboard_status
    from monitor.bus import partition_for

    obs, parcels = synthetic_obs
    keep = parcels[parcels.parcel_id.isin(["G1"])]
    obs = obs[obs.parcel_id.isin(keep.parcel_id)]
    obs = obs[obs.days <= obs.days.min() + 40]
    tiles = sorted({partition_for(t, 3): t for t in ("T00TST", "T01TST", "T02TST", "T03TST")}.values())[:2]
    events, layers = [], []
    for tile in tiles:
        events.extend(write_slots(tmp_path / "series", obs.assign(parcel_id=tile + obs["parcel_id"]), tile))
        layers.append(keep.assign(parcel_id=tile + keep["parcel_id"], tile_id=tile))
    assert len(events) > 10
    bus = make_bus("memory", path=tmp_path / "bus.sqlite")
    publish(bus, events)
    bus.close()
    import pandas as pd

    write_parcels(tmp_path / "parcels.csv", pd.concat(layers))
    env = {**os.environ, "PYTHONPATH": str(REPO), "SITSMON_BUS__PATH": str(tmp_path / "bus.sqlite")}
    cmd = [sys.executable, "-m", "sitsmon", "monitor", "run", "--quiet", "--data-dir", str(tmp_path),
           "--parcels", str(tmp_path / "parcels.csv")]
    logs = [open(tmp_path / f"worker-{i}.log", "w") for i in range(2)]  # noqa: SIM115 - closed below
    # output to files, never pipes: a full pipe would block a worker that the test does not read
    workers = [subprocess.Popen(cmd, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT) for log in logs]

    def tail(i: int) -> str:
        return (tmp_path / f"worker-{i}.log").read_text()[-3000:]

    def status() -> dict:
        assert main(["monitor", "status", "--data-dir", str(tmp_path)]) == 0
        return json.loads(capsys.readouterr().out)["health"] or {}

    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            health = status()
            owned = sorted(p for w in health.get("workers", []) if w["running"] for p in w["partitions"])
            if (health.get("workers_running") == 2 and health.get("processed") == len(events)
                    and len(health.get("lag", {})) == 3 and health.get("total_lag") == 0
                    and owned == sorted(health["lag"])  # both report, each partition from one owner
                    and all(w["partitions"] for w in health["workers"])):  # the group shares them
                break
            for i, w in enumerate(workers):
                assert w.poll() is None, tail(i)
            time.sleep(1.0)
        else:
            raise AssertionError(f"the workers never caught up: {status()}")
        assert len({w["worker"] for w in health["workers"]}) == 2
        assert {w["pid"] for w in health["workers"]} == {w.pid for w in workers}
        for tile in tiles:
            assert health["tiles"][tile]["acquisitions"] == sum(e["tile_id"] == tile for e in events)
        assert dashboard_status(tmp_path / "monitor" / "health.json")["processed"] == len(events)

        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait(timeout=30)
        workers[1].send_signal(signal.SIGINT)
        assert workers[1].wait(timeout=180) == 0, tail(1)
        health = status()
        states = {w["pid"]: w["state"] for w in health["workers"]}
        assert states == {workers[0].pid: "dead", workers[1].pid: "stopped"}
        assert health["running"] is False and health["processed"] == len(events)
        dashboard = dashboard_status(tmp_path / "monitor" / "health.json")
        assert dashboard["running"] is False and "no live worker" in dashboard["reason"]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait(timeout=30)
        for log in logs:
            log.close()
