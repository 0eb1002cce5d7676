"""Scale on the real broker: two ``monitor run`` processes in one consumer group share the partitions of the
acquisitions topic; one is killed (SIGKILL) mid-season, the other takes its partitions over and continues
from the states on disk. Nothing is lost or duplicated in the (PostgreSQL) store: the alerts equal the
offline detectors on the same series."""

from __future__ import annotations

import json
import signal
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from alerts.detectors import make_detectors, run_detectors
from alerts.series import add_regional_reference
from alerts.types import Alert
from monitor.bus import make_bus, partition_for
from monitor.state_store import TileStore
from tests.monitor.helpers import (
    LEFT_BY_ITSELF,
    comparable,
    group_trouble,
    handover,
    kafka_worker_env,
    start_worker,
    stop_workers,
    write_slots,
)

REPO = Path(__file__).resolve().parents[2]
PARTITIONS = 3


def _tiles() -> list[str]:
    """Three tile ids that the partitioner puts on three different partitions."""
    seen: dict[int, str] = {}
    for i in range(200):
        tile = f"3{i:01d}TG{i:02d}"[:6]
        seen.setdefault(partition_for(tile, PARTITIONS), tile)
        if len(seen) == PARTITIONS:
            return sorted(seen.values())
    raise AssertionError("no three tiles on three partitions")


def _applied(root: Path, tile: str) -> int:
    ns = [p for p in (root / "monitor").iterdir() if p.is_dir()] if (root / "monitor").is_dir() else []
    return sum(len(TileStore(root / "monitor", n.name, tile).applied()) for n in ns)


def _publish(bus, topic: str, events) -> None:
    for value in events:
        bus.publish(topic, value["tile_id"], value)
    bus.flush()


def _wait(condition, timeout_s: float, what: str, procs=(), logs=()) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        for p, log in zip(procs, logs, strict=True):
            if p.poll() is not None and p.returncode not in (0, -9):
                raise AssertionError(f"a worker died: {p.returncode}\n{log.read_text()[-3000:]}")
        time.sleep(1.0)
    raise AssertionError(f"timed out waiting for {what}")


def kill_one_mid_season(workers, logs, publish_rest, applied, per_tile: dict[str, int]) -> dict:
    """Wait until the group has started every tile, SIGKILL the first worker, publish the rest of the
    season (``publish_rest()``), and wait until the survivors folded every acquisition of every tile
    (``applied(tile)``, against ``per_tile``). Returns the survivor's :func:`handover` (``logs``: the
    workers' stderr, from :func:`start_worker`)."""
    _wait(lambda: all(applied(t) > 0 for t in per_tile), 300, "every tile to start", workers, logs)
    killed_at = time.time()
    workers[0].send_signal(signal.SIGKILL)
    workers[0].wait(timeout=30)
    publish_rest()
    _wait(lambda: all(applied(t) == n for t, n in per_tile.items()), 400,
          "the survivor to fold every acquisition", workers[1:], logs[1:])
    seen = handover(logs[0], logs[1], killed_at)
    trouble = [group_trouble(log) for log in logs]
    print("hand-over:", json.dumps(seen, indent=1), "whole run:", json.dumps(trouble))
    # no worker left the group by itself: kafka-python heartbeats between polls, and the poll bound is
    # max_poll_interval_s (300 s), not the session timeout (10 s) that every slower batch outlasted
    # (a commit can still fail on 0.9: a rebalance waits only a session timeout for a busy member)
    assert not any(t[LEFT_BY_ITSELF] for t in trouble), trouble
    return seen


