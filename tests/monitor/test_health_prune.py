"""Worker health files: a worker whose pid is gone on this host reads dead (not running) and its file is pruned
once old; a worker of another host without a heartbeat reads stale, not running forever."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from contracts.monitor_health import HEALTH_SCHEMA, WORKER_PREFIX, merge_reports, read_reports
from ingest.locks import pid_alive
from monitor.health import for_worker


def _gone_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write(root: Path, name: str, *, pid: int, host: str, age_s: float, stopped: bool = False) -> Path:
    when = (datetime.now(UTC) - timedelta(seconds=age_s)).isoformat(timespec="seconds")
    path = root / f"{WORKER_PREFIX}{name}.json"
    path.write_text(json.dumps({"schema": HEALTH_SCHEMA, "pid": pid, "worker": name, "host": host, "updated_at": when,
                                "tiles": {}, "lag": {"t/0": 3}, "processed": 5, "last_error": None,
                                "stopped_at": when if stopped else None}), encoding="utf-8")
    return path


def test_dead_stopped_and_stale_workers_are_not_running_and_old_files_are_pruned(tmp_path: Path) -> None:
    here = socket.gethostname()
    day = 86400.0
    files = {
        "dead-old": _write(tmp_path, "dead-old", pid=_gone_pid(), host=here, age_s=2 * day),
        "dead-new": _write(tmp_path, "dead-new", pid=_gone_pid(), host=here, age_s=60),
        "stopped-old": _write(tmp_path, "stopped-old", pid=_gone_pid(), host=here, age_s=2 * day, stopped=True),
        "remote-live": _write(tmp_path, "remote-live", pid=1234, host="other-host", age_s=10),
        "remote-stale": _write(tmp_path, "remote-stale", pid=1234, host="other-host", age_s=600),
        "remote-gone": _write(tmp_path, "remote-gone", pid=1234, host="other-host", age_s=3 * day),
        # this host, pid alive, not written for long (a long fold): still running, never pruned
        "alive-quiet": _write(tmp_path, "alive-quiet", pid=os.getppid(), host=here, age_s=2 * day),
    }
    states = {r["worker"]: r["state"] for r in read_reports(tmp_path, pid_alive, stale_after_s=120)}
    assert states == {"dead-old": "dead", "dead-new": "dead", "stopped-old": "stopped", "remote-live": "running",
                      "remote-stale": "stale", "remote-gone": "stale", "alive-quiet": "running"}
    merged = merge_reports(read_reports(tmp_path, pid_alive, stale_after_s=120))
    assert merged["workers_running"] == 2
    assert any("remote-stale on other-host: no heartbeat since" in why for why in merged["not_running"])
    # a longer stale limit: the remote worker of ten minutes ago still runs
    assert {r["worker"]: r["state"] for r in read_reports(tmp_path, pid_alive, stale_after_s=900)}["remote-stale"] \
        == "running"

    health = for_worker(tmp_path, stale_after_s=120, prune_after_s=day)
    health.write()  # a running worker prunes as it writes
    left = sorted(p.stem.removeprefix(WORKER_PREFIX) for p in tmp_path.glob(f"{WORKER_PREFIX}*.json"))
    assert left == sorted(["dead-new", "remote-live", "remote-stale", "alive-quiet", health.worker])
    assert not files["dead-old"].exists() and not files["remote-gone"].exists()
    # the dead worker's file goes once it too is old; the writer's own file never
    assert [p.name for p in health.prune()] == []
    health.prune_after_s = 30.0
    assert sorted(p.stem.removeprefix(WORKER_PREFIX) for p in health.prune()) == ["dead-new", "remote-stale"]
    assert health.path.exists()
