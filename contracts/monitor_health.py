"""The monitor's health files and how readers merge them (``monitor status`` and the dashboard both read them).

Each ``monitor run`` process (worker) writes its own ``<data_dir>/monitor/health-<worker>.json``
(worker = host and pid; files beside the namespace folders, never a folder among them), so several workers of one consumer group sharing a data dir never overwrite
each other. A reader merges them: one line per worker (running, stopped cleanly, or dead: its pid is
gone), the acquisitions summed over workers, the lag of each partition from the worker that owns it
now, and the newest error. A ``health.json`` (a monitor of an earlier version) reads as one more worker.

Liveness: a worker of this host runs while its pid is alive ("dead" once it is gone); a worker on
another host runs while it writes: after ``stale_after_s`` without a heartbeat (it writes at least every
5 s while idle, and after each batch) it reads "stale". Files of workers that no longer run (dead,
stopped, stale) are pruned by the running workers once their last write is ``prune_after_s`` old
(``prune_reports``; ``[monitor] health_stale_s`` / ``health_prune_s``).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HEALTH_SCHEMA = "sitsmon-monitor-health/1"
WORKER_PREFIX = "health-"
LEGACY_FILE = "health.json"
STALE_AFTER_S = 120.0  # a worker of another host without a heartbeat for this long is "stale", not running
PRUNE_AFTER_S = 86400.0  # the file of a worker that no longer runs is deleted once its last write is this old


def worker_id(pid: int) -> str:
    """``<host>-<pid>``: unique among the workers sharing a data dir, and a valid file name."""
    host = "".join(c if c.isalnum() or c in "-._" else "_" for c in socket.gethostname()) or "host"
    return f"{host}-{pid}"


def worker_path(state_root: Path, pid: int) -> Path:
    return Path(state_root) / f"{WORKER_PREFIX}{worker_id(pid)}.json"


def _age_s(data: dict[str, Any], path: Path, now: datetime) -> float:
    """Seconds since the worker last wrote its file (its ``updated_at``; the file's mtime without one)."""
    try:
        t = datetime.fromisoformat(str(data["updated_at"]))
        t = t if t.tzinfo else t.replace(tzinfo=UTC)
    except (KeyError, ValueError):
        try:
            t = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        except OSError:
            return 0.0
    return (now - t).total_seconds()


def read_reports(state_root: Path, alive: Callable[[int], bool], *, stale_after_s: float = STALE_AFTER_S,
                 now: datetime | None = None) -> list[dict[str, Any]]:
    """Every worker's last report (the legacy ``health.json`` when there is no worker file), each with
    ``state`` = running | stopped | dead | stale, ``running`` and ``age_s`` (seconds since its last write);
    unreadable files come back with ``error``."""
    now = now or datetime.now(UTC)
    root = Path(state_root)
    files = sorted(root.glob(f"{WORKER_PREFIX}*.json")) if root.is_dir() else []
    if (root / LEGACY_FILE).is_file():  # written by a monitor of an earlier version: one more worker
        files.append(root / LEGACY_FILE)
    here = socket.gethostname()
    out = []
    for path in files:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            out.append({"file": str(path), "state": "unreadable", "running": False, "error": str(e)})
            continue
        if not isinstance(data, dict) or data.get("schema") != HEALTH_SCHEMA:
            out.append({"file": str(path), "state": "unreadable", "running": False,
                        "error": f"schema is not {HEALTH_SCHEMA}"})
            continue
        pid = data.get("pid")
        host = data.get("host", here)
        age_s = _age_s(data, path, now)
        if data.get("stopped_at"):
            state = "stopped"
        elif host != here:  # no way to check a pid of another host: its heartbeat says whether it runs
            state = "running" if age_s <= stale_after_s else "stale"
        else:
            state = "running" if isinstance(pid, int) and alive(pid) else "dead"
        out.append({**data, "file": str(path), "host": host, "worker": data.get("worker", path.stem.removeprefix(WORKER_PREFIX)),
                    "state": state, "running": state == "running", "age_s": round(age_s, 1)})
    return out


def prune_reports(state_root: Path, alive: Callable[[int], bool], *, prune_after_s: float = PRUNE_AFTER_S,
                  stale_after_s: float = STALE_AFTER_S, keep: Path | None = None,
                  now: datetime | None = None) -> list[Path]:
    """Delete the files of workers that no longer run (dead, stopped, stale) whose last write is more than
    ``prune_after_s`` old (never ``keep``, the caller's own file, nor an unreadable one: the operator sees
    it); returns the files deleted."""
    gone = []
    for r in read_reports(state_root, alive, stale_after_s=stale_after_s, now=now):
        path = Path(r["file"])
        if r["state"] in ("dead", "stopped", "stale") and r["age_s"] > prune_after_s and path != keep:
            try:
                os.unlink(path)
            except FileNotFoundError:  # another worker pruned it first
                continue
            gone.append(path)
    return gone


def merge_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One view of all workers: per-worker lines, totals, per-partition lag from its current owner."""
    good = [r for r in reports if r["state"] != "unreadable"]
    newest_first = sorted(good, key=lambda r: (r["running"], str(r.get("updated_at") or "")), reverse=True)
    lag: dict[str, int] = {}
    lag_owner: dict[str, str] = {}
    for r in newest_first:  # running workers first, then the newest: a partition's current owner wins
        if not r["running"] and any(x["running"] for x in good):
            continue  # a dead or stopped worker's lag is stale once another one runs
        for partition, n in (r.get("lag") or {}).items():
            if partition not in lag:
                lag[partition], lag_owner[partition] = n, r["worker"]
    tiles: dict[str, dict[str, Any]] = {}
    for r in sorted(good, key=lambda r: str(r.get("updated_at") or "")):
        for tile_id, t in (r.get("tiles") or {}).items():
            merged = tiles.setdefault(tile_id, {"acquisitions": 0, "refolds": 0})
            merged["acquisitions"] += int(t.get("acquisitions", 0) or 0)
            merged["refolds"] += int(t.get("refolds", 0) or 0)
            if "parcels" in t:
                merged["parcels"] = t["parcels"]  # the newest report's
            if str(t.get("t_last") or "") >= str(merged.get("t_last") or ""):
                merged["t_last"] = t.get("t_last")
            merged["worker"] = r["worker"]
    stages: dict[str, float] = {}
    for r in good:
        for stage, s in (r.get("stage_seconds") or {}).items():
            stages[stage] = round(stages.get(stage, 0.0) + float(s), 4)
    errors = [r["last_error"] for r in good if r.get("last_error")]
    workers = [{"worker": r.get("worker", Path(r["file"]).stem.removeprefix(WORKER_PREFIX)), "host": r.get("host"), "pid": r.get("pid"),
                "state": r["state"], "running": r["running"], "updated_at": r.get("updated_at"),
                "stopped_at": r.get("stopped_at"), "processed": r.get("processed", 0),
                "partitions": sorted(r.get("lag") or {}), "last_error": r.get("last_error") or r.get("error"),
                "metrics_url": r.get("metrics_url"), "file": r["file"], "age_s": r.get("age_s")} for r in reports]
    why = [f"pid {w['pid']} is not alive" if w["state"] == "dead" else f"{w['worker']} stopped at {w['stopped_at']}"
           if w["state"] == "stopped" else f"{w['worker']} on {w['host']}: no heartbeat since {w['updated_at']}"
           if w["state"] == "stale" else f"{w['file']}: {w['last_error']}" for w in workers if not w["running"]]
    return {"schema": HEALTH_SCHEMA, "running": any(r["running"] for r in good), "not_running": why,
            "workers_running": sum(r["running"] for r in good), "workers": workers,
            "processed": sum(int(r.get("processed", 0) or 0) for r in good), "tiles": tiles, "lag": lag,
            "lag_owner": lag_owner, "total_lag": sum(int(v) for v in lag.values() if isinstance(v, int | float)),
            "stage_seconds": stages, "last_error": max(errors) if errors else None,  # ISO time first: newest
            "updated_at": max((str(r.get("updated_at")) for r in good if r.get("updated_at")), default=None),
            "stopped_at": max((str(r["stopped_at"]) for r in good if r.get("stopped_at")), default=None)}
