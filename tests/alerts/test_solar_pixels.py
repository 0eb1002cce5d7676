"""Pixel-level solar detection on a small (time, band, y, x) cube: polygon and start of works."""

from __future__ import annotations

import numpy as np
import pytest
from rasterio.transform import from_origin
from shapely.geometry import shape

from alerts.detectors import PixelSolarParams, detect_solar_pixels
from alerts.errors import SeriesError
from alerts.series import S2_BANDS

GREEN = np.array([0.028, 0.062, 0.032, 0.095, 0.290, 0.390, 0.430, 0.450, 0.205, 0.095])
WORKS = np.array([0.110, 0.140, 0.175, 0.200, 0.220, 0.230, 0.240, 0.250, 0.330, 0.290])
PV = np.array([0.095, 0.085, 0.072, 0.070, 0.072, 0.075, 0.080, 0.080, 0.060, 0.045])


def make_cube(seed: int = 0):
    """24 views every 10 days on 20×20 px (10 m, origin 500000, 5400000); a 6×8 px farm at rows
    5–10, cols 4–11: works from view 8 (day 80), panels from view 12; one cloudy view; one lone
    changed pixel (noise) that must not form an installation."""
    rng = np.random.default_rng(seed)
    nt, ny, nx = 24, 20, 20
    cube = np.empty((nt, len(S2_BANDS), ny, nx))
    cube[:] = GREEN[None, :, None, None]
    cube[8:12, :, 5:11, 4:12] = WORKS[None, :, None, None]
    cube[12:, :, 5:11, 4:12] = PV[None, :, None, None]
    cube[12:, :, 17, 17] = PV
    cube += rng.normal(0, 0.004, cube.shape)
    clear = np.ones((nt, ny, nx), bool)
    clear[15] = False
    cube[15] = 0.6  # a cloud
    times = np.arange(nt) * 10.0 + 19800.0
    return cube, times, clear, from_origin(500000, 5400000, 10, 10)


def test_finds_the_installation_with_its_polygon_and_start():
    cube, times, clear, transform = make_cube()
    events = detect_solar_pixels(
        cube, times, S2_BANDS, transform, clear=clear, crs="EPSG:32633", area_id="w1"
    )
    assert len(events) == 1
    e = events[0]
    assert e.event == "solar_construction" and e.parcel_id == "w1:1"
    assert e.evidence["pixels"] == 48
    poly = shape(e.evidence["polygon"])
    assert poly.area == pytest.approx(48 * 100.0)
    assert poly.bounds == pytest.approx((500040.0, 5399890.0, 500120.0, 5399950.0))
    assert abs(e.date - times[8]) <= 10.0  # start of works, not the panels
    assert e.evidence["crs"] == "EPSG:32633"


def test_no_installation_in_a_stable_area_and_bad_input():
    cube, times, clear, transform = make_cube()
    stable = np.repeat(cube[:1], len(times), axis=0)
    assert detect_solar_pixels(stable, times, S2_BANDS, transform) == []
    with pytest.raises(SeriesError, match="bands"):
        detect_solar_pixels(cube[:, :3], times, S2_BANDS, transform)
    with pytest.raises(SeriesError, match="sorted"):
        detect_solar_pixels(cube, times[::-1], S2_BANDS, transform)
    with pytest.raises(SeriesError, match="needs band B11"):
        detect_solar_pixels(cube[:, :8], times, S2_BANDS[:8], transform)
    # a larger minimum size drops the installation
    assert detect_solar_pixels(cube, times, S2_BANDS, transform, params=PixelSolarParams(min_pixels=60)) == []
