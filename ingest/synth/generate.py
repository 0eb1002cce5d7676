"""Writing the archive (``generate_archive``) and the fast parcel-level path (``simulate_parcel_series``)."""

from __future__ import annotations

import json
import logging
import os
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from rasterio import features
from rasterio.transform import Affine
from rasterio.warp import transform as warp_transform

from ingest.synth.clouds import CLEAR, draw_clouds, periodic_noise
from ingest.synth.cog import write_cog
from ingest.synth.config import ArchiveExistsError, SynthConfig, SynthError
from ingest.synth.grid import (
    Acquisition,
    TileGrid,
    Weather,
    cloud_cover,
    draw_weather,
    rng_for,
    s1_schedule,
    s2_schedule,
    sun_angles,
)
from ingest.synth.management import Management, draw_management, fractions_at
from ingest.synth.parcels import Layout, make_layout
from ingest.synth.phenology import BANDS, BANDS_10M, BANDS_20M, KINDS, backscatter_db, reflectance
from ingest.synth.quicklooks import ndvi_png, truecolor_png, vv_png
from ingest.synth.sentinel1 import LOOKS, render_s1
from ingest.synth.sentinel2 import SCL, downsample2, render_s2, to_dn
from ingest.synth.stac import S1_COLLECTION, S2_COLLECTION, collection, s1_item, s2_item

__all__ = ["generate_archive", "simulate_parcel_series", "SCHEMA", "OBSERVATION_COLUMNS"]

logger = logging.getLogger(__name__)

SCHEMA = "sitsmon-archive/1"
OBSERVATION_COLUMNS = ("parcel_id", "time", "sensor", *BANDS, "clear", "VV", "VH", "orbit")
_BAND_INDEX = {b: i for i, b in enumerate(BANDS)}
#: A parcel observation is clear when at least this share of its pixels is free of cloud, cirrus and shadow.
CLEAR_SHARE = 0.9


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("sitsmon")
    except Exception:  # noqa: BLE001 - a missing distribution only changes a label
        return "0+unknown"


@dataclass(frozen=True, slots=True)
class TileWorld:
    """Everything drawn for one tile before any raster is made."""

    config: SynthConfig
    tile: TileGrid
    layout: Layout
    management: Management
    weather: Weather
    s2: list[Acquisition]
    s1: list[Acquisition]
    published: dict  # (sensor, index) -> (published, created)

    def __post_init__(self) -> None:
        if self.management.n_units != 1 + len(self.layout.parcels) + len(self.layout.background):
            raise ValueError("management and layout disagree on the number of units")


def _publication(config: SynthConfig, tile: TileGrid, s2: list[Acquisition], s1: list[Acquisition]) -> dict:
    rng = rng_for(config.seed, tile.index, "publish")
    out = {}
    for sensor, acqs, (lo, hi) in (("S2", s2, (2.0, 6.0)), ("S1", s1, (1.0, 3.5))):
        for i, a in enumerate(acqs):
            hours = rng.uniform(lo, hi)
            if rng.random() < config.late_publication_share:
                hours += 24.0 * rng.uniform(1.0, 6.0)
            published = a.datetime + timedelta(hours=float(hours))
            created = published - timedelta(minutes=float(rng.uniform(5, 40)))
            out[(sensor, i)] = (
                published.replace(microsecond=0),
                created.replace(microsecond=0),
            )
    return out


def build_world(config: SynthConfig, tile: TileGrid) -> TileWorld:
    """Parcels, management, weather, schedules and publication times of one tile (no rasters)."""
    layout = make_layout(config, tile)
    mg = draw_management(config, tile, layout)
    weather = draw_weather(config, tile)
    s2 = s2_schedule(config, tile)
    s1 = s1_schedule(config, tile)
    return TileWorld(config, tile, layout, mg, weather, s2, s1, _publication(config, tile, s2, s1))


