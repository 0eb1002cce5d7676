"""Pixel-level solar detection on a small (time, band, y, x) cube: polygon and start of works."""

from __future__ import annotations

import numpy as np
import pytest
from rasterio.transform import from_origin
from shapely.geometry import shape

from alerts.detectors import PixelSolarParams, detect_solar_pixels
from alerts.detectors.solar_pixels import _s1_onset
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


# -- S1 VV, works without panels, look-alikes ------------------------------------------------------

SOIL = np.array([0.075, 0.105, 0.145, 0.175, 0.195, 0.205, 0.215, 0.225, 0.300, 0.255])
DRY = np.array([0.085, 0.115, 0.145, 0.175, 0.215, 0.240, 0.265, 0.280, 0.360, 0.265])
MOWN = np.array(
    [0.060, 0.090, 0.080, 0.130, 0.200, 0.240, 0.260, 0.270, 0.300, 0.200]
)  # residual, NDVI ~0.53


def make_scene(seed: int = 0, works_day: float = 100.0, panels_day: float | None = 140.0):
    """A season (S2 every 5 days over 240 days, S1 VV every 3 days with alternating pass offsets and
    a rain signal common to the whole area) on 32×32 px: a 10×12 px site at rows 4–13, cols 3–14
    whose works start on ``works_day`` (bare soil, VV +2.5 dB) and panels rise from ``panels_day``
    (PV spectrum, VV to −5.5 dB); a 10×10 px cereal field (rows 21–30, cols 2–11) ripening from day 120
    and harvested on day 150 (bare soil, VV −1.5 dB); a 10×10 px meadow (rows 21–30, cols 18–27)
    mown on days 60, 110 and 200 (three weeks of regrowth). S2 is cloudy from day 60 to 125."""
    rng = np.random.default_rng(seed)
    t2 = np.arange(0.0, 241.0, 5.0)
    t1 = np.arange(1.0, 241.0, 3.0)
    ny = nx = 32
    cube = np.empty((len(t2), len(S2_BANDS), ny, nx))
    cube[:] = GREEN[None, :, None, None]
    site = (slice(4, 14), slice(3, 15))
    field = (slice(21, 31), slice(2, 12))
    meadow = (slice(21, 31), slice(18, 28))
    for i, t in enumerate(t2):
        if t >= works_day:
            cube[i, :, site[0], site[1]] = (PV if panels_day is not None and t >= panels_day else WORKS)[
                :, None, None
            ]
        if 120 <= t < 150:
            cube[i, :, field[0], field[1]] = DRY[:, None, None]
        elif t >= 150:
            cube[i, :, field[0], field[1]] = SOIL[:, None, None]
        if any(0 <= t - m < 21 for m in (60, 110, 200)):
            cube[i, :, meadow[0], meadow[1]] = MOWN[:, None, None]
    cube += rng.normal(0, 0.004, cube.shape)
    clear = np.ones((len(t2), ny, nx), bool)
    clear[(t2 > 60) & (t2 < 125)] = False
    rain = 2.0 * np.sin(t1 / 9.0)
    vv = -12.0 + rain[:, None, None] + np.where(np.arange(len(t1)) % 2, 1.0, -1.0)[:, None, None]
    vv = np.broadcast_to(vv, (len(t1), ny, nx)).copy()
    vv[:, site[0], site[1]] += np.where(t1 >= works_day, 2.5, 0.0)[:, None, None]
    if panels_day is not None:
        # panels: a bright, rain-insensitive scatterer
        on = t1 >= panels_day
        vv[on, site[0], site[1]] = -5.5 + np.where(np.arange(len(t1))[on] % 2, 1.0, -1.0)[:, None, None]
    vv[:, field[0], field[1]] -= np.where(t1 >= 150, 1.5, 0.0)[:, None, None]
    vv += rng.normal(0, 1.0, vv.shape)  # speckle
    return cube, t2 + 19800.0, clear, vv, t1 + 19800.0, from_origin(500000, 5400000, 10, 10)


def test_s1_dates_the_works_under_clouds():
    cube, t2, clear, vv, t1, transform = make_scene(works_day=70.0)
    works = 19800.0 + 70.0
    s2 = detect_solar_pixels(cube, t2, S2_BANDS, transform, clear=clear)
    both = detect_solar_pixels(cube, t2, S2_BANDS, transform, clear=clear, s1_vv=vv, s1_times=t1)
    assert len(s2) == len(both) == 1  # the harvested field and the mown meadow raise nothing
    assert s2[0].evidence["dating"] == "S2 bracket middle"
    assert abs(s2[0].date - works) > 15  # S2: last green view on day 60, first bare one on day 125
    e = both[0]
    assert e.evidence["dating"] == "S1 VV step" and e.evidence["phase"] == "panels"
    assert abs(e.date - works) <= 6
    assert e.window[0] <= e.date <= e.window[1]
    assert e.evidence["pixels"] == 120 and shape(e.evidence["polygon"]).area == pytest.approx(120 * 100.0)


