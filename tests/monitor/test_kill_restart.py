"""Exactly-once effects: a SIGKILL at each point of the per-acquisition sequence, then a restart, ends
with the same states (bit for bit) and the same alerts as an uninterrupted run; the alerts topic may
see a redelivery, always with the same alert id, and misses none."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import zarr

from monitor.bus import make_bus
from monitor.crash import POINTS
from monitor.state_store import TileStore
from tests.monitor.conftest import synthetic_season, write_parcels
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
           "SITSMON_MONITOR__SAVE_EVERY": "3", "SITSMON_MONITOR__MAX_RECORDS": "3"}
    env.pop("SITSMON_MONITOR_KILL_AT", None)
    if kill_at:
        env["SITSMON_MONITOR_KILL_AT"] = kill_at
    cmd = [sys.executable, "-m", "sitsmon", "monitor", "run", "--once", "--quiet", "--data-dir", str(root),
           "--parcels", str(root / "parcels.csv")]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=REPO).returncode


def _stored(root: Path) -> tuple[list[tuple], dict[str, np.ndarray], list]:
    """The alerts in the store, the current state's encoder arrays and the applied log of a run's data dir."""
    import sqlite3

    with sqlite3.connect(root / "alerts.sqlite") as db:
        alerts = sorted(db.execute("select alert_id, type, event_date, window_start, window_end, confidence "
                                   "from alerts").fetchall())
    ns = next(p.name for p in (root / "monitor").iterdir() if p.is_dir())
    store = TileStore(root / "monitor", ns, TILE)
    group = zarr.open_group(str(store.dir / store._current()["state"]), mode="r")
    arrays = {name: np.asarray(group["encoder"][name][...]) for name in group["encoder"].array_keys()}
    return alerts, arrays, sorted(store.applied())


def _outcome(root: Path):
    alerts, arrays, applied = _stored(root)
    bus = make_bus("memory", path=root / "bus.sqlite")
    consumer = bus.consumer(["sits.alerts"], group_id="test-reader")
    sent = []
    while batch := consumer.poll(timeout_s=0.2, max_records=500):
        sent.extend(m.value["alert_id"] for m in batch)
    consumer.close()
    bus.close()
    return alerts, arrays, applied, sent


def _tiny_season():
    """One mown grassland over 45 days: 17 acquisitions, one mowing alert (small enough for 11 runs)."""
    obs, parcels = synthetic_season()
    d0 = obs.days.min()
    keep = parcels[parcels.parcel_id == "G2"].reset_index(drop=True)
    obs = obs[(obs.parcel_id == "G2") & (obs.days >= d0 + 120) & (obs.days <= d0 + 165)].reset_index(drop=True)
    return obs, keep


@pytest.fixture()
def season():
    return _tiny_season()


def _killed_then_restarted(root: Path, obs, parcels, kill_at: str) -> tuple[int, int, tuple]:
    """A run killed at ``kill_at``, then a restart: both return codes and the restart's outcome."""
    _setup(root, obs, parcels)
    died = _run(root, kill_at)
    ended = _run(root)
    return died, ended, _outcome(root) if ended == 0 else ()


@pytest.mark.slow
def test_a_kill_at_any_point_then_a_restart_equals_the_uninterrupted_run(tmp_path: Path, season) -> None:
    from concurrent.futures import ThreadPoolExecutor

    obs, parcels = season
    clean = tmp_path / "clean"
    _setup(clean, obs, parcels)
    # inside the run (17 folds, 6 commits), after a state write
    kills = {point: f"{point}:{3 if point == 'before_commit' else 4 + 3 * i}" for i, point in enumerate(POINTS)}
    with ThreadPoolExecutor(2) as pool:  # the runs are independent (own data dir and bus): two at a time
        clean_rc = pool.submit(_run, clean)
        runs = {point: pool.submit(_killed_then_restarted, tmp_path / point, obs, parcels, kill)
                for point, kill in kills.items()}
        assert clean_rc.result() == 0
        alerts, arrays, applied, sent = _outcome(clean)
        assert alerts, "the season must raise alerts for the comparison to mean something"
        assert sorted(set(sent)) == sorted(a[0] for a in alerts)
        runs = {point: run.result() for point, run in runs.items()}

    for point, (died, ended, outcome) in runs.items():
        assert died == -9, f"the run was meant to die at {kills[point]}"
        assert ended == 0
        got_alerts, got_arrays, got_applied, got_sent = outcome
        assert got_alerts == alerts, point
        assert got_applied == applied, point
        assert set(got_arrays) == set(arrays)
        for name in arrays:
            np.testing.assert_array_equal(got_arrays[name], arrays[name], err_msg=f"{point}: encoder {name}")
        assert set(got_sent) == set(sent), point  # nothing missing at the sink; redeliveries carry the same ids


# ---- the same sweep on the real broker ------------------------------------------------------------------
# A tiny tile (one mown grassland, 17 acquisitions): every kill lands on the acquisition that raises the
# alert, so the alert is in the store but not at the sink (after_alerts), at the sink but not logged
# (after_sinks), logged and saved but not committed (after_state, before_commit) when the process dies.
KAFKA_POINTS = POINTS  # after_step, after_alerts, after_sinks, after_state, before_commit
MAX_RECORDS = 3


def _kafka_env(root: Path, bootstrap: str, run_id: str, kill_at: str | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "SITSMON_BUS__BACKEND": "kafka",
           "SITSMON_BUS__BOOTSTRAP_SERVERS": bootstrap, "SITSMON_BUS__API_VERSION": "0.9",
           "SITSMON_BUS__GROUP_ID": f"kill-{run_id}", "SITSMON_MONITOR__TOPIC": f"test.kill.{run_id}",
           "SITSMON_MONITOR__ALERTS_TOPIC": f"test.kill-alerts.{run_id}", "SITSMON_MONITOR__SAVE_EVERY": "3",
           "SITSMON_MONITOR__MAX_RECORDS": str(MAX_RECORDS)}
    env.pop("SITSMON_MONITOR_KILL_AT", None)
    if kill_at:
        env["SITSMON_MONITOR_KILL_AT"] = kill_at
    return env


