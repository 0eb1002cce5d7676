"""Parcel-level series: the interchange table of observations, and the fast path without rasters.

``simulate_parcel_series`` draws the observations from the same worlds as the archive, at parcel level;
``observations_table`` turns per-tile blocks (either path's) into one interchange-format table.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from ingest.synth.clouds import CLEAR, draw_clouds
from ingest.synth.config import SynthConfig
from ingest.synth.grid import Acquisition, cloud_cover, rng_for, sun_angles
from ingest.synth.phenology import BANDS
from ingest.synth.sentinel1 import LOOKS
from ingest.synth.truth import parcels_4326
from ingest.synth.world import TileWorld, build_world, tiles, unit_backscatter, unit_spectra

__all__ = ["OBSERVATION_COLUMNS", "CLEAR_SHARE", "ObsBlock", "observations_table", "simulate_parcel_series"]

OBSERVATION_COLUMNS = ("parcel_id", "time", "sensor", *BANDS, "clear", "VV", "VH", "orbit")
#: A parcel observation is clear when at least this share of its pixels is free of cloud, cirrus and shadow.
CLEAR_SHARE = 0.9


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


def observations_table(blocks: list[ObsBlock]) -> pd.DataFrame:
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


def simulate_parcel_series(config: SynthConfig) -> tuple[gpd.GeoDataFrame, pd.DataFrame, pd.DataFrame]:
    """Parcels (EPSG:4326), observations and reference events in the interchange format, without rasters.

    Same parcels, management, weather and acquisitions as ``generate_archive`` for the same config; the
    observations are drawn at parcel level (clouds sampled at the parcel centroid, speckle averaged over
    the parcel's pixels) instead of being zonal means of rendered rasters. Fast enough for 100 000 parcels.
    """
    parcels, obs, events = [], [], []
    for tile in tiles(config):
        world = build_world(config, tile)
        parcels.append(parcels_4326(world))
        events.append(world.management.events)
        obs.append(_parcel_observations(config, world))
    p = pd.concat(parcels, ignore_index=True).sort_values("parcel_id", kind="stable").reset_index(drop=True)
    ev = pd.concat(events, ignore_index=True).sort_values(["parcel_id", "date", "event"], kind="stable")
    return (
        gpd.GeoDataFrame(p, geometry="geometry", crs=4326),
        observations_table(obs),
        ev.reset_index(drop=True),
    )


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
        spec = unit_spectra(world, world.s2, units)  # (m, T2, 10)
        spec *= (1.0 + rng.normal(0, 0.01, spec.shape[:2] + (1,))).astype(np.float32)
        spec += rng.normal(0, 0.002, spec.shape).astype(np.float32)
        a, sh, ci = alpha[sel, :, None], shadow[sel, :, None], cirrus[sel, :, None]
        spec *= 1.0 - 0.7 * sh * (1.0 - a)
        spec = spec * (1.0 - ci) + 0.35 * ci
        cloud = ENDMEMBERS["cloud"][None, None, :] * bright[None, :, None] * (0.85 + 0.15 * a)
        bands[sel] = np.round(spec * (1.0 - a) + cloud * a, 4)
        clear[sel] = (a[..., 0] < CLEAR) & (sh[..., 0] <= 0.35) & (ci[..., 0] <= 0.06)
        vv, vh = unit_backscatter(world, world.s1, units)
        looks = np.broadcast_to(
            LOOKS * np.maximum(area_px[sel], 1.0)[:, None] / 2.0, vv.shape
        )  # pixels correlate
        tex = rng.normal(0.0, 0.25, vv.shape).astype(np.float32)
        vv_out[sel] = 10 ** ((vv + tex) / 10) * rng.standard_gamma(looks) / looks
        vh_out[sel] = 10 ** ((vh + tex) / 10) * rng.standard_gamma(looks) / looks
    return ObsBlock.on_world(world, ids, bands, clear, vv_out, vh_out)

