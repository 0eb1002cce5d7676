"""``sitsmon ingest check``: does a configured source give what ingest needs?

Per collection: the configuration check (an uncalibrated S1 collection is refused), a search of one
UTC day, and for the first item found: parse it, resolve every band by meaning in the source's
dialect, sign it when the source signs, and open each asset's header (data type, size, CRS, and
whether the file contradicts its ``raster:bands``). Every line says what was found or exactly what is
missing; nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ingest.assets import check_collections, dialect_named, resolve_assets
from ingest.errors import ConfigError, IngestError, ItemError
from ingest.items import parse_item
from ingest.load import GDAL_OPTIONS, contradiction

__all__ = ["CheckReport", "check_source"]

DAY_S = 86400


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


def _probe(href: str) -> tuple[str, float | None, str]:
    import rasterio

    with rasterio.Env(**GDAL_OPTIONS), rasterio.open(href) as ds:
        crs = f"EPSG:{ds.crs.to_epsg()}" if ds.crs else "no CRS"
        return ds.dtypes[0], ds.nodata, f"{ds.dtypes[0]} {ds.width}x{ds.height} {crs} {ds.count} band(s)"


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
        try:
            info = parse_item(raw, dialect)
            resolved = resolve_assets(raw, info.sensor, dialect)
        except ItemError as e:
            report.bad(f"{collection}: {e}")
            continue
        report.good(f"{collection}: item {info.item_id} (tile {info.tile_id})")
        sign = getattr(source, "sign_item", None)
        try:
            signed = sign(raw) if sign else raw
        except ItemError as e:
            report.bad(f"{collection}: {e}")
            continue
        for band, asset in resolved.items():
            href = str(signed["assets"][asset.key]["href"])
            scaling = f", scale {asset.scale:g} offset {asset.offset:g}" if band[0] == "B" else ""
            try:
                dtype, nodata, what = _probe(href)
            except Exception as e:  # noqa: BLE001 - rasterio raises RasterioIOError and friends
                report.bad(f"{band} = asset {asset.key}: unreadable ({asset.href}): {' '.join(str(e).split())[:160]}")
                continue
            wrong = contradiction(asset, dtype, nodata)
            if wrong:
                report.bad(f"{band} = {wrong}")
            else:
                report.good(f"{band} = asset {asset.key}: {what}{scaling}")
    return report
