"""The encoder's forms agree (parallel, chunkwise, recurrent steps, split-and-resume), and its public
entry points refuse bad input with SitsError subclasses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sits import (
    BandSetError,
    EmptySeriesError,
    EncoderConfig,
    EncoderState,
    NonFiniteInputError,
    Observation,
    Series,
    SitsEncoder,
    StateShapeError,
    UnsortedTimesError,
)
from sits.errors import ConfigError, SitsError
from sits.testing import synthetic_series
from sits.tokens import S2, BandSet

ATOL = 1e-4
SMALL = dict(d_model=16, n_heads=2, n_layers=2, head_hidden=16, chunk_size=16)


def make_model(mechanism="retention", seed=0, **kw):
    torch.manual_seed(seed)
    return SitsEncoder(EncoderConfig(mechanism=mechanism, **{**SMALL, **kw})).eval()


def observation(s: Series, i: int) -> Observation:
    sensor = "S2" if s.sensor[i] == S2 else "S1"
    cols = s.bands.sensor_columns(s.sensor[i])
    return Observation(s.times[i], sensor, s.values[i : i + 1, cols], clear=s.clear[i : i + 1], orbit=int(s.orbit[i]))


@pytest.mark.parametrize("mechanism,extra", [("retention", {}), ("retention", {"rotation": True}),
                                              ("linear", {}), ("linear", {"linear_decay": False})])
def test_forms_agree(mechanism, extra, rng):
    """parallel == chunk == T recurrent steps == split encode resumed from the saved state."""
    model = make_model(mechanism, **extra)
    series = [synthetic_series(rng, 63, pid="a"), synthetic_series(rng, 40, pid="b")]
    par = model.encode(series, mode="parallel")
    chk = model.encode(series, mode="chunk")
    for a, b in zip(par.embeddings, chk.embeddings, strict=True):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=ATOL)
    assert par.state.equals(chk.state, atol=ATOL)
    s = series[0]
    state, outs = model.init_state(1), []
    for i in range(len(s)):
        state, out = model.step(state, observation(s, i))
        outs.append(out.embedding)
    torch.testing.assert_close(torch.cat(outs), par.embeddings[0], atol=ATOL, rtol=ATOL)
    assert state.equals(par.state.select(slice(0, 1)), atol=ATOL)
    cut = 25
    first = model.encode([s.slice(0, cut)])
    second = model.encode([s.slice(cut, len(s))], state=first.state)
    torch.testing.assert_close(torch.cat([first.embeddings[0], second.embeddings[0]]), par.embeddings[0],
                               atol=ATOL, rtol=ATOL)
    assert second.state.equals(par.state.select(slice(0, 1)), atol=ATOL)
    assert int(second.state.count[0]) == len(s)


def test_gradients_equal_across_forms(rng):
    model = make_model()
    model.train()
    from sits.tokens import batch_series

    tb = batch_series([synthetic_series(rng, 63)], model.normalization)
    grads = {}
    for mode in ("parallel", "chunk"):
        model.zero_grad()
        h, _ = model.run(tb, None, mode=mode, output_final_state=False)
        (h * torch.linspace(-1, 1, h.numel()).view_as(h)).sum().backward()
        grads[mode] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert grads["parallel"].keys() == grads["chunk"].keys() and grads["parallel"]
    for name in grads["parallel"]:
        torch.testing.assert_close(grads["parallel"][name], grads["chunk"][name], atol=ATOL, rtol=ATOL)


def test_ten_years_encode(rng):
    model = make_model(d_model=8, n_heads=2, n_layers=1)
    s = synthetic_series(rng, 1500)  # ~3 days apart on average plus a gap: years of acquisitions
    assert (s.times[-1] - s.times[0]) / 86400 > 2000
    enc = model.encode([s], mode="chunk")
    assert torch.isfinite(enc.embeddings[0]).all()
    assert all(torch.isfinite(S).all() for S in enc.state.layers)
    pred = model.forecast(enc.state, int(s.times[-1]) + 5 * 86400)
    assert np.isfinite(pred.mean).all() and (pred.std > 0).all()


def test_missing_rows_leave_state_unchanged(rng):
    model = make_model()
    s = synthetic_series(rng, 20)
    state = model.encode([s, s]).state
    last = int(s.times[-1]) + 86400
    values = np.full((2, len(model.bands.s2)), 0.2, np.float32)
    values[1] = np.nan
    new, out = model.step(state, Observation(last, "S2", values))
    assert out.updated.tolist() == [True, False]
    assert new.select(slice(1, 2)).equals(state.select(slice(1, 2)))
    assert not new.select(slice(0, 1)).equals(state.select(slice(0, 1)), atol=1e-6)
    assert int(new.count[0]) == 21 and int(new.count[1]) == 20


def test_heads(rng):
    model = make_model()
    s = synthetic_series(rng, 30)
    state = model.encode([s]).state
    later = int(s.times[-1]) + 10 * 86400
    f2 = model.forecast(state, later, "S2")
    f1 = model.forecast(state, later, "S1", orbit=29)
    assert f2.mean.shape == (1, 11) and f2.bands[-1] == "NDVI" and f1.mean.shape == (1, 2) and f1.bands == ("VV", "VH")
    assert (f2.std > 0).all() and (f1.mean > 0).all()
    before = [S.clone() for S in state.layers]
    rec = model.reconstruct(state, later)
    assert rec.mean.shape == (1, 11) and (rec.std > 0).all()
    assert all(torch.equal(a, b) for a, b in zip(before, state.layers, strict=True))
    ndvi, ndvi_sd = rec.ndvi()
    assert ndvi.shape == (1,) and ndvi_sd.shape == (1,)
    gap = model.gapfill(s)
    assert len(gap.index) == int((s.sensor == S2).sum())
    assert gap.hidden.tolist() == (s.clear[gap.index] < 0.5).tolist()


def test_softmax_has_no_state(rng):
    model = make_model("softmax")
    enc = model.encode([synthetic_series(rng, 30)])
    assert enc.state is None and enc.embeddings[0].shape == (30, SMALL["d_model"])
    with pytest.raises(ConfigError):
        model.init_state(3)


def test_bad_input(rng):
    model = make_model()
    s = synthetic_series(rng, 10)
    bands = s.bands
    with pytest.raises(UnsortedTimesError):
        Series(s.times[::-1], s.sensor[::-1], s.values[::-1], bands)
    nan_values = s.values.copy()
    nan_values[3] = np.nan
    with pytest.raises(NonFiniteInputError):
        Series(s.times, s.sensor, nan_values, bands)
    with pytest.raises(EmptySeriesError):
        Series(s.times[:0], s.sensor[:0], s.values[:0], bands)
    with pytest.raises(EmptySeriesError):
        model.encode([])
    state = model.encode([s]).state
    with pytest.raises(UnsortedTimesError):
        model.step(state, observation(s, 2))  # before t_last
    with pytest.raises(StateShapeError):
        model.step(model.init_state(3), observation(s, 0))  # 3 rows of state, 1 row of input
    other = make_model(d_model=8, n_heads=2)
    with pytest.raises(StateShapeError):
        other.step(state, observation(s, 0))  # a state from another model
    with pytest.raises(BandSetError):
        model.step(model.init_state(1), Observation(s.times[0], "S2", np.zeros((1, 3), np.float32)))
    with pytest.raises(BandSetError):
        model.encode([synthetic_series(rng, 5, bands=BandSet(("B04", "B08")))])
    assert all(issubclass(e, SitsError) and issubclass(e, ValueError)
               for e in (UnsortedTimesError, NonFiniteInputError, EmptySeriesError, StateShapeError, BandSetError))


@pytest.mark.requires_cuda
def test_step_on_cuda_matches_cpu(rng):
    model = make_model()
    s = synthetic_series(rng, 30)
    cpu = model.encode([s]).state
    gpu_model = make_model().to("cuda")
    state = gpu_model.init_state(1)
    for i in range(len(s)):
        state, _ = gpu_model.step(state, observation(s, i))
    assert state.to("cpu").equals(cpu, atol=1e-3)


@pytest.mark.parametrize("spelling", ["out=state", "inplace=True"])
@pytest.mark.parametrize("mechanism", ["retention", "linear"])
def test_step_inplace_equals_functional(mechanism, spelling, rng):
    """In place (``out=state``, or the older ``inplace=True``) equals the allocating step, and every
    tensor of the state, not only the layers, is updated where it lies."""
    model = make_model(mechanism)
    s = synthetic_series(rng, 20)
    state = model.encode([s, s, s]).state
    obs = Observation(int(s.times[-1]) + 86400, "S1", np.full((3, 2), 0.05, np.float32), orbit=29)
    expected, _ = model.step(state, obs)
    assert not expected.equals(state, atol=1e-7)
    ptrs = [t.data_ptr() for t in state.tensors()]
    got, _ = model.step(state, obs, **({"out": state} if spelling == "out=state" else {"inplace": True}))
    assert got.equals(expected)
    assert got is state and [t.data_ptr() for t in got.tensors()] == ptrs


def test_recurrent_row_blocks_equal_one_block(rng, monkeypatch):
    """The CPU recurrent path runs blocks of rows; results equal one block of all rows."""
    from sits.models import streaming

    model = make_model()
    series = [synthetic_series(np.random.default_rng(i), 15, pid=str(i)) for i in range(7)]
    state = model.encode(series).state
    last = max(int(s.times[-1]) for s in series) + 86400
    obs = Observation(last, "S2", np.random.default_rng(0).random((7, 10), dtype=np.float32))
    whole, out_whole = model.step(state, obs)
    monkeypatch.setattr(streaming, "RECURRENT_ROW_CHUNK", 3)
    blocks, out_blocks = model.step(state, obs)
    assert blocks.equals(whole, atol=1e-6)
    torch.testing.assert_close(out_blocks.embedding, out_whole.embedding)
    assert not blocks.equals(state, atol=1e-6)  # functional: the input state is untouched
    inplace, _ = model.step(state, obs, inplace=True)
    assert inplace.equals(whole, atol=1e-6) and state.layers[0].data_ptr() == inplace.layers[0].data_ptr()


@pytest.mark.parametrize("into", ["new", "inplace", "spare"])
def test_streaming_step_equals_plain_recurrent_form(rng, monkeypatch, into):
    """The streaming step (fused block ops writing straight into the target state, in ragged row
    blocks) against the whole model's plain recurrent form, ``run(mode="recurrent")`` with the reference
    ops (its own bookkeeping of h_last, t_last, count and the clear anchor), over S2 and S1
    acquisitions with rows that have no observation (state unchanged), cloudy rows (no new clear
    anchor) and clear ones."""
    from sits.models import streaming
    from sits.ops.dispatch import force_reference
    from sits.tokens import batch_observation

    model = make_model()
    n = 9
    series = [synthetic_series(np.random.default_rng(i), 12, pid=str(i)) for i in range(n)]
    start = model.encode(series).state
    day = max(int(s.times[-1]) for s in series) + 86400
    s2 = rng.random((n, 10), dtype=np.float32)
    s2[[1, 4]] = np.nan  # no observation on these rows
    clear = np.where(np.arange(n) % 3 == 0, 0.0, 1.0).astype(np.float32)  # every third row cloudy
    s1 = np.full((n, 2), 0.05, np.float32)
    s1[7] = np.nan
    steps = [Observation(day, "S2", s2, clear=clear), Observation(day, "S1", s1, orbit=29),
             Observation(day + 5 * 86400, "S2", s2[::-1].copy(), clear=clear)]
    with torch.no_grad(), force_reference():
        expected, outs = start, []
        for obs in steps:
            h, expected = model.run(batch_observation(obs, model.normalization), expected, mode="recurrent")
            outs.append(h[:, 0])
    monkeypatch.setattr(streaming, "RECURRENT_ROW_CHUNK", 4)  # several row blocks, a ragged last one
    got, spare = start.clone(), start.clone()
    for obs, ref in zip(steps, outs, strict=True):
        before, kept = got.layers[0].data_ptr(), got.clone()
        if into == "spare":  # double buffering: write into the spare, keep the input state intact
            new, out = model.step(got, obs, out=spare)
            assert new is spare
            assert got.equals(kept)
            got, spare = new, got
        else:
            got, out = model.step(got, obs, out=got if into == "inplace" else None)
            assert (got.layers[0].data_ptr() == before) == (into == "inplace")
        torch.testing.assert_close(out.embedding, ref, atol=2e-5, rtol=1e-4)
    assert got.equals(expected, atol=2e-5)
    assert torch.equal(got.count, expected.count) and torch.equal(got.t_last_clear, expected.t_last_clear)
    assert int(expected.count.sum() - start.count.sum()) == 3 * n - 5  # rows 1, 4 | 7 | 7, 4 had nothing


def test_cpu_step_takes_the_fused_block_op(rng, monkeypatch):
    """A retention model's CPU step runs the fused block op (the benchmarked path) once per block; with
    the reference forced, and for linear attention, it does not."""
    from sits.ops.dispatch import force_reference
    from sits.ops.retention_block import fused_retention_block_step

    calls = []
    monkeypatch.setattr("sits.layers.block.fused_retention_block_step",
                        lambda *a, **kw: calls.append(1) or fused_retention_block_step(*a, **kw))
    model = make_model()
    s = synthetic_series(rng, 10)
    state = model.encode([s]).state
    obs = Observation(int(s.times[-1]) + 86400, "S2", np.full((1, 10), 0.2, np.float32), clear=1.0)
    model.step(state, obs)
    assert len(calls) == len(model.blocks)
    with force_reference():
        model.step(state, obs)
    linear = make_model("linear")
    linear.step(linear.encode([s]).state, obs)
    assert len(calls) == len(model.blocks)


@pytest.mark.parametrize("mechanism", ["retention", "linear"])
def test_step_into_spare_state(mechanism, rng):
    """``step(..., out=spare)`` equals the functional step, leaves the input state intact (also on the
    generic path of linear attention), and refuses ``inplace`` with ``out`` or an ``out`` that shares
    the input's memory."""
    model = make_model(mechanism)
    s = synthetic_series(rng, 20)
    state = model.encode([s, s]).state
    obs = Observation(int(s.times[-1]) + 86400, "S2", np.full((2, 10), 0.2, np.float32), clear=1.0)
    expected, _ = model.step(state, obs)
    spare, kept = model.init_state(2), state.clone()
    got, _ = model.step(state, obs, out=spare)
    assert got.equals(expected, atol=1e-6) and state.equals(kept)
    assert got.layers[-1].data_ptr() == spare.layers[-1].data_ptr()
    with pytest.raises(ConfigError, match="not both"):
        model.step(state, obs, inplace=True, out=spare)
    with pytest.raises(StateShapeError, match="shares memory"):
        model.step(state, obs, out=state.select(slice(None)))
    # two row ranges of one buffer (as a state store may hold them) do not overlap: accepted
    store = EncoderState.concat([state, model.init_state(2)])
    low, high = store.select(slice(0, 2)), store.select(slice(2, 4))
    got, _ = model.step(low, obs, out=high)
    assert got.equals(expected, atol=1e-6) and low.equals(kept)
    with pytest.raises(StateShapeError, match="shares memory"):  # overlapping row ranges: refused
        model.step(store.select(slice(0, 2)), obs, out=store.select(slice(1, 3)))
    with pytest.raises(StateShapeError):
        model.step(state, obs, out=model.init_state(3))
    assert state.equals(kept)


