"""Fixtures of the monitor tests: small series (synthetic and real) in a series store, and a monitor."""

from __future__ import annotations

import uuid
from pathlib import Path

import pandas as pd
import pytest

from tests.alerts.conftest import harvest_series, mowing_series, real_small, solar_series  # noqa: F401
from tests.monitor.helpers import TILE


@pytest.fixture(scope="session")
def model():
    import sits

    return sits.load_model(device="cpu")


@pytest.fixture()
def synthetic_obs() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Three mown grasslands, two harvested cereals, a solar works site and an unmown meadow, one tile."""
    return synthetic_season()


def synthetic_season() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The observations and parcels of ``synthetic_obs`` (for fixtures of a wider scope)."""
    frames = [mowing_series("G1", cuts=(160.0,), seed=1), mowing_series("G2", cuts=(150.0, 210.0), seed=2),
              mowing_series("G3", cuts=(180.0,), seed=3, with_s1=False), mowing_series("G4", cuts=(), seed=4),
              harvest_series("C1", harvest=200.0, seed=5), harvest_series("C2", harvest=215.0, seed=6),
              solar_series("P1", works=150.0, seed=7)]
    obs = pd.concat(frames, ignore_index=True)
    from alerts.series import normalise_observations

    obs = normalise_observations(obs)
    parcels = pd.DataFrame({"parcel_id": ["C1", "C2", "G1", "G2", "G3", "G4", "P1"],
                            "land_use": ["cereal", "maize", "grassland", "grassland", "grassland", "meadow",
                                         "grassland"]})
    parcels["tile_id"] = TILE
    return obs, parcels


def write_parcels(path: Path, parcels: pd.DataFrame) -> Path:
    parcels.to_csv(path, index=False)
    return path


@pytest.fixture
def topic() -> str:
    """A fresh bus topic name (the bus tests share a broker)."""
    return f"test.bus.{uuid.uuid4().hex[:10]}"


@pytest.fixture
def group() -> str:
    """A fresh consumer-group id."""
    return f"group-{uuid.uuid4().hex[:10]}"
