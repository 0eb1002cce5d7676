"""Exactly-once effects: a SIGKILL at each point of the per-acquisition sequence, then a restart, ends
with the same states (bit for bit) and the same alerts as an uninterrupted run; the alerts topic may
see a redelivery, always with the same alert id, and misses none."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from monitor.bus import make_bus
from monitor.crash import POINTS
from monitor.state_store import TileStore
from tests.monitor.conftest import write_parcels
from tests.monitor.helpers import TILE, publish, write_slots

REPO = Path(__file__).resolve().parents[2]


def _setup(root: Path, obs, parcels) -> None:
    events = write_slots(root / "series", obs)
    write_parcels(root / "parcels.csv", parcels)
    bus = make_bus("memory", path=root / "bus.sqlite")
    publish(bus, events)
    bus.close()


def _run(root: Path, kill_at: str | None = None) -> int:
    env = {**os.environ, "PYTHONPATH": str(REPO), "SITSMON_BUS__PATH": str(root / "bus.sqlite"),
           "SITSMON_MONITOR__SAVE_EVERY": "3"}
    env.pop("SITSMON_MONITOR_KILL_AT", None)
    if kill_at:
        env["SITSMON_MONITOR_KILL_AT"] = kill_at
    cmd = [sys.executable, "-m", "sitsmon", "monitor", "run", "--once", "--quiet", "--data-dir", str(root),
           "--parcels", str(root / "parcels.csv")]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=REPO).returncode


def _outcome(root: Path):
    import sqlite3

    with sqlite3.connect(root / "alerts.sqlite") as db:
        alerts = sorted(db.execute("select alert_id, type, event_date, window_start, window_end, confidence "
                                   "from alerts").fetchall())
    ns = next(p.name for p in (root / "monitor").iterdir() if p.is_dir())
    store = TileStore(root / "monitor", ns, TILE)
    group = zarr.open_group(str(store.dir / store._current()["state"]), mode="r")
    arrays = {name: np.asarray(group["encoder"][name][...]) for name in group["encoder"].array_keys()}
    bus = make_bus("memory", path=root / "bus.sqlite")
    consumer = bus.consumer(["sits.alerts"], group_id="test-reader")
    sent = []
    while batch := consumer.poll(timeout_s=0.2, max_records=500):
        sent.extend(m.value["alert_id"] for m in batch)
    consumer.close()
    bus.close()
    return alerts, arrays, sorted(store.applied()), sent


@pytest.fixture()
def season(synthetic_obs):
    obs, parcels = synthetic_obs
    keep = parcels[parcels.parcel_id.isin(["G2", "C1", "P1"])]
    obs = obs[obs.parcel_id.isin(keep.parcel_id) & (obs.days >= obs.days.min() + 80)
              & (obs.days <= obs.days.min() + 200)]
    return obs.reset_index(drop=True), keep.reset_index(drop=True)


@pytest.mark.slow
def test_a_kill_at_any_point_then_a_restart_equals_the_uninterrupted_run(tmp_path: Path, season) -> None:
    obs, parcels = season
    clean = tmp_path / "clean"
    _setup(clean, obs, parcels)
    assert _run(clean) == 0
    alerts, arrays, applied, sent = _outcome(clean)
    assert alerts, "the season must raise alerts for the comparison to mean something"
    assert sorted(set(sent)) == sorted(a[0] for a in alerts)

    for i, point in enumerate(POINTS):
        root = tmp_path / point
        _setup(root, obs, parcels)
        n = 4 + 3 * i  # somewhere inside the run, after at least one state write
        assert _run(root, f"{point}:{n}") == -9, f"the run was meant to die at {point}:{n}"
        assert _run(root) == 0
        got_alerts, got_arrays, got_applied, got_sent = _outcome(root)
        assert got_alerts == alerts, point
        assert got_applied == applied, point
        assert set(got_arrays) == set(arrays)
        for name in arrays:
            np.testing.assert_array_equal(got_arrays[name], arrays[name], err_msg=f"{point}: encoder {name}")
        assert set(got_sent) == set(sent), point  # nothing missing at the sink; redeliveries carry the same ids
