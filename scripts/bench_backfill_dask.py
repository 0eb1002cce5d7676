"""``PYTHONPATH=. python scripts/bench_backfill_dask.py TILES SIZE_PX S2_DATES WORKDIR [dask-first]`` (docs/capacity.md).

``ingest backfill`` of TILES synthetic tiles (SIZE_PX² pixels, S2_DATES S2 dates and one S1 pass each):
the single-process backfill (``Poller.backfill``, tiles in 2 threads) against ``backfill_distributed``
on a LocalCluster of 2 worker processes (one task per tile; the cluster is started before the clock).
Prints wall seconds as JSON; ``dask-first`` runs the distributed backfill first (the order shows how
much the page cache and the load of the moment weigh).
"""

from __future__ import annotations

import functools
import json
import sys
import time
from datetime import timedelta
from pathlib import Path

from distributed import Client, LocalCluster

from ingest.distributed import backfill_distributed
from ingest.ledger import open_ledger
from ingest.load import resolve_hrefs
from ingest.poller import Poller, WatchConfig
from tests.ingest.helpers import D0, ListSource, MiniArchive, add_s1, add_s2, grid


def make_poller(work: Path, items: list, grids: dict, tiles: list[str], workers: int = 1) -> Poller:
    return Poller([ListSource(items)], open_ledger(work / "l.sqlite"), work / "cubes", work / "series",
                  WatchConfig(tiles=tuple(tiles)), grids=grids, workers=workers, chunk=256)


def main() -> None:
    n_tiles, size_px, n_dates = (int(a) for a in sys.argv[1:4])
    root = Path(sys.argv[4])
    tiles = [f"33UX{c}" for c in "PQRSTUVW"[:n_tiles]]
    items, grids = [], {}
    for k, tile in enumerate(tiles):
        g = grid(size_px, tile)
        shift_m = k * size_px * g.resolution  # tiles side by side
        g = type(g)(tile, g.epsg, g.resolution, (g.bounds[0], g.bounds[1] + shift_m, g.bounds[2], g.bounds[3] + shift_m))
        archive = MiniArchive(root / "src" / tile, g)
        for d in range(n_dates):
            add_s2(archive, D0 + timedelta(days=5 * d), seed=10 * k + d)
        add_s1(archive, D0 + timedelta(days=2), seed=50 + k)
        items += [resolve_hrefs(i, archive.root) for i in archive.items]
        grids[tile] = g
    start_s = int((D0 - timedelta(days=1)).timestamp())
    end_s = int((D0 + timedelta(days=5 * n_dates + 5)).timestamp())
    slots = n_tiles * (n_dates + 1)
    out = {"tiles": n_tiles, "size_px": size_px, "slots_per_tile": n_dates + 1}

    def single() -> None:
        poller = make_poller(root / "single", items, grids, tiles, workers=2)
        t0 = time.perf_counter()
        assert poller.backfill(start_s, end_s).ingested_slots == slots
        out["single_2_threads_s"] = round(time.perf_counter() - t0, 2)
        poller.ledger.close()

    def distributed() -> None:
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
            t0 = time.perf_counter()
            report = backfill_distributed(functools.partial(make_poller, root / "dask", items, grids, tiles),
                                          start_s, end_s, client=client, block_days=0)
            out["dask_2_workers_s"] = round(time.perf_counter() - t0, 2)
        assert report.ingested_slots == slots

    for run in (distributed, single) if sys.argv[5:6] == ["dask-first"] else (single, distributed):
        run()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