def test_works_without_panels_need_the_persistent_vv_rise():
    cube, t2, clear, vv, t1, transform = make_scene(works_day=180.0, panels_day=None)
    events = detect_solar_pixels(cube, t2, S2_BANDS, transform, clear=clear, s1_vv=vv, s1_times=t1)
    assert len(events) == 1
    e = events[0]
    assert e.evidence["phase"] == "works" and abs(e.date - (19800.0 + 180.0)) <= 6
    assert shape(e.evidence["polygon"]).area == pytest.approx(120 * 100.0)
    # bare soil alone (no S1) could be a harvest: nothing
    assert detect_solar_pixels(cube, t2, S2_BANDS, transform, clear=clear) == []
    # works begun too recently to tell from tillage: nothing
    cube, t2, clear, vv, t1, transform = make_scene(works_day=230.0, panels_day=None)
    assert detect_solar_pixels(cube, t2, S2_BANDS, transform, clear=clear, s1_vv=vv, s1_times=t1) == []


def test_vv_step_rules():
    t = np.arange(40.0) * 3
    area = np.zeros(40)
    p = PixelSolarParams()
    rise = np.where(t >= 60, 2.0, 0.0)
    assert _s1_onset(rise, area, t, 30.0, 100.0, p) == 60.0
    assert _s1_onset(-rise, area, t, 30.0, 100.0, p) is None  # a harvest lowers VV
    assert _s1_onset(rise, area, t, 70.0, 100.0, p) is None  # outside the window
    bright = 6.0 - 2 * rise  # demolition of a bright scatterer
    assert _s1_onset(bright, area, t, 30.0, 100.0, p) == 60.0
    fading = np.where(t >= 60, 2.5 * np.exp(-(t - 60) / 20.0), 0.0)  # tillage roughness
    assert _s1_onset(fading, area, t, 30.0, 120.0, p, to_end=True) is None
    assert _s1_onset(rise, area, t, 30.0, 120.0, p, to_end=True) == 60.0


def test_touching_installations_with_different_starts_are_split():
    cube, t2, clear, vv, t1, transform = make_scene()
    clear[:] = True
    # a second farm touching the first (rows 4-13, cols 15-26): works from day 160, panels from 190
    b = (slice(4, 14), slice(15, 27))
    for i, t in enumerate(t2 - 19800.0):
        cube[i, :, b[0], b[1]] = (PV if t >= 190 else WORKS if t >= 160 else GREEN)[:, None, None]
    vv[:, b[0], b[1]] = vv[:, 21:31, 14:26] + np.where(t1 - 19800.0 >= 160, 2.5, 0.0)[:, None, None]
    vv[t1 - 19800.0 >= 190, b[0], b[1]] = -5.5
    events = detect_solar_pixels(cube, t2, S2_BANDS, transform, clear=clear, s1_vv=vv, s1_times=t1)
    assert sorted(round(e.date - 19800.0, -1) for e in events) == [100.0, 160.0]
    assert sorted(e.evidence["pixels"] for e in events) == [120, 120]
    # without S1 they stay one installation
    assert len(detect_solar_pixels(cube, t2, S2_BANDS, transform, clear=clear)) == 1


def test_s1_bad_input():
    cube, t2, clear, vv, t1, transform = make_scene()
    with pytest.raises(SeriesError, match="s1_times"):
        detect_solar_pixels(cube, t2, S2_BANDS, transform, s1_vv=vv)
    with pytest.raises(SeriesError, match="grid"):
        detect_solar_pixels(cube, t2, S2_BANDS, transform, s1_vv=vv[:, :10], s1_times=t1)
    with pytest.raises(SeriesError, match="sorted"):
        detect_solar_pixels(cube, t2, S2_BANDS, transform, s1_vv=vv, s1_times=t1[::-1])
    with pytest.raises(SeriesError, match="clear"):
        detect_solar_pixels(cube, t2, S2_BANDS, transform, clear=clear[:, :5])
    with pytest.raises(ValueError, match="end_share"):
        PixelSolarParams(base_share=0.8)


def test_end_to_end_on_a_rendered_archive(tmp_path):
    """A small synthetic archive (COGs) read as `sitsmon eval solar --pixels` reads it: every site
    found, its polygon and start of works right, nothing else (harvested fields and mown meadows
    around)."""
    import geopandas as gpd

    from alerts.evaluation import score_solar_polygons
    from sitsmon.commands.eval import _archive_cube, _archive_vv, _solar_season_archive

    _solar_season_archive(tmp_path / "a", 2, tile_size_px=128, parcels_per_tile=15, solar_parcel_share=0.1,
                          solar_sites_outside_per_tile=1)
    cube, times, clear, transform, crs = _archive_cube(tmp_path / "a")
    s1 = _archive_vv(tmp_path / "a", cube.shape[2:])
    assert s1["s1_vv"].shape[1:] == cube.shape[2:] and len(s1["s1_times"]) > len(times)
    events = detect_solar_pixels(cube, times, S2_BANDS, transform, clear=clear, crs=str(crs), **s1)
    sites = gpd.read_file(tmp_path / "a/truth/solar_sites.geojson").to_crs(crs)
    r = score_solar_polygons(events, sites, tolerance_days=10.0, min_iou=0.5)
    assert (r["tp"], r["fp"], r["fn"]) == (len(sites), 0, 0)
