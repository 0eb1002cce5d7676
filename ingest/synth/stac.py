"""STAC Collections and Items of the synthetic archive, as docs/archive-format.md fixes them."""

from __future__ import annotations

from datetime import date, datetime

from ingest.synth.grid import Acquisition, TileGrid
from ingest.synth.phenology import BANDS, BANDS_10M, COMMON_NAME, WAVELENGTH_UM
from ingest.synth.sentinel2 import OFFSET, PROCESSING_BASELINE, SCALE

__all__ = ["S2_COLLECTION", "S1_COLLECTION", "COG_TYPE", "stac_item", "collection", "iso_z"]

S2_COLLECTION = "sentinel-2-l2a"
S1_COLLECTION = "sentinel-1-grd"
COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
STAC_VERSION = "1.0.0"
_EXT = {
    "eo": "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "proj": "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
    "raster": "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "sat": "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
    "sar": "https://stac-extensions.github.io/sar/v1.0.0/schema.json",
    "mgrs": "https://stac-extensions.github.io/mgrs/v1.0.0/schema.json",
    "grid": "https://stac-extensions.github.io/grid/v1.1.0/schema.json",
    "view": "https://stac-extensions.github.io/view/v1.0.0/schema.json",
    "s2": "https://stac-extensions.github.io/sentinel-2/v1.0.0/schema.json",
}


def iso_z(t: datetime) -> str:
    """UTC time as ISO 8601 with a Z, to the second."""
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _common(tile: TileGrid, acq: Acquisition, published: datetime, created: datetime) -> dict:
    """The properties every item has, whatever its sensor."""
    return {
        "datetime": iso_z(acq.datetime),
        "platform": acq.platform,
        "constellation": "sentinel-2" if acq.sensor == "S2" else "sentinel-1",
        "proj:code": f"EPSG:{tile.epsg}",
        "proj:epsg": tile.epsg,
        "grid:code": f"MGRS-{tile.tile_id}",
        "mgrs:utm_zone": tile.utm_zone,
        "mgrs:latitude_band": tile.latitude_band,
        "mgrs:grid_square": tile.grid_square,
        "published": iso_z(published),
        "created": iso_z(created),
        "updated": iso_z(published),
        "sat:relative_orbit": acq.relative_orbit,
        "sat:absolute_orbit": acq.absolute_orbit,
        "sat:orbit_state": acq.orbit_state,
    }


def s2_item_id(tile: TileGrid, acq: Acquisition) -> str:
    return f"S2{acq.platform[-1].upper()}_{tile.tile_id}_{acq.datetime:%Y%m%d}_0_L2A"


def s1_item_id(tile: TileGrid, acq: Acquisition) -> str:
    return f"S1A_IW_GRDH_{acq.datetime:%Y%m%dT%H%M%S}_{tile.tile_id}_{acq.orbit_state[0].upper()}{acq.relative_orbit:03d}"


def stac_item(
    tile: TileGrid,
    acq: Acquisition,
    footprint: dict,
    bbox: list[float],
    published: datetime,
    created: datetime,
    cloud_cover: float = 0.0,
    sun: tuple[float, float] = (0.0, 0.0),
) -> dict:
    """The item of one acquisition: the properties every item has, and the sensor's own. Sentinel-2
    L2A: one COG asset per band at native resolution plus SCL at 20 m (``cloud_cover`` in %, ``sun``:
    azimuth and elevation in degrees). Sentinel-1 on the tile grid (terrain-corrected, as
    sentinel-1-rtc): vv and vh linear power."""
    if acq.sensor == "S2":
        item_id, collection_id = s2_item_id(tile, acq), S2_COLLECTION
        extensions = ("eo", "proj", "raster", "sat", "mgrs", "grid", "view", "s2")
        props, assets = _s2_properties(tile, cloud_cover, sun), _s2_assets(tile, item_id)
    else:
        item_id, collection_id = s1_item_id(tile, acq), S1_COLLECTION
        extensions = ("proj", "raster", "sat", "sar", "mgrs", "grid")
        props, assets = _s1_properties(), _s1_assets(tile, item_id)
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": [_EXT[k] for k in extensions],
        "id": item_id,
        "collection": collection_id,
        "geometry": footprint,
        "bbox": bbox,
        "properties": {**_common(tile, acq, published, created), **props},
        "links": [],
        "assets": assets,
    }


