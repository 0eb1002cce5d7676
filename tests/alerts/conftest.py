"""Fixtures for the alerts tests: small synthetic parcel series and a small slice of the real data."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from alerts.series import S2_BANDS, ParcelAcquisition, normalise_observations
from tests import SHARED_DATA

REAL = SHARED_DATA / "grassland-sk-dev"
T0 = pd.Timestamp("2024-01-01", tz="UTC")


def s2_row(pid: str, day: float, ndvi: float, clear: int = 1) -> dict:
    """An S2 interchange row whose B04/B08 give ``ndvi`` (other bands plausible)."""
    total = 0.5
    nir = total * (1 + ndvi) / 2
    red = total * (1 - ndvi) / 2
    vals = dict(zip(S2_BANDS, (0.04, 0.07, red, 0.12, 0.25, 0.3, nir, np.nan, 0.2, 0.1), strict=True))
    return {
        "parcel_id": pid,
        "time": (T0 + pd.Timedelta(days=day)).isoformat(),
        "sensor": "S2",
        **vals,
        "clear": clear,
        "VV": np.nan,
        "VH": np.nan,
        "orbit": np.nan,
    }


def s1_row(pid: str, day: float, vh_db: float, vv_db: float = -12.0, orbit: int = 73) -> dict:
    return {
        "parcel_id": pid,
        "time": (T0 + pd.Timedelta(days=day)).isoformat(),
        "sensor": "S1",
        **{b: np.nan for b in S2_BANDS},
        "clear": np.nan,
        "VV": 10 ** (vv_db / 10),
        "VH": 10 ** (vh_db / 10),
        "orbit": orbit,
    }


def mowing_series(
    pid: str = "G1",
    cuts: tuple[float, ...] = (160.0,),
    seed: int = 0,
    cloud_dip_at: float | None = None,
    with_s1: bool = True,
) -> pd.DataFrame:
    """A grassland season: NDVI 0.8 with cuts (drop to 0.45, regrowth over 30 days), views every 5 days."""
    rng = np.random.default_rng(seed)
    rows = []
    for day in np.arange(60.0, 300.0, 5.0):
        v = 0.8
        for c in cuts:
            if c <= day < c + 30:
                v = 0.45 + 0.35 * (day - c) / 30
        v += rng.normal(0, 0.01)
        if cloud_dip_at is not None and abs(day - cloud_dip_at) < 1:
            v = 0.35
        rows.append(s2_row(pid, day, v))
    if with_s1:
        for day in np.arange(61.0, 300.0, 6.0):
            vh = -16.0 - (3.0 if any(c <= day < c + 12 for c in cuts) else 0.0) + rng.normal(0, 0.3)
            rows.append(s1_row(pid, day, vh))
    return normalise_observations(pd.DataFrame(rows))


def harvest_series(
    pid: str = "C1", harvest: float = 200.0, seed: int = 0, clouded: bool = False
) -> pd.DataFrame:
    """A cereal: VH -17 dB until the harvest then -22 dB; two orbits, 3-day revisit; S2 every 5 days."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, day in enumerate(np.arange(90.0, 300.0, 3.0)):
        vh = (-17.0 if day < harvest else -22.0) + rng.normal(0, 0.4)
        rows.append(s1_row(pid, day, vh, orbit=73 if i % 2 else 124))
    for day in np.arange(92.0, 300.0, 5.0):
        ndvi = 0.75 if day < harvest - 30 else (0.3 if day < harvest else 0.2)
        rows.append(s2_row(pid, day, ndvi, clear=0 if clouded else 1))
    return normalise_observations(pd.DataFrame(rows))


def solar_series(pid: str = "P1", works: float = 150.0, seed: int = 0) -> pd.DataFrame:
    """Grassland turned solar: VH drops at the works, VV rises 8 dB over 40 days after +20 days."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, day in enumerate(np.arange(1.0, 300.0, 3.0)):
        vh = (-16.0 if day < works else -21.0) + rng.normal(0, 0.3)
        rise = float(np.clip((day - works - 20) / 40, 0, 1)) * 8.0
        vv = -12.0 + rise + rng.normal(0, 0.3)
        rows.append(s1_row(pid, day, vh, vv_db=vv, orbit=73 if i % 2 else 124))
    return normalise_observations(pd.DataFrame(rows))


def as_observations(df: pd.DataFrame) -> list[ParcelAcquisition]:
    from alerts.series import iter_observations

    return list(iter_observations(df))


@pytest.fixture(scope="session")
def real_small() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The first 12 plots (by id) of grassland-sk-dev: observations, parcels, events."""
    from alerts.series import read_observations, read_parcels

    parcels = read_parcels(REAL / "parcels.csv").sort_values("parcel_id").head(12)
    obs = read_observations(REAL / "observations.csv")
    obs = obs[obs.parcel_id.isin(parcels.parcel_id)].reset_index(drop=True)
    events = pd.read_csv(REAL / "events.csv")
    return obs, parcels.reset_index(drop=True), events[events.parcel_id.isin(parcels.parcel_id)]


def nan_obs(pid: str, day: float, sensor: str = "S2") -> ParcelAcquisition:
    return ParcelAcquisition(
        parcel_id=pid,
        time=day,
        sensor=sensor,
        clear=True if sensor == "S2" else None,
        vv=math.nan,
        vh=math.nan,
    )
