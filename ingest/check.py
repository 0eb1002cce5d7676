"""``sitsmon ingest check``: does a configured source give what ingest needs?

Per collection: the configuration check (an uncalibrated S1 collection is refused), a search of one
UTC day, and for the first item found: parse it, resolve every band by meaning in the source's
dialect, sign it when the source signs, fetch a 32 x 32 px block of it when the source serves pixels
rather than files (Sentinel Hub's Process API), and open each asset's header (data type, size, CRS,
and whether the file contradicts its ``raster:bands``). An S1 item without an MGRS tile is said so (the
poller places it by footprint). Every line says what was found or exactly what is
missing; nothing is written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ingest.assets import check_collections, dialect_named, resolve_assets
from ingest.errors import AssetError, ConfigError, IngestError, ItemError
from ingest.grid import item_on_tile
from ingest.items import epsg_of_item, parse_item, tile_of_item
from ingest.load import contradiction, read_options
from ingest.types import Sensor, TileGrid, sensor_of_collection

__all__ = ["CheckReport", "check_source"]

DAY_S = 86400
PROBE_TILE = "check"  # the tile id of a check's probe block (and of an S1 item placed nowhere yet)


@dataclass(slots=True)
class CheckReport:
    """Lines of one source's check; ``ok`` is False as soon as one thing is missing."""

    source: str
    ok: bool = True
    lines: list[str] = field(default_factory=list)

    def good(self, text: str) -> None:
        self.lines.append(f"  ok       {text}")

    def bad(self, text: str) -> None:
        self.ok = False
        self.lines.append(f"  MISSING  {text}")


def _probe(href: str, options: dict[str, str]) -> tuple[str, float | None, str]:
    import rasterio

    with rasterio.Env(**options), rasterio.open(href) as ds:
        crs = f"EPSG:{ds.crs.to_epsg()}" if ds.crs else "no CRS"
        return ds.dtypes[0], ds.nodata, f"{ds.dtypes[0]} {ds.width}x{ds.height} {crs} {ds.count} band(s)"


def probe_grid(item: dict[str, Any], size_px: int = 32) -> TileGrid:
    """A ``size_px`` square of 10 m pixels at the centre of the item's footprint, in its CRS (else its UTM zone)."""
    import shapely
    from rasterio.warp import transform_geom

    footprint = shapely.geometry.shape(item["geometry"]) if item.get("geometry") else shapely.box(*item["bbox"])
    centre = footprint.centroid
    epsg = epsg_of_item(item) or (32600 if centre.y >= 0 else 32700) + int((centre.x + 180) // 6) + 1
    x, y = transform_geom("EPSG:4326", f"EPSG:{epsg}", shapely.geometry.mapping(centre))["coordinates"]
    x0, y0 = math.floor(x / 10) * 10.0, math.floor(y / 10) * 10.0
    return TileGrid(PROBE_TILE, epsg, 10.0, (x0, y0, x0 + 10.0 * size_px, y0 + 10.0 * size_px))


def check_source(source: Any, collections: tuple[str, ...], day_s: int,
                 bbox: tuple[float, float, float, float] | None = None) -> CheckReport:
    """Check ``source`` on the UTC day starting at ``day_s`` (seconds) for each collection."""
    dialect = dialect_named(getattr(source, "dialect", None))
    report = CheckReport(source.name)
    report.lines.append(f"{source.name} ({dialect.name} dialect)")
    for collection in tuple(getattr(source, "collections", ()) or ()) or collections:
        try:
            check_collections(dialect, [collection], f"source {source.name}")
        except ConfigError as e:
            report.bad(f"{collection}: refused: {e}")
            continue
        try:
            found = iter(source.search(collection, bbox, day_s, day_s + DAY_S - 1))
            raw = next(found, None)
        except IngestError as e:
            report.bad(f"{collection}: search failed: {e}")
            continue
        if raw is None:
            report.bad(f"{collection}: no item on that day")
            continue
        placed = ""
        if isinstance(raw, dict) and tile_of_item(raw) is None and sensor_of_collection(collection) is Sensor.S1:
            raw, placed = item_on_tile(raw, PROBE_TILE), ", no MGRS tile: placed on tiles by footprint when polled"
        try:
            info = parse_item(raw, dialect)
            resolved = resolve_assets(raw, info.sensor, dialect)
        except ItemError as e:
            report.bad(f"{collection}: {e}")
            continue
        report.good(f"{collection}: item {info.item_id} (tile {info.tile_id}{placed})")
        sign, fetch = getattr(source, "sign_item", None), getattr(source, "fetch_item", None)
        try:
            signed = sign(raw) if sign else raw
            if fetch:  # pixels from a service (Sentinel Hub Process API): ask for a small block of the scene
                signed = fetch(signed, probe_grid(signed))
                resolved = resolve_assets(signed, info.sensor, dialect)
        except (ItemError, AssetError) as e:  # a signing step that fails (S3 credentials not set)
            report.bad(f"{collection}: {e}")
            continue
        for band, asset in resolved.items():
            href = str(signed["assets"][asset.key]["href"])
            scaling = f", scale {asset.scale:g} offset {asset.offset:g}" if band[0] == "B" else ""
            try:
                dtype, nodata, what = _probe(href, read_options(signed)[0])
            except Exception as e:  # noqa: BLE001 - rasterio raises RasterioIOError and friends
                report.bad(f"{band} = asset {asset.key}: unreadable ({asset.href}): {' '.join(str(e).split())[:160]}")
                continue
            wrong = contradiction(asset, dtype, nodata)
            if wrong:
                report.bad(f"{band} = {wrong}")
            else:
                report.good(f"{band} = asset {asset.key}: {what}{scaling}")
    return report