def _unit_spectra(world: TileWorld, acqs: list[Acquisition], units=None) -> np.ndarray:
    """Surface reflectance (U, T, 10) of the units at the acquisitions' days."""
    t = np.array([a.day for a in acqs], int)
    fr = fractions_at(world.management, t, units)
    mg = world.management
    sb = mg.soil_brightness if units is None else mg.soil_brightness[units]
    return reflectance(fr, sb, world.weather.soil_moisture[t])


def _unit_backscatter(world: TileWorld, acqs: list[Acquisition], units=None) -> tuple[np.ndarray, np.ndarray]:
    """(VV, VH) in dB, each (U, T), at the S1 acquisitions."""
    mg = world.management
    t = np.array([a.day for a in acqs], int)
    fr = fractions_at(mg, t, units)
    off_all = mg.orbit_offset_db if units is None else mg.orbit_offset_db[units]
    asc = np.array([a.orbit_state == "ascending" for a in acqs])
    off = np.where(asc[None, :], off_all[:, :1], off_all[:, 1:2]).astype(np.float32)
    pv_orbit = np.where(asc, 1.5, -1.0).astype(np.float32)
    kind = mg.kind if units is None else mg.kind[units]
    urban_db = np.where(kind == KINDS.index("margin"), -14.0, -4.5).astype(np.float32)
    vv, vh = backscatter_db(fr, world.weather.soil_moisture[t], off, pv_orbit, urban_db)
    # Wind roughens water: a per-date offset for water units.
    rng = rng_for(world.config.seed, world.tile.index, "s1", 99_999)
    water = kind == KINDS.index("water")
    wind = rng.normal(0.0, 2.5, len(acqs)).astype(np.float32)
    vv[water] += wind[None, :]
    vh[water] += 0.5 * wind[None, :]
    return vv, vh


def _footprint(tile: TileGrid) -> tuple[dict, list[float]]:
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


def _rasterize_units(world: TileWorld) -> np.ndarray:
    """Unit id (H, W) int32 raster: 0 margin, 1..N parcels, N+1.. background cells."""
    tile = world.tile
    n = len(world.layout.parcels)
    shapes = [(g, n + 1 + i) for i, g in enumerate(world.layout.background.geometry.values)]
    shapes += [(g, 1 + i) for i, g in enumerate(world.layout.parcels.geometry.values)]
    return features.rasterize(
        shapes, out_shape=tile.shape, transform=Affine(*tile.transform()), fill=0, dtype="int32"
    )


def _parcels_4326(world: TileWorld) -> gpd.GeoDataFrame:
    p = world.layout.parcels.copy()
    p.insert(3, "declared_practice", world.management.declared_practice)
    return p.to_crs(4326)


def _round_geoms(geoms: np.ndarray, digits: int = 7) -> np.ndarray:
    return shapely.transform(geoms, lambda c: np.round(c, digits))


def _interchange_parcels(parcels: gpd.GeoDataFrame) -> pd.DataFrame:
    cent = parcels.to_crs(parcels.estimate_utm_crs()).centroid.to_crs(4326)
    geoms = _round_geoms(parcels.geometry.values)
    return pd.DataFrame(
        {
            "parcel_id": parcels["parcel_id"].to_numpy(),
            "land_use": parcels["land_use"].to_numpy(),
            "lon": np.round(cent.x.to_numpy(), 6),
            "lat": np.round(cent.y.to_numpy(), 6),
            "geometry": shapely.to_geojson(geoms),
        }
    )


