"""Pixel watch areas: areas given as GeoJSON, monitored per pixel from the tile cube while the stream runs.

Areas outside the parcel layer (a solar farm built on undeclared land) have no parcel series, so the
monitor reads them from the cube: every pixel of an area's window on the tile grid is a row of the
tile state like a parcel (id ``<area_id>:<row>:<col>``, land use ``watch_area``): its encoder state is
stepped with the parcels', checkpointed and rewound with them. At each S2 acquisition the pixel-level
solar detector (``alerts.detectors.solar_pixels.detect_solar_pixels``) runs over the area's window of
the cube up to that acquisition (S1 VV included); an installation found at two successive S2 views,
not overlapping one already raised, becomes an alert with its polygon and its id is fixed then, so
later acquisitions that refine the polygon or the dates never raise the same site twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from alerts.series import S2_BANDS, to_days
from alerts.types import Event

logger = logging.getLogger(__name__)


_EMPTY_S2 = {b: np.nan for b in S2_BANDS}


@dataclass(frozen=True)
class WatchArea:
    """One area's window on a tile grid (rows ``row0:row1``, columns ``col0:col1``)."""

    area_id: str
    tile_id: str
    row0: int
    row1: int
    col0: int
    col1: int
    transform: tuple[float, float, float, float, float, float]  # of the window (rasterio Affine order)
    epsg: int

    @property
    def shape(self) -> tuple[int, int]:
        return (self.row1 - self.row0, self.col1 - self.col0)

    def pixel_ids(self) -> list[str]:
        return [f"{self.area_id}:{r}:{c}" for r in range(self.row0, self.row1) for c in range(self.col0, self.col1)]


def load_watch_areas(paths: tuple[Path, ...], tile_id: str, cube: Path) -> list[WatchArea]:
    """The watch areas that lie on ``tile_id``'s grid (read from its cube); none without a cube."""
    import geopandas as gpd
    import zarr

    from ingest.types import TileGrid

    if not paths or not (Path(cube) / "zarr.json").exists():
        return []
    try:
        grid = TileGrid.from_dict(dict(zarr.open_group(str(cube), mode="r").attrs["grid"]))
    except (KeyError, ValueError, TypeError):
        return []
    xmin, ymin, xmax, ymax = grid.bounds
    res = grid.resolution
    h, w = grid.shape
    out = []
    for path in paths:
        try:
            frame = gpd.read_file(path)
        except Exception as e:  # noqa: BLE001 - a bad settings file: name it
            raise ValueError(f"watch area file {path}: {e}") from e
        if frame.crs is None:
            frame = frame.set_crs(4326)
        frame = frame.to_crs(grid.epsg)
        for i, row in frame.reset_index(drop=True).iterrows():
            area_id = str(row.get("area_id") or f"{Path(path).stem}-{i + 1}")
            x0, y0, x1, y1 = row.geometry.bounds
            c0, c1 = max(0, int(np.floor((x0 - xmin) / res))), min(w, int(np.ceil((x1 - xmin) / res)))
            r0, r1 = max(0, int(np.floor((ymax - y1) / res))), min(h, int(np.ceil((ymax - y0) / res)))
            if c1 <= c0 or r1 <= r0:
                continue
            transform = (res, 0.0, xmin + c0 * res, 0.0, -res, ymax - r0 * res)
            out.append(WatchArea(area_id, tile_id, r0, r1, c0, c1, transform, grid.epsg))
    return out


def _slot_index(ds, slot: str) -> int | None:
    hits = np.flatnonzero(np.asarray(ds["slot"].values).astype(str) == slot)
    return int(hits[-1]) if len(hits) else None


