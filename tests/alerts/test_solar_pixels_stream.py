"""The stepped pixel solar detector (numba kernels over a per-pixel state) against the batch reference
``detect_solar_pixels`` re-run on the cube's history: at every S2 view of a season, event for event."""

from __future__ import annotations

import numpy as np
import pytest
from rasterio.transform import from_origin

from alerts.detectors import PixelSolarParams, detect_solar_pixels
from alerts.detectors.solar_pixels_stream import PixelSolarState
from alerts.errors import SeriesError
from alerts.series import S2_BANDS
from tests.alerts.test_solar_pixels import PV, WORKS, make_cube, make_scene


def _stream_and_batch(cube, t2, clear, transform, vv=None, t1=None, params=None):
    """At each S2 view: (events of the stepped state, events of the batch on the history so far). S1
    acquisitions are folded before an S2 view of the same day (the monitor's order)."""
    p = params or PixelSolarParams()
    state = PixelSolarState(cube.shape[2:], p)
    order = [(t, 1, i) for i, t in enumerate(t2)] + ([(t, 0, i) for i, t in enumerate(t1)] if vv is not None else [])
    out = []
    for t, is_s2, i in sorted(order):
        if not is_s2:
            state.step_s1(vv[i])
            continue
        state.step_s2(t, cube[i], S2_BANDS, clear[i])
        s1_upto = None if vv is None else int(np.searchsorted(t1, t, side="right"))
        kwargs = {} if not s1_upto else {"s1_vv": vv[:s1_upto], "s1_times": t1[:s1_upto]}
        batch = detect_solar_pixels(cube[: i + 1], t2[: i + 1], S2_BANDS, transform, clear=clear[: i + 1],
                                    params=p, area_id="a", **kwargs)
        history = None if not s1_upto else (lambda k=s1_upto: (vv[:k], t1[:k]))
        out.append((t, state.installations(transform, s1_history=history, area_id="a"), batch))
    return out, state


def _assert_equal_at_every_view(pairs) -> int:
    found = 0
    for t, stepped, batch in pairs:
        assert [e.parcel_id for e in stepped] == [e.parcel_id for e in batch], t
        for s, b in zip(stepped, batch, strict=True):
            # same pixels (count and polygon), same dates, same phase and dating, same confidence
            assert s == b, (t, s, b)
        found += len(batch)
    return found


def test_stepped_equals_batch_on_a_season_with_s1_a_split_and_look_alikes():
    cube, t2, clear, vv, t1, transform = make_scene(works_day=70.0)
    # a second farm touching the first, built later (split by S1), and one pixel that flickers between
    # PV and green (its final departed run is broken and restarted: the machines' isolated-gap rule)
    b = (slice(4, 14), slice(15, 27))
    for i, t in enumerate(t2 - 19800.0):
        if t >= 160:
            cube[i, :, b[0], b[1]] = (PV if t >= 190 else WORKS)[:, None, None]
    vv[:, b[0], b[1]] += np.where(t1 - 19800.0 >= 160, 2.5, 0.0)[:, None, None]
    vv[t1 - 19800.0 >= 190, b[0], b[1]] = -5.5
    cube[::3, :, 16, 30] = PV[None, :]
    clear[5:9, 0:3, 0:3] = False  # pixels with few clear views at the start
    pairs, state = _stream_and_batch(cube, t2, clear, transform, vv, t1)
    assert _assert_equal_at_every_view(pairs) > 20
    final = pairs[-1][2]
    assert len(final) == 2 and {e.evidence["dating"] for e in final} == {"S1 VV step"}
    assert state.nbytes_per_pixel < 300


def test_stepped_equals_batch_works_without_panels_and_s2_only():
    cube, t2, clear, vv, t1, transform = make_scene(works_day=180.0, panels_day=None)
    pairs, _ = _stream_and_batch(cube, t2, clear, transform, vv, t1)
    assert _assert_equal_at_every_view(pairs) > 0
    assert pairs[-1][2][0].evidence["phase"] == "works"
    cube, t2, clear, transform = make_cube(seed=3)
    pairs, _ = _stream_and_batch(cube, t2, clear, transform)  # S2 only
    assert _assert_equal_at_every_view(pairs) > 5
    assert pairs[-1][2][0].evidence["pixels"] == 48


def test_stepped_equals_batch_on_random_cubes():
    """Random signatures, clouds and NaN per pixel: the per-pixel fields (the departure machines above all)
    against the reference's ``_pixel_departures`` on every pixel, through the whole evidence."""
    rng = np.random.default_rng(11)
    nt, ny, nx = 30, 12, 12
    pick = rng.integers(0, 3, (nt, ny, nx))
    cube = np.stack([make_cube()[0][0, :, 0, 0], WORKS, PV])[pick].transpose(0, 3, 1, 2)
    cube = cube + rng.normal(0, 0.01, cube.shape)
    cube[rng.random(cube.shape) < 0.01] = np.nan
    clear = rng.random((nt, ny, nx)) < 0.7
    times = 19800.0 + np.cumsum(rng.integers(0, 8, nt)).astype(float)  # same-day views too
    p = PixelSolarParams(min_pixels=1, min_works_pixels=1, close_px=0, end_share=0.5, base_share=0.25)
    state = PixelSolarState((ny, nx), p)
    everything = np.ones((ny, nx), bool)
    for i in range(nt):
        state.step_s2(times[i], cube[i], S2_BANDS, clear[i])
        got = state.evidence()

        def batch_departures(mask, i=i):
            from alerts.detectors import solar_pixels as ref

            ndvi, nir, swir = ref._indices(cube[: i + 1], S2_BANDS)
            valid = np.isfinite(ndvi) & np.isfinite(swir) & clear[: i + 1]
            pv = ref._pv_like(cube[: i + 1], S2_BANDS, p) & valid
            bare = ref._bare_like(ndvi, nir, swir, p) & valid
            return ref._pixel_departures(mask, valid, ndvi, pv, bare, times[: i + 1], p)

        np.testing.assert_array_equal(got.departures(everything), batch_departures(everything))
        events = state.installations(from_origin(0, 0, 10, 10), area_id="r")
        ref_events = detect_solar_pixels(cube[: i + 1], times[: i + 1], S2_BANDS, from_origin(0, 0, 10, 10),
                                         clear=clear[: i + 1], params=p, area_id="r")
        assert events == ref_events, i


def test_state_round_trip_and_bad_input():
    cube, t2, clear, vv, t1, transform = make_scene()
    state = PixelSolarState(cube.shape[2:])
    for i in range(10):
        state.step_s2(t2[i], cube[i], S2_BANDS, clear[i])
        state.step_s1(vv[i])
    again = PixelSolarState.load(state.dump())
    for k, v in state.arrays.items():
        np.testing.assert_array_equal(again.arrays[k], v)
    assert again.meta == state.meta and again.shape == state.shape
    with pytest.raises(SeriesError, match="older"):
        state.step_s2(t2[0], cube[0], S2_BANDS, clear[0])
    with pytest.raises(SeriesError, match=r"\(band, y, x\)"):
        state.step_s2(t2[11], cube[11][:, :5], S2_BANDS, clear[11])
    with pytest.raises(SeriesError, match="s1_history"):
        state.installations(transform)
    bad = state.dump()
    bad["n_valid"] = bad["n_valid"][:3]
    with pytest.raises(SeriesError, match="n_valid"):
        PixelSolarState.load(bad)
    with pytest.raises(ValueError, match="end_views"):
        PixelSolarState((2, 2), PixelSolarParams(end_views=40))
