"""Loading STAC items onto a tile's fixed grid with stackstac, and turning them into cube values.

S2: reflectance DN -> stored uint16 ``round(reflectance / 1e-4)`` using each band's scale and offset
(``raster:bands``; else the processing baseline: offset -0.1 from 04.00 on), 0 = no data, negative
reflectance clipped to 1 (0.0001); clear mask from SCL. S1: linear backscatter float32, NaN = no data.
Same-slot items are mosaicked per pixel: S2 takes the first clear pixel (items ordered by cloud
cover, then id), else the first pixel with data; S1 the first finite value.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ingest.assets import Dialect, ResolvedAsset, raster_band, resolve_assets
from ingest.assets import scale_offset as scale_offset_of
from ingest.errors import AssetError, ItemError
from ingest.grid import grid_bbox_4326
from ingest.types import (
    REFLECTANCE_SCALE,
    S2_BANDS,
    SCL_CLEAR,
    ItemInfo,
    Sensor,
    TileGrid,
)

logger = logging.getLogger(__name__)

_CLEAR_LUT = np.zeros(256, dtype=np.uint8)
_CLEAR_LUT[list(SCL_CLEAR)] = 1


@dataclass(frozen=True, slots=True)
class LoadedItem:
    """An item checked against the tile grid, with its lazy stackstac array (1, asset, y, x)."""

    info: ItemInfo
    item: dict[str, Any]
    array: Any  # xarray.DataArray backed by dask
    scale: tuple[float, ...]  # per S2 band
    offset: tuple[float, ...]


def resolve_hrefs(item: dict[str, Any], asset_root: str | Path | None) -> dict[str, Any]:
    """A copy of the item whose relative asset hrefs are resolved against ``asset_root`` (a folder or URL)."""
    out = dict(item)
    assets = {}
    for key, asset in (item.get("assets") or {}).items():
        asset = dict(asset)
        href = str(asset.get("href", ""))
        if href and asset_root and "://" not in href and not href.startswith("/"):
            root = str(asset_root)
            asset["href"] = f"{root.rstrip('/')}/{href}" if "://" in root else str(Path(root) / href)
        assets[key] = asset
    out["assets"] = assets
    return out


def _scale_offset(info: ItemInfo, asset: dict[str, Any]) -> tuple[float, float]:
    """Scale and offset of one S2 reflectance asset (``ingest.assets`` has the rules)."""
    item = {"id": info.item_id, "properties": {"s2:processing_baseline": info.baseline}}
    return scale_offset_of(item, S2_BANDS[0], raster_band(asset))


def _intersects(a: Sequence[float], b: Sequence[float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def check_item(info: ItemInfo, item: dict[str, Any], grid: TileGrid,
               resolved: dict[str, ResolvedAsset] | None = None) -> None:
    """Metadata checks against the tile grid: CRS and footprint. :class:`ItemError` on mismatch."""
    if info.tile_id != grid.tile_id:
        raise ItemError(f"item {info.item_id}: tile {info.tile_id} is not tile {grid.tile_id}")
    if info.epsg is not None and info.epsg != grid.epsg:
        raise ItemError(f"item {info.item_id}: CRS EPSG:{info.epsg} differs from tile {grid.tile_id} grid EPSG:{grid.epsg}")
    if not _intersects(info.bbox, grid_bbox_4326(grid)):
        raise ItemError(f"item {info.item_id}: footprint {list(info.bbox)} lies outside tile {grid.tile_id}")
    resolved = resolved if resolved is not None else resolve_assets(item, info.sensor)
    for name, found in resolved.items():
        asset = item["assets"][found.key]
        transform, shape = asset.get("proj:transform"), asset.get("proj:shape")
        if transform and shape:
            a, _, c, _, e, f = (float(v) for v in transform[:6])
            h, w = (int(v) for v in shape)
            bounds = (c, f + e * h, c + a * w, f)
            if not _intersects(bounds, grid.bounds):
                raise ItemError(f"item {info.item_id}: asset {name} bounds {bounds} lie outside tile {grid.tile_id}")


GDAL_OPTIONS = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
                "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.jp2,.JP2",
                "GDAL_HTTP_MAX_RETRY": "2", "GDAL_HTTP_RETRY_DELAY": "0.5"}
#: Item key a source's signing step sets (``ingest.sources.configured``: a CDSE S3 endpoint) to
#: ``{"source": name, "endpoint": url, "gdal": {option: value}}``: the GDAL options its assets are read
#: with, headers and pixels alike. No secret goes in (GDAL reads the credentials from the environment), and
#: the ledger keeps the item as searched, without it.
READ_ENV = "sitsmon:read_env"


def read_options(item: dict[str, Any]) -> tuple[dict[str, str], str]:
    """The GDAL options to read ``item``'s assets with, and where they come from (for error messages)."""
    env = item.get(READ_ENV) or {}
    where = f" from source {env.get('source')} at {env.get('endpoint')}" if env else ""
    return {**GDAL_OPTIONS, **env.get("gdal", {})}, where


