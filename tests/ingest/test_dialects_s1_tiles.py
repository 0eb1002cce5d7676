"""S1 items without an MGRS tile (Planetary Computer sentinel-1-rtc, Sentinel Hub) placed by footprint.

One scene, three configured tile grids: the tile it covers, a tile it half covers, a tile far away. The
scene goes into the first two cubes (one ledger row per tile, ``<id>@<tile>``) with the COG's values
where it covers each grid, and nowhere else.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from ingest.cube import open_cube
from ingest.grid import tiles_of_footprint
from ingest.items import tile_of_item
from ingest.ledger import open_ledger
from ingest.poller import Poller, WatchConfig
from ingest.synth.dialects import TILE_PROPERTIES
from ingest.types import TileGrid
from tests.ingest.helpers import TILE, ListSource, MiniArchive, add_s1, grid


def _untiled(item):
    props = {k: v for k, v in item["properties"].items() if k not in TILE_PROPERTIES}
    return {**item, "properties": props}


def test_an_untiled_s1_scene_fills_every_tile_it_covers(tmp_path):
    a = MiniArchive(tmp_path / "archive", grid(64))
    item = _untiled(add_s1(a, datetime(2024, 5, 4, 5, 0, tzinfo=UTC), seed=5))
    assert tile_of_item(item) is None
    x0, y0, x1, y1 = a.grid.bounds
    half = TileGrid("33UYP", a.grid.epsg, 10.0, (x0 + 320.0, y0, x1 + 320.0, y1))  # overlaps the scene's east half
    far = TileGrid("33UWP", a.grid.epsg, 10.0, (x0 - 50_000.0, y0, x1 - 50_000.0, y1))
    grids = {TILE: a.grid, half.tile_id: half, far.tile_id: far}
    assert tiles_of_footprint(item, grids) == sorted([TILE, half.tile_id])

    poller = Poller([ListSource([item])], open_ledger(tmp_path / "ledger.sqlite"), tmp_path / "cubes",
                    tmp_path / "series", WatchConfig(tiles=tuple(grids), collections=("sentinel-1-grd",), start_s=0,
                                                     lookback_s=10**9), grids=grids, asset_root=a.root, chunk=32)
    report = poller.poll_once()
    assert report.errors == [] and report.quarantined == [] and report.ingested_items == 2
    rows = open_ledger(tmp_path / "ledger.sqlite").entries()
    assert sorted((e.item_id, e.tile_id) for e in rows) == sorted((f"{item['id']}@{t}", t) for t in (TILE, half.tile_id))
    assert {e.item["properties"]["sitsmon:source_id"] for e in rows} == {item["id"]}

    vv = a.arrays[item["id"]]["vv"]
    full = open_cube(tmp_path / "cubes" / f"{TILE}.zarr", "S1").load().backscatter.values[0]
    np.testing.assert_array_equal(full[0], vv)
    east = open_cube(tmp_path / "cubes" / f"{half.tile_id}.zarr", "S1").load().backscatter.values[0]
    np.testing.assert_array_equal(east[0][:, :32], vv[:, 32:])  # where the scene covers the tile
    assert np.isnan(east[0][:, 32:]).all()  # beyond the scene: no data
    assert not (tmp_path / "cubes" / f"{far.tile_id}.zarr").exists()

    again = poller.poll_once()  # found again: both tile rows are known, nothing is ingested twice
    assert again.ingested_items == 0 and again.duplicates == 2
