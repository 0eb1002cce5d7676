"""The shared vocabulary: units convert both ways, the scalar and array NDVI agree, the land-use sets
say which job they serve, the value ranges are those of the real data set."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.indices import ndvi
from contracts.land_use import ARABLE, GRASSLAND, HARVEST_WATCH, OTHER, is_arable, is_grassland
from contracts.ranges import COLUMN_RANGES, REFLECTANCE, wrong_unit
from contracts.sensors import SENSOR_CODES, Sensor, parse_sensor, parse_sensor_set
from contracts.time import (
    t_days_from_time_s,
    time_s_from_t_days,
    timestamp_from_t_days,
    to_t_days,
    to_time_s,
    utc_day,
)

finite = st.floats(-0.2, 2.0, allow_nan=False) | st.just(math.nan) | st.just(0.0)


@given(finite, finite)
def test_scalar_ndvi_equals_the_array_ndvi(red, nir):
    """The detectors' per-observation path (plain floats) and the vectorised path (numpy) agree."""
    one = ndvi(red, nir)
    arr = ndvi(np.array([red]), np.array([nir]))[0]
    assert (math.isnan(one) and math.isnan(arr)) or one == pytest.approx(arr, abs=1e-12)
    if math.isfinite(one):
        assert -1.0 <= one <= 1.0 and red + nir > 0


def test_ndvi_zero_guard():
    assert math.isnan(ndvi(0.0, 0.0)) and math.isnan(ndvi(-0.05, 0.02)) and ndvi(0.1, 0.3) == pytest.approx(0.5)


def test_time_units_round_trip():
    t = "2021-06-01T10:30:00Z"
    s = to_time_s(t)
    assert s == int(pd.Timestamp(t).timestamp())
    assert to_t_days(t) == pytest.approx(t_days_from_time_s(s)) == pytest.approx(s / 86400)
    assert time_s_from_t_days(to_t_days(t)) == s and timestamp_from_t_days(to_t_days(t)) == pd.Timestamp(t)
    assert (time_s_from_t_days(np.array([to_t_days(t)])) == [s]).all()
    assert utc_day(s) == "20210601"
    with pytest.raises(ValueError, match="not finite"):
        time_s_from_t_days(math.nan)


def test_sensors():
    assert parse_sensor(" s1 ") is Sensor.S1 and Sensor.S2 == "S2" and SENSOR_CODES[Sensor.S2] == 0
    assert parse_sensor_set("S1, s2,S1") == (Sensor.S1, Sensor.S2) and parse_sensor_set("") is None
    with pytest.raises(ValueError, match="sensor must be S2 or S1, got 'L8'"):
        parse_sensor("L8")


def test_land_use_sets():
    assert is_grassland(" Meadow ") and is_arable("maize") and not GRASSLAND & ARABLE
    # "other" may be harvested (watched by the harvest detector) but cannot be required to be
    assert OTHER in HARVEST_WATCH and OTHER not in ARABLE and not is_arable("other")


def test_ranges_hold_the_real_data_and_catch_wrong_units():
    from tests import SHARED_DATA

    df = pd.read_csv(SHARED_DATA / "grassland-sk-dev" / "observations.csv")
    for col, rng in COLUMN_RANGES.items():
        assert rng.contains(df[col].to_numpy(float)).all(), col
        assert wrong_unit(col, df[col].to_numpy(float)) is None
    assert "digital numbers" in wrong_unit("B04", df["B04"].to_numpy(float) * 10000)
    assert "decibels" in wrong_unit("VH", 10 * np.log10(df["VH"].to_numpy(float)))
    assert not REFLECTANCE.contains(np.array([1e30, -5.0, 3.01])).any()


@given(finite, finite)
def test_the_detector_kernels_ndvi_is_the_contract_ndvi(red, nir):
    """The numba kernels compute NDVI themselves (no Python call inside a kernel): the same guard and
    the same value as ``contracts.indices.ndvi`` (bit for bit: the kernels must equal the reference)."""
    from alerts.detectors.kernels.common import _ndvi

    want, got = ndvi(red, nir), _ndvi(red, nir, 1.0)
    assert (math.isnan(want) and math.isnan(got)) or want == got
    assert math.isnan(_ndvi(red, nir, 0.0)) and math.isnan(_ndvi(red, nir, math.nan))  # not clear


def test_the_detectors_watch_the_contract_land_uses():
    from alerts.detectors.registry import detector_class

    assert detector_class("harvest").land_uses == HARVEST_WATCH
    assert detector_class("mowing").land_uses == GRASSLAND
    assert detector_class("solar").land_uses is None  # any land use
