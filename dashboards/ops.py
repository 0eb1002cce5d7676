"""What operators look at: the ingest ledger and the monitor's health file.

The monitor writes ``<data_dir>/monitor/health-<worker>.json``, one per worker (schema
``sitsmon-monitor-health/1``, merged by ``contracts.monitor_health``; older data dirs: ``health.json``);
the dashboard never imports the monitor. Missing file, unreadable file or a dead pid all read as
"monitor not running", with the reason.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contracts.monitor_health import WORKER_PREFIX, merge_reports, read_reports
from ingest.locks import pid_alive

HEALTH_SCHEMA = "sitsmon-monitor-health/1"




def monitor_status(path: Path) -> dict[str, Any]:
    if any(path.parent.glob(f"{WORKER_PREFIX}*.json")):  # one file per worker: merged
        return workers_status(path.parent)
    base = {"running": False, "health_file": str(path)}
    if not path.is_file():
        return {**base, "reason": "monitor not running (no health file)"}
    try:
        health = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return {**base, "reason": f"monitor not running (unreadable health file: {e})"}
    if not isinstance(health, dict) or health.get("schema") != HEALTH_SCHEMA:
        return {**base, "reason": f"monitor not running (health file schema is not {HEALTH_SCHEMA})"}
    pid = health.get("pid")
    if health.get("stopped_at"):
        return {**base, "reason": f"monitor not running (stopped at {health['stopped_at']})", "last": health}
    if not isinstance(pid, int) or not pid_alive(pid):
        return {**base, "reason": f"monitor not running (pid {pid} is not alive)", "last": health}
    lag = health.get("lag") or {}
    return {"running": True, "health_file": str(path), "pid": pid, "updated_at": health.get("updated_at"),
            "age_s": _age_s(health.get("updated_at")), "tiles": health.get("tiles") or {}, "lag": lag,
            "total_lag": sum(int(v) for v in lag.values() if isinstance(v, int | float)),
            "processed": health.get("processed"), "last_error": health.get("last_error")}


def _age_s(updated_at: Any) -> float | None:
    """Seconds since an ISO time (None when it is not one)."""
    try:
        updated = datetime.fromisoformat(str(updated_at))
    except ValueError:
        return None
    return round((datetime.now(UTC) - (updated if updated.tzinfo else updated.replace(tzinfo=UTC))).total_seconds(), 1)


def workers_status(state_root: Path) -> dict[str, Any]:
    """The health files of every monitor worker merged: per-worker lines, summed acquisitions, each
    partition's lag from the worker that owns it, dead workers shown as stopped."""
    merged = merge_reports(read_reports(state_root, pid_alive))
    pids = ", ".join(str(w["pid"]) for w in merged["workers"] if w["running"])  # the operator page's line
    out = {**merged, "health_file": str(state_root / f"{WORKER_PREFIX}*.json"), "pid": pids,
           "age_s": _age_s(merged["updated_at"])}
    if not merged["running"]:
        out["reason"] = f"monitor not running (no live worker of {len(merged['workers'])}: {'; '.join(merged['not_running'])})"
    return out


def ingest_status(ledger_url: str, tiles: set[str] | None, limit: int, offset: int) -> dict[str, Any]:
    """Item counts per status, watermarks, and the quarantined items (paged) of the visible tiles."""
    from ingest.ledger import open_ledger
    from ingest.types import ItemStatus

    if not ledger_url.startswith(("postgresql://", "postgres://")) and not Path(ledger_url).is_file():
        return {"available": False, "reason": f"no ingest ledger at {ledger_url}", "counts": {},
                "watermarks": [], "quarantined": [], "quarantined_count": 0}
    ledger = open_ledger(ledger_url)
    try:
        counts = ledger.counts()
        marks = [{"source": s, "collection": c, "tile_id": t,
                  "watermark": datetime.fromtimestamp(w, UTC).isoformat()}
                 for s, c, t, w in ledger.watermarks() if tiles is None or t in tiles or t == "*"]
        bad = [e for e in ledger.entries(status=ItemStatus.QUARANTINED) if tiles is None or e.tile_id in tiles]
    finally:
        ledger.close()
    page = [{"collection": e.collection, "item_id": e.item_id, "tile_id": e.tile_id, "sensor": e.sensor,
             "acquired": datetime.fromtimestamp(e.acq_time, UTC).isoformat(), "reason": e.reason}
            for e in bad[offset:offset + limit]]
    return {"available": True, "counts": counts, "watermarks": marks, "quarantined": page,
            "quarantined_count": len(bad)}