def contradiction(found: ResolvedAsset, dtype: str, nodata: float | None) -> str | None:
    """What the file contradicts in the asset's raster:bands (data type, nodata), else None.

    raster:bands is what scale and offset were read from: a file that contradicts it is not trusted.
    """
    if found.data_type is not None and found.data_type != dtype:
        return f"asset {found.key} raster:bands says data_type {found.data_type}, the file holds {dtype}"
    if found.nodata is not None and nodata is not None and not (
            found.nodata == nodata or (np.isnan(found.nodata) and np.isnan(nodata))):
        return f"asset {found.key} raster:bands says nodata {found.nodata}, the file says {nodata}"
    return None


def _open_asset(info: ItemInfo, found: ResolvedAsset, grid: TileGrid, options: dict[str, str], where: str) -> None:
    import rasterio

    name, href = found.key, found.href
    try:
        with rasterio.Env(**options), rasterio.open(href) as ds:
            epsg = ds.crs.to_epsg() if ds.crs else None
            count = ds.count
            dtype, nodata = ds.dtypes[0], ds.nodata
    except Exception as e:  # noqa: BLE001 - rasterio raises RasterioIOError and friends
        raise AssetError(f"item {info.item_id}: asset {name} unreadable ({href}{where}): {' '.join(str(e).split())[:200]}") from e
    if epsg != grid.epsg:
        raise ItemError(f"item {info.item_id}: asset {name} is in EPSG:{epsg}, tile {grid.tile_id} grid is EPSG:{grid.epsg}")
    if count != 1:
        raise AssetError(f"item {info.item_id}: asset {name} has {count} bands, expected 1")
    wrong = contradiction(found, dtype, nodata)
    if wrong:
        raise ItemError(f"item {info.item_id}: {wrong}")


def load_item(info: ItemInfo, item: dict[str, Any], grid: TileGrid, chunk: tuple[int, int],
              asset_root: str | Path | None = None, open_assets: bool = True,
              dialect: Dialect | str | None = None) -> LoadedItem:
    """Check the item and set up its lazy array on the tile grid (nothing is read but asset headers).

    The bands are found by meaning in ``dialect`` (``ingest.assets``); the array's assets are the
    canonical names (B02..B12, SCL; vv, vh) whatever the catalogue calls them.
    """
    import stackstac

    item = resolve_hrefs(item, asset_root)
    resolved = resolve_assets(item, info.sensor, dialect)
    check_item(info, item, grid, resolved)
    names = list(resolved)
    options, where = read_options(item)
    if open_assets:  # headers in parallel (GDAL releases the GIL); errors name the asset
        with ThreadPoolExecutor(min(8, len(names))) as pool:
            for f in [pool.submit(_open_asset, info, resolved[n], grid, options, where) for n in names]:
                f.result()
    s2 = info.sensor is Sensor.S2
    # stackstac reads proj:epsg; give it a minimal item so pystac-style rewrites cannot interfere.
    clean = {
        "type": "Feature", "stac_version": item.get("stac_version", "1.0.0"), "id": info.item_id,
        "bbox": list(info.bbox), "geometry": item.get("geometry"), "links": [],
        "properties": {"datetime": item["properties"].get("datetime") or item["properties"].get("start_datetime"),
                       "proj:epsg": grid.epsg},
        "assets": {n: {"href": resolved[n].href, "type": item["assets"][resolved[n].key].get("type", "image/tiff")}
                   for n in names},
    }
    try:
        array = stackstac.stack(
            [clean], assets=names, epsg=grid.epsg, resolution=grid.resolution, bounds=grid.bounds,
            snap_bounds=False, dtype=np.dtype("uint16") if s2 else np.dtype("float32"),
            fill_value=np.uint16(0) if s2 else np.float32(np.nan), rescale=False, properties=False, band_coords=False,
            chunksize=chunk, errors_as_nodata=(), sortby_date=False, gdal_env=_stackstac_env(item),
        )
    except (ValueError, KeyError) as e:
        raise ItemError(f"item {info.item_id}: cannot place on tile {grid.tile_id} grid: {e}") from e
    if tuple(array.shape[-2:]) != grid.shape:
        raise ItemError(f"item {info.item_id}: loaded shape {array.shape[-2:]} is not the tile grid {grid.shape}")
    scale = tuple(resolved[b].scale for b in S2_BANDS) if s2 else ()
    offset = tuple(resolved[b].offset for b in S2_BANDS) if s2 else ()
    return LoadedItem(info, item, array, scale, offset)