@dataclass(frozen=True, slots=True)
class ObsBlock:
    """Parcel-level series of one tile: S2 values (N, T2[, 10]) and S1 values (N, T1)."""

    ids: np.ndarray  # (N,) parcel ids, sorted
    s2_times: np.ndarray  # (T2,) datetime64[s] UTC
    s2_bands: np.ndarray  # (N, T2, 10) float32 reflectance
    s2_clear: np.ndarray  # (N, T2) int8
    s2_orbit: np.ndarray  # (T2,) int16
    s1_times: np.ndarray  # (T1,) datetime64[s]
    vv: np.ndarray  # (N, T1) float32 linear
    vh: np.ndarray  # (N, T1) float32 linear
    s1_orbit: np.ndarray  # (T1,) int16

    def __post_init__(self) -> None:
        n = len(self.ids)
        if self.s2_bands.shape != (n, len(self.s2_times), len(BANDS)) or self.vv.shape != (
            n,
            len(self.s1_times),
        ):
            raise ValueError(
                f"observation block shapes disagree: {self.s2_bands.shape}, {self.vv.shape}, {n} parcels"
            )

    @classmethod
    def on_world(cls, world: TileWorld, ids, s2_bands, s2_clear, vv, vh) -> ObsBlock:
        """A block of ``world``'s acquisitions (their times and relative orbits) holding these values."""
        return cls(ids=ids, s2_times=_times(world.s2), s2_bands=s2_bands, s2_clear=s2_clear,
                   s2_orbit=np.array([a.relative_orbit for a in world.s2], np.int16), s1_times=_times(world.s1),
                   vv=vv, vh=vh, s1_orbit=np.array([a.relative_orbit for a in world.s1], np.int16))


def _times(acqs: list[Acquisition]) -> np.ndarray:
    return np.array([a.datetime.replace(tzinfo=None) for a in acqs], "datetime64[s]")


def _observations(blocks: list[ObsBlock]) -> pd.DataFrame:
    """One interchange-format table, sorted by parcel_id, time, sensor, built column by column."""
    blocks = sorted(blocks, key=lambda b: b.ids[0])
    sizes = [len(b.ids) * (len(b.s2_times) + len(b.s1_times)) for b in blocks]
    rows = int(sum(sizes))
    codes = np.empty(rows, np.int32)
    times = np.empty(rows, "datetime64[s]")
    sensor = np.empty(rows, np.int8)
    cols = {b: np.full(rows, np.nan, np.float32) for b in (*BANDS, "VV", "VH")}
    clear = np.zeros(rows, np.int8)
    clear_na = np.ones(rows, bool)
    orbit = np.empty(rows, np.int16)
    at, first = 0, 0
    for blk, size in zip(blocks, sizes, strict=True):
        n, t2, t1 = len(blk.ids), len(blk.s2_times), len(blk.s1_times)
        tall = np.concatenate([blk.s2_times, blk.s1_times])
        order = np.lexsort((np.r_[np.zeros(t2), np.ones(t1)], tall))
        pos = np.empty_like(order)
        pos[order] = np.arange(len(order))
        p2, p1 = pos[:t2], pos[t2:]
        sl = slice(at, at + size)

        def view(a, _sl=sl, _shape=(n, t2 + t1)):
            return a[_sl].reshape(_shape)

        view(codes)[:] = (first + np.arange(n, dtype=np.int32))[:, None]
        view(times)[:] = tall[order][None, :]
        view(sensor)[:, p2] = 0
        view(sensor)[:, p1] = 1
        for i, b in enumerate(BANDS):
            view(cols[b])[:, p2] = blk.s2_bands[:, :, i]
        view(cols["VV"])[:, p1] = blk.vv
        view(cols["VH"])[:, p1] = blk.vh
        view(clear)[:, p2] = blk.s2_clear
        view(clear_na)[:, p2] = False
        view(orbit)[:, p2] = blk.s2_orbit[None, :]
        view(orbit)[:, p1] = blk.s1_orbit[None, :]
        at += size
        first += n
    ids = np.concatenate([b.ids for b in blocks])
    data = {
        "parcel_id": pd.Categorical.from_codes(codes, categories=pd.Index(ids.astype(str))),
        "time": pd.DatetimeIndex(times.astype("datetime64[ns]")).tz_localize("UTC"),
        "sensor": pd.Categorical.from_codes(sensor, categories=["S2", "S1"]),
    }
    for b in BANDS:
        data[b] = cols[b]
    data["clear"] = pd.arrays.IntegerArray(clear, clear_na)
    data["VV"] = cols["VV"]
    data["VH"] = cols["VH"]
    data["orbit"] = pd.arrays.IntegerArray(orbit, np.zeros(rows, bool))
    # Column by column: the dict constructor would stack the float columns into one block (a full copy).
    frame = pd.DataFrame({"parcel_id": data.pop("parcel_id")})
    for name, values in data.items():
        frame[name] = values
    return frame


