"""Pixel watch areas: areas given as GeoJSON, monitored per pixel from the tile cube while the stream runs.

Areas outside the parcel layer (a solar farm built on undeclared land) have no parcel series, so the
monitor reads them from the cube: every pixel of an area's window on the tile grid is a row of the
tile state like a parcel (id ``<area_id>:<row>:<col>``, land use ``watch_area``): its encoder state is
stepped with the parcels', checkpointed and rewound with them. The pixel solar detector is stepped
per acquisition too (``alerts.detectors.solar_pixels_stream.PixelSolarState``, one per area, kept in
``TileState.watch`` and written with the tile state, so it is checkpointed and rewound with it); at
each S2 acquisition its installations are read from the state, and one found at two successive S2
views, not overlapping one already raised, becomes an alert with its polygon. Its id is fixed then
(``<area_id>:<n>``, and the alert id is derived from it), so later acquisitions that refine the polygon
or the dates never raise the same site twice, and a redelivery or a replay raises the same id.
``offline_area_events`` is the batch form (``detect_solar_pixels`` re-run on the cube's history at each
S2 view), the reference the stream is tested against.
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


def _area_step(area: WatchArea, cube: Path, sensor: str, slot: str):
    """The area's window of one acquisition of the cube (an xarray Dataset; None when the slot is not there)."""
    from ingest.cube import open_cube

    ds = open_cube(cube, sensor)
    k = _slot_index(ds, slot)
    if k is None:
        return None
    return ds.isel(time=k, **_window(area))


def _window(area: WatchArea) -> dict[str, slice]:
    return {"y": slice(area.row0, area.row1), "x": slice(area.col0, area.col1)}