@pytest.mark.integration
@pytest.mark.slow
def test_two_workers_share_the_partitions_and_a_killed_one_hands_over(
        tmp_path: Path, kafka_bootstrap: str, make_database, synthetic_obs) -> None:
    obs, parcels = synthetic_obs
    keep = parcels[parcels.parcel_id.isin(["G2", "C1"])]
    # 45 days around G2's second cut: the one mowing alert per tile that the 100 days from day 70 raised
    # too (C1's harvest is not detected in either), on 41 acquisitions per tile instead of 81
    obs = obs[obs.parcel_id.isin(keep.parcel_id) & (obs.days >= obs.days.min() + 120)
              & (obs.days <= obs.days.min() + 165)]
    tiles = _tiles()
    frames, layers, events, expected = [], [], [], []
    for tile in tiles:
        o = obs.assign(parcel_id=tile + "-" + obs["parcel_id"])
        p = keep.assign(parcel_id=tile + "-" + keep["parcel_id"], tile_id=tile)
        events.extend(write_slots(tmp_path / "series", o, tile))
        frames.append(o)
        layers.append(p)
        offline, _ = run_detectors(add_regional_reference(o), p, make_detectors(["mowing", "harvest", "solar"]))
        expected.extend(Alert.from_event(e, tile_id=tile) for e in offline)
    assert expected
    pd.concat(layers).to_csv(tmp_path / "parcels.csv", index=False)
    events.sort(key=lambda e: (e["time"], e["sensor"] == "S2", e["tile_id"]))
    per_tile = {t: sum(e["tile_id"] == t for e in events) for t in tiles}

    dsn = make_database("monitor_group")
    topic = f"test.acq.{uuid.uuid4().hex[:8]}"
    env = kafka_worker_env(kafka_bootstrap, dsn, topic)
    bus = make_bus("kafka", kafka_bootstrap, "0.9")
    half = len(events) // 2
    _publish(bus, topic, events[:half])
    args = ["monitor", "run", "--data-dir", str(tmp_path), "--parcels", str(tmp_path / "parcels.csv")]
    logs = [tmp_path / f"worker-{i}.log" for i in range(2)]
    workers = [start_worker(args, env, log, REPO) for log in logs]
    try:
        # the group starts on every tile (its partitions are shared between the two processes)
        kill_one_mid_season(workers, logs, lambda: _publish(bus, topic, events[half:]),
                            lambda t: _applied(tmp_path, t), per_tile)
        time.sleep(2.0)  # the survivor commits and writes its last state
    finally:
        stop_workers(workers)
        bus.close()
    from alerts.store import AlertQuery, open_store

    with open_store(dsn) as store:
        stored = store.query(AlertQuery(limit=100_000))
    assert len({a.alert_id for a in stored}) == len(stored)
    assert comparable(stored) == comparable(expected)


@pytest.mark.integration
def test_a_late_s1_through_kafka_equals_the_on_time_run(tmp_path: Path, kafka_bootstrap: str, synthetic_obs,
                                                        model) -> None:
    """Item 6 on the real broker: an S1 delivered after three later S2 rewinds and ends where the
    on-time run (the in-process bus) ends, states bit for bit and alerts."""
    from monitor.config import MonitorConfig
    from monitor.service import Monitor, Service
    from tests.monitor.helpers import TILE
    from tests.monitor.test_late_and_replay import _first, _move, _same_state

    obs, parcels = synthetic_obs
    keep = parcels[parcels.parcel_id == "G2"].reset_index(drop=True)
    d0 = obs.days.min()
    obs = obs[(obs.parcel_id == "G2") & (obs.days >= d0 + 110) & (obs.days <= d0 + 170)].reset_index(drop=True)

    def stream(root: Path, bus, topic: str, events) -> tuple:
        keep.to_csv(root / "parcels.csv", index=False)
        config = MonitorConfig(data_dir=root, series_dir=root / "series", parcels=root / "parcels.csv",
                               topic=topic, group_id=f"late-{uuid.uuid4().hex[:8]}", save_every=3)
        for value in events:
            bus.publish(topic, value["tile_id"], value)
        bus.flush()
        service = Service(Monitor(config, model=model), bus)
        try:
            report = service.run_once()
            alerts = sorted((a.alert_id, a.type, a.event_date, a.confidence) for a in service.monitor.store.query())
            return report, service.monitor.tiles[TILE].state, alerts
        finally:
            service.close()
            bus.close()

    events = write_slots(tmp_path / "on-time" / "series", obs)
    _, on_time, alerts = stream(tmp_path / "on-time", make_bus("memory", path=tmp_path / "bus.sqlite"),
                                "sits.acquisitions", events)
    assert alerts
    i = _first(events, "S1", 3)
    after = [j for j in range(i + 1, len(events)) if events[j]["sensor"] == "S2"][2] - i
    write_slots(tmp_path / "late" / "series", obs)
    report, late, late_alerts = stream(tmp_path / "late", make_bus("kafka", kafka_bootstrap, "0.9"),
                                       f"test.late.{uuid.uuid4().hex[:8]}", _move(events, i, after))
    assert report.rewound == 1 and report.acquisitions == len(events)
    _same_state(late, on_time)
    assert late_alerts == alerts
