"""``monitor replay`` folds blocks of acquisitions with the chunkwise form of the encoder and ends where the
stream (the recurrent step, one event at a time through the bus) ends: the same folds, encoder states to
fp32 tolerance, the same detector states and alerts, the same expectations to fp32 tolerance, the same
rewind points.

Tolerance: the chunkwise form sums the same terms as the recurrent one in another order (intra-chunk
``(Q Kᵀ ⊙ D) V`` plus the decayed carried state, instead of one rank-one update per step), so each state
entry may differ by a few fp32 roundings of the largest terms it sums: we allow 1e-5 of the largest
magnitude of each array (fp32 epsilon 1.2e-7 times the ~100 acquisitions of a season), and 1e-5 absolute
on NDVI expectations and stds (values of order 1, read out through the heads' few layers). Counts and
times, which the block takes from the tokens themselves, must be equal.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from monitor.bus import make_bus
from monitor.config import MonitorConfig
from monitor.replay import replay_period
from monitor.replay_block import blocks, kept_checkpoints
from monitor.service import Monitor, Service
from tests.monitor.conftest import write_parcels
from tests.monitor.helpers import TILE, publish, write_slots

STATE_RTOL = 1e-5  # of the largest magnitude of each state array (see the module docstring)
NDVI_ATOL = 1e-5


def assert_close_state(a, b) -> None:
    """Encoder states: layers and ``h_last`` within tolerance; counts, times, clear anchors equal."""
    for x, y in [*zip(a.layers, b.layers, strict=True), (a.h_last, b.h_last)]:
        scale = float(y.abs().max()) or 1.0
        np.testing.assert_allclose(x.numpy(), y.numpy(), rtol=0, atol=STATE_RTOL * scale)
    for name in ("count", "t_last", "last_clear", "t_last_clear"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


# ---- the sits block fold against T streaming steps ------------------------------------------------------
def _acquisitions(model, n: int, n_steps: int, seed: int = 0):
    """``n_steps`` acquisitions (S2 and S1 mixed, same-day pairs, a gap of 120 days) for ``n`` rows, each row
    absent from about a third of them (rows 0-2 absent from the first few: an empty state, then a block
    that opens with "no observation")."""
    import sits

    rng = np.random.default_rng(seed)
    t0 = 1_714_521_600  # 2024-05-01
    day, out = 0.0, []
    for j in range(n_steps):
        sensor = "S2" if j % 3 != 1 else "S1"
        day += 0.0 if j == 4 else 120.0 if j == 9 else float(rng.integers(1, 7))
        names = model.bands.s2 if sensor == "S2" else model.bands.s1
        values = (rng.uniform(0.02, 0.4, (n, len(names))) if sensor == "S2"
                  else rng.uniform(0.005, 0.2, (n, len(names)))).astype(np.float32)
        absent = rng.random(n) < 0.33
        absent[:3] = j < 5
        values[absent] = np.nan
        time_s = np.full(n, t0 + int(day * 86400), np.int64)
        out.append(sits.Observation(time=time_s, sensor=sensor, values=values,
                                    clear=(rng.random(n) < 0.7).astype(np.float32),
                                    orbit=np.full(n, 73, np.int64)))
    return out


@pytest.mark.parametrize(("mode", "chunk"), [("chunk", 4), ("parallel", None)])
def test_a_block_fold_equals_the_streaming_steps(model, mode, chunk) -> None:
    from sits.models.block_fold import fold_block, forecast_before
    from sits.tokens import TokenBatch, batch_observation

    model = copy.deepcopy(model)
    if chunk is not None:  # several chunks inside the block: the carried state across chunks is exercised
        for block in model.blocks:
            block.mixer.chunk_size = chunk
    n = 40
    acqs = _acquisitions(model, n, 14)
    state = model.init_state(n)
    for obs in acqs[:2]:  # a state with some history for most rows
        state, _ = model.step(state, obs)
    block = acqs[2:]
    streamed, forecasts = state, []
    for obs in block:
        if obs.sensor == "S2":
            forecasts.append(model.forecast(streamed, obs.time, "S2").ndvi())
        streamed, _ = model.step(streamed, obs)
    parts = [batch_observation(obs, model.normalization) for obs in block]
    tb = TokenBatch(*(torch.cat([getattr(p, f) for p in parts], dim=1) for f in TokenBatch.__slots__))
    new, h, before = fold_block(model, state, tb, mode=mode)
    assert_close_state(new, streamed)
    s2 = [j for j, obs in enumerate(block) if obs.sensor == "S2"]
    rows = torch.arange(n)
    for j, (mean, std) in zip(s2, forecasts, strict=True):
        pred = forecast_before(model, before, rows, torch.full((n,), j), tb.t_days[:, j], "S2")
        got_mean, got_std = pred.ndvi()
        np.testing.assert_allclose(got_mean, mean, rtol=0, atol=NDVI_ATOL)
        np.testing.assert_allclose(got_std, std, rtol=0, atol=NDVI_ATOL)
    assert state.count.sum() < new.count.sum()  # the input state was not touched
    assert not (streamed.count == state.count).all()


def test_a_block_out_of_time_order_is_refused(model) -> None:
    import sits
    from sits.models.block_fold import fold_block
    from sits.tokens import TokenBatch, batch_observation

    first, second = _acquisitions(model, 5, 2)
    back = sits.Observation(time=first.time_s - 86400, sensor=second.sensor, values=np.full_like(second.values, 0.1),
                            clear=second.clear, orbit=second.orbit)  # one day before the first
    acqs = [first, back]
    parts = [batch_observation(obs, model.normalization) for obs in acqs]
    tb = TokenBatch(*(torch.cat([getattr(p, f) for p in parts], dim=1) for f in TokenBatch.__slots__))
    with pytest.raises(sits.SitsError, match="time order"):
        fold_block(model, model.init_state(5), tb)


# ---- replay (blocks) against the stream (recurrent steps through the bus) -----------------------------------
@pytest.fixture()
def season(synthetic_obs):
    """Three parcels (a mown meadow, a cereal, a solar works site) over 100 days (a tile without cereals
    trips the state checksum on an empty harvest state: see the report)."""
    obs, parcels = synthetic_obs
    keep = parcels[parcels.parcel_id.isin(["G2", "C1", "P1"])]
    obs = obs[obs.parcel_id.isin(keep.parcel_id) & (obs.days >= obs.days.min() + 80)
              & (obs.days <= obs.days.min() + 180)]
    return obs.reset_index(drop=True), keep.reset_index(drop=True)


CFG = {"checkpoint_days": 10.0, "retention_days": 40.0}  # some rewind points pruned, some kept


def _monitor(root: Path, parcels, model, **cfg) -> Monitor:
    config = MonitorConfig(data_dir=root, series_dir=root / "series",
                           parcels=write_parcels(root / "parcels.csv", parcels), **{**CFG, **cfg})
    return Monitor(config, model=model)


def _alerts(monitor) -> list:
    return sorted(monitor.store.query(), key=lambda a: a.alert_id)


def _tile_dir(root: Path) -> Path:
    return next(p for p in (root / "monitor").iterdir() if p.is_dir()) / TILE


def test_replay_in_chunkwise_blocks_equals_the_stream(tmp_path: Path, season, model) -> None:
    obs, parcels = season
    stream_root = tmp_path / "stream"
    events = write_slots(stream_root / "series", obs)
    bus = make_bus("memory", path=stream_root / "bus.sqlite")
    publish(bus, events)
    service = Service(_monitor(stream_root, parcels, model, max_records=1), bus)  # one event per poll
    try:
        service.run_once()
        streamed = service.monitor.tiles[TILE].state
        streamed_alerts = _alerts(service.monitor)
    finally:
        service.close()
        bus.close()

    root = tmp_path / "replay"
    write_slots(root / "series", obs)
    monitor = _monitor(root, parcels, model)
    try:
        result = replay_period(monitor, "2024-01-01", "2024-12-31", block_size=6, rewind_points="stream")
        replayed = monitor.tiles[TILE].state
        alerts = _alerts(monitor)
    finally:
        monitor.close()
    assert result["form"] == "chunk" and result["acquisitions"] == len(events)

    assert replayed.folded == streamed.folded
    assert_close_state(replayed.encoder, streamed.encoder)
    assert not replayed.encoder.equals(streamed.encoder), "the two paths are not two implementations"
    for name in streamed.detectors:
        for f in dataclasses.fields(streamed.detectors[name]):
            np.testing.assert_equal(getattr(replayed.detectors[name], f.name),
                                    getattr(streamed.detectors[name], f.name), err_msg=f"{name}.{f.name}")

    assert "mowing" in {a.type for a in streamed_alerts}
    assert [(a.alert_id, a.type, a.parcel_id, a.event_date, a.window_start, a.window_end) for a in alerts] == \
        [(a.alert_id, a.type, a.parcel_id, a.event_date, a.window_start, a.window_end) for a in streamed_alerts]
    for a, b in zip(alerts, streamed_alerts, strict=True):
        assert a.confidence == pytest.approx(b.confidence, abs=1e-6)
        ma, mb = a.evidence.pop("model", None), b.evidence.pop("model", None)
        assert json.dumps(a.evidence, sort_keys=True) == json.dumps(b.evidence, sort_keys=True)
        assert (ma is None) == (mb is None)
        if ma is not None:  # rounded to 4 decimals: equal unless a value sits on a rounding edge
            assert ma["date"] == mb["date"]
            for k in ("observed_ndvi", "expected_ndvi", "expected_ndvi_std"):
                assert ma[k] == pytest.approx(mb[k], abs=1e-4 + NDVI_ATOL), k

    expected_s, expected_r = _tile_dir(stream_root) / "expected", _tile_dir(root) / "expected"
    names = sorted(p.name for p in expected_s.iterdir())
    assert names and names == sorted(p.name for p in expected_r.iterdir())
    for name in names:
        x, y = pd.read_parquet(expected_r / name), pd.read_parquet(expected_s / name)
        pd.testing.assert_frame_equal(x.drop(columns=["expected_ndvi", "expected_ndvi_std"]),
                                      y.drop(columns=["expected_ndvi", "expected_ndvi_std"]))
        for c in ("expected_ndvi", "expected_ndvi_std"):
            np.testing.assert_allclose(x[c].to_numpy(), y[c].to_numpy(), rtol=0, atol=NDVI_ATOL, err_msg=f"{name} {c}")
    checkpoints = sorted(p.name for p in (_tile_dir(stream_root) / "checkpoints").iterdir())
    assert len(checkpoints) >= 2
    assert sorted(p.name for p in (_tile_dir(root) / "checkpoints").iterdir()) == checkpoints

    # rewind points at block ends only: long blocks, the same state and alerts, fewer rewind points, the
    # last one the final state
    coarse = tmp_path / "coarse"
    write_slots(coarse / "series", obs)
    monitor = _monitor(coarse, parcels, model)
    try:
        replay_period(monitor, "2024-01-01", "2024-12-31")  # the default: rewind points at block ends
        state = monitor.tiles[TILE].state
        assert state.folded == streamed.folded
        assert_close_state(state.encoder, streamed.encoder)
        assert [a.alert_id for a in _alerts(monitor)] == [a.alert_id for a in streamed_alerts]
        points = monitor.tiles[TILE].store.checkpoints()
        assert points[-1].key == max(streamed.folded) and all(p.key in streamed.folded for p in points)
        assert len(points) < len(checkpoints)
    finally:
        monitor.close()


def test_blocks_end_at_the_rewind_points_the_stream_keeps() -> None:
    from monitor.inputs import SlotKey

    day = 86400
    keys = [SlotKey.of(d * day, "S2", f"s{d}") for d in (0, 3, 9, 11, 14, 25, 26, 41, 52)]
    # the stream writes a rewind point at days 0, 11, 25, 41 and 52 (first of each 10-day period); with 20
    # retained days, 41 and 52 are kept, and 25, the newest older one
    kept = kept_checkpoints(keys, None, checkpoint_days=10, retention_days=20)
    assert sorted(k.time_s // day for k in kept) == [25, 41, 52]
    cut = blocks(keys, 3, kept)
    assert [[k.time_s // day for k in b] for b in cut] == [[0, 3, 9], [11, 14, 25], [26, 41], [52]]


def test_an_unknown_replay_form_or_block_size_is_refused_before_anything_is_folded(tmp_path: Path, season,
                                                                                    model) -> None:
    obs, parcels = season
    write_slots(tmp_path / "series", obs)
    monitor = _monitor(tmp_path, parcels, model)
    try:
        with pytest.raises(ValueError, match="replay form 'fast' is not one of chunk, parallel, recurrent"):
            replay_period(monitor, "2024-01-01", "2024-12-31", form="fast")
        with pytest.raises(ValueError, match="block_size must be >= 1"):
            replay_period(monitor, "2024-01-01", "2024-12-31", block_size=0)
        assert not monitor.tile(TILE).state.folded  # nothing folded, nothing written
        assert not (_tile_dir(tmp_path) / "CURRENT").exists()
    finally:
        monitor.close()
