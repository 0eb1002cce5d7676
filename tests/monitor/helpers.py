"""Helpers for the monitor tests: write interchange series into the series store slot by slot and
announce each slot on the bus as ingest does (another path into the series store)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
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



def start_worker(args: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen:
    """``sitsmon -v ARGS`` (a ``monitor run`` worker): INFO logging (kafka-python's group events) and, without
    ``--quiet``, one line per fold; every stderr line goes to ``log`` stamped with the wall time it was read
    at (the fold lines carry none). Read through a thread: a full pipe would stall the worker."""
    proc = subprocess.Popen([sys.executable, "-m", "sitsmon", "-v", *args], env=env, cwd=cwd,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)

    def copy() -> None:
        with open(log, "w") as out:
            for line in proc.stderr:
                out.write(f"{time.time():.3f} {line}")
                out.flush()

    threading.Thread(target=copy, daemon=True).start()
    return proc


_FOLD = re.compile(r"^(\d+\.\d+) \s+\d{4}-\d{2}-\d{2} S[12] (\S+): ")
LEFT_BY_ITSELF = "poll timeout has expired"
"""kafka-python's heartbeat loop leaving the group because ``poll`` is overdue (``max_poll_interval_s``)."""
GROUP_TROUBLE = (LEFT_BY_ITSELF, "CommitFailedError", "UnknownMemberIdError")
"""kafka-python's words for a member that left or was dropped from the group while alive."""


def group_trouble(log: Path) -> dict[str, int]:
    """How often each of :data:`GROUP_TROUBLE` appears in a worker's log."""
    text = log.read_text()
    return {t: text.count(t) for t in GROUP_TROUBLE}


def handover(killed_log: Path, survivor_log: Path, killed_at: float) -> dict:
    """What the survivor's log says about the hand-over after ``killed_at`` (wall time): the tiles the
    killed worker folded, how long until the survivor folded the first of them, its group joins and
    the lines of :data:`GROUP_TROUBLE` (a member leaving or kicked out while alive)."""
    killed = killed_log.read_text().splitlines()
    joined = max((i for i, line in enumerate(killed) if "Successfully joined group" in line), default=0)
    killed_tiles = {m[2] for line in killed[joined:] if (m := _FOLD.match(line))}  # its last assignment
    lines = [line for line in survivor_log.read_text().splitlines()
             if float(line.split(" ", 1)[0]) >= killed_at]
    first = next((float(m[1]) for line in lines if (m := _FOLD.match(line)) and m[2] in killed_tiles), None)
    return {
        "killed_tiles": sorted(killed_tiles),
        "first_fold_of_a_killed_tile_s": None if first is None else round(first - killed_at, 1),
        "joins": sum("Successfully joined group" in line for line in lines),
        "trouble": [line for line in lines if any(t in line for t in GROUP_TROUBLE)],
    }