def area_rows(area: WatchArea, cube: Path, sensor: str, slot: str) -> pd.DataFrame:
    """The area's pixels in one acquisition as interchange rows (empty when the slot is not in the cube)."""
    from ingest.cube import open_cube, reflectance

    ds = open_cube(cube, sensor)
    k = _slot_index(ds, slot)
    if k is None:
        return pd.DataFrame()
    window = {"y": slice(area.row0, area.row1), "x": slice(area.col0, area.col1)}
    step = ds.isel(time=k, **window)
    ids = area.pixel_ids()
    n = len(ids)
    base = {"parcel_id": ids, "time": pd.Timestamp(step["time"].values, tz="UTC"), "sensor": sensor}
    if sensor == "S2":
        refl = reflectance(step).transpose("band", "y", "x").values.reshape(len(step["band"]), n)
        bands = dict(zip(step["band"].values.astype(str), refl, strict=True))
        clear = step["clear"].values.reshape(n).astype(float)
        return pd.DataFrame({**base, **{b: bands.get(b, np.full(n, np.nan)) for b in S2_BANDS}, "clear": clear,
                             "VV": np.nan, "VH": np.nan, "orbit": np.nan})
    back = step["backscatter"].transpose("pol", "y", "x").values.reshape(len(step["pol"]), n)
    pols = dict(zip(step["pol"].values.astype(str), back, strict=True))
    orbit = float(step["orbit"].values) if "orbit" in step else np.nan
    return pd.DataFrame({**base, **_EMPTY_S2, "clear": np.nan, "VV": pols.get("VV"), "VH": pols.get("VH"),
                         "orbit": orbit})


def area_events(area: WatchArea, cube: Path, upto_s: int) -> list[Event]:
    """Installations in the area's window from the cube's acquisitions up to ``upto_s``."""
    from affine import Affine

    from alerts.detectors.solar_pixels import detect_solar_pixels
    from ingest.cube import open_cube, reflectance

    window = {"y": slice(area.row0, area.row1), "x": slice(area.col0, area.col1)}
    s2 = open_cube(cube, "S2").isel(**window)
    s2 = s2.isel(time=np.flatnonzero(s2["time"].values.astype("datetime64[s]").astype(np.int64) <= upto_s))
    if s2.sizes["time"] < 2:
        return []
    refl = reflectance(s2).sel(band=list(S2_BANDS)).transpose("time", "band", "y", "x").values
    times = np.array([to_days(pd.Timestamp(t, tz="UTC")) for t in s2["time"].values])
    kwargs: dict[str, Any] = {}
    s1 = open_cube(cube, "S1").isel(**window)
    s1 = s1.isel(time=np.flatnonzero(s1["time"].values.astype("datetime64[s]").astype(np.int64) <= upto_s))
    if s1.sizes["time"]:
        vv = s1["backscatter"].sel(pol="VV").values.astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            kwargs["s1_vv"] = np.where(vv > 0, 10.0 * np.log10(vv), np.nan)
        kwargs["s1_times"] = np.array([to_days(pd.Timestamp(t, tz="UTC")) for t in s1["time"].values])
    return detect_solar_pixels(refl, times, S2_BANDS, Affine(*area.transform), clear=s2["clear"].values.astype(bool),
                               crs=f"EPSG:{area.epsg}", area_id=area.area_id, **kwargs)


def confirm_sites(events: list[Event], known: list[dict[str, Any]]) -> tuple[list[tuple[Event, str]], list[dict[str, Any]]]:
    """Installations to raise now, and the area's site records after this evaluation.

    An installation is raised once it is found at two successive S2 evaluations (its polygon overlaps
    a candidate of the previous one): the first sighting of a farm under construction often comes in
    fragments that merge at the next view. A raised site keeps its id (``<area_id>:<n>``) and is never
    raised again: a later polygon that overlaps it is the same installation, refined.
    """
    from shapely.geometry import shape

    raised = [k for k in known if k["status"] == "raised"]
    pending = [shape(k["polygon"]) for k in known if k["status"] == "pending"]
    seen = [shape(k["polygon"]) for k in raised]
    to_raise: list[tuple[Event, str]] = []
    candidates: list[dict[str, Any]] = []
    for event in events:
        polygon = event.evidence.get("polygon")
        if polygon is None:
            continue
        geom = shape(polygon)
        if any(geom.intersects(s) for s in seen):
            continue  # the same installation as one already raised
        area_id = event.parcel_id.rsplit(":", 1)[0]
        if any(geom.intersects(p) for p in pending):
            n = 1 + sum(k["area_id"] == area_id for k in raised)
            record = {"area_id": area_id, "site": f"{area_id}:{n}", "polygon": polygon, "status": "raised"}
            raised.append(record)
            seen.append(geom)
            to_raise.append((event, record["site"]))
        else:
            candidates.append({"area_id": area_id, "site": "", "polygon": polygon, "status": "pending"})
    return to_raise, raised + candidates
