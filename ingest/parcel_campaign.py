"""A parcel layer imported for one campaign, with a per-parcel report of what the monitor can do with it.

Declared parcels change every year (ids, outlines, land use), so a layer is imported for a campaign
(``<root>/<campaign>/``) and never overwrites another year's. The import reads and checks the layer
(``ingest.parcels.read_parcels``: empty or duplicate ids and empty or non-polygon geometries rejected,
invalid geometries repaired with ``make_valid``) and reports per parcel, rejected rows included:

- ``status`` ok | repaired | rejected, with the ``reason``;
- ``area_m2`` (in the layer's UTM zone);
- ``overlap_m2``: the area this parcel shares with the other parcels (their union, so three parcels
  over one spot are not counted twice), and ``overlap_ids`` (up to ten);
- ``s2_10m_pixels``, ``s2_20m_pixels``, ``s1_pixels``: the pixels lying fully inside the parcel on
  the 10 m and 20 m Sentinel-2 grids and the Sentinel-1 grid (``s1_resolution_m``, 20 m by default: the
  IW GRD-HR resolution): with the tile grids given (``grids``), on the grid of each tile the parcel falls
  in (its CRS, its origin; the most of any of its tiles, ``tiles`` naming them), else on grids aligned on
  multiples of the pixel size in the layer's UTM zone. A pixel is fully inside when no part of it lies
  outside the parcel (shapely ``contains``).

Written: ``parcels.parquet`` (GeoParquet of the kept parcels, in the layer's CRS, with ``campaign``,
``area_m2`` and the three pixel counts: the table the traffic light reads for "not analysable", see
``alerts.traffic_light.assess_frame``) and ``report.csv`` (every row of the layer). Both are written
aside and moved in place, so a failed import leaves the campaign's earlier files as they were.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ingest.errors import ParcelLayerError
from ingest.parcels import ID_COLUMN, read_parcels

__all__ = ["PIXEL_COLUMNS", "REPORT_COLUMNS", "CampaignImport", "campaign_dir", "import_campaign_layer",
           "pixels_inside"]

PIXEL_COLUMNS = ("s2_10m_pixels", "s2_20m_pixels", "s1_pixels")
REPORT_COLUMNS = ("row", "parcel_id", "campaign", "status", "reason", "area_m2", "overlap_m2", "overlap_ids",
                  *PIXEL_COLUMNS, "tiles")
_MAX_OVERLAP_IDS = 10


@dataclass(frozen=True, slots=True)
class CampaignImport:
    """Where the import wrote, and its counts."""

    campaign: int
    parcels_path: Path
    report_path: Path
    total: int
    kept: int
    repaired: int
    rejected: int
    overlapping: int  # kept parcels sharing area with another

    def to_dict(self) -> dict[str, Any]:
        return {"campaign": self.campaign, "parcels": str(self.parcels_path), "report": str(self.report_path),
                "total": self.total, "kept": self.kept, "repaired": self.repaired, "rejected": self.rejected,
                "overlapping": self.overlapping}


def campaign_dir(root: str | Path, campaign: int) -> Path:
    return Path(root) / f"{int(campaign):04d}"


def pixels_inside(geom: Any, resolution_m: float, origin: tuple[float, float] = (0.0, 0.0)) -> int:
    """Pixels of a ``resolution_m`` grid (pixel edges at ``origin`` plus multiples of it) lying fully
    inside ``geom`` (metric CRS).

    Vectorised: a pixel can be inside only if its centre and its four corners are (boundary counted as
    inside); those candidates are then tested exactly with ``shapely.contains`` (holes, spikes).
    """
    import shapely

    if geom is None or geom.is_empty:
        return 0
    minx, miny, maxx, maxy = geom.bounds
    ox, oy = origin
    xs = np.arange(ox + math.floor((minx - ox) / resolution_m) * resolution_m, maxx, resolution_m)
    ys = np.arange(oy + math.floor((miny - oy) / resolution_m) * resolution_m, maxy, resolution_m)
    x, y = (a.ravel() for a in np.meshgrid(xs, ys))  # lower-left corners
    shapely.prepare(geom)
    r = resolution_m
    ok = shapely.intersects_xy(geom, x + r / 2, y + r / 2)
    for dx, dy in ((0, 0), (r, 0), (0, r), (r, r)):
        ok[ok] = shapely.intersects_xy(geom, x[ok] + dx, y[ok] + dy)
    x, y = x[ok], y[ok]
    return int(np.count_nonzero(shapely.contains(geom, shapely.box(x, y, x + r, y + r)))) if len(x) else 0


def _overlaps(geoms: np.ndarray, ids: list[str]) -> tuple[np.ndarray, list[str]]:
    """Per parcel: the area shared with the union of the others, and their ids (sorted, at most ten)."""
    import shapely

    tree = shapely.STRtree(geoms)
    left, right = tree.query(geoms, predicate="intersects")
    keep = left != right
    neighbours: dict[int, list[int]] = {}
    for i, j in zip(left[keep].tolist(), right[keep].tolist(), strict=True):
        neighbours.setdefault(i, []).append(j)
    area = np.zeros(len(geoms))
    names = [""] * len(geoms)
    for i, js in neighbours.items():
        shared = shapely.intersection(geoms[i], shapely.union_all(geoms[js])).area
        if shared > 0:
            area[i] = shared
            touching = sorted(ids[j] for j in js if shapely.intersection(geoms[i], geoms[j]).area > 0)
            names[i] = ",".join(touching[:_MAX_OVERLAP_IDS]) + (",..." if len(touching) > _MAX_OVERLAP_IDS else "")
    return area, names


def _write_aside(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _tile_counts(gdf: Any, grids: dict[str, Any], resolutions: tuple[float, ...]) -> tuple[list[list[int]], list[str]]:
    """Per parcel, for each resolution, the most pixels fully inside on the grid of any tile it falls in
    (counted in the tile's own CRS, pixel edges on the tile's origin), and the tiles it falls in."""
    import shapely

    best = [[0] * len(gdf) for _ in resolutions]
    tiles: list[list[str]] = [[] for _ in range(len(gdf))]
    for tile_id, g in sorted(grids.items()):
        local = gdf.geometry.to_crs(epsg=g.epsg).to_numpy()
        xmin, ymin, xmax, ymax = g.bounds
        on = np.flatnonzero(shapely.intersects(local, shapely.box(xmin, ymin, xmax, ymax)))
        for i in on.tolist():
            tiles[i].append(tile_id)
            geom = shapely.intersection(local[i], shapely.box(xmin, ymin, xmax, ymax))  # pixels of this tile only
            for k, res in enumerate(resolutions):
                best[k][i] = max(best[k][i], pixels_inside(geom, res, origin=(xmin, ymax)))
    return best, [",".join(t) for t in tiles]


def import_campaign_layer(path: str | Path, campaign: int, root: str | Path, *, id_column: str = ID_COLUMN,
                          s1_resolution_m: float = 20.0, grids: dict[str, Any] | None = None) -> CampaignImport:
    """Read, check and report the layer at ``path`` for ``campaign``; write it under ``root/<campaign>/``.

    ``grids`` (tile id -> ``ingest.types.TileGrid``): count the pixels inside on the grid of each tile a
    parcel falls in (in that tile's CRS, aligned on its origin; the most of any of its tiles is kept, and
    ``tiles`` names them); without, on grids aligned on multiples of the pixel size in the layer's UTM zone."""
    import geopandas as gpd
    import pandas as pd

    if not 1900 <= int(campaign) <= 2200:
        raise ParcelLayerError(f"campaign must be a year, got {campaign!r}")
    if not s1_resolution_m > 0:
        raise ParcelLayerError(f"S1 pixel size must be > 0 m, got {s1_resolution_m}")
    gdf, checked = read_parcels(path, id_column)
    utm = gdf.to_crs(gdf.estimate_utm_crs())
    geoms = utm.geometry.values
    ids = [str(v) for v in gdf[id_column]]
    overlap_m2, overlap_ids = _overlaps(np.asarray(geoms), ids)
    resolutions = (10.0, 20.0, s1_resolution_m)
    if grids:
        per_tile, tiles = _tile_counts(gdf, grids, resolutions)
        counts = dict(zip(PIXEL_COLUMNS, per_tile, strict=True))
    else:
        counts = {name: [pixels_inside(g, res) for g in geoms] for name, res in zip(PIXEL_COLUMNS, resolutions,
                                                                                    strict=True)}
        tiles = [""] * len(gdf)
    area = utm.geometry.area.to_numpy()
    repaired = {pid: why for _, pid, why in checked.repaired}
    rejected_rows = {r for r, _, _ in checked.rejected}
    kept_rows = [r for r in range(checked.total) if r not in rejected_rows]  # read_parcels keeps the order
    rows = []
    for i, (pid, row) in enumerate(zip(ids, kept_rows, strict=True)):
        rows.append({"row": row, "parcel_id": pid, "campaign": int(campaign),
                     "status": "repaired" if pid in repaired else "ok", "reason": repaired.get(pid, ""),
                     "area_m2": round(float(area[i]), 2), "overlap_m2": round(float(overlap_m2[i]), 2),
                     "overlap_ids": overlap_ids[i], **{c: counts[c][i] for c in PIXEL_COLUMNS}, "tiles": tiles[i]})
    for r, pid, why in checked.rejected:
        rows.append({"row": r, "parcel_id": pid, "campaign": int(campaign), "status": "rejected", "reason": why,
                     "area_m2": math.nan, "overlap_m2": math.nan, "overlap_ids": "",
                     **{c: 0 for c in PIXEL_COLUMNS}, "tiles": ""})
    report = pd.DataFrame(rows, columns=list(REPORT_COLUMNS)).sort_values("row", kind="stable")
    out = gdf.assign(campaign=int(campaign), area_m2=area.round(2), **{c: np.asarray(counts[c], np.int64)
                                                                       for c in PIXEL_COLUMNS}, tiles=tiles)
    folder = campaign_dir(root, campaign)
    folder.mkdir(parents=True, exist_ok=True)
    parcels_path, report_path = folder / "parcels.parquet", folder / "report.csv"
    _write_aside(report_path, lambda p: report.to_csv(p, index=False))
    _write_aside(parcels_path, lambda p: gpd.GeoDataFrame(out, geometry=out.geometry.name, crs=gdf.crs).to_parquet(p))
    return CampaignImport(int(campaign), parcels_path, report_path, checked.total, len(gdf), len(checked.repaired),
                          len(checked.rejected), int(np.count_nonzero(overlap_m2 > 0)))
