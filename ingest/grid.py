"""Tile grids: from the archive manifest, from an item's 10 m asset (proj:transform/proj:shape), or stored in a cube."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ingest.errors import ConfigError, ItemError
from ingest.items import epsg_of_item, tile_of_item
from ingest.types import TileGrid

REFERENCE_ASSETS = ("B02", "B03", "B04", "B08", "vv", "vh")


def grids_from_manifest(path: str | Path) -> dict[str, TileGrid]:
    """Tile grids listed in an archive manifest (``archive.json``, see docs/archive-format.md)."""
    p = Path(path)
    if p.is_dir():
        p = p / "archive.json"
    try:
        manifest = json.loads(p.read_text())
        return {t["tile_id"]: TileGrid.from_dict(t) for t in manifest["tiles"]}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"cannot read tile grids from {p}: {e}") from e


def grid_from_item(item: dict[str, Any]) -> TileGrid:
    """The grid of the item's 10 m band: proj:transform and proj:shape of B02 (or VV for S1)."""
    tile = tile_of_item(item)
    epsg = epsg_of_item(item)
    if not tile or epsg is None:
        raise ItemError(f"item {item.get('id')}: cannot derive a tile grid without MGRS tile and proj:epsg")
    assets = item.get("assets") or {}
    for name in REFERENCE_ASSETS:
        asset = assets.get(name)
        if isinstance(asset, dict) and asset.get("proj:transform") and asset.get("proj:shape"):
            a, b, c, d, e, f = (float(v) for v in asset["proj:transform"][:6])
            h, w = (int(v) for v in asset["proj:shape"])
            if b != 0 or d != 0 or a <= 0 or abs(a + e) > 1e-9:
                raise ItemError(f"item {item.get('id')}: asset {name} is not on a north-up square grid: {asset['proj:transform']}")
            return TileGrid(tile, epsg, a, (c, f - h * a, c + w * a, f))
    raise ItemError(f"item {item.get('id')}: no asset with proj:transform and proj:shape to derive the tile grid")


def grid_bbox_4326(grid: TileGrid) -> tuple[float, float, float, float]:
    """The tile's bounds as a lon/lat box (densified edges)."""
    from rasterio.warp import transform_bounds

    return tuple(transform_bounds(f"EPSG:{grid.epsg}", "EPSG:4326", *grid.bounds, densify_pts=21))


_BANDS = "CDEFGHJKLMNPQRSTUVWX"  # MGRS latitude bands, 8 degrees each from 80 S (X spans 72-84 N)


def mgrs_coarse_bbox(tile_id: str) -> tuple[float, float, float, float]:
    """A lon/lat box that surely contains MGRS tile ``tile_id`` (its UTM zone and latitude band, plus a margin).

    Used as the search box for a watched tile whose exact grid is not known yet; items are then
    kept by their MGRS tile id.
    """
    import re

    m = re.fullmatch(r"(\d{1,2})([C-HJ-NP-X])([A-HJ-NP-Z]{2})", tile_id.upper())
    if not m:
        raise ConfigError(f"not an MGRS tile id: {tile_id!r} (expected e.g. 33UXP)")
    zone, band = int(m.group(1)), m.group(2)
    if not 1 <= zone <= 60:
        raise ConfigError(f"not an MGRS tile id: {tile_id!r} (UTM zone {zone} outside 1..60)")
    i = _BANDS.index(band)
    south = -80.0 + 8.0 * i
    north = 84.0 if band == "X" else south + 8.0
    west = -180.0 + 6.0 * (zone - 1)
    # S2 tiles reach up to ~1 degree beyond their zone and ~1 degree beyond their band
    return (max(-180.0, west - 1.5), max(-90.0, south - 1.0), min(180.0, west + 7.5), min(90.0, north + 1.0))



def _footprint_in(item: dict[str, Any], epsg: int) -> Any:
    """The item's footprint (``geometry``, else ``bbox``; EPSG:4326) as a shapely geometry in EPSG:``epsg``."""
    import shapely
    from rasterio.warp import transform_geom

    geometry = item.get("geometry")
    if not isinstance(geometry, dict) or "coordinates" not in geometry:
        bbox = item.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4):
            raise ItemError(f"item {item.get('id')}: neither geometry nor bbox to place it on a tile grid")
        geometry = shapely.geometry.mapping(shapely.box(*(float(v) for v in bbox)))
    try:
        return shapely.geometry.shape(transform_geom("EPSG:4326", f"EPSG:{epsg}", geometry))
    except (ValueError, TypeError, KeyError) as e:
        raise ItemError(f"item {item.get('id')}: unusable footprint: {' '.join(str(e).split())[:160]}") from e


def tiles_of_footprint(item: dict[str, Any], grids: dict[str, TileGrid]) -> list[str]:
    """The tiles among ``grids`` whose area the item's footprint covers (more than a shared edge), sorted.

    For items that carry no MGRS tile (Planetary Computer ``sentinel-1-rtc``, Sentinel Hub S1 scenes):
    an S1 scene spans many tiles, so its tiles come from where it lies, not from a property.
    """
    import shapely

    out = []
    for tile_id, grid in sorted(grids.items()):
        box = shapely.box(*grid.bounds)
        if _footprint_in(item, grid.epsg).intersection(box).area > 0:
            out.append(tile_id)
    return out


#: Where the original catalogue id of an item placed on a derived tile is kept.
SOURCE_ID = "sitsmon:source_id"


def item_on_tile(item: dict[str, Any], tile_id: str) -> dict[str, Any]:
    """A copy of an item without an MGRS tile, placed on ``tile_id``: ``grid:code`` set, id ``<id>@<tile>``.

    The ledger keys items by (collection, id) and an S1 scene covers several tiles, so each tile gets
    its own ledger row; the catalogue id stays in ``properties["sitsmon:source_id"]``.
    """
    source_id = str(item.get("id") or "")
    props = {**(item.get("properties") or {}), "grid:code": f"MGRS-{tile_id}", SOURCE_ID: source_id}
    return {**item, "id": f"{source_id}@{tile_id}", "properties": props}
