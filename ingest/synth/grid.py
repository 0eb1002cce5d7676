"""Tile grids (MGRS-named UTM squares), acquisition schedules and the weather that drives clouds and soil moisture."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
from scipy.special import ndtr

from ingest.synth.config import RESOLUTION_M, SynthConfig

__all__ = [
    "TileGrid",
    "Acquisition",
    "tile_grids",
    "s2_schedule",
    "s1_schedule",
    "Weather",
    "draw_weather",
    "rng_for",
]

EPSG = 32633
UTM_ZONE = 33
LATITUDE_BAND = "U"
# MGRS 100 km squares of zone 33 (column set 3, odd zone rows): easting 100 km unit -> letter.
_COLUMNS = {4: "V", 5: "W", 6: "X", 7: "Y"}
_ROWS = "ABCDEFGHJKLMNPQRSTUV"
_S2_ORBITS = (79, 122, 36, 136, 93)
_S1_ASC = (73, 146, 44, 117)
_S1_DESC = (124, 22, 95, 168)

# Named random streams: each part of the world draws from its own stream, so that adding draws to one
# part never changes another (and the parcel-level and raster paths share parcels, events and weather).
STREAMS = {
    "layout": 1,
    "management": 2,
    "weather": 3,
    "publish": 4,
    "s2": 5,
    "s1": 6,
    "texture": 7,
    "parcel_obs": 8,
}


def rng_for(seed: int, tile_index: int, stream: str, *more: int) -> np.random.Generator:
    """A generator for one named stream of one tile (``more`` adds e.g. a date index)."""
    return np.random.default_rng([seed, tile_index, STREAMS[stream], *more])


@dataclass(frozen=True, slots=True)
class TileGrid:
    """One synthetic tile: a square of ``size`` 10 m pixels in a corner of an MGRS 100 km square."""

    index: int
    tile_id: str
    epsg: int
    x0: float  # west edge, metres (UTM)
    y0: float  # north edge, metres (UTM)
    size: int
    resolution: float = RESOLUTION_M

    def __post_init__(self) -> None:
        if self.size < 1 or self.resolution <= 0:
            raise ValueError(f"tile {self.tile_id}: bad size {self.size} or resolution {self.resolution}")

    @property
    def shape(self) -> tuple[int, int]:
        return (self.size, self.size)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) in metres."""
        extent = self.size * self.resolution
        return (self.x0, self.y0 - extent, self.x0 + extent, self.y0)

    def transform(self, factor: int = 1) -> tuple[float, float, float, float, float, float]:
        """Affine (a, b, c, d, e, f) of the grid at ``factor`` times the pixel size."""
        r = self.resolution * factor
        return (r, 0.0, self.x0, 0.0, -r, self.y0)

    @property
    def utm_zone(self) -> int:
        return UTM_ZONE

    @property
    def latitude_band(self) -> str:
        return self.tile_id[2]

    @property
    def grid_square(self) -> str:
        return self.tile_id[3:]


def tile_grids(config: SynthConfig) -> list[TileGrid]:
    """The ``config.n_tiles`` tiles: real MGRS square names of zone 33U, 20 km into each square."""
    grids = []
    index = 0
    for northing in range(53, 61):
        for easting in (6, 7, 5, 4):
            if index >= config.n_tiles:
                return grids
            tile_id = f"{UTM_ZONE}{LATITUDE_BAND}{_COLUMNS[easting]}{_ROWS[northing % 20]}"
            extent = config.tile_size_px * RESOLUTION_M
            grids.append(
                TileGrid(
                    index=index,
                    tile_id=tile_id,
                    epsg=EPSG,
                    x0=easting * 100_000.0 + 20_000.0,
                    y0=northing * 100_000.0 + 20_000.0 + extent,
                    size=config.tile_size_px,
                )
            )
            index += 1
    return grids


@dataclass(frozen=True, slots=True)
class Acquisition:
    """One overpass of one tile."""

    sensor: str  # "S2" | "S1"
    platform: str  # sentinel-2a | sentinel-2b | sentinel-1a
    datetime: datetime  # UTC
    day: int  # days since config.start
    relative_orbit: int
    orbit_state: str  # descending for S2; ascending | descending for S1
    absolute_orbit: int

    def __post_init__(self) -> None:
        if self.sensor not in ("S2", "S1"):
            raise ValueError(f"sensor must be S2 or S1, got {self.sensor!r}")


def _days(config: SynthConfig) -> list[date]:
    return [config.start + timedelta(days=i) for i in range(config.n_days)]