# --------------------------------------------------------------------------------------------------
# Parcel-level path


def simulate_parcel_series(config: SynthConfig) -> tuple[gpd.GeoDataFrame, pd.DataFrame, pd.DataFrame]:
    """Parcels (EPSG:4326), observations and reference events in the interchange format, without rasters.

    Same parcels, management, weather and acquisitions as ``generate_archive`` for the same config; the
    observations are drawn at parcel level (clouds sampled at the parcel centroid, speckle averaged over
    the parcel's pixels) instead of being zonal means of rendered rasters. Fast enough for 100 000 parcels.
    """
    parcels, obs, events = [], [], []
    for tile in _tiles(config):
        world = build_world(config, tile)
        parcels.append(_parcels_4326(world))
        events.append(world.management.events)
        obs.append(_parcel_observations(config, world))
    p = pd.concat(parcels, ignore_index=True).sort_values("parcel_id", kind="stable").reset_index(drop=True)
    ev = pd.concat(events, ignore_index=True).sort_values(["parcel_id", "date", "event"], kind="stable")
    return (
        gpd.GeoDataFrame(p, geometry="geometry", crs=4326),
        _observations(obs),
        ev.reset_index(drop=True),
    )


def _tiles(config: SynthConfig) -> list[TileGrid]:
    from ingest.synth.grid import tile_grids

    return tile_grids(config)


