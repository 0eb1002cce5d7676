"""What is drawn for one tile before any raster: parcels, management, weather, schedules, publication.

Both paths of the generator start here: the archive (``generate``) renders rasters from a world, the
parcel-level path (``observations``) draws parcel series from the same world without rasters.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np

from ingest.synth.config import SynthConfig
from ingest.synth.grid import Acquisition, TileGrid, Weather, draw_weather, rng_for, s1_schedule, s2_schedule
from ingest.synth.management import Management, draw_management, fractions_at
from ingest.synth.parcels import Layout, make_layout
from ingest.synth.phenology import KINDS, backscatter_db, reflectance

__all__ = ["TileWorld", "build_world", "tiles", "unit_spectra", "unit_backscatter"]


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


def unit_spectra(world: TileWorld, acqs: list[Acquisition], units=None) -> np.ndarray:
    """Surface reflectance (U, T, 10) of the units at the acquisitions' days."""
    t = np.array([a.day for a in acqs], int)
    fr = fractions_at(world.management, t, units)
    mg = world.management
    sb = mg.soil_brightness if units is None else mg.soil_brightness[units]
    return reflectance(fr, sb, world.weather.soil_moisture[t])


def unit_backscatter(world: TileWorld, acqs: list[Acquisition], units=None) -> tuple[np.ndarray, np.ndarray]:
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

def tiles(config: SynthConfig) -> list[TileGrid]:
    from ingest.synth.grid import tile_grids

    return tile_grids(config)
