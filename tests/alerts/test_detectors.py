"""Contract suite for every detector (shared base workflow) and each detector on its own signal."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from alerts.detectors import (
    HarvestDetector,
    HarvestParams,
    MowingDetector,
    MowingParams,
    SolarDetector,
    SolarParams,
    run_detectors,
)
from alerts.errors import SeriesError, UnknownParcelError, UnsupportedLandUseError
from alerts.series import ParcelAcquisition, add_regional_reference, iter_observations, to_days
from tests.alerts.conftest import (
    as_observations,
    harvest_series,
    mowing_series,
    nan_obs,
    s2_row,
    solar_series,
)

CASES = {
    "mowing": (MowingDetector, "grassland", lambda: mowing_series(cuts=(150.0, 220.0))),
    "harvest": (HarvestDetector, "cereal", lambda: add_regional_reference(harvest_series())),
    "solar": (SolarDetector, "grassland", lambda: solar_series()),
}


@pytest.fixture(params=sorted(CASES))
def case(request):
    cls, land_use, make = CASES[request.param]
    df = make()
    return cls(), land_use, df


class TestDetectorContract:
    def test_kernel_equals_reference(self, case):
        """The numba kernel of the detector, fed one acquisition at a time, gives the per-parcel
        reference's events (through the table API, what `sitsmon detect` runs), evidence included."""
        from alerts.detectors.batch import KERNELS, iter_acquisitions

        det, lu, df = case
        pid = df.parcel_id.iloc[0]
        reference, _ = det.run_frame(df, pd.DataFrame({"parcel_id": [pid], "land_use": [lu]}))
        assert reference, "the fixture series must produce at least one event"
        kernel = KERNELS[det.name]()
        states = kernel.init_states([pid], [lu])
        events = []
        for _, inputs in iter_acquisitions(det.prepare(df), pd.Index([pid])):
            events.extend(kernel.step(states, inputs))
        assert events == reference
        assert [e.evidence for e in events] == [e.evidence for e in reference]

    def test_kernel_resumed_from_dumped_arrays_equals_reference(self, case):
        """Half the series through the kernel, its state dumped to arrays and loaded into a new
        detector object, the rest from there: the uninterrupted reference run's events."""
        from alerts.detectors.batch import KERNELS, iter_acquisitions

        det, lu, df = case
        pid = df.parcel_id.iloc[0]
        full = det.run(pid, lu, iter_observations(det.prepare(df)))
        acqs = list(iter_acquisitions(det.prepare(df), pd.Index([pid])))
        first = KERNELS[det.name]()
        states = first.init_states([pid], [lu])
        events = []
        for _, inputs in acqs[: len(acqs) // 2]:
            events.extend(first.step(states, inputs))
        arrays = {k: np.array(v, copy=True) for k, v in first.dump(states).items()}
        del states
        second = KERNELS[det.name]()
        resumed = second.load(arrays)
        for _, inputs in acqs[len(acqs) // 2 :]:
            events.extend(second.step(resumed, inputs))
        assert events == full

    def test_nan_observation_leaves_state_unchanged_but_watermark(self, case):
        det, lu, df = case
        pid = df.parcel_id.iloc[0]
        state = det.init_state(pid, lu)
        for o in as_observations(df)[:10]:
            state, _ = det.update(state, o)
        for sensor in ("S2", "S1"):
            t = state.mark.t_last + 1.0
            after, events = det.update(state, nan_obs(pid, t, sensor))
            assert events == []
            assert replace(after, mark=state.mark) == state
            assert after.n_obs == state.n_obs

    def test_duplicate_is_skipped_and_out_of_order_refused(self, case):
        det, lu, df = case
        pid = df.parcel_id.iloc[0]
        obs = as_observations(df)
        state = det.init_state(pid, lu)
        for o in obs[:6]:
            state, _ = det.update(state, o)
        again, events = det.update(state, obs[5])
        assert again is state and events == []
        with pytest.raises(SeriesError, match="older than the last"):
            det.update(state, obs[2])

    def test_wrong_parcel_refused(self, case):
        det, lu, df = case
        state = det.init_state("A", lu)
        with pytest.raises(SeriesError, match="given to the state of A"):
            det.update(state, replace(as_observations(df)[0], parcel_id="B"))

    def test_empty_single_and_no_clear_series_give_no_events(self, case):
        det, lu, df = case
        pid = df.parcel_id.iloc[0]
        assert det.run(pid, lu, []) == []
        assert det.run(pid, lu, as_observations(df)[:1]) == []
        cloudy = df.copy()
        cloudy.loc[cloudy.sensor == "S2", "clear"] = 0
        cloudy = cloudy[cloudy.sensor == "S2"]
        assert det.run(pid, lu, iter_observations(cloudy)) == []


def test_unsupported_land_use_is_refused_or_skipped():
    det = MowingDetector()
    with pytest.raises(UnsupportedLandUseError, match="does not handle land use 'maize'"):
        det.init_state("X", "maize")
    df = mowing_series("X")
    events, skipped = det.run_frame(df, pd.DataFrame({"parcel_id": ["X"], "land_use": ["maize"]}))
    assert events == [] and skipped == ["X"]


def test_unknown_parcel_in_observations_is_an_error():
    df = mowing_series("X")
    with pytest.raises(UnknownParcelError, match="unknown parcel id 'X'"):
        MowingDetector().run_frame(df, pd.DataFrame({"parcel_id": ["Y"], "land_use": ["grassland"]}))


# -- mowing -----------------------------------------------------------------------------------------


def _days(events):
    return [e.date - to_days("2024-01-01") for e in events]


def test_mowing_finds_each_cut_within_a_few_days():
    df = mowing_series(cuts=(150.0, 215.0))
    events = MowingDetector().run("G1", "grassland", iter_observations(df))
    assert [e.event for e in events] == ["mowing", "mowing"]
    assert np.allclose(_days(events), [150.0, 215.0], atol=5.0)
    for e in events:
        assert 0.5 < e.confidence <= 1.0
        assert e.window[0] <= e.date <= e.window[1]
        assert e.evidence["ndvi_drop"] >= 0.21
        assert len(e.evidence["series_excerpt"]) >= 3


def test_mowing_ignores_a_single_cloud_dip_and_works_on_s2_alone():
    df = mowing_series(cuts=(), cloud_dip_at=180.0)
    assert MowingDetector().run("G1", "grassland", iter_observations(df)) == []
    s2 = mowing_series(cuts=(170.0,), with_s1=False)
    events = MowingDetector().run("G1", "grassland", iter_observations(s2))
    assert len(events) == 1 and events[0].sensor == "S2"


def test_mowing_minimum_separation():
    df = mowing_series(cuts=(150.0, 160.0))
    events = MowingDetector(MowingParams(min_separation_days=21.0)).run(
        "G1", "grassland", iter_observations(df)
    )
    assert len(events) == 1


def test_mowing_on_real_plots_finds_recorded_cuts(real_small):
    """Twelve real plots: most recorded cuts are found within ±12 days (full CV is `sitsmon eval mowing`)."""
    from alerts.evaluation import events_frame, parcel_years_of, score_events

    obs, parcels, events = real_small
    found, _ = MowingDetector().run_frame(obs, parcels)
    scores = score_events(events_frame(found), events, parcel_years_of(obs))
    assert scores["with_event"].tp >= 0.6 * (scores["with_event"].tp + scores["with_event"].fn)
    assert scores["all"].precision >= 0.5


# -- harvest ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("clouded", [False, True])
def test_harvest_dated_from_s1_even_when_s2_is_clouded(clouded):
    df = harvest_series(harvest=200.0, clouded=clouded)
    events = HarvestDetector().run("C1", "cereal", iter_observations(df))
    assert len(events) == 1
    assert abs(_days(events)[0] - 200.0) <= 3.0
    assert events[0].sensor == "S1"
    assert events[0].evidence["drop"] >= 2.5


def test_harvest_regional_reference_removes_common_weather_steps():
    """A drying step shared by every parcel is not a harvest once the regional median is removed."""
    frames = []
    for i in range(5):
        d = harvest_series(pid=f"C{i}", harvest=400.0, seed=i)  # never harvested in the season
        s1 = d.sensor == "S1"
        dry = s1 & (d.days - to_days("2024-01-01") >= 180)
        d.loc[dry, "VH"] = d.loc[dry, "VH"] * 10 ** (-4 / 10)  # -4 dB everywhere from day 180
        frames.append(d)
    df = pd.concat(frames, ignore_index=True).sort_values(["parcel_id", "days"]).reset_index(drop=True)
    parcels = pd.DataFrame({"parcel_id": [f"C{i}" for i in range(5)], "land_use": ["cereal"] * 5})
    with_ref, _ = HarvestDetector().run_frame(df, parcels)
    without, _ = HarvestDetector(HarvestParams(use_regional_reference=False)).run_frame(df, parcels)
    assert with_ref == []
    assert len(without) == 5


# -- solar ------------------------------------------------------------------------------------------


def test_solar_parcel_start_of_works():
    df = solar_series(works=150.0)
    events = SolarDetector().run("P1", "grassland", iter_observations(df))
    assert len(events) == 1
    assert abs(_days(events)[0] - 150.0) <= 10.0
    assert events[0].evidence["vv_recent_db"] - events[0].evidence["vv_baseline_db"] >= 4.0


def test_solar_no_event_on_stable_parcel():
    df = solar_series(works=1000.0)
    assert SolarDetector().run("P1", "cereal", iter_observations(df)) == []


def test_run_detectors_routes_by_land_use():
    g = mowing_series("G1", cuts=(150.0,))
    c = harvest_series("C1")
    df = pd.concat([g, c], ignore_index=True).sort_values(["parcel_id", "days"]).reset_index(drop=True)
    parcels = pd.DataFrame({"parcel_id": ["G1", "C1"], "land_use": ["grassland", "cereal"]})
    events, skipped = run_detectors(df, parcels, [MowingDetector(), HarvestDetector(), SolarDetector()])
    kinds = {(e.parcel_id, e.event) for e in events}
    assert ("G1", "mowing") in kinds and ("C1", "harvest") in kinds
    assert skipped["mowing"] == ["C1"] and skipped["harvest"] == ["G1"]


def test_observation_validation():
    with pytest.raises(SeriesError, match="sensor must be S2 or S1"):
        ParcelAcquisition(parcel_id="A", time=1.0, sensor="L8")
    with pytest.raises(SeriesError, match="not finite"):
        ParcelAcquisition(parcel_id="A", time=math.nan, sensor="S2")
    o = next(
        iter_observations(
            pd.DataFrame([s2_row("A", 1.0, 0.6)]).pipe(
                __import__("alerts.series", fromlist=["x"]).normalise_observations
            )
        )
    )
    assert o.ndvi == pytest.approx(0.6)


def test_state_round_trip_through_zarr(tmp_path, case):
    from alerts.detectors.state_io import state_from_dict, state_to_dict, states_from_zarr, states_to_zarr

    det, lu, df = case
    pid = df.parcel_id.iloc[0]
    obs = as_observations(df)
    state = det.init_state(pid, lu)
    fresh = state
    first = []
    for o in obs[: len(obs) // 2]:
        state, new = det.update(state, o)
        first.extend(new)
    states_to_zarr([state, fresh], str(tmp_path / "states.zarr"))
    back, back_fresh = states_from_zarr(str(tmp_path / "states.zarr"))
    assert back == state and back_fresh == fresh
    # resuming from the restored state gives the same events as the uninterrupted run
    rest = []
    for o in obs[len(obs) // 2 :]:
        back, new = det.update(back, o)
        rest.extend(new)
    assert first + rest == det.run(pid, lu, obs)
    with pytest.raises(SeriesError, match="schema"):
        state_from_dict({**state_to_dict(state), "schema": "old/0"})


def test_mowing_in_a_cloudy_spell_is_seen_by_s1():
    """Six parcels, one mown on day 160 inside a 50-day cloudy spell: S1 VH (relative to the region)
    dips 3 dB for 9 days; S2 sees nothing clear between days 140 and 190."""
    from tests.alerts.conftest import s1_row

    rng = np.random.default_rng(3)
    rows = []
    for i in range(6):
        pid = f"G{i}"
        for day in np.arange(60.0, 300.0, 5.0):
            clear = 0 if 140 <= day <= 190 else 1
            rows.append(s2_row(pid, day, 0.8 + rng.normal(0, 0.01), clear=clear))
        for j, day in enumerate(np.arange(61.0, 300.0, 3.0)):
            weather = 1.5 * np.sin(day / 20.0)  # shared by all parcels
            cut = -3.0 if (i == 0 and 160 <= day < 169) else 0.0
            rows.append(
                s1_row(pid, day, -16.0 + weather + cut + rng.normal(0, 0.3), orbit=73 if j % 2 else 124)
            )
    df = pd.DataFrame(rows)
    from alerts.series import normalise_observations

    df = normalise_observations(df)
    parcels = pd.DataFrame({"parcel_id": [f"G{i}" for i in range(6)], "land_use": ["grassland"] * 6})
    events, _ = MowingDetector().run_frame(df, parcels)
    assert [(e.parcel_id, e.sensor) for e in events] == [("G0", "S1")]
    assert abs(_days(events)[0] - 160.0) <= 3.0
    assert "cloudy spell" in events[0].evidence["reason"]
    off, _ = MowingDetector(MowingParams(s1_spells=False)).run_frame(df, parcels)
    assert off == []


# -- solar: works phase (no panels yet) ----------------------------------------------------------------


def _region_with_works(
    ndvi_before: float = 0.75,
    ndvi_after: float = 0.15,
    vv_rise: float = 3.0,
    change_day: float = 240.0,
    n_stable: int = 5,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``n_stable`` green grassland parcels and one parcel "W" whose NDVI goes from ``ndvi_before``
    to ``ndvi_after`` and whose VV rises by ``vv_rise`` dB on ``change_day`` (series to day 300).
    Every parcel shares a -3 dB wet-then-dry weather swing (days 150-180) and orbit offsets."""
    from tests.alerts.conftest import s1_row

    rng = np.random.default_rng(3)
    rows = []
    pids = ["W", *(f"G{i}" for i in range(n_stable))]
    for pid in pids:
        for i, day in enumerate(np.arange(1.0, 300.0, 3.0)):
            weather = -3.0 if 150 <= day < 180 else 0.0
            orbit_off = 0.8 if i % 2 else 0.0
            step = vv_rise if pid == "W" and day >= change_day else 0.0
            vv = -12.0 + weather + orbit_off + step + rng.normal(0, 0.3)
            vh = (
                -17.0
                + weather
                + orbit_off
                + rng.normal(0, 0.3)
                - (4.0 if pid == "W" and day >= change_day else 0)
            )
            rows.append(s1_row(pid, day, vh, vv_db=vv, orbit=73 if i % 2 else 124))
        for day in np.arange(2.0, 300.0, 10.0):
            nd = ndvi_after if pid == "W" and day >= change_day else ndvi_before if pid == "W" else 0.75
            rows.append(s2_row(pid, day, nd))
    df = pd.DataFrame(rows)
    from alerts.series import normalise_observations

    parcels = pd.DataFrame({"parcel_id": pids, "land_use": ["grassland"] * len(pids)})
    return normalise_observations(df), parcels


def test_add_regional_reference_adds_vv_too():
    df, _ = _region_with_works()
    ref = add_regional_reference(df)
    s1 = ref.sensor == "S1"
    assert ref.loc[s1, "VV_ref"].notna().all() and ref.loc[~s1, "VV_ref"].isna().all()
    assert ref.loc[s1, "VH_ref"].notna().all()
    first = ref[s1 & (ref.days == ref.loc[s1, "days"].min())]
    assert first.VV_ref.iloc[0] == pytest.approx(float(np.median(10 * np.log10(first.VV))))
    obs = as_observations(ref[ref.parcel_id == "W"])
    assert all(math.isfinite(o.vv_ref) for o in obs if o.sensor == "S1")
    assert ParcelAcquisition("P", 1.0, "S1").vv_ref != ParcelAcquisition("P", 1.0, "S1").vv_ref  # NaN by default


def test_solar_works_phase_without_panels_is_found_and_dated():
    df, parcels = _region_with_works()
    events, _ = SolarDetector().run_frame(df, parcels)
    assert [e.parcel_id for e in events] == ["W"]
    e = events[0]
    assert e.evidence["phase"] == "works"
    assert abs(e.date - (to_days("2024-01-01") + 240.0)) <= 7.0
    # confirmed only once the rise has lasted works_min_days: from day 240 + 21 on
    assert e.window[1] - e.window[0] <= 15.0
    # off: the works phase rule is what finds it
    off, _ = SolarDetector(SolarParams(works_phase=False)).run_frame(df, parcels)
    assert off == []


def test_solar_works_phase_streaming_equals_batch_and_survives_a_checkpoint():
    from alerts.detectors.state_io import state_from_dict, state_to_dict

    df, parcels = _region_with_works()
    det = SolarDetector()
    prepared = det.prepare(df)
    obs = as_observations(prepared[prepared.parcel_id == "W"])
    state = det.init_state("W", "grassland")
    events = []
    for i, o in enumerate(obs):
        state, new = det.update(state, o)
        events.extend(new)
        if i == len(obs) * 2 // 3:
            state = state_from_dict(state_to_dict(state))
    batch, _ = det.run_frame(df, parcels)
    assert events == batch and len(events) == 1
    # an old state without the VV-anomaly buffer still loads (field defaults to empty)
    d = state_to_dict(det.init_state("W", "grassland"))
    d["state"].pop("s1a")
    assert state_from_dict(d).s1a == ()


@pytest.mark.parametrize(
    ("ndvi_before", "ndvi_after", "vv_rise", "why"),
    [
        (0.35, 0.15, 3.0, "senesced crop harvested: not green before"),
        (0.75, 0.45, 3.0, "cut grass keeps a green residual: not bare after"),
        (0.75, 0.0, 3.0, "snow or water: NDVI about 0, not bare soil"),
        (0.75, 0.15, 0.8, "bare but VV barely moves"),
    ],
)
def test_solar_works_phase_needs_green_to_bare_soil_and_a_vv_rise(ndvi_before, ndvi_after, vv_rise, why):
    df, parcels = _region_with_works(ndvi_before=ndvi_before, ndvi_after=ndvi_after, vv_rise=vv_rise)
    events, _ = SolarDetector().run_frame(df, parcels)
    assert events == [], why


def test_solar_works_phase_needs_a_lasting_rise():
    """Works begun 15 days before the series ends: not yet confirmed (works_min_days 21)."""
    df, parcels = _region_with_works(change_day=285.0)
    assert SolarDetector().run_frame(df, parcels)[0] == []


def test_solar_params_validation_of_works_phase():
    with pytest.raises(ValueError, match="works_rise_db"):
        SolarParams(works_rise_db=0.5, works_onset_db=1.0)
    with pytest.raises(ValueError, match="works_soil_min_ndvi"):
        SolarParams(works_bare_ndvi=0.6, works_green_ndvi=0.5)


# -- mowing: the streaming shortcut of scan --------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@st.composite
def _grass_series(draw):
    """Random clear-view NDVI series: gaps of 1-15 days, plateaus, drops (cuts), dips (clouds)."""
    n = draw(st.integers(3, 45))
    gaps = draw(st.lists(st.sampled_from([1.0, 2.0, 3.0, 5.0, 5.0, 7.0, 10.0, 15.0]), min_size=n, max_size=n))
    t = 19800.0 + np.cumsum(gaps)
    moves = draw(
        st.lists(
            st.sampled_from([0.0, 0.0, 0.0, 0.02, -0.02, -0.3, -0.15, 0.1, "dip"]), min_size=n, max_size=n
        )
    )
    v, level = [], 0.8
    for m in moves:
        if m == "dip":
            v.append(level - 0.3)
            continue
        level = float(np.clip(level + m, 0.1, 0.9))
        v.append(level)
    return t, np.asarray(v)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(_grass_series())
def test_mowing_scan_shortcut_equals_full_scan(series):
    """``scan`` on each new view with the shortcut (only the newest candidates), chained as the
    detector chains it, confirms the same cuts as one full scan of the final series.

    What holds (and what hypothesis found does not): the same cuts, dates, windows, drops and
    envelopes. The ``next`` view, hence the persistence term of the confidence and the excerpt, are
    those the stream saw: a cut confirmed on a provisional last view that later proves a cloud dip
    keeps the confidence it was emitted with (a stream cannot take an alert back); the full scan
    sees the dip removed. Where the successor stood, the confidence terms are equal too."""
    from alerts.detectors.mowing import scan

    t, v = series
    p = MowingParams()
    stream, last = [], float("-inf")
    for k in range(1, len(t) + 1):
        for cut in scan(t[:k], v[:k], (), p, after=last):
            stream.append(cut)
            last = cut.window[1]  # scan's own separation runs on the first low view
    full = scan(t, v, (), p, after=float("-inf"), full=True)

    def decided(c):  # the verdict and the views it rests on
        return (c.window, c.date, c.drop, c.envelope, c.before, c.after)

    assert [decided(c) for c in stream] == [decided(c) for c in full]
    for a, b in zip(stream, full, strict=True):
        if a.next == b.next:  # the successor the stream saw stood: the confidence is the full scan's
            assert (a.confidence, a.terms) == (b.confidence, b.terms)


def _plain_window_step(t, v, p: HarvestParams, min_drop: float, margin: float):
    """The windowed step rule read plainly (the harvest detector's own finder before it delegated to
    ``steps.find_window_step``): every split tried, windows counted, the best drop kept."""
    best = None
    for k in range(1, len(t)):
        if len(t) > 1 and t[k] + p.after_days <= t[-2]:
            continue  # its windows were already complete at the previous view: decided then
        pre = (t >= t[k] - p.before_days) & (t < t[k])
        post = (t >= t[k]) & (t <= t[k] + p.after_days)
        if pre.sum() < p.min_before or post.sum() < p.min_after or t[-1] < t[k] + p.after_days:
            continue
        m_pre, m_post = float(v[pre].mean()), float(v[post].mean())
        drop = m_pre - m_post
        if drop < min_drop or float(v[post].max()) > m_pre - margin or v[k - 1] < m_pre - margin:
            continue
        if best is None or drop > best[5]:
            best = (k, float(t[k - 1]), float(t[k]), m_pre, m_post, drop)
    return best


@settings(max_examples=200, deadline=None, derandomize=True)
@given(_grass_series(), st.sampled_from([0.1, 0.2, 2.5]))
def test_shared_window_step_best_equals_a_plain_reading(series, min_drop):
    """``steps.find_window_step(pick="best")`` (harvest's S1 rule; mowing's S1 rule uses
    ``pick="first"``) equals the rule read plainly, split for split."""
    from alerts.detectors.steps import find_window_step

    t, v = series
    v = v * (10.0 if min_drop > 1 else 1.0)
    p = HarvestParams()
    for k in range(2, len(t) + 1):
        own = _plain_window_step(t[:k], v[:k], p, min_drop, 0.5 * min_drop)
        shared = find_window_step(
            t[:k],
            v[:k],
            before_days=p.before_days,
            after_days=p.after_days,
            min_before=p.min_before,
            min_after=p.min_after,
            min_drop=min_drop,
            margin=0.5 * min_drop,
            pick="best",
        )
        assert (own is None) == (shared is None)
        if own is not None:
            assert own == (shared.k, shared.t_hi, shared.t_lo, shared.pre, shared.post, shared.drop)