def _s2_properties(tile: TileGrid, cloud_cover: float, sun: tuple[float, float]) -> dict:
    return {
        "instruments": ["msi"],
        "eo:cloud_cover": round(float(cloud_cover), 2),
        "s2:processing_baseline": PROCESSING_BASELINE,
        "s2:mgrs_tile": tile.tile_id,
        "s2:product_type": "S2MSI2A",
        "view:sun_azimuth": round(sun[0], 2),
        "view:sun_elevation": round(sun[1], 2),
    }


def _s1_properties() -> dict:
    return {
        "instruments": ["c-sar"],
        "sar:polarizations": ["VV", "VH"],
        "sar:instrument_mode": "IW",
        "sar:product_type": "GRD",
        "sar:frequency_band": "C",
        "sar:center_frequency": 5.405,
        "s1:resolution": "high",
    }


def _s2_assets(tile: TileGrid, item_id: str) -> dict:
    assets = {}
    for band in (*BANDS, "SCL"):
        res = 10 if band in BANDS_10M else 20
        factor = res // int(tile.resolution)
        asset = {
            "href": f"data/{S2_COLLECTION}/{tile.tile_id}/{item_id}/{band}.tif",
            "type": COG_TYPE,
            "roles": ["data"],
            "gsd": res,
            "proj:shape": [tile.size // factor, tile.size // factor],
            "proj:transform": list(tile.transform(factor)),
        }
        if band == "SCL":
            asset["title"] = "Scene classification map (SCL)"
            asset["raster:bands"] = [{"data_type": "uint8", "nodata": 0, "spatial_resolution": res}]
        else:
            asset["title"] = f"{band} - {COMMON_NAME[band]}"
            asset["raster:bands"] = [
                {
                    "data_type": "uint16",
                    "nodata": 0,
                    "scale": SCALE,
                    "offset": OFFSET,
                    "spatial_resolution": res,
                }
            ]
            asset["eo:bands"] = [
                {"name": band, "common_name": COMMON_NAME[band], "center_wavelength": WAVELENGTH_UM[band]}
            ]
        assets[band] = asset
    return assets


def _s1_assets(tile: TileGrid, item_id: str) -> dict:
    assets = {}
    for pol in ("vv", "vh"):
        assets[pol] = {
            "href": f"data/{S1_COLLECTION}/{tile.tile_id}/{item_id}/{pol}.tif",
            "type": COG_TYPE,
            "roles": ["data"],
            "title": f"{pol.upper()} backscatter, linear power (gamma0, terrain-corrected)",
            "gsd": int(tile.resolution),
            "proj:shape": [tile.size, tile.size],
            "proj:transform": list(tile.transform(1)),
            "raster:bands": [
                {"data_type": "float32", "nodata": "nan", "spatial_resolution": int(tile.resolution)}
            ],
        }
    return assets


def collection(collection_id: str, bbox: list[float], start: date, end: date) -> dict:
    """STAC Collection covering the archive's tiles and dates."""
    if collection_id == S2_COLLECTION:
        desc = "Synthetic Sentinel-2 Level-2A surface reflectance (sitsmon synth): COGs per band, SCL."
        summaries = {
            "platform": ["sentinel-2a", "sentinel-2b"],
            "constellation": ["sentinel-2"],
            "instruments": ["msi"],
            "gsd": [10, 20],
            "eo:bands": [
                {"name": b, "common_name": COMMON_NAME[b], "center_wavelength": WAVELENGTH_UM[b]}
                for b in BANDS
            ],
        }
        exts = [_EXT["eo"], _EXT["proj"], _EXT["raster"]]
    elif collection_id == S1_COLLECTION:
        desc = "Synthetic Sentinel-1 IW GRD backscatter (sitsmon synth), terrain-corrected on the tile grid: VV, VH."
        summaries = {
            "platform": ["sentinel-1a"],
            "constellation": ["sentinel-1"],
            "sar:polarizations": [["VV", "VH"]],
            "sar:instrument_mode": ["IW"],
            "sat:orbit_state": ["ascending", "descending"],
        }
        exts = [_EXT["sar"], _EXT["sat"], _EXT["proj"], _EXT["raster"]]
    else:
        raise ValueError(f"unknown collection {collection_id!r}")
    return {
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "stac_extensions": exts,
        "id": collection_id,
        "title": collection_id,
        "description": desc,
        "license": "proprietary",
        "keywords": ["synthetic", "sentinel", "sitsmon"],
        "providers": [{"name": "sitsmon synth", "roles": ["producer", "processor", "host"]}],
        "extent": {
            "spatial": {"bbox": [bbox]},
            "temporal": {"interval": [[f"{start.isoformat()}T00:00:00Z", f"{end.isoformat()}T23:59:59Z"]]},
        },
        "summaries": summaries,
        "links": [],
    }