def _stackstac_env(item: dict[str, Any]) -> Any:
    """stackstac's default GDAL environment, plus the source's options (an S3 endpoint) where it set some."""
    from stackstac.rio_reader import DEFAULT_GDAL_ENV

    extra = (item.get(READ_ENV) or {}).get("gdal")
    return DEFAULT_GDAL_ENV.updated(always=extra) if extra else None


def read_block(loaded: LoadedItem, window: tuple[int, int, int, int]) -> np.ndarray:
    """The raw asset values of one window: (asset, h, w)."""
    y0, y1, x0, x1 = window
    try:
        return np.asarray(loaded.array.data[0, :, y0:y1, x0:x1].compute(scheduler="threads"))
    except Exception as e:  # noqa: BLE001 - GDAL/rasterio/dask errors of a corrupt or truncated asset
        raise AssetError(
            f"item {loaded.info.item_id}: reading window {window} failed: {' '.join(str(e).split())[:240]}"
        ) from e


def s2_values(raw: np.ndarray, scale: Sequence[float], offset: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """raw (10 bands + SCL, h, w) DN -> (stored uint16 (10, h, w), clear uint8 (h, w)).

    stored = round((DN * scale + offset) / 1e-4), clipped to 1..65535 where DN > 0; 0 where DN == 0.
    """
    dn = raw[: len(S2_BANDS)]
    scl = raw[len(S2_BANDS)]
    out = np.empty(dn.shape, dtype=np.uint16)
    for b in range(dn.shape[0]):
        band = dn[b]
        if abs(scale[b] - REFLECTANCE_SCALE) < 1e-12:
            shift = int(round(offset[b] / REFLECTANCE_SCALE))
            v = band.astype(np.int32)
            v += shift
        else:
            v = np.rint((band.astype(np.float64) * scale[b] + offset[b]) / REFLECTANCE_SCALE)
        np.clip(v, 1, 65535, out=v)
        out[b] = v
        out[b][band == 0] = 0
    clear = _CLEAR_LUT[np.minimum(scl, 255).astype(np.uint8)]
    clear &= (out != 0).all(axis=0).astype(np.uint8)
    return out, clear


def mosaic_s2(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Per pixel, the first clear part, else the first part with data. Returns values, clear, valid pixels per part."""
    values, clear = parts[0][0].copy(), parts[0][1].copy()
    counts = [int(np.count_nonzero((parts[0][0] != 0).any(axis=0)))]
    for v, c in parts[1:]:
        has = (v != 0).any(axis=0)
        counts.append(int(np.count_nonzero(has)))
        take = ((clear == 0) & (c == 1)) | (~(values != 0).any(axis=0) & has)
        values[:, take] = v[:, take]
        clear[take] = c[take]
    return values, clear, counts


def mosaic_s1(parts: list[np.ndarray]) -> tuple[np.ndarray, list[int]]:
    """Per pixel, the first part with finite values. Returns values, valid pixels per part."""
    values = parts[0].astype(np.float32, copy=True)
    counts = [int(np.count_nonzero(np.isfinite(parts[0]).all(axis=0)))]
    for v in parts[1:]:
        ok = np.isfinite(v).all(axis=0)
        counts.append(int(np.count_nonzero(ok)))
        take = ~np.isfinite(values).all(axis=0) & ok
        values[:, take] = v[:, take]
    return values, counts


def s1_values(raw: np.ndarray) -> np.ndarray:
    """raw (vv, vh) -> float32 linear power; non-finite and negative values become NaN."""
    v = raw.astype(np.float32, copy=True)
    v[~np.isfinite(v) | (v < 0)] = np.nan
    return v

