"""A tiny hand-made archive (docs/archive-format.md layout) for fast, controlled ingest tests.

Values are drawn from a fixed seed; the arrays written to the COGs are returned so that tests can
compare the cube with the source values.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.warp import transform_bounds

from ingest.types import S2_BANDS, TileGrid

TILE = "33UXP"
EPSG = 32633
RES = 10.0
D0 = datetime(2024, 5, 3, 10, tzinfo=UTC)  # the first acquisition of the hand-made test archives


def grid(size: int = 64, tile: str = TILE) -> TileGrid:
    x0, y0 = 500000.0, 5300000.0
    return TileGrid(tile, EPSG, RES, (x0, y0, x0 + size * RES, y0 + size * RES))


def write_tif(path: Path, data: np.ndarray, g: TileGrid, nodata: float | int | None, epsg: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = data.shape
    profile = dict(driver="GTiff", height=h, width=w, count=1, dtype=data.dtype.name,
                   crs=f"EPSG:{epsg or g.epsg}", transform=Affine(*g.transform), nodata=nodata,
                   tiled=True, blockxsize=16 * max(1, min(w, 256) // 16), blockysize=16 * max(1, min(h, 256) // 16),
                   compress="deflate")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def bbox4326(g: TileGrid) -> list[float]:
    return list(transform_bounds(f"EPSG:{g.epsg}", "EPSG:4326", *g.bounds, densify_pts=21))


def footprint(bbox: list[float]) -> dict[str, Any]:
    x0, y0, x1, y1 = bbox
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


@dataclass
class MiniArchive:
    root: Path
    grid: TileGrid
    items: list[dict[str, Any]] = field(default_factory=list)
    arrays: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # item id -> asset -> array

    def write_catalog(self) -> None:
        """archive.json, collections and items NDJSON (sorted by published)."""
        g = self.grid
        manifest = {"schema": "sitsmon-archive/1", "seed": 0, "start": "2024-05-01", "end": "2024-06-30",
                    "created": "2024-07-01T00:00:00Z", "generator": "tests",
                    "tiles": [{**g.to_dict()}],
                    "counts": {"parcels": 0}}
        (self.root / "archive.json").write_text(json.dumps(manifest))
        (self.root / "collections").mkdir(parents=True, exist_ok=True)
        (self.root / "items").mkdir(parents=True, exist_ok=True)
        for cid in ("sentinel-2-l2a", "sentinel-1-grd"):
            coll = {"type": "Collection", "stac_version": "1.0.0", "id": cid, "description": cid,
                    "license": "proprietary", "links": [],
                    "extent": {"spatial": {"bbox": [bbox4326(g)]},
                               "temporal": {"interval": [["2024-01-01T00:00:00Z", None]]}}}
            (self.root / "collections" / f"{cid}.json").write_text(json.dumps(coll))
            items = sorted((i for i in self.items if i["collection"] == cid), key=lambda i: i["properties"]["published"])
            (self.root / "items" / f"{cid}.ndjson").write_text("".join(json.dumps(i) + "\n" for i in items))

    def item(self, item_id: str) -> dict[str, Any]:
        return next(i for i in self.items if i["id"] == item_id)


def _props(g: TileGrid, when: datetime, published: datetime) -> dict[str, Any]:
    return {"datetime": _iso(when), "published": _iso(published), "created": _iso(published),
            "updated": _iso(published), "proj:epsg": g.epsg, "proj:code": f"EPSG:{g.epsg}",
            "grid:code": f"MGRS-{g.tile_id}", "mgrs:utm_zone": int(g.tile_id[:2]),
            "mgrs:latitude_band": g.tile_id[2], "mgrs:grid_square": g.tile_id[3:]}


def _add_item(a: MiniArchive, item_id: str, collection: str, props: dict[str, Any], assets: dict[str, Any],
              arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """The item (footprint: the tile's) into the archive, its source arrays beside it."""
    bb = bbox4326(a.grid)
    item = {"type": "Feature", "stac_version": "1.0.0", "id": item_id, "collection": collection,
            "bbox": bb, "geometry": footprint(bb), "properties": props, "assets": assets, "links": []}
    a.items.append(item)
    a.arrays[item_id] = arrays
    return item


def add_s2(a: MiniArchive, when: datetime, *, seed: int, platform: str = "sentinel-2a", baseline: str = "05.10",
           cloud: float = 20.0, delay_days: float = 0.5, item_id: str | None = None, cloudy_share: float = 0.2,
           all_nodata: bool = False, epsg: int | None = None) -> dict[str, Any]:
    g = a.grid
    rng = np.random.default_rng(seed)
    h, w = g.shape
    suffix = "_0_L2A" if item_id is None else ""
    item_id = item_id or f"S2{platform[-1].upper()}_{g.tile_id}_{when:%Y%m%d}{suffix}"
    offset = -0.1 if tuple(int(p) for p in baseline.split(".")) >= (4, 0) else 0.0
    base = f"data/sentinel-2-l2a/{g.tile_id}/{item_id}"
    arrays: dict[str, np.ndarray] = {}
    assets: dict[str, Any] = {}
    for b in S2_BANDS:
        refl = rng.uniform(0.01, 0.5, size=(h, w))
        dn = np.rint((refl - offset) / 1e-4).astype(np.uint16)
        dn[0, :3] = 0  # a few nodata pixels
        if all_nodata:
            dn[:] = 0
        arrays[b] = dn
    scl = rng.choice(np.array([4, 5, 6, 7], dtype=np.uint8), size=(h, w))
    cloudy = rng.random((h, w)) < cloudy_share
    scl[cloudy] = rng.choice(np.array([3, 8, 9, 10], dtype=np.uint8), size=int(cloudy.sum()))
    scl[0, :3] = 0
    if all_nodata:
        scl[:] = 0
    arrays["SCL"] = scl
    for name, data in arrays.items():
        write_tif(a.root / base / f"{name}.tif", data, g, 0, epsg)
        asset = {"href": f"{base}/{name}.tif", "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                 "roles": ["data"], "proj:shape": [h, w], "proj:transform": list(g.transform), "gsd": 10}
        if name != "SCL":
            asset["raster:bands"] = [{"data_type": "uint16", "nodata": 0, "scale": 0.0001, "offset": offset,
                                      "spatial_resolution": 10}]
        assets[name] = asset
    props = _props(g, when, when + timedelta(days=delay_days))
    props.update({"platform": platform, "constellation": "sentinel-2", "eo:cloud_cover": cloud,
                  "s2:processing_baseline": baseline, "s2:mgrs_tile": g.tile_id})
    if epsg:
        props.update({"proj:epsg": epsg, "proj:code": f"EPSG:{epsg}"})
    return _add_item(a, item_id, "sentinel-2-l2a", props, assets, arrays)


def add_s1(a: MiniArchive, when: datetime, *, seed: int, orbit: int = 73, state: str = "ascending",
           delay_days: float = 0.2) -> dict[str, Any]:
    g = a.grid
    rng = np.random.default_rng(seed)
    h, w = g.shape
    item_id = f"S1A_IW_GRDH_{when:%Y%m%dT%H%M%S}_{g.tile_id}_{'A' if state == 'ascending' else 'D'}{orbit:03d}"
    base = f"data/sentinel-1-grd/{g.tile_id}/{item_id}"
    arrays, assets = {}, {}
    for name in ("vv", "vh"):
        data = rng.gamma(2.0, 0.02 if name == "vv" else 0.005, size=(h, w)).astype(np.float32)
        data[-1, -2:] = np.nan
        arrays[name] = data
        write_tif(a.root / base / f"{name}.tif", data, g, float("nan"))
        assets[name] = {"href": f"{base}/{name}.tif", "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                        "roles": ["data"], "proj:shape": [h, w], "proj:transform": list(g.transform), "gsd": 10,
                        "raster:bands": [{"data_type": "float32", "nodata": "nan"}]}
    props = _props(g, when, when + timedelta(days=delay_days))
    props.update({"platform": "sentinel-1a", "constellation": "sentinel-1", "sat:relative_orbit": orbit,
                  "sat:orbit_state": state, "sar:polarizations": ["VV", "VH"], "sar:instrument_mode": "IW",
                  "sar:product_type": "GRD"})
    return _add_item(a, item_id, "sentinel-1-grd", props, assets, arrays)


def parcels_gdf(g: TileGrid, n: int = 12, seed: int = 3):
    """Rectangular parcels inside the tile (EPSG:4326 GeoDataFrame)."""
    import geopandas as gpd
    import shapely

    rng = np.random.default_rng(seed)
    xmin, ymin, xmax, ymax = g.bounds
    geoms, ids = [], []
    for i in range(n):
        w_, h_ = rng.uniform(40, 200, 2)
        x0 = rng.uniform(xmin, xmax - w_)
        y0 = rng.uniform(ymin, ymax - h_)
        geoms.append(shapely.box(x0, y0, x0 + w_, y0 + h_))
        ids.append(f"P{i:03d}")
    gdf = gpd.GeoDataFrame({"parcel_id": ids, "land_use": ["grassland"] * n}, geometry=geoms, crs=f"EPSG:{g.epsg}")
    return gdf.to_crs(4326)


def basic_archive(root: Path, size: int = 64) -> MiniArchive:
    """Three S2 dates (one with a same-day second item), two S1 passes; published out of order."""
    a = MiniArchive(root, grid(size))
    d = datetime(2024, 5, 3, 10, 0, tzinfo=UTC)
    add_s2(a, d, seed=1, cloud=30.0)
    add_s2(a, d + timedelta(minutes=1), seed=2, platform="sentinel-2b", cloud=10.0)
    add_s2(a, d + timedelta(days=5), seed=3, delay_days=6.0)  # published late
    add_s2(a, d + timedelta(days=10), seed=4)
    add_s1(a, d + timedelta(days=1, hours=-5), seed=5)
    add_s1(a, d + timedelta(days=7, hours=7), seed=6, orbit=146, state="descending")
    a.write_catalog()
    return a


def served_basic_archive(tmp_path_factory: Any, name: str) -> Iterator[tuple[MiniArchive, Any, Path]]:
    """For a module fixture: :func:`basic_archive` under a fresh folder ``name``, its parcels as a
    GeoPackage, served by a local STAC API while the fixture lives; yields ``(archive, endpoint, parcels)``."""
    from ingest.stac_server import running_stac_api

    base = tmp_path_factory.mktemp(name)
    archive = basic_archive(base / "archive")
    parcels = base / "parcels.gpkg"
    parcels_gdf(archive.grid).to_file(parcels, driver="GPKG")
    with running_stac_api(archive.root) as endpoint:
        yield archive, endpoint, parcels


def two_good_items(tmp_path_factory: Any, name: str) -> MiniArchive:
    """A 64-pixel archive under a fresh folder ``name`` holding the two good S2 items GOOD1 (at ``D0``)
    and GOOD2 (five days later), for the bad-input tests to add their faulty items to."""
    a = MiniArchive(tmp_path_factory.mktemp(name) / "archive", grid(64))
    add_s2(a, D0, seed=1, item_id="GOOD1")
    add_s2(a, D0 + timedelta(days=5), seed=2, item_id="GOOD2")
    return a


class ListSource:
    """A source over a list of items (filters by collection and datetime like a STAC API)."""

    def __init__(self, items: list[dict[str, Any]], name: str = "list"):
        self.items = items
        self.name = name

    def search(self, collection, bbox, start_s, end_s, intersects=None):
        from ingest.items import parse_time

        for item in self.items:
            try:
                t = parse_time(item["properties"]["datetime"])
            except Exception:  # noqa: BLE001 - malformed items are passed through
                yield item
                continue
            if item.get("collection") == collection and start_s <= t <= end_s:
                yield item


class CountingBar:
    """A stand-in for the tqdm bar a backfill is given: it counts what the backfill reports done."""

    total, n = 0, 0

    def update(self, k):
        self.n += k

    def refresh(self):
        pass