def _parcel_observations(config: SynthConfig, world: TileWorld, chunk: int = 20_000) -> ObsBlock:
    """Parcel-level series drawn without rasters: clouds sampled at the centroid, speckle averaged."""
    from ingest.synth.phenology import ENDMEMBERS

    tile = world.tile
    n = len(world.layout.parcels)
    ids = world.layout.parcels["parcel_id"].to_numpy()
    area_px = world.layout.parcels["area_ha"].to_numpy() * 1e4 / tile.resolution**2
    cent = shapely.centroid(world.layout.parcels.geometry.values)
    coarse = 8
    size_c = max(tile.size // coarse, 8)
    col = np.clip(((shapely.get_x(cent) - tile.x0) / (tile.resolution * coarse)).astype(int), 0, size_c - 1)
    row = np.clip(((tile.y0 - shapely.get_y(cent)) / (tile.resolution * coarse)).astype(int), 0, size_c - 1)
    rng = rng_for(config.seed, tile.index, "parcel_obs")
    t2, t1 = len(world.s2), len(world.s1)
    alpha = np.zeros((n, t2), np.float32)
    shadow = np.zeros_like(alpha)
    cirrus = np.zeros_like(alpha)
    bright = np.ones(t2, np.float32)
    for j, acq in enumerate(world.s2):
        az, el = sun_angles(tile, acq.datetime)
        crng = rng_for(config.seed, tile.index, "s2", j)
        cl = draw_clouds(
            crng, (size_c, size_c), cloud_cover(world.weather, acq), az, el, tile.resolution * coarse
        )
        alpha[:, j], shadow[:, j], cirrus[:, j] = cl.alpha[row, col], cl.shadow[row, col], cl.cirrus[row, col]
        bright[j] = cl.brightness
    bands = np.empty((n, t2, len(BANDS)), np.float32)
    clear = np.empty((n, t2), np.int8)
    vv_out = np.empty((n, t1), np.float32)
    vh_out = np.empty((n, t1), np.float32)
    for lo in range(0, n, chunk):
        units = np.arange(lo, min(n, lo + chunk)) + 1
        sel = units - 1
        spec = _unit_spectra(world, world.s2, units)  # (m, T2, 10)
        spec *= (1.0 + rng.normal(0, 0.01, spec.shape[:2] + (1,))).astype(np.float32)
        spec += rng.normal(0, 0.002, spec.shape).astype(np.float32)
        a, sh, ci = alpha[sel, :, None], shadow[sel, :, None], cirrus[sel, :, None]
        spec *= 1.0 - 0.7 * sh * (1.0 - a)
        spec = spec * (1.0 - ci) + 0.35 * ci
        cloud = ENDMEMBERS["cloud"][None, None, :] * bright[None, :, None] * (0.85 + 0.15 * a)
        bands[sel] = np.round(spec * (1.0 - a) + cloud * a, 4)
        clear[sel] = (a[..., 0] < CLEAR) & (sh[..., 0] <= 0.35) & (ci[..., 0] <= 0.06)
        vv, vh = _unit_backscatter(world, world.s1, units)
        looks = np.broadcast_to(
            LOOKS * np.maximum(area_px[sel], 1.0)[:, None] / 2.0, vv.shape
        )  # pixels correlate
        tex = rng.normal(0.0, 0.25, vv.shape).astype(np.float32)
        vv_out[sel] = 10 ** ((vv + tex) / 10) * rng.standard_gamma(looks) / looks
        vh_out[sel] = 10 ** ((vh + tex) / 10) * rng.standard_gamma(looks) / looks
    return ObsBlock.on_world(world, ids, bands, clear, vv_out, vh_out)


# --------------------------------------------------------------------------------------------------
# Archive path


def _prepare_out(out_dir: Path, overwrite: bool) -> Path:
    if out_dir.exists() and not out_dir.is_dir():
        raise ArchiveExistsError(f"--out {out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise ArchiveExistsError(
            f"output folder {out_dir} exists and is not empty (use --overwrite to replace it)"
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.parent / f".{out_dir.name}.synth-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    return staging


def _publish(staging: Path, out_dir: Path) -> None:
    """Swap the finished staging folder into place; an earlier archive is removed only now."""
    old = None
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
        out_dir.rename(old)
    staging.rename(out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def generate_archive(
    out_dir: Path, config: SynthConfig, progress: bool = False, overwrite: bool = False
) -> dict:
    """Write the archive described in docs/archive-format.md under ``out_dir`` and return its manifest.

    The archive is built in a hidden sibling folder and moved into place at the end, so a failure never
    leaves a half-written archive nor damages an existing one. ``out_dir`` must be absent or empty
    unless ``overwrite``.
    """
    out_dir = Path(out_dir)
    staging = _prepare_out(out_dir, overwrite)
    try:
        manifest = _generate(staging, config, progress)
        _publish(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _generate(root: Path, config: SynthConfig, progress: bool) -> dict:
    from tqdm import tqdm

    tiles = _tiles(config)
    worlds = [build_world(config, t) for t in tiles]
    total = sum(len(w.s2) + len(w.s1) for w in worlds)
    bar = tqdm(total=total, desc="synth", unit="acq", disable=not progress, leave=False)
    s2_items, s1_items, blocks, parcels, events, sites = [], [], [], [], [], []
    bboxes = []
    with ThreadPoolExecutor(max_workers=config.workers) as pool:
        pending: list[Future] = []
        for world in worlds:
            fp, bbox = _footprint(world.tile)
            bboxes.append(bbox)
            a, b, c, fs = _render_tile(root, config, world, fp, bbox, pool, pending, bar)
            s2_items += a
            s1_items += b
            blocks.append(c)
            sites += fs
            parcels.append(_parcels_4326(world))
            events.append(world.management.events)
            # Bound memory: wait for this tile's writes before the next tile.
            for f in pending:
                f.result()
            pending.clear()
            logger.info(
                "tile %s: %d parcels, %d S2 and %d S1 items written",
                world.tile.tile_id,
                len(world.layout.parcels),
                len(a),
                len(b),
                extra={"tile_id": world.tile.tile_id},
            )
    bar.close()

    parcels_all = pd.concat(parcels, ignore_index=True).sort_values("parcel_id", kind="stable")
    parcels_gdf = gpd.GeoDataFrame(parcels_all.reset_index(drop=True), geometry="geometry", crs=4326)
    parcels_gdf["geometry"] = _round_geoms(parcels_gdf.geometry.values)
    (root / "parcels").mkdir()
    parcels_gdf.to_parquet(root / "parcels" / "parcels.parquet", index=False)
    truth = root / "truth"
    truth.mkdir()
    _interchange_parcels(parcels_gdf).to_csv(truth / "parcels.csv", index=False)
    events_all = pd.concat(events, ignore_index=True).sort_values(
        ["parcel_id", "date", "event"], kind="stable"
    )
    events_all.to_csv(truth / "events.csv", index=False)
    obs = _observations(blocks)
    obs.to_parquet(truth / "observations.parquet", index=False)
    (truth / "solar_sites.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": sites}))

    full_bbox = [
        min(b[0] for b in bboxes),
        min(b[1] for b in bboxes),
        max(b[2] for b in bboxes),
        max(b[3] for b in bboxes),
    ]
    (root / "collections").mkdir()
    (root / "items").mkdir()
    for cid, items in ((S2_COLLECTION, s2_items), (S1_COLLECTION, s1_items)):
        (root / "collections" / f"{cid}.json").write_text(
            json.dumps(collection(cid, full_bbox, config.start, config.end), indent=2)
        )
        items.sort(key=lambda it: (it["properties"]["published"], it["id"]))
        with open(root / "items" / f"{cid}.ndjson", "w") as fh:
            for it in items:
                fh.write(json.dumps(it, separators=(",", ":")) + "\n")
    manifest = {
        "schema": SCHEMA,
        "seed": config.seed,
        "start": config.start.isoformat(),
        "end": config.end.isoformat(),
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "generator": f"sitsmon {_version()}",
        "tiles": [
            {
                "tile_id": w.tile.tile_id,
                "epsg": w.tile.epsg,
                "resolution": w.tile.resolution,
                "bounds": list(w.tile.bounds),
                "shape": list(w.tile.shape),
            }
            for w in worlds
        ],
        "counts": {
            "parcels": int(len(parcels_gdf)),
            S2_COLLECTION: len(s2_items),
            S1_COLLECTION: len(s1_items),
            "events": int(sum(len(e) for e in events)),
            "solar_sites": len(sites),
        },
    }
    (root / "archive.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def _render_tile(root: Path, config: SynthConfig, world: TileWorld, fp: dict, bbox: list, pool, pending, bar):
    tile = world.tile
    mg = world.management
    n = len(world.layout.parcels)
    ids = world.layout.parcels["parcel_id"].to_numpy()
    units = _rasterize_units(world)
    flat = units.ravel()
    counts = np.bincount(flat, minlength=mg.n_units).astype(np.float64)

    def zonal_mean(stack: np.ndarray) -> np.ndarray:
        """(B, H*W) pixel values -> (N, B) parcel means (float64)."""
        return np.stack(
            [
                np.bincount(flat, weights=row, minlength=mg.n_units)[1 : n + 1] / counts[1 : n + 1]
                for row in stack
            ],
            axis=1,
        )

    if (counts[1 : n + 1] == 0).any():
        missing = ids[np.flatnonzero(counts[1 : n + 1] == 0)[:3]]
        raise SynthError(f"tile {tile.tile_id}: parcels without a pixel: {list(missing)}")
    trng = rng_for(config.seed, tile.index, "texture")
    texture = (1.0 + 0.05 * periodic_noise(trng, tile.shape, 4.0, coarse=1)).astype(np.float32)
    texture_db = (0.6 * periodic_noise(trng, tile.shape, 3.0, coarse=1)).astype(np.float32)
    water_unit = mg.kind == KINDS.index("water")
    ql = root / "quicklooks" / tile.tile_id
    s2_items, s1_items = [], []
    obs_bands = np.zeros((n, len(world.s2), len(BANDS)), np.float32)
    obs_clear = np.zeros((n, len(world.s2)), np.int8)
    spectra = _unit_spectra(world, world.s2)  # (U, T, 10)

    def submit(fn, *args, **kw):
        pending.append(pool.submit(fn, *args, **kw))
        if len(pending) > 4 * config.workers:
            pending.pop(0).result()

    for j, acq in enumerate(world.s2):
        az, el = sun_angles(tile, acq.datetime)
        rng = rng_for(config.seed, tile.index, "s2", j)
        clouds = draw_clouds(rng, tile.shape, cloud_cover(world.weather, acq), az, el, tile.resolution)
        toa, scl = render_s2(units, spectra[:, j, :], texture, water_unit, clouds, rng)
        clear_px = np.isin(scl, (SCL.VEGETATION, SCL.NOT_VEGETATED, SCL.WATER))
        stack = np.concatenate([toa.reshape(len(BANDS), -1), clear_px.reshape(1, -1).astype(np.float32)])
        means = zonal_mean(stack)  # (N, 11)
        obs_clear[:, j] = means[:, -1] >= CLEAR_SHARE
        obs_bands[:, j, :] = means[:, :-1]
        item = s2_item(tile, acq, 0.0, (az, el), fp, bbox, *world.published[("S2", j)])
        scl20 = np.ascontiguousarray(scl[::2, ::2])
        item["properties"]["eo:cloud_cover"] = round(
            100.0 * float(np.isin(scl20, (SCL.CLOUD_MEDIUM, SCL.CLOUD_HIGH, SCL.THIN_CIRRUS)).mean()), 2
        )
        folder = root / "data" / S2_COLLECTION / tile.tile_id / item["id"]
        for band in BANDS_10M:
            submit(
                write_cog,
                folder / f"{band}.tif",
                to_dn(toa[_BAND_INDEX[band]]),
                tile.transform(1),
                tile.epsg,
                0,
                config.cog_blocksize,
            )
        low = downsample2(toa[[_BAND_INDEX[b] for b in BANDS_20M]])
        for k, band in enumerate(BANDS_20M):
            submit(
                write_cog,
                folder / f"{band}.tif",
                to_dn(low[k]),
                tile.transform(2),
                tile.epsg,
                0,
                config.cog_blocksize,
            )
        submit(
            write_cog,
            folder / "SCL.tif",
            scl20,
            tile.transform(2),
            tile.epsg,
            0,
            config.cog_blocksize,
            "nearest",
        )
        if config.quicklooks:
            day = f"{acq.datetime:%Y-%m-%d}"
            submit(truecolor_png, toa[2], toa[1], toa[0], ql / f"{day}_truecolor.png")
            submit(ndvi_png, toa[6], toa[2], ql / f"{day}_ndvi.png")
        s2_items.append(item)
        bar.update(1)
    vv_db, vh_db = _unit_backscatter(world, world.s1)
    obs_vv = np.zeros((n, len(world.s1)), np.float32)
    obs_vh = np.zeros_like(obs_vv)
    for j, acq in enumerate(world.s1):
        rng = rng_for(config.seed, tile.index, "s1", j)
        vv, vh = render_s1(units, vv_db[:, j], vh_db[:, j], texture_db, rng)
        means = zonal_mean(np.stack([vv.reshape(-1), vh.reshape(-1)]))
        obs_vv[:, j], obs_vh[:, j] = means[:, 0], means[:, 1]
        item = s1_item(tile, acq, fp, bbox, *world.published[("S1", j)])
        folder = root / "data" / S1_COLLECTION / tile.tile_id / item["id"]
        submit(
            write_cog, folder / "vv.tif", vv, tile.transform(1), tile.epsg, float("nan"), config.cog_blocksize
        )
        submit(
            write_cog, folder / "vh.tif", vh, tile.transform(1), tile.epsg, float("nan"), config.cog_blocksize
        )
        if config.quicklooks:
            submit(vv_png, vv, ql / f"{acq.datetime:%Y-%m-%d}_vv.png")
        s1_items.append(item)
        bar.update(1)
    block = ObsBlock.on_world(world, ids, np.round(obs_bands, 4), obs_clear, obs_vv, obs_vh)

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
        geom = _round_geoms(np.array([geom]))[0]
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
    return s2_items, s1_items, block, site_features
