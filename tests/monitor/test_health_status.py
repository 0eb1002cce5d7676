"""Health: Prometheus text on the monitor's port while it runs, ``health.json``, and ``monitor status``."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

from monitor.bus import make_bus
from monitor.config import MonitorConfig
from monitor.service import Monitor, Service
from sitsmon.cli import main
from tests.monitor.conftest import write_parcels
from tests.monitor.helpers import TILE, publish, write_slots


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

    health = json.loads((tmp_path / "monitor" / "health.json").read_text())
    assert health["processed"] == len(events) and health["tiles"][TILE]["acquisitions"] == len(events)

    assert main(["monitor", "status", "--data-dir", str(tmp_path)]) == 0
    status = json.loads(capsys.readouterr().out)
    (tiles,) = status["namespaces"].values()
    assert tiles[TILE]["acquisitions"] == len(events) and tiles[TILE]["parcels"] == len(keep)
    assert tiles[TILE]["state_bytes_per_parcel"] > model.init_state(1).nbytes_per_item / 2
    # the process that wrote it lives, but the monitor closed: not running
    assert status["health"]["pid"] == os.getpid() and status["health"]["stopped_at"]
    assert status["health"]["running"] is False
