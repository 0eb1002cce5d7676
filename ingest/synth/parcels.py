"""The parcel layer of one tile: blocks between roads, fields as a Voronoi tessellation inside each block.

Blocks are a coarse Voronoi of jittered seeds (~1 km), shrunk by half a road width. Inside a block,
field seeds lie on a jittered lattice rotated and stretched per block (fields of one block share an
orientation and a typical size, drawn log-normally), so fields come out convex, mostly four- to
six-sided and elongated. Each field is shrunk by a hedge/ditch margin, fields over 20 ha are split
across their long axis, fields under 0.5 ha join the undeclared background, and a share of fields
becomes background cover (forest, water, urban, undeclared meadow).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import shapely
from shapely.geometry import box

from ingest.synth.config import MAX_PARCEL_HA, MIN_PARCEL_HA, SynthConfig, SynthConfigError
from ingest.synth.grid import TileGrid, rng_for

__all__ = ["Layout", "BACKGROUND_COVERS", "make_layout"]

logger = logging.getLogger(__name__)

BACKGROUND_COVERS = ("forest", "water", "urban", "meadow")
_BACKGROUND_WEIGHTS = (0.40, 0.10, 0.20, 0.30)
ROAD_HALF_WIDTH_M = 6.0


@dataclass(frozen=True, slots=True)
class Layout:
    """Polygons of one tile in its UTM CRS.

    ``parcels``: parcel_id, tile_id, land_use, area_ha, geometry (declared fields, sorted north to south).
    ``background``: cover (forest|water|urban|meadow), area_ha, geometry (undeclared land).
    """

    parcels: gpd.GeoDataFrame
    background: gpd.GeoDataFrame

    def __post_init__(self) -> None:
        if len(self.parcels) == 0:
            raise ValueError("a layout needs at least one parcel")


def _jittered_points(rng, bounds, spacing: float, jitter: float = 0.35) -> np.ndarray:
    xmin, ymin, xmax, ymax = bounds
    xs = np.arange(xmin + spacing / 2, xmax, spacing)
    ys = np.arange(ymin + spacing / 2, ymax, spacing)
    gx, gy = np.meshgrid(xs, ys)
    pts = np.column_stack([gx.ravel(), gy.ravel()])
    pts += rng.uniform(-jitter, jitter, pts.shape) * spacing
    return pts


def _voronoi(points: np.ndarray, extent) -> np.ndarray:
    mp = shapely.multipoints(points)
    cells = shapely.voronoi_polygons(mp, extend_to=extent, ordered=True)
    return np.asarray(shapely.get_parts(cells))


def _largest_part(geoms: np.ndarray) -> np.ndarray:
    out = geoms.copy()
    multi = shapely.get_num_geometries(geoms) > 1
    for i in np.flatnonzero(multi):
        parts = shapely.get_parts(geoms[i])
        out[i] = parts[np.argmax(shapely.area(parts))]
    return out


def _split_long_axis(poly):
    """Two halves of ``poly`` cut across its long axis through the centroid."""
    rect = shapely.minimum_rotated_rectangle(poly)
    xy = np.asarray(rect.exterior.coords)[:4]
    e1, e2 = xy[1] - xy[0], xy[2] - xy[1]
    long_axis = e1 if np.hypot(*e1) >= np.hypot(*e2) else e2
    u = long_axis / np.hypot(*long_axis)
    v = np.array([-u[1], u[0]])
    c = np.asarray(poly.centroid.coords[0])
    big = 1e5
    half_a = shapely.Polygon([c + v * big, c + v * big - u * big, c - v * big - u * big, c - v * big])
    half_b = shapely.Polygon([c + v * big, c + v * big + u * big, c - v * big + u * big, c - v * big])
    return [poly.intersection(half_a).buffer(-2.0), poly.intersection(half_b).buffer(-2.0)]


def _cells(rng, tile: TileGrid, n_seeds: int) -> np.ndarray:
    extent = box(*tile.bounds)
    size_m = tile.size * tile.resolution
    block_spacing = min(1100.0, size_m / 1.5)
    block_pts = _jittered_points(rng, tile.bounds, block_spacing)
    blocks = shapely.intersection(_voronoi(block_pts, extent), extent)
    blocks = shapely.buffer(blocks, -ROAD_HALF_WIDTH_M, join_style="mitre")
    blocks = blocks[~shapely.is_empty(blocks)]
    areas = shapely.area(blocks)
    scale = rng.lognormal(0.0, 0.45, len(blocks))
    # Per block mean cell area so that the seed counts add up to n_seeds.
    weights = areas / scale
    cell_area = scale * weights.sum() / n_seeds
    seeds, owner = [], []
    for b, blk in enumerate(blocks):
        theta = rng.uniform(0, math.pi)
        elong = rng.uniform(1.0, 2.6)
        dx, dy = math.sqrt(cell_area[b] * elong), math.sqrt(cell_area[b] / elong)
        minx, miny, maxx, maxy = blk.bounds
        cx, cy = (minx + maxx) / 2, (miny + maxy) / 2
        half = 0.5 * math.hypot(maxx - minx, maxy - miny) + max(dx, dy)
        us = np.arange(-half, half, dx)
        vs = np.arange(-half, half, dy)
        gu, gv = np.meshgrid(us, vs)
        gu = gu.ravel() + rng.uniform(-0.3, 0.3, gu.size) * dx
        gv = gv.ravel() + rng.uniform(-0.3, 0.3, gv.size) * dy
        x = cx + gu * math.cos(theta) - gv * math.sin(theta)
        y = cy + gu * math.sin(theta) + gv * math.cos(theta)
        inside = shapely.contains_xy(blk, x, y)
        if not inside.any():
            c = blk.representative_point()
            x, y, inside = np.array([c.x]), np.array([c.y]), np.array([True])
        seeds.append(np.column_stack([x[inside], y[inside]]))
        owner.append(np.full(int(inside.sum()), b))
    seeds_arr = np.concatenate(seeds)
    owner_arr = np.concatenate(owner)
    cells = _voronoi(seeds_arr, extent)
    cells = shapely.intersection(cells, blocks[owner_arr])
    hedge = rng.uniform(1.0, 2.5, len(cells))
    cells = shapely.buffer(cells, -hedge, join_style="mitre")
    cells = cells[~shapely.is_empty(cells)]
    cells = _largest_part(cells)
    # Split oversized fields until all are at most 20 ha.
    for _ in range(4):
        big = shapely.area(cells) > MAX_PARCEL_HA * 1e4
        if not big.any():
            break
        halves = [h for poly in cells[big] for h in _split_long_axis(poly)]
        cells = np.concatenate([cells[~big], _largest_part(np.asarray(halves, dtype=object))])
        cells = cells[~shapely.is_empty(cells)]
    return cells[shapely.area(cells) > 300.0]


def make_layout(config: SynthConfig, tile: TileGrid, n_parcels: int | None = None) -> Layout:
    """Parcels and background polygons of ``tile`` with exactly ``config.parcels_per_tile`` parcels."""
    n_parcels = config.parcels_per_tile if n_parcels is None else n_parcels
    rng = rng_for(config.seed, tile.index, "layout")
    tile_m2 = (tile.size * tile.resolution) ** 2
    # Enough cells for the parcels and the background, and none above ~8 ha on average.
    n_seeds = max(
        int(math.ceil(n_parcels / (1 - config.background_share) * 1.08)),
        int(math.ceil(tile_m2 / 8e4)),
        2,
    )
    for _attempt in range(6):
        cells = _cells(rng, tile, n_seeds)
        area_ha = shapely.area(cells) / 1e4
        valid = (area_ha >= MIN_PARCEL_HA) & (area_ha <= MAX_PARCEL_HA)
        if valid.sum() >= n_parcels:
            break
        n_seeds = int(math.ceil(n_seeds * 1.15 * max(1.0, n_parcels / max(valid.sum(), 1))))
    else:
        raise SynthConfigError(
            f"tile {tile.tile_id} of {tile.size}x{tile.size} px has room for only {int(valid.sum())} "
            f"parcels of {MIN_PARCEL_HA}-{MAX_PARCEL_HA} ha, not {n_parcels}"
        )
    valid_idx = np.flatnonzero(valid)
    chosen = np.sort(rng.choice(valid_idx, size=n_parcels, replace=False))
    is_parcel = np.zeros(len(cells), bool)
    is_parcel[chosen] = True
    # Order parcels north to south in 500 m bands, then west to east, for readable ids.
    cent = shapely.centroid(cells[chosen])
    cx, cy = shapely.get_x(cent), shapely.get_y(cent)
    order = np.lexsort((cx, -np.floor(cy / 500.0)))
    chosen = chosen[order]
    names = np.array([n for n, _ in config.land_use_shares])
    w = np.array([v for _, v in config.land_use_shares], float)
    land_use = rng.choice(names, size=n_parcels, p=w / w.sum())
    parcels = gpd.GeoDataFrame(
        {
            "parcel_id": [f"{tile.tile_id}-{i:06d}" for i in range(1, n_parcels + 1)],
            "tile_id": tile.tile_id,
            "land_use": land_use.astype(object),
            "area_ha": np.round(area_ha[chosen], 4),
        },
        geometry=gpd.GeoSeries(cells[chosen], crs=tile.epsg).values,
        crs=tile.epsg,
    )
    bg_cells = cells[~is_parcel]
    cover = rng.choice(np.array(BACKGROUND_COVERS), size=len(bg_cells), p=_BACKGROUND_WEIGHTS)
    background = gpd.GeoDataFrame(
        {"cover": cover.astype(object), "area_ha": np.round(shapely.area(bg_cells) / 1e4, 4)},
        geometry=gpd.GeoSeries(bg_cells, crs=tile.epsg).values,
        crs=tile.epsg,
    )
    logger.debug(
        "layout of %s: %d parcels, %d background cells",
        tile.tile_id,
        n_parcels,
        len(bg_cells),
        extra={"tile_id": tile.tile_id},
    )
    return Layout(parcels=parcels, background=background.reset_index(drop=True))
