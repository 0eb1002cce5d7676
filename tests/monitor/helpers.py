"""Helpers for the monitor tests: write interchange series into the series store slot by slot and
announce each slot on the bus as ingest does (another path into the series store)."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from pathlib import Path

import pandas as pd

from ingest.events import ACQUISITIONS_TOPIC
from monitor.bench import write_interchange_slots

TILE = "T00TST"
WORKER_SAVE_EVERY = 5  # the state writes of a `kafka_worker_env` worker (and of its reference runs)


def write_slots(series_dir: Path, obs: pd.DataFrame, tile_id: str = TILE) -> list[dict]:
    """``obs`` written into the series store slot by slot; the acquisition events, in acquisition order."""
    return write_interchange_slots(series_dir, obs, tile_id)


def publish(bus, events: list[dict]) -> None:
    for value in events:
        bus.publish(ACQUISITIONS_TOPIC, value["tile_id"], value)
    bus.flush()


def comparable(alerts) -> list[str]:
    """Alerts as JSON of what must agree between the stream and the offline run: everything but the
    detection time, the model version tag and the model's expectation (the stream knows only the views
    seen before an event's confirmation; offline looks 30 days ahead)."""
    import json

    out = []
    for a in alerts:
        d = json.loads(a.to_json())
        for k in ("detected_at", "model_version"):
            d.pop(k)
        d["evidence"].pop("model", None)
        d["evidence"].pop("interval", None)  # likewise: the stream's interval ends at the views seen so far
        out.append(json.dumps(d, sort_keys=True))
    return sorted(out)


def kafka_worker_env(bootstrap: str, store_url: str, topic: str, **settings: str) -> dict[str, str]:
    """The environment of a `sitsmon monitor run` worker of a new Kafka consumer group on ``topic``:
    small polls and state writes every few acquisitions, so a test can kill a worker between two of them
    (every 5: a kill then mostly leaves folds in the applied log past the last state, for the next owner to
    replay; every 2 cost the two-worker tests a third of their CPU in state writes, measured).
    ``settings`` adds SITSMON_* variables (e.g. ``SITSMON_STORAGE__STATES_URL``)."""
    repo = Path(__file__).resolve().parents[2]
    return {**os.environ, "PYTHONPATH": str(repo), "SITSMON_BUS__BACKEND": "kafka",
            "SITSMON_BUS__BOOTSTRAP_SERVERS": bootstrap, "SITSMON_BUS__API_VERSION": "0.9",
            "SITSMON_BUS__GROUP_ID": f"group-{uuid.uuid4().hex[:8]}", "SITSMON_MONITOR__TOPIC": topic,
            "SITSMON_ALERTS__STORE_URL": store_url, "SITSMON_MONITOR__SAVE_EVERY": str(WORKER_SAVE_EVERY),
            "SITSMON_MONITOR__MAX_RECORDS": "5", **settings}


def stop_workers(workers, timeout_s: float = 60.0) -> None:
    """A clean stop (SIGINT: the worker commits and writes its last states) of every worker still
    running; one that has not stopped within ``timeout_s`` is killed."""
    for w in workers:
        if w.poll() is None:
            w.send_signal(signal.SIGINT)
    for w in workers:
        try:
            w.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            w.kill()