def _vv_db(backscatter) -> np.ndarray:
    """VV in dB from the cube's linear power (NaN where there is none)."""
    vv = np.asarray(backscatter.sel(pol="VV").values, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(vv > 0, 10.0 * np.log10(vv), np.nan)


def area_rows(area: WatchArea, cube: Path, sensor: str, slot: str) -> pd.DataFrame:
    """The area's pixels in one acquisition as interchange rows (empty when the slot is not in the cube)."""
    from ingest.cube import reflectance

    step = _area_step(area, cube, sensor, slot)
    if step is None:
        return pd.DataFrame()
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

    window = _window(area)
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
        kwargs["s1_vv"] = _vv_db(s1["backscatter"])
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


# ---- the stepped detector in the stream ------------------------------------------------------------------
def step_areas(state, areas: list[WatchArea], cube: Path, key) -> list[Event]:
    """Fold the acquisition ``key`` (already in ``state.folded``) into each area's pixel solar state; at an
    S2 view, the installations to raise now (``parcel_id`` = their site id), as ``confirm_sites`` decides."""
    from dataclasses import replace

    from affine import Affine

    out = []
    for area in areas:
        pixels = _pixel_state(state, area, cube, key)
        _fold_slice(pixels, area, cube, key.sensor, key.slot)
        if key.sensor != "S2":  # installations are confirmed on successive S2 views (S1 enters their dating)
            continue
        events = []
        if pixels.meta["n_s2"] >= 2:
            events = pixels.installations(Affine(*area.transform), crs=f"EPSG:{area.epsg}", area_id=area.area_id,
                                          s1_history=lambda area=area: s1_history(area, cube, state.folded, key))
        mine = [k for k in state.area_sites if k["area_id"] == area.area_id]
        to_raise, mine = confirm_sites(events, mine)
        state.area_sites = [k for k in state.area_sites if k["area_id"] != area.area_id] + mine
        out.extend(replace(event, parcel_id=site) for event, site in to_raise)
    return out


def _pixel_state(state, area: WatchArea, cube: Path, key):
    """The area's stepped state; a state without one (written before the stepped detector, or after the
    area's geometry changed in the settings) gets one folded from the cube over what it folded before."""
    from alerts.detectors.solar_pixels_stream import PixelSolarState

    pixels = state.watch.get(area.area_id)
    if pixels is None or pixels.shape != area.shape:
        pixels = PixelSolarState(area.shape)
        earlier = sorted(k for k in state.folded if k < key)
        if earlier:
            logger.info("watch area %s: stepping its pixel state over %d folded acquisition(s) from the cube",
                        area.area_id, len(earlier))
        for k in earlier:
            _fold_slice(pixels, area, cube, k.sensor, k.slot)
        state.watch[area.area_id] = pixels
    return pixels


def _fold_slice(pixels, area: WatchArea, cube: Path, sensor: str, slot: str) -> None:
    from ingest.cube import reflectance

    step = _area_step(area, cube, sensor, slot)
    if step is None:
        logger.warning("watch area %s: slot %s/%s is not in the cube %s; its pixels skip it", area.area_id, sensor,
                       slot, cube)
        return
    if sensor == "S2":
        refl = reflectance(step).sel(band=list(S2_BANDS)).transpose("band", "y", "x").values
        pixels.step_s2(to_days(pd.Timestamp(step["time"].values, tz="UTC")), refl, S2_BANDS,
                       step["clear"].values.astype(bool))
    else:
        pixels.step_s1(_vv_db(step["backscatter"]))


def s1_history(area: WatchArea, cube: Path, folded, key) -> tuple[np.ndarray, np.ndarray]:
    """The area's S1 VV (time1, y, x) dB and times (days) of the S1 acquisitions folded up to ``key``: what an
    installation's S1 dating reads (only when a candidate needs dating)."""
    from ingest.cube import open_cube

    slots = {k.slot for k in folded if k.sensor == "S1" and k <= key}
    s1 = open_cube(cube, "S1").isel(**_window(area))
    s1 = s1.isel(time=np.flatnonzero(np.isin(np.asarray(s1["slot"].values).astype(str), list(slots))))
    times = np.array([to_days(pd.Timestamp(t, tz="UTC")) for t in s1["time"].values])
    return _vv_db(s1["backscatter"]), times


def offline_area_events(area: WatchArea, cube: Path) -> list[Event]:
    """The batch form of ``step_areas`` over the cube's whole season: at each S2 view, ``detect_solar_pixels``
    on the history so far (``area_events``), confirmed as the stream confirms; the installations raised."""
    from dataclasses import replace

    from ingest.cube import open_cube

    known: list[dict[str, Any]] = []
    out = []
    s2_times = np.unique(open_cube(cube, "S2")["time"].values.astype("datetime64[s]").astype(np.int64))
    for upto_s in s2_times:
        to_raise, known = confirm_sites(area_events(area, cube, int(upto_s)), known)
        out.extend(replace(event, parcel_id=site) for event, site in to_raise)
    return out


def dump_watch(watch: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The areas' pixel states as arrays (``a<i>/<field>``) and the attributes that name them."""
    from alerts.detectors.solar_pixels_stream import SCHEMA

    ids = sorted(watch)
    arrays = {f"a{i}/{name}": arr for i, area_id in enumerate(ids) for name, arr in watch[area_id].dump().items()}
    return arrays, {"schema": SCHEMA, "areas": ids}


def load_watch(arrays: dict[str, np.ndarray], attrs: dict[str, Any] | None) -> dict[str, Any]:
    """The pixel states of ``dump_watch``; one of another schema is dropped (logged), never mixed in: the next
    acquisition steps a new one from the cube over what the tile folded."""
    from alerts.detectors.solar_pixels_stream import SCHEMA, PixelSolarState

    if not attrs:
        return {}
    if attrs.get("schema") != SCHEMA:
        logger.warning("watch-area pixel states of schema %r (not %r) dropped; rebuilt from the cube",
                       attrs.get("schema"), SCHEMA)
        return {}
    return {area_id: PixelSolarState.load({k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith(f"a{i}/")})
            for i, area_id in enumerate(attrs.get("areas", []))}

