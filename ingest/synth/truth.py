"""Geometry and ground truth of a tile: footprint, unit raster, parcel tables, solar sites (EPSG:4326)."""

from __future__ import annotations

import json
from datetime import timedelta

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from rasterio import features
from rasterio.transform import Affine
from rasterio.warp import transform as warp_transform

from ingest.synth.config import SynthConfig
from ingest.synth.grid import TileGrid
from ingest.synth.world import TileWorld

__all__ = ["footprint", "rasterize_units", "parcels_4326", "round_geoms", "interchange_parcels", "solar_site_features"]


def footprint(tile: TileGrid) -> tuple[dict, list[float]]:
    xmin, ymin, xmax, ymax = tile.bounds
    ring = np.asarray(
        shapely.segmentize(shapely.box(xmin, ymin, xmax, ymax), (xmax - xmin) / 4).exterior.coords
    )
    xs, ys = warp_transform(f"EPSG:{tile.epsg}", "EPSG:4326", ring[:, 0], ring[:, 1])
    xs, ys = np.asarray(xs), np.asarray(ys)
    poly = shapely.Polygon(np.column_stack([np.round(xs, 7), np.round(ys, 7)]))
    poly = shapely.orient_polygons(poly) if hasattr(shapely, "orient_polygons") else poly
    b = [round(v, 7) for v in poly.bounds]
    return json.loads(shapely.to_geojson(poly)), b


def rasterize_units(world: TileWorld) -> np.ndarray:
    """Unit id (H, W) int32 raster: 0 margin, 1..N parcels, N+1.. background cells."""
    tile = world.tile
    n = len(world.layout.parcels)
    shapes = [(g, n + 1 + i) for i, g in enumerate(world.layout.background.geometry.values)]
    shapes += [(g, 1 + i) for i, g in enumerate(world.layout.parcels.geometry.values)]
    return features.rasterize(
        shapes, out_shape=tile.shape, transform=Affine(*tile.transform()), fill=0, dtype="int32"
    )


def parcels_4326(world: TileWorld) -> gpd.GeoDataFrame:
    p = world.layout.parcels.copy()
    p.insert(3, "declared_practice", world.management.declared_practice)
    return p.to_crs(4326)


def round_geoms(geoms: np.ndarray, digits: int = 7) -> np.ndarray:
    return shapely.transform(geoms, lambda c: np.round(c, digits))


def interchange_parcels(parcels: gpd.GeoDataFrame) -> pd.DataFrame:
    cent = parcels.to_crs(parcels.estimate_utm_crs()).centroid.to_crs(4326)
    geoms = round_geoms(parcels.geometry.values)
    return pd.DataFrame(
        {
            "parcel_id": parcels["parcel_id"].to_numpy(),
            "land_use": parcels["land_use"].to_numpy(),
            "lon": np.round(cent.x.to_numpy(), 6),
            "lat": np.round(cent.y.to_numpy(), 6),
            "geometry": shapely.to_geojson(geoms),
        }
    )


def solar_site_features(config: SynthConfig, world: TileWorld) -> list[dict]:
    """GeoJSON features (EPSG:4326) of the tile's solar installations, in and outside parcels."""
    tile = world.tile
    mg = world.management
    n = len(world.layout.parcels)
    site_features = []
    for s in mg.solar_sites.itertuples():
        geom = (
            world.layout.parcels.geometry.iat[s.unit - 1]
            if s.unit <= n
            else world.layout.background.geometry.iat[s.unit - n - 1]
        )
        geom = shapely.transform(
            geom,
            lambda c: np.column_stack(warp_transform(f"EPSG:{tile.epsg}", "EPSG:4326", c[:, 0], c[:, 1])),
        )
        geom = round_geoms(np.array([geom]))[0]
        last = config.n_days - 1
        site_features.append(
            {
                "type": "Feature",
                "geometry": json.loads(shapely.to_geojson(geom)),
                "properties": {
                    "site_id": s.site_id,
                    "parcel_id": s.parcel_id or "",
                    "tile_id": s.tile_id,
                    "works_start": (config.start + timedelta(days=int(s.works_start))).isoformat(),
                    "works_end": (config.start + timedelta(days=int(s.works_end))).isoformat()
                    if s.works_end <= last
                    else None,
                },
            }
        )
    return site_features
