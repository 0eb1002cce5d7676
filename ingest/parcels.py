"""The LPIS-like parcel layer: reading, checking, and the per-tile parcel-id raster.

Invalid geometries are repaired with ``make_valid`` (kept when the repair leaves an area) or rejected;
empty geometries, empty or duplicate ids are rejected. Every decision is in the :class:`ParcelReport`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ingest.errors import ParcelLayerError
from ingest.types import TileGrid

logger = logging.getLogger(__name__)

ID_COLUMN = "parcel_id"


@dataclass(frozen=True, slots=True)
class ParcelReport:
    """What happened to each problem parcel: ``rejected`` and ``repaired`` list (row, parcel_id, reason)."""

    path: str
    total: int
    kept: int
    repaired: tuple[tuple[int, str, str], ...] = field(default_factory=tuple)
    rejected: tuple[tuple[int, str, str], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.kept > self.total:
            raise ValueError(f"kept {self.kept} > total {self.total}")

    def lines(self) -> list[str]:
        out = [f"{self.path}: {self.total} parcels, {self.kept} kept, {len(self.repaired)} repaired, "
               f"{len(self.rejected)} rejected"]
        out += [f"  repaired row {r} ({pid}): {why}" for r, pid, why in self.repaired]
        out += [f"  rejected row {r} ({pid or '<empty id>'}): {why}" for r, pid, why in self.rejected]
        return out


def read_parcels(path: str | Path, id_column: str = ID_COLUMN):
    """Read a GeoParquet / GeoPackage / GeoJSON parcel layer; returns (GeoDataFrame in its CRS, report)."""
    import geopandas as gpd
    import shapely

    p = Path(path)
    try:
        if p.suffix.lower() in (".parquet", ".geoparquet"):
            gdf = gpd.read_parquet(p)
        else:
            gdf = gpd.read_file(p)
    except Exception as e:  # noqa: BLE001 - pyogrio/pyarrow raise many kinds
        raise ParcelLayerError(f"cannot read parcel layer {p}: {' '.join(str(e).split())[:200]}") from e
    if not isinstance(gdf, gpd.GeoDataFrame) or not _has_geometry(gdf):
        raise ParcelLayerError(f"parcel layer {p} has no geometry (a plain table?): give GeoParquet, GeoPackage "
                               "or GeoJSON with parcel polygons and a CRS")
    if id_column not in gdf.columns:
        raise ParcelLayerError(f"parcel layer {p} has no {id_column!r} column (columns: {list(gdf.columns)})")
    if gdf.crs is None:
        raise ParcelLayerError(f"parcel layer {p} has no CRS")
    total = len(gdf)
    ids = gdf[id_column].astype("string").str.strip()
    gdf = gdf.assign(**{id_column: ids})
    repaired: list[tuple[int, str, str]] = []
    rejected: list[tuple[int, str, str]] = []
    keep = np.ones(total, dtype=bool)
    geoms = gdf.geometry.values
    new_geoms = list(geoms)
    counts = ids.value_counts(dropna=True)
    for row in range(total):
        pid = "" if ids.iloc[row] is None or ids.isna().iloc[row] else str(ids.iloc[row])
        geom = geoms[row]
        if not pid:
            rejected.append((row, pid, "empty parcel id"))
            keep[row] = False
            continue
        if counts.get(pid, 0) > 1:
            rejected.append((row, pid, f"duplicate parcel id ({counts[pid]} rows)"))
            keep[row] = False
            continue
        if geom is None or geom.is_empty:
            rejected.append((row, pid, "empty geometry"))
            keep[row] = False
            continue
        if not geom.is_valid:
            why = shapely.is_valid_reason(geom)
            fixed = shapely.make_valid(geom)
            polys = shapely.get_parts(fixed)
            polys = [g for g in polys if g.geom_type in ("Polygon", "MultiPolygon") and g.area > 0]
            if not polys:
                rejected.append((row, pid, f"invalid geometry ({why}) without area after repair"))
                keep[row] = False
                continue
            new_geoms[row] = shapely.union_all(polys)
            repaired.append((row, pid, f"invalid geometry repaired with make_valid ({why})"))
        elif geom.geom_type not in ("Polygon", "MultiPolygon"):
            rejected.append((row, pid, f"geometry is a {geom.geom_type}, not a polygon"))
            keep[row] = False
    gdf = gdf.set_geometry(gpd.GeoSeries(new_geoms, crs=gdf.crs, index=gdf.index))
    gdf = gdf[keep].reset_index(drop=True)
    report = ParcelReport(str(p), total, len(gdf), tuple(repaired), tuple(rejected))
    for line in report.lines()[1:]:
        logger.warning(line)
    if len(gdf) == 0:
        raise ParcelLayerError(f"parcel layer {p}: no usable parcel; " + "; ".join(report.lines()[1:6]))
    return gdf, report


def _has_geometry(gdf) -> bool:
    try:
        gdf.geometry  # noqa: B018 - geopandas raises AttributeError when no geometry column is active
    except AttributeError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class ParcelRaster:
    """Parcel index raster on a tile grid: ``labels`` (y, x) int32, 0 = none, i = ``parcel_ids[i-1]``."""

    tile_id: str
    labels: np.ndarray
    parcel_ids: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.labels.ndim != 2 or self.labels.dtype != np.int32:
            raise ValueError(f"labels must be (y, x) int32, got {self.labels.shape} {self.labels.dtype}")
        if self.labels.size and self.labels.max() > len(self.parcel_ids):
            raise ValueError(f"labels reach {self.labels.max()} but only {len(self.parcel_ids)} parcel ids")


def rasterize_parcels(gdf, grid: TileGrid, id_column: str = ID_COLUMN) -> ParcelRaster:
    """Burn the parcels that touch the tile onto its grid (pixel centres; later rows win overlaps)."""
    from affine import Affine
    from rasterio.features import rasterize

    local = gdf.to_crs(epsg=grid.epsg)
    xmin, ymin, xmax, ymax = grid.bounds
    local = local[local.intersects(__import__("shapely").box(xmin, ymin, xmax, ymax))]
    ids = tuple(str(v) for v in local[id_column])
    if not ids:
        return ParcelRaster(grid.tile_id, np.zeros(grid.shape, dtype=np.int32), ())
    shapes = ((geom, i + 1) for i, geom in enumerate(local.geometry.values))
    labels = rasterize(shapes, out_shape=grid.shape, transform=Affine(*grid.transform), fill=0, dtype="int32")
    return ParcelRaster(grid.tile_id, labels.astype(np.int32), ids)