def _anomaly_interpolation(model: SitsEncoder, s: Series, hide: np.ndarray) -> np.ndarray:
    """Naive reference of the seasonal-anomaly interpolation prior (physical units) at every S2 token."""
    from sits.models.encoder import seasonal_features

    c2 = model.bands.n_s2c
    x = model.normalization.normalize(s.values)[:, :c2]
    clim = (seasonal_features(torch.from_numpy(s.days)).double() @ model.clim_coef.double().T).numpy()
    anchor = (s.sensor == S2) & (s.clear >= 0.5) & ~hide & np.isfinite(x).all(axis=1)
    idx = np.nonzero(s.sensor == S2)[0]
    ta, an = s.days[anchor], (x - clim)[anchor]
    prior = np.stack([np.interp(s.days[idx], ta, an[:, j]) for j in range(c2)], axis=1) + clim[idx]
    own = anchor[idx]  # a visible clear token is its own anchor (same-day duplicates: np.interp picks one)
    prior[own] = x[idx][own]
    sd = model.norm_std[:c2].numpy().astype(np.float64)
    return prior * sd + model.norm_mean[:c2].numpy()


def test_smoothing_head_starts_at_the_seasonal_prior(rng):
    """An untrained bidirectional model gap-fills with exactly the climatology + interpolated anomaly
    (zero-initialised residual), and the climatology fitted on a seasonal signal recovers it."""
    from sits.tokens import Normalization

    series = [synthetic_series(np.random.default_rng(i), 120, pid=str(i)) for i in range(4)]
    cfg = EncoderConfig(**SMALL, bidirectional=True)
    torch.manual_seed(0)
    model = SitsEncoder(cfg, Normalization.fit(series, cfg.bands)).eval()
    assert torch.count_nonzero(model.clim_coef) == 0
    coef = model.fit_climatology(series)
    assert torch.count_nonzero(coef) > 0
    # the synthetic NIR-side bands follow 0.3·0.3·sin(2π(doy − 100)/365.25) + noise: the climatology recovers
    # the swing (peak near doy 191, trough near doy 9) in physical units
    j = cfg.bands.s2.index("B08")
    days = torch.tensor([191.0, 9.0 + 365.25], dtype=torch.float64)
    nir = model.climatology(days)[:, j] * model.norm_std[j] + model.norm_mean[j]
    assert 0.12 < float(nir[0] - nir[1]) < 0.24
    s = series[0]
    hide = np.zeros(len(s), bool)
    s2 = np.nonzero((s.sensor == S2) & (s.clear >= 0.5))[0]
    hide[s2[1:-1:3]] = True
    g = model.gapfill(s, hide=hide)
    ref = _anomaly_interpolation(model, s, hide)
    np.testing.assert_allclose(g.prediction.mean, ref, atol=2e-4)
    # without a climatology the prior is plain linear interpolation
    model.clim_coef.zero_()
    g0 = model.gapfill(s, hide=hide)
    np.testing.assert_allclose(g0.prediction.mean, _anomaly_interpolation(model, s, hide), atol=2e-4)
    assert np.abs(g0.prediction.mean - g.prediction.mean).max() > 1e-3


def test_old_checkpoint_format_refused_with_a_clear_error(tmp_path):
    from sits import CheckpointVersionError, load_model, save_checkpoint

    model = SitsEncoder(EncoderConfig(**SMALL, bidirectional=True))
    model.fit_climatology([synthetic_series(np.random.default_rng(0), 80)])
    path = save_checkpoint(model, tmp_path / "m.pt")
    back = load_model(path, device="cpu")
    assert torch.equal(back.clim_coef, model.clim_coef)
    blob = torch.load(path, weights_only=True)
    blob["format_version"] = 1
    torch.save(blob, tmp_path / "v1.pt")
    with pytest.raises(CheckpointVersionError, match="retrain"):
        load_model(tmp_path / "v1.pt")
