"""The numba kernels (``alerts.detectors.batch``) against the plain per-parcel reference.

Every table is fed as the monitor feeds it: grouped by (time, sensor), one ``step`` per acquisition
over all parcels of the tile, in time order. Each kernel must give the reference's events exactly
(parcel, type, date, window, confidence, sensor and every evidence field) and the same states
(watermark, counts, series buffers, last event). Parametrised per detector: a change of the rules
in one of the Python detectors that the kernel does not follow fails here, by name.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alerts.detectors.batch import (
    KERNELS,
    PORTED_RULES,
    AcquisitionInputs,
    KernelBatch,
    ReferenceBatch,
    iter_acquisitions,
    make_batch_detectors,
    rules_fingerprint,
)
from alerts.detectors.kernels import day_of_year
from alerts.errors import SeriesError
from alerts.series import add_regional_reference, normalise_observations, read_observations, read_parcels
from alerts.series import day_of_year as py_day_of_year
from tests.alerts.conftest import REAL, harvest_series, mowing_series, s1_row, s2_row, solar_series

NAMES = ("mowing", "harvest", "solar")
LAND_USE = {"mowing": "grassland", "harvest": "cereal", "solar": "grassland"}


def feed(det, obs: pd.DataFrame, parcels: pd.DataFrame, states=None):
    index = pd.Index(parcels["parcel_id"].astype(str))
    if states is None:
        states = det.init_states(list(index), list(parcels["land_use"]))
    events = []
    for _, inputs in iter_acquisitions(obs, index):
        events.extend(det.step(states, inputs))
    return events, states


def event_tuple(e):
    return (e.parcel_id, e.event, e.date, e.window, e.confidence, e.sensor, e.evidence)


def assert_same_events(kernel_events, reference_events):
    assert [event_tuple(e) for e in kernel_events] == [event_tuple(e) for e in reference_events]


SERIES_FIELDS = {
    "mowing": {"s2": "s2", "s1": "s1", "s1n": "s1n"},
    "harvest": {"s1": "s1", "s2": "s2"},
    "solar": {"s1": "s1", "s2": "s2", "s1a": "s1a"},
}
LAST_FIELD = {"mowing": "last_cut", "harvest": "last_harvest", "solar": "found"}


def assert_same_states(name, kernel: KernelBatch, kstates, rstates):
    a = kstates.arrays
    assert (a["overflow"] == 0).all(), "a buffer overflowed: capacities too small for this series"
    assert list(kstates.index) == list(np.flatnonzero(rstates.handled))
    for j, i in enumerate(kstates.index):
        ref = rstates.states[i]
        assert a["t_last"][j] == ref.mark.t_last
        bits = (1 if "S2" in ref.mark.sensors_at_last else 0) | (2 if "S1" in ref.mark.sensors_at_last else 0)
        if np.isfinite(ref.mark.t_last):
            assert a["sensors"][j] == bits
        assert a["n_obs"][j] == ref.n_obs
        assert a[LAST_FIELD[name]][j] == getattr(ref, LAST_FIELD[name])
        for arr_name, field in SERIES_FIELDS[name].items():
            got = a[arr_name][j, : a[f"n_{arr_name}"][j]]
            want = np.asarray(getattr(ref, field), dtype=float).reshape(-1, got.shape[1])
            np.testing.assert_array_equal(got, want)


def run_both(name, obs, parcels):
    kernel = KERNELS[name]()
    reference = make_batch_detectors([name], kernel=False)[0]
    assert isinstance(kernel, KernelBatch) and isinstance(reference, ReferenceBatch)
    k_events, k_states = feed(kernel, obs, parcels)
    r_events, r_states = feed(reference, obs, parcels)
    return kernel, k_events, k_states, r_events, r_states


@pytest.mark.parametrize("name", NAMES)
def test_kernel_is_ported_from_the_present_rules(name):
    """The detector's Python rules are those the kernel was ported from. Fails when a rule changes
    (the monitor then runs the per-parcel reference for that detector, with a warning): port the
    kernel, make the equality tests below pass, then record ``rules_fingerprint(name)`` in
    ``alerts.detectors.batch.PORTED_RULES``."""
    assert rules_fingerprint(name) in PORTED_RULES[name], f"{name}: rules changed since the kernel was ported"
    assert isinstance(make_batch_detectors([name])[0], KERNELS[name])


def test_changed_rules_fall_back_to_the_reference(monkeypatch, caplog):
    monkeypatch.setitem(PORTED_RULES, "mowing", ("some-older-rules",))
    (det,) = make_batch_detectors(["mowing"])
    assert isinstance(det, ReferenceBatch) and "running the per-parcel reference" in caplog.text


# -- data -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real():
    obs = add_regional_reference(read_observations(REAL / "observations.csv"))
    parcels = read_parcels(REAL / "parcels.csv")[["parcel_id", "land_use"]]
    return obs, parcels


def _synthetic_tile() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Grassland with cuts (with/without S1, a cloud dip), cereals harvested (one clouded), solar
    works, and S2-only cereals: every rule path of the three detectors, on one tile."""
    frames, lus = [], []
    for k, cuts in enumerate(((150.0, 220.0), (160.0,), (), (140.0, 175.0, 240.0))):
        frames.append(mowing_series(f"G{k}", cuts=cuts, seed=k, cloud_dip_at=180.0 if k == 2 else None))
        lus.append("grassland")
    frames.append(mowing_series("G9", cuts=(170.0,), with_s1=False))
    lus.append("meadow")
    for k, day in enumerate((200.0, 230.0, 400.0)):
        frames.append(harvest_series(f"C{k}", harvest=day, seed=k, clouded=k == 1))
        lus.append("cereal")
    s2_only = harvest_series("C8", harvest=210.0)
    frames.append(s2_only[s2_only.sensor == "S2"])
    lus.append("maize")
    for k, works in enumerate((150.0, 90.0)):
        frames.append(solar_series(f"P{k}", works=works, seed=k))
        lus.append("grassland" if k == 0 else "cereal")
    df = pd.concat(frames, ignore_index=True)
    obs = add_regional_reference(normalise_observations(df))
    parcels = pd.DataFrame({"parcel_id": sorted(obs.parcel_id.unique())})
    lu = dict(zip([f.parcel_id.iloc[0] for f in frames], lus, strict=True))
    parcels["land_use"] = parcels.parcel_id.map(lu)
    return obs, parcels


