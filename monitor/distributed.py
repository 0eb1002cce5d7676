"""``monitor replay`` on a Dask ``distributed`` cluster: one task per tile.

A tile's acquisitions fold in time order into one state (each step needs the state the previous one
left), so a tile is the unit of work: the tasks are independent tiles, each calling
:func:`monitor.replay.replay_period` for its tile in a worker process, and the traffic lights are one
last task over every tile (one writer of ``traffic-lights.csv``). Each worker keeps one loaded model
(the default checkpoint or ``config.checkpoint``) for all its tasks.

Safety comes from the monitor itself: a task takes its tile's state lock (``Monitor.tile``), alert ids
are deterministic and stored by upsert, and a state interrupted mid-replay is continued from what is on
disk. So a task whose worker dies is simply run again — the scheduler reschedules the tasks of a lost
worker (``distributed.scheduler.allowed-failures``), and ``retries`` re-runs a task that raised — and
the result equals the single-process replay (tests/monitor/test_distributed.py).

The cluster options and connection are shared with ``ingest backfill`` (:mod:`contracts.dask`); the
workers must see the same data dir and series store.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from contracts.dask import DaskOptions, banner, connect
from monitor.config import MonitorConfig

__all__ = ["DaskOptions", "connect", "replay_distributed", "replay_tile", "lights_task", "bench_scaling"]


@lru_cache(maxsize=2)
def _model(checkpoint: Path | None, device: str):
    import sits

    return sits.load_model(checkpoint, device=device)


def replay_tile(config: MonitorConfig, start: str, end: str, tile_id: str,
                fold: dict[str, Any] | None = None) -> dict[str, Any]:
    """One task: ``replay_period`` for one tile in this process (no traffic lights: see :func:`lights_task`);
    ``fold``: ``replay_period``'s form, block_size and rewind_points."""
    from monitor.replay import replay_period
    from monitor.service import Monitor

    started = time.perf_counter()
    monitor = Monitor(config, model=_model(config.checkpoint, config.device), sinks=[])
    try:
        result = replay_period(monitor, start=start, end=end, tiles=[tile_id], lights=False, **(fold or {}))
    finally:
        monitor.close()
    tile = result["tiles"][tile_id]
    return {"tile_id": tile_id, "acquisitions": tile["acquisitions"], "alerts": tile["alerts"],
            "namespace": result["namespace"], "seconds": round(time.perf_counter() - started, 3),
            "pid": os.getpid()}


def lights_task(config: MonitorConfig, tiles: list[str]) -> int:
    """The traffic lights of every replayed tile, in one task (the file has one writer)."""
    from monitor.service import Monitor

    monitor = Monitor(config, model=_model(config.checkpoint, config.device), sinks=[])
    try:
        lights = monitor.update_lights(tiles)
    finally:
        monitor.close()
    return 0 if lights is None else len(lights)


def series_tiles(series_dir: Path) -> list[str]:
    """The tiles of the series store (its tile folders)."""
    root = Path(series_dir)
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def replay_distributed(config: MonitorConfig, start: str, end: str, tiles: Sequence[str] | None = None, *,
                       options: DaskOptions = DaskOptions(), client: Any = None,
                       progress: Callable[[str], None] | None = None, lights: bool = True,
                       fold: dict[str, Any] | None = None) -> dict[str, Any]:
    """``monitor replay`` as Dask tasks, one per tile; the same summary as ``replay_period`` plus
    ``workers`` and per-tile ``seconds``. ``client``: an open ``distributed.Client`` (else ``options``)."""
    tiles = list(tiles or series_tiles(config.series_dir))
    if not tiles:
        raise ValueError(f"no tile in the series store {config.series_dir}")
    if client is None:
        with connect(options) as own:
            return replay_distributed(config, start, end, tiles, options=options, client=own,
                                      progress=progress, lights=lights)
    from distributed import as_completed

    say = progress or (lambda _text: None)
    line, workers = banner(client, "replay", len(tiles), "tile(s)")
    say(line)
    started = time.perf_counter()
    futures = {client.submit(replay_tile, config, start, end, tile_id, fold, key=f"replay-{tile_id}-{start}-{end}",
                             retries=options.retries, pure=False): tile_id for tile_id in tiles}
    out: dict[str, Any] = {"tiles": {}, "acquisitions": 0, "alerts": 0}
    namespaces = set()
    try:
        for done, future in enumerate(as_completed(futures), start=1):
            result = future.result()
            namespaces.add(result.pop("namespace"))
            result.pop("pid")
            tile_id = result.pop("tile_id")
            out["tiles"][tile_id] = result
            out["acquisitions"] += result["acquisitions"]
            out["alerts"] += result["alerts"]
            say(f"replay {tile_id}: {result['acquisitions']} acquisitions folded, {result['alerts']} alerts "
                f"({done}/{len(tiles)})")
    except BaseException:
        client.cancel(list(futures))
        raise
    if lights:
        client.submit(lights_task, config, sorted(out["tiles"]), pure=False, retries=options.retries).result()
    out["seconds"] = round(time.perf_counter() - started, 3)
    out["namespace"] = namespaces.pop() if len(namespaces) == 1 else sorted(namespaces)
    out["workers"] = workers
    return out


