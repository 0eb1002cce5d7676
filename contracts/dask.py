"""What ``monitor replay`` and ``ingest backfill`` share to run on Dask ``distributed``.

``scheduler``: ``"local"`` starts a :class:`distributed.LocalCluster` of worker processes on this
machine (bound to 127.0.0.1); anything else is the address of a running scheduler
(``tcp://host:8786``), whose workers must see the same data dir. A task that raised is re-run
``retries`` times; the tasks of a lost worker (a killed process) are rescheduled by the scheduler
itself (``distributed.scheduler.allowed-failures``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DaskOptions:
    """How to reach (or start) the cluster; the command line fills it from ``[dask]``."""

    scheduler: str = "local"  # "local": a LocalCluster here; else a scheduler address
    workers: int = 0  # LocalCluster worker processes (0: one per core)
    retries: int = 2  # re-runs of a task that raised (a lost worker's tasks are rescheduled anyway)


@contextlib.contextmanager
def connect(options: DaskOptions) -> Iterator[Any]:
    """A ``distributed.Client`` of the scheduler, or of a LocalCluster started (and stopped) here."""
    # distributed logs every connection at INFO; the commands say what matters themselves. Worker
    # processes read the level from the environment when they import distributed.
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    from distributed import Client, LocalCluster

    if logging.getLogger().getEffectiveLevel() > logging.INFO:
        logging.getLogger("distributed").setLevel(logging.WARNING)
    if options.scheduler != "local":
        with Client(options.scheduler, timeout="30s") as client:
            yield client
        return
    n_workers = options.workers or os.cpu_count() or 1
    # The scheduler's HTTP server (dashboard when bokeh is installed, health, metrics) on loopback only,
    # on a free port: never the default :8787 on every interface.
    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        yield client


def dashboard_link(client: Any) -> str | None:
    """The scheduler's dashboard page, when bokeh (which draws it) is installed here."""
    if importlib.util.find_spec("bokeh") is None:
        return None
    return getattr(client, "dashboard_link", None)


def banner(client: Any, what: str, n_tasks: int, unit: str) -> tuple[str, int]:
    """The first progress line (scheduler, tasks, workers, dashboard link) and the number of workers."""
    workers = len(client.scheduler_info(n_workers=-1)["workers"])
    link = dashboard_link(client)
    return (f"{what} on {client.scheduler.address}: {n_tasks} {unit}, {workers} worker(s)"
            + (f"; progress on {link}" if link else "")), workers