def _random_tile(seed: int, n: int = 40) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Noisy random series with steps, NaN values, cloudy and unknown-clear views, missing parcels in
    some acquisitions, two orbits, a shared weather signal and a regional reference: the awkward
    cases (ties, gaps, near-threshold drops) the hand-made series do not reach."""
    rng = np.random.default_rng(seed)
    rows = []
    # acquisitions on the tile's grid (every parcel of a tile is seen at the same times), with gaps
    s2_days = np.arange(rng.uniform(0, 4), 330.0, rng.choice([2.0, 3.0, 5.0]))
    s1_days = np.arange(rng.uniform(0, 3), 330.0, rng.choice([3.0, 6.0]))
    for p in range(n):
        pid = f"R{p:02d}"
        cut_days = np.sort(rng.uniform(100, 280, rng.integers(0, 4)))
        step_day = rng.uniform(80, 300)
        rise_day = rng.uniform(60, 300) if rng.random() < 0.3 else 1e9
        for day in s2_days:
            if rng.random() < 0.15:
                continue
            v = 0.8 - sum(0.35 * max(0.0, 1 - (day - c) / 25) for c in cut_days if day >= c)
            v += rng.normal(0, 0.04) - (0.3 if rng.random() < 0.05 else 0.0)
            clear = rng.choice([1, 1, 1, 0, np.nan]) if rng.random() < 0.3 else 1
            row = s2_row(pid, float(day), float(np.clip(v, -0.2, 0.95)), clear=clear)
            # tillage index: standing crop/straw (NDTI ~0.25) until the parcel's step, stubble after
            row["B11"] = 0.25 + rng.normal(0, 0.01)
            row["B12"] = (0.15 if day < step_day else 0.2) + rng.normal(0, 0.01)
            if rng.random() < 0.03:
                row["B04"] = np.nan
            rows.append(row)
        for j, day in enumerate(s1_days):
            if rng.random() < 0.1:
                continue
            weather = 1.5 * np.sin(day / 17.0)
            vh = -16 + weather - (4.0 if day >= step_day else 0.0) + rng.normal(0, 0.6)
            vh -= 3.0 if any(c <= day < c + 10 for c in cut_days) else 0.0
            vv = -12 + weather + (7.0 * min(1.0, max(0.0, (day - rise_day) / 30))) + rng.normal(0, 0.5)
            row = s1_row(pid, float(day), vh, vv_db=vv, orbit=73 if j % 2 else 124)
            if rng.random() < 0.03:
                row["VH"] = np.nan
            rows.append(row)
    obs = add_regional_reference(normalise_observations(pd.DataFrame(rows)))
    lus = rng.choice(["grassland", "cereal", "maize", "forest"], n)
    return obs, pd.DataFrame({"parcel_id": [f"R{p:02d}" for p in range(n)], "land_use": lus})


# -- the equality tests ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_kernel_equals_reference_on_real_series(name, real):
    """All 116 real plots of grassland-sk-dev, labelled with a land use the detector handles."""
    obs, parcels = real
    parcels = parcels.assign(land_use=LAND_USE[name])
    kernel, k_events, k_states, r_events, r_states = run_both(name, obs, parcels)
    if name == "mowing":
        assert len(r_events) > 50  # the real plots are mown: the comparison is not vacuous
    assert_same_events(k_events, r_events)
    assert_same_states(name, kernel, k_states, r_states)


@pytest.mark.parametrize("name", NAMES)
def test_kernel_equals_reference_on_synthetic_series(name):
    obs, parcels = _synthetic_tile()
    kernel, k_events, k_states, r_events, r_states = run_both(name, obs, parcels)
    assert r_events, f"the synthetic tile must raise {name} events"
    assert_same_events(k_events, r_events)
    assert_same_states(name, kernel, k_states, r_states)
    # the reference batch is the offline command's result (the same events, parcel by parcel)
    from alerts.detectors import make_detectors

    offline, _ = make_detectors([name])[0].run_frame(obs, parcels)
    key = lambda e: (e.parcel_id, e.date)  # noqa: E731
    assert [event_tuple(e) for e in sorted(r_events, key=key)] == [
        event_tuple(e) for e in sorted(offline, key=key)
    ]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("seed", [0, 1])
def test_kernel_equals_reference_on_random_series(name, seed):
    obs, parcels = _random_tile(seed)
    kernel, k_events, k_states, r_events, r_states = run_both(name, obs, parcels)
    assert_same_events(k_events, r_events)
    assert_same_states(name, kernel, k_states, r_states)


@pytest.mark.parametrize("name", NAMES)
def test_kernel_state_dump_load_resumes_equal_to_reference(name, tmp_path):
    """Stop half way, dump the state arrays through a Zarr group, load them into a new detector
    object and go on: the events equal the uninterrupted reference run; a state of other
    parameters is refused."""
    import zarr

    obs, parcels = _synthetic_tile()
    index = pd.Index(parcels.parcel_id)
    acqs = list(iter_acquisitions(obs, index))
    half = len(acqs) // 2
    kernel = KERNELS[name]()
    states = kernel.init_states(list(index), list(parcels.land_use))
    events = []
    for _, inputs in acqs[:half]:
        events.extend(kernel.step(states, inputs))
    group = zarr.open_group(str(tmp_path / "state.zarr"), mode="w")
    for k, v in kernel.dump(states).items():  # strings as Zarr's str, as the monitor's state store does
        a = group.create_array(k, shape=v.shape, dtype=str if v.dtype.kind == "U" else v.dtype)
        a[...] = v
    for v in states.arrays.values():  # the dump is a copy: scribbling on the live state changes nothing
        v[...] = 0
    dumped = {
        k: np.asarray(a[...]) for k, a in zarr.open_group(str(tmp_path / "state.zarr"), mode="r").arrays()
    }
    fresh = KERNELS[name]()
    restored = fresh.load(dumped)
    for _, inputs in acqs[half:]:
        events.extend(fresh.step(restored, inputs))
    reference = make_batch_detectors([name], kernel=False)[0]
    r_events, r_states = feed(reference, obs, parcels)
    assert_same_events(events, r_events)
    assert_same_states(name, fresh, restored, r_states)
    # the reference's own dump/load (JSON per parcel) resumes too
    r2 = make_batch_detectors([name], kernel=False)[0]
    rs = r2.init_states(list(index), list(parcels.land_use))
    r_ev = []
    for _, inputs in acqs[:half]:
        r_ev.extend(r2.step(rs, inputs))
    rs = r2.load(r2.dump(rs))
    for _, inputs in acqs[half:]:
        r_ev.extend(r2.step(rs, inputs))
    assert_same_events(r_ev, r_events)
    bad = dict(dumped, state_version=np.asarray(["mowing-kernel/0;x"]))
    with pytest.raises(SeriesError, match="state version"):
        fresh.load(bad)


@pytest.mark.parametrize("kernel", [True, False])
def test_late_acquisition_refused_before_any_change_and_duplicate_skipped(kernel):
    obs, parcels = _synthetic_tile()
    index = pd.Index(parcels.parcel_id)
    acqs = list(iter_acquisitions(obs, index))
    det = KERNELS["mowing"]() if kernel else make_batch_detectors(["mowing"], kernel=False)[0]
    states = det.init_states(list(index), list(parcels.land_use))
    for _, inputs in acqs[:40]:
        det.step(states, inputs)
    before = {k: v.copy() for k, v in det.dump(states).items()}
    with pytest.raises(SeriesError, match="older than the last"):
        det.step(states, acqs[10][1])
    assert det.step(states, acqs[39][1]) == []  # a re-delivery of the last acquisition
    after = det.dump(states)
    for k, v in before.items():
        np.testing.assert_array_equal(after[k], v, err_msg=k)


def test_unhandled_parcels_hold_no_state_and_missing_rows_change_nothing():
    obs, parcels = _synthetic_tile()
    det = KERNELS["harvest"]()
    states = det.init_states(list(parcels.parcel_id), list(parcels.land_use))
    handled = parcels.land_use.isin(["cereal", "maize"]).to_numpy()
    np.testing.assert_array_equal(states.handled, handled)
    assert states.arrays["t_last"].shape == (int(handled.sum()),)
    empty = AcquisitionInputs.empty("S2", len(parcels))
    assert det.step(states, empty) == []
    assert np.isneginf(states.arrays["t_last"]).all()


def test_inputs_from_frame_refuse_bad_rows():
    obs, parcels = _synthetic_tile()
    index = pd.Index(parcels.parcel_id)
    rows = obs[obs.days == obs.days.min()]
    with pytest.raises(SeriesError, match="not in the tile's parcel index"):
        AcquisitionInputs.from_frame(rows, index.drop(rows.parcel_id.iloc[0]))
    with pytest.raises(SeriesError, match="one acquisition per call"):
        AcquisitionInputs.from_frame(obs.head(400), index)
    with pytest.raises(SeriesError, match="expected shape"):
        AcquisitionInputs.empty("S2", 3).__class__(
            **{**AcquisitionInputs.empty("S2", 3).__dict__, "vh": np.zeros(2)}
        )


def test_kernel_day_of_year_equals_pandas():
    rng = np.random.default_rng(0)
    days = np.concatenate([rng.uniform(-800, 30000, 2000), np.arange(19000, 19800) + 0.5, [0.0, -0.5]])
    assert [day_of_year(float(d)) for d in days] == [py_day_of_year(float(d)) for d in days]


def test_bench_detectors_reports_every_kernel():
    """The bench `sitsmon bench monitor` calls: its shape, at a tiny size (no timing asserted)."""
    from alerts.detectors.bench import bench_detectors

    out = bench_detectors(parcels=300, reference_parcels=30, days=200.0)
    assert set(out["detectors"]) == set(NAMES)
    for d in out["detectors"].values():
        assert d["acquisitions"] > 20 and d["kernel_us_per_parcel"] > 0 and d["state_bytes_per_parcel"] > 0
    assert out["detectors"]["mowing"]["events"] > 0


def test_a_full_buffer_is_counted_and_logged(caplog):
    """Capacity is sized for real revisits; a denser series drops the oldest views, counted per
    parcel and logged (the state then holds less than the reference: never silently)."""
    det = KERNELS["harvest"]()
    states = det.init_states(["C"], ["cereal"])
    cap = det.capacity()
    for k in range(cap + 3):  # S1 every 0.1 days: more views inside buffer_days than the capacity
        inp = AcquisitionInputs.empty("S1", 1)
        inp.t_days[:] = 19900.0 + 0.1 * k
        inp.vh[:] = 0.02
        det.step(states, inp)
    assert states.arrays["overflow"][0] == 3
    assert states.arrays["n_s1"][0] == cap
    assert "buffer entries dropped" in caplog.text
