"""Health of the running monitor: Prometheus metrics (prometheus-client) and a health file per worker.

Each worker writes ``<data_dir>/monitor/health-<host>-<pid>.json`` (contracts/monitor_health.py):
the pid, when it was last written, per tile the acquisitions folded in and the last one, the lag of
the partitions it owns, the count processed and the last error; ``stopped_at`` when it closes
cleanly. ``sitsmon monitor status`` and the dashboard merge the workers' files: a dead pid or a
``stopped_at`` reads as a stopped worker, a worker of another host without a heartbeat for
``stale_after_s`` as stale, and "monitor not running" when no worker runs. A running worker deletes,
at most once a minute, the files of workers that no longer run and last wrote ``prune_after_s`` ago.
"""

from __future__ import annotations

import json
import os
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from contracts.monitor_health import (
    HEALTH_SCHEMA,
    PRUNE_AFTER_S,
    STALE_AFTER_S,
    merge_reports,
    prune_reports,
    read_reports,
    worker_id,
    worker_path,
)
from ingest.locks import pid_alive

STAGES = ("read", "encoder", "detectors", "store", "sinks", "state", "commit")


class Health:
    """Counters and latencies of one monitor process, exported as Prometheus text and ``health.json``."""

    PRUNE_EVERY_S = 60.0  # how often a worker prunes the files of workers that no longer run

    def __init__(self, path: Path, metrics_port: int | None = None, *, stale_after_s: float = STALE_AFTER_S,
                 prune_after_s: float = PRUNE_AFTER_S) -> None:
        self.path = Path(path)
        self.stale_after_s = stale_after_s
        self.prune_after_s = prune_after_s
        self._pruned_s = -1e18
        self.worker = worker_id(os.getpid())
        self.registry = CollectorRegistry()
        self.acquisitions = Counter("sitsmon_monitor_acquisitions", "acquisitions folded in", ["sensor"],
                                    registry=self.registry)
        self.parcels = Counter("sitsmon_monitor_parcels_updated", "parcel rows folded in", registry=self.registry)
        self.alerts = Counter("sitsmon_monitor_alerts", "alerts raised (new or re-raised)", ["type"],
                              registry=self.registry)
        self.errors = Counter("sitsmon_monitor_errors", "events refused or failed", ["kind"], registry=self.registry)
        self.latency = Histogram("sitsmon_monitor_stage_seconds", "seconds per acquisition and stage", ["stage"],
                                 registry=self.registry, buckets=(.001, .005, .02, .05, .1, .25, .5, 1, 2.5, 5, 10))
        self.lag = Gauge("sitsmon_monitor_lag", "messages not yet committed", ["partition"], registry=self.registry)
        self.t_last = Gauge("sitsmon_monitor_tile_last_acquisition_seconds", "newest acquisition folded in",
                            ["tile"], registry=self.registry)
        self.tiles: dict[str, dict[str, Any]] = {}
        self._folded_keys: dict[str, set[tuple[str, int]]] = {}
        self.processed = 0
        self.last_error: str | None = None
        self.lag_by_partition: dict[str, int] = {}
        self.stage_totals = dict.fromkeys(STAGES, 0.0)
        self.metrics_url = None
        self.stopped_at: str | None = None
        if metrics_port is not None:
            server, _ = start_http_server(metrics_port, addr="127.0.0.1", registry=self.registry)
            self.metrics_url = f"http://127.0.0.1:{server.server_port}/metrics"

    def folded(self, tile_id: str, sensor: str, time_s: int, parcels: int, n_parcels: int,
               seconds: dict[str, float]) -> None:
        self.processed += 1
        self.acquisitions.labels(sensor).inc()
        self.parcels.inc(parcels)
        for stage, s in seconds.items():
            self.latency.labels(stage).observe(s)
            self.stage_totals[stage] = self.stage_totals.get(stage, 0.0) + s
        tile = self.tiles.setdefault(tile_id, {"acquisitions": 0, "refolds": 0})
        seen = self._folded_keys.setdefault(tile_id, set())
        if (sensor, time_s) in seen:  # folded again after a rewind: not another acquisition
            tile["refolds"] += 1
        else:
            seen.add((sensor, time_s))
            tile["acquisitions"] += 1
        tile["parcels"] = n_parcels
        if time_s >= tile.get("t_last_s", -1):
            tile["t_last_s"] = time_s
            tile["t_last"] = datetime.fromtimestamp(time_s, UTC).isoformat().replace("+00:00", "Z")
            self.t_last.labels(tile_id).set(time_s)

    def error(self, kind: str, message: str) -> None:
        self.errors.labels(kind).inc()
        self.last_error = f"{datetime.now(UTC).isoformat(timespec='seconds')} {kind}: {message}"

    def set_lag(self, lag: dict[str, int]) -> None:
        self.lag_by_partition = dict(lag)
        for partition, n in lag.items():
            self.lag.labels(partition).set(n)

    def snapshot(self) -> dict[str, Any]:
        return {"schema": HEALTH_SCHEMA, "pid": os.getpid(), "worker": self.worker, "host": socket.gethostname(),
                "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "tiles": {t: {k: v for k, v in d.items() if k != "t_last_s"} for t, d in self.tiles.items()},
                "lag": self.lag_by_partition, "processed": self.processed, "last_error": self.last_error,
                "stage_seconds": {k: round(v, 4) for k, v in self.stage_totals.items()},
                "metrics_url": self.metrics_url, "stopped_at": self.stopped_at}

    def stop(self) -> None:
        """The monitor closed cleanly: readers say "monitor not running" from now on."""
        self.stopped_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.write()

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
        tmp.write_text(json.dumps(self.snapshot(), indent=1), encoding="utf-8")
        os.replace(tmp, self.path)
        if self.stopped_at is None and time.monotonic() - self._pruned_s >= self.PRUNE_EVERY_S:
            self._pruned_s = time.monotonic()
            self.prune()

    def prune(self) -> list[Path]:
        """Delete the health files of workers that stopped, died or went stale ``prune_after_s`` ago."""
        return prune_reports(self.path.parent, pid_alive, prune_after_s=self.prune_after_s,
                             stale_after_s=self.stale_after_s, keep=self.path)


def for_worker(state_root: Path, metrics_port: int | None = None, *, stale_after_s: float = STALE_AFTER_S,
               prune_after_s: float = PRUNE_AFTER_S) -> Health:
    """The health of this process, written to its own file ``<state_root>/health-<host>-<pid>.json``."""
    return Health(worker_path(state_root, os.getpid()), metrics_port, stale_after_s=stale_after_s,
                  prune_after_s=prune_after_s)


def read_health(state_root: Path, stale_after_s: float = STALE_AFTER_S) -> dict[str, Any] | None:
    """Every worker's last report, merged (None when no worker ever wrote one)."""
    reports = read_reports(state_root, pid_alive, stale_after_s=stale_after_s)
    return merge_reports(reports) if reports else None