def s2_schedule(config: SynthConfig, tile: TileGrid) -> list[Acquisition]:
    """S2A and S2B alternate on one relative orbit: a 5-day combined revisit, about 10:00 UTC."""
    offset = (tile.index * 2) % 5
    orbit = _S2_ORBITS[tile.index % len(_S2_ORBITS)]
    minute = 40 + (tile.index * 3) % 20
    out = []
    for i, d in enumerate(_days(config)):
        k = (d.toordinal() + offset) % 10
        if k not in (0, 5):
            continue
        platform = "sentinel-2a" if k == 0 else "sentinel-2b"
        t = datetime(d.year, d.month, d.day, 9, minute, 19, tzinfo=UTC)
        absolute = (d.toordinal() - 730000) * 143 // 10 + orbit
        out.append(Acquisition("S2", platform, t, i, orbit, "descending", absolute))
    return out


def s1_schedule(config: SynthConfig, tile: TileGrid) -> list[Acquisition]:
    """Ascending (about 16:50 UTC) and descending (about 05:00 UTC) orbits, each on a 6-day revisit."""
    asc = _S1_ASC[tile.index % len(_S1_ASC)]
    desc = _S1_DESC[tile.index % len(_S1_DESC)]
    out = []
    for i, d in enumerate(_days(config)):
        k = (d.toordinal() + tile.index) % 6
        if k == 0:
            t = datetime(d.year, d.month, d.day, 5, 1 + tile.index % 50, 34, tzinfo=UTC)
            out.append(Acquisition("S1", "sentinel-1a", t, i, desc, "descending", _s1_abs(d, desc)))
        elif k == 3:
            t = datetime(d.year, d.month, d.day, 16, 52, 7 + tile.index % 50, tzinfo=UTC)
            out.append(Acquisition("S1", "sentinel-1a", t, i, asc, "ascending", _s1_abs(d, asc)))
    return out


def _s1_abs(d: date, rel: int) -> int:
    return (d.toordinal() - 735000) * 175 // 12 + rel


@dataclass(frozen=True, slots=True)
class Weather:
    """Daily weather of one tile: latent cloudiness z (standard normal, AR(1)), soil moisture (m3/m3)."""

    z: np.ndarray  # (n_days,) float64
    soil_moisture: np.ndarray  # (n_days,) float64, 0.05..0.45
    drought: float  # summer dip of grassland greenness this year, 0..0.12


def draw_weather(config: SynthConfig, tile: TileGrid) -> Weather:
    """Temperate weather: cloudy spells persist (daily AR(1), ~0.5 correlation 5 days apart); rain wets soil."""
    rng = rng_for(config.seed, tile.index, "weather")
    n = config.n_days + 30
    phi = 0.87
    eps = rng.standard_normal(n)
    z = np.empty(n)
    z[0] = eps[0]
    for i in range(1, n):
        z[i] = phi * z[i - 1] + math.sqrt(1 - phi * phi) * eps[i]
    z = z[30:]
    rain = np.where(z > 0.85, rng.exponential(8.0, config.n_days), 0.0)  # mm/day
    sm = np.empty(config.n_days)
    level = 0.25
    for i in range(config.n_days):
        level = 0.06 + (level - 0.06) * math.exp(-1 / 6.0) + 0.012 * rain[i]
        level = min(level, 0.45)
        sm[i] = level
    return Weather(z=z, soil_moisture=sm, drought=float(rng.uniform(0.0, 0.12)))


def cloud_cover(weather: Weather, acq: Acquisition) -> float:
    """Share of the tile under cloud at an S2 acquisition: U-shaped, about half the dates mostly cloudy."""
    doy = acq.datetime.timetuple().tm_yday
    season = 0.3 * math.cos(2 * math.pi * (doy - 15) / 365.25)
    c = float(ndtr(1.7 * weather.z[acq.day] + season + 0.1))
    return 0.0 if c < 0.01 else min(c, 1.0)


def sun_angles(tile: TileGrid, when: datetime) -> tuple[float, float]:
    """Approximate sun (azimuth, elevation) in degrees at the tile centre (latitude ~48.5 N)."""
    lat = math.radians(47.9 + (tile.y0 - 5_300_000) / 111_000)
    doy = when.timetuple().tm_yday
    decl = math.radians(23.44) * math.sin(2 * math.pi * (284 + doy) / 365)
    lon = 16.4
    solar_hour = when.hour + when.minute / 60 + lon / 15
    h = math.radians(15 * (solar_hour - 12))
    sin_el = math.sin(lat) * math.sin(decl) + math.cos(lat) * math.cos(decl) * math.cos(h)
    el = math.asin(sin_el)
    cos_az = (math.sin(decl) - math.sin(el) * math.sin(lat)) / (math.cos(el) * math.cos(lat))
    az = math.degrees(math.acos(max(-1.0, min(1.0, cos_az))))
    if h > 0:
        az = 360 - az
    return az, math.degrees(el)