def bench_scaling(tile_counts: Sequence[int] = (1, 2, 4), n_parcels: int = 2000, n_acquisitions: int = 12,
                  workdir: Path | None = None) -> dict[str, Any]:
    """Replay throughput on a LocalCluster of N worker processes for N synthetic tiles (N in
    ``tile_counts``), against the single-process replay of one tile: parcel-acquisitions per second.
    Each cluster's workers load the model before the clock starts (``_model``); writing the series is
    not timed."""
    import tempfile

    import pandas as pd
    from distributed import Client, LocalCluster

    from monitor.bench import TILE, make_workload, write_interchange_slots
    from monitor.replay import replay_period
    from monitor.service import Monitor

    work = Path(workdir or tempfile.mkdtemp(prefix="sitsmon-bench-dask-"))
    obs, parcels = make_workload(n_parcels, n_acquisitions)
    start, end = str(obs["time"].min().date()), str(obs["time"].max().date())

    def root(name: str, n_tiles: int) -> MonitorConfig:
        layers = []
        for k in range(n_tiles):
            tile_id = f"{TILE}{k}"
            o, p = obs.copy(), parcels.copy()
            o["parcel_id"] = o["parcel_id"].str.replace(TILE, tile_id, regex=False)
            p["parcel_id"] = p["parcel_id"].str.replace(TILE, tile_id, regex=False)
            p["tile_id"] = tile_id
            write_interchange_slots(work / name / "series", o, tile_id)
            layers.append(p)
        pd.concat(layers, ignore_index=True).to_parquet(work / name / "parcels.parquet", index=False)
        return MonitorConfig(data_dir=work / name, series_dir=work / name / "series",
                             parcels=work / name / "parcels.parquet")

    out: dict[str, Any] = {"parcels_per_tile": n_parcels, "acquisitions": n_acquisitions,
                           "cores": os.cpu_count(), "runs": []}
    config = root("single", 1)
    monitor = Monitor(config, model=_model(None, "cpu"), sinks=[])
    try:
        t0 = time.perf_counter()
        replay_period(monitor, start=start, end=end, lights=False)
        single_s = time.perf_counter() - t0
    finally:
        monitor.close()
    out["single_process"] = {"tiles": 1, "seconds": round(single_s, 2),
                             "parcel_acquisitions_per_s": round(n_parcels * n_acquisitions / single_s)}
    for n in tile_counts:
        config = root(f"dask{n}", n)
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
            client.run(_model, None, "cpu")  # the model in every worker before the clock starts
            t0 = time.perf_counter()
            result = replay_distributed(config, start, end, client=client, lights=False)
            wall_s = time.perf_counter() - t0
        rate = n * n_parcels * n_acquisitions / wall_s
        out["runs"].append({"tiles": n, "workers": n, "seconds": round(wall_s, 2),
                            "task_seconds": {t: v["seconds"] for t, v in result["tiles"].items()},
                            "parcel_acquisitions_per_s": round(rate),
                            "speed_up_vs_single": round(rate / out["single_process"]["parcel_acquisitions_per_s"], 2)})
    return out


if __name__ == "__main__":  # python -m monitor.distributed [PARCELS ACQUISITIONS]: the scaling run of docs/capacity.md
    import json
    import sys

    args = [int(a) for a in sys.argv[1:3]]
    print(json.dumps(bench_scaling((1, 2, 4), *args), indent=1))