def _kafka_start(root: Path, bootstrap: str, run_id: str, kill_at: str | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "sitsmon", "monitor", "run", "--once", "--data-dir", str(root),
           "--parcels", str(root / "parcels.csv")]
    return subprocess.Popen(cmd, env=_kafka_env(root, bootstrap, run_id, kill_at), cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(proc: subprocess.Popen) -> tuple[int, str]:
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err


def _kafka_outcome(root: Path, bootstrap: str, run_id: str):
    alerts, arrays, applied = _stored(root)
    topic = f"test.kill-alerts.{run_id}"
    bus = make_bus("kafka", bootstrap, "0.9")
    try:
        expected = sum(bus.end_offsets(topic).values())
        consumer = bus.consumer([topic], group_id=f"reader-{run_id}")
        sent: list[str] = []
        deadline = time.monotonic() + 60
        while len(sent) < expected and time.monotonic() < deadline:
            sent.extend(m.value["alert_id"] for m in consumer.poll(timeout_s=0.5, max_records=500))
        consumer.close()
    finally:
        bus.close()
    return alerts, arrays, applied, sent


def _publish_kafka(bootstrap: str, topic: str, events: list[dict]) -> None:
    bus = make_bus("kafka", bootstrap, "0.9")
    try:
        for value in events:
            bus.publish(topic, value["tile_id"], value)
        bus.flush()
    finally:
        bus.close()


def _clean_kafka_run(root: Path, bootstrap: str, run_id: str, model) -> list[int]:
    """``monitor run --once`` as the command line sets it up, uninterrupted; the folds that raised alerts."""
    from alerts.sinks.kafka import KafkaAlertSink
    from monitor.config import MonitorConfig
    from monitor.service import Monitor, Service

    config = MonitorConfig(data_dir=root, series_dir=root / "series", parcels=root / "parcels.csv",
                           group_id=f"kill-{run_id}", topic=f"test.kill.{run_id}",
                           alerts_topic=f"test.kill-alerts.{run_id}", save_every=3, max_records=MAX_RECORDS)
    bus = make_bus("kafka", bootstrap, "0.9")
    folds: list[int] = []
    service = Service(Monitor(config, model=model, sinks=[KafkaAlertSink(bus, config.alerts_topic)]), bus,
                      on_fold=lambda report: folds.append(len(report.alerts)))
    try:
        service.run_once()
    finally:
        service.close()
        bus.close()
    return [i for i, n in enumerate(folds, start=1) if n]


@pytest.fixture(scope="module")
def kafka_sweep(tmp_path_factory, kafka_bootstrap: str, model):
    """The uninterrupted run, then every kill point at once (separate topics, groups and data dirs: the
    restarts overlap their waits for the killed member's session to expire), then every restart."""
    obs, keep = _tiny_season()
    base = tmp_path_factory.mktemp("kafka-kill")
    runs = {name: (base / name, uuid.uuid4().hex[:10]) for name in ("clean", *KAFKA_POINTS)}
    for root, run_id in runs.values():
        events = write_slots(root / "series", obs)
        write_parcels(root / "parcels.csv", keep)
        _publish_kafka(kafka_bootstrap, f"test.kill.{run_id}", events)
    root, run_id = runs["clean"]  # uninterrupted, in this process (it has the model loaded already)
    raised = _clean_kafka_run(root, kafka_bootstrap, run_id, model)
    assert raised, "the tile must raise an alert for the sweep to mean something"
    at = {point: raised[0] for point in KAFKA_POINTS}
    at["before_commit"] = -(-raised[0] // MAX_RECORDS)  # the commit of the batch that raised it
    clean = _kafka_outcome(root, kafka_bootstrap, run_id)
    killed = {p: _kafka_start(runs[p][0], kafka_bootstrap, runs[p][1], f"{p}:{at[p]}") for p in KAFKA_POINTS}
    died = {p: _finish(proc) for p, proc in killed.items()}
    restarted = {p: _kafka_start(runs[p][0], kafka_bootstrap, runs[p][1]) for p in KAFKA_POINTS}
    ends = {p: _finish(proc) for p, proc in restarted.items()}
    outcomes = {p: _kafka_outcome(runs[p][0], kafka_bootstrap, runs[p][1]) for p in KAFKA_POINTS if ends[p][0] == 0}
    return clean, died, ends, outcomes


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("point", KAFKA_POINTS)
def test_a_kill_on_the_kafka_broker_then_a_restart_equals_the_uninterrupted_run(kafka_sweep, point: str) -> None:
    (alerts, arrays, applied, sent), died, ends, outcomes = kafka_sweep
    assert alerts and sorted(set(sent)) == sorted(a[0] for a in alerts)
    assert died[point][0] == -9, f"the run was meant to die at {point}: {died[point][1][-2000:]}"
    assert ends[point][0] == 0, ends[point][1][-3000:]
    got_alerts, got_arrays, got_applied, got_sent = outcomes[point]
    assert got_alerts == alerts  # same ids and fields; the store's primary key: no duplicate
    assert len({a[0] for a in got_alerts}) == len(got_alerts)
    assert got_applied == applied
    assert set(got_arrays) == set(arrays)
    for name in arrays:
        np.testing.assert_array_equal(got_arrays[name], arrays[name], err_msg=f"{point}: encoder {name}")
    assert set(got_sent) == set(sent)  # nothing missing at the sink; a redelivery carries the same id
