"""``PYTHONPATH=. python scripts/bench_campaign_rebase.py [N_PARCELS] [REDRAWN_SHARE]`` (docs/streaming.md "Campaigns").

What a campaign boundary costs a tile of N_PARCELS (default 100 000) square parcels of which
REDRAWN_SHARE (default 0.1) are redrawn: the outline comparison (``unchanged_parcels``) and the move
of the tile's state onto the new parcel list (``monitor.campaigns.rebase``, all three detectors),
beside its floor measured in the same run: building an empty state of the same size. Prints JSON.
"""

from __future__ import annotations

import json
import sys
import time

import geopandas as gpd
import numpy as np
import shapely

import sits
from alerts.detectors.batch import make_batch_detectors
from ingest.campaign_layers import unchanged_parcels
from monitor.campaigns import rebase
from monitor.step import new_tile_state


def main(n: int = 100_000, share: float = 0.1) -> dict:
    rng = np.random.default_rng(0)
    x = 500000 + (np.arange(n) % 316) * 120.0
    y = 5300000 + (np.arange(n) // 316) * 120.0
    old = gpd.GeoDataFrame({"parcel_id": [f"P{i:06d}" for i in range(n)], "land_use": ["grassland"] * n},
                           geometry=shapely.box(x, y, x + 100, y + 100), crs="EPSG:32633")
    geoms = old.geometry.values.copy()
    redraw = rng.random(n) < share
    geoms[redraw] = shapely.box(x[redraw], y[redraw], x[redraw] + 100, y[redraw] + 115)
    new = gpd.GeoDataFrame(old[["parcel_id", "land_use"]].copy(), geometry=geoms, crs="EPSG:32633")
    t0 = time.perf_counter()
    carried = unchanged_parcels(old, new)
    compare_s = time.perf_counter() - t0
    model = sits.load_model(device="cpu")
    detectors = make_batch_detectors(("mowing", "harvest", "solar"))
    state = new_tile_state("T", old[["parcel_id", "land_use"]], model, detectors)
    state.campaign = 2025
    t0 = time.perf_counter()
    rebase(state, new[["parcel_id", "land_use"]], carried, 2026, model, detectors)
    rebase_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    new_tile_state("T", new[["parcel_id", "land_use"]], model, detectors)
    floor_s = time.perf_counter() - t0
    return {"parcels": n, "redrawn": int(redraw.sum()), "carried": len(carried), "compare_s": round(compare_s, 2),
            "rebase_s": round(rebase_s, 2), "empty_state_s": round(floor_s, 2),
            "rebase_over_empty_state": round(rebase_s / floor_s, 2)}


if __name__ == "__main__":
    args = sys.argv[1:]
    print(json.dumps(main(int(args[0]) if args else 100_000, float(args[1]) if len(args) > 1 else 0.1)))
