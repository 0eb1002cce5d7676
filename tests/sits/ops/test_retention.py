"""Retention forms against the float32 reference (``sits/ops/retention/naive.py``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sits.errors import ShapeError, SitsError, StateShapeError, UnsortedTimesError
from sits.layers import multiscale_log_decay
from sits.ops.dispatch import REFERENCE_ENV, force_reference
from sits.ops.retention import chunk_retention, fused_recurrent_retention, naive_retention, parallel_retention
from sits.ops.retention import fused_recurrent as fused_module
from sits.testing import dt_from_days, merged_days
from tests.sits.ops.forms import ATOL, RTOL, assert_form_matches, each_form_and_length

FORMS = {
    "parallel": parallel_retention,
    "chunk": lambda *a, **kw: chunk_retention(*a, **kw, chunk_size=16),
    "fused_recurrent": fused_recurrent_retention,
}


def inputs(T, B=2, H=3, K=8, V=6, seed=0, with_state=True):
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    q, k = torch.randn(B, T, H, K, generator=g) * 0.5, torch.randn(B, T, H, K, generator=g) * 0.5
    v = torch.randn(B, T, H, V, generator=g)
    days = np.stack([merged_days(rng, T) for _ in range(B)])
    dt = torch.from_numpy(np.stack([dt_from_days(d) for d in days])).float()
    dt[:, 0] = 7.0  # days since the initial state's time
    lam = multiscale_log_decay(H, 2.0, 400.0)
    S0 = torch.randn(B, H, K, V, generator=g) if with_state else None
    return q, k, v, dt, lam, S0


def close(a, b):
    torch.testing.assert_close(a, b, atol=ATOL, rtol=RTOL)


@each_form_and_length
@pytest.mark.parametrize("with_state", [False, True])
def test_forms_equal_reference(T, form, with_state):
    assert_form_matches(FORMS[form], naive_retention, inputs(T, with_state=with_state))


def test_irregular_dates_matter():
    """Same tokens, other dates: other outputs (the decay really uses the days)."""
    q, k, v, dt, lam, S0 = inputs(63)
    o1, _ = parallel_retention(q, k, v, dt, lam, S0)
    o2, _ = parallel_retention(q, k, v, torch.ones_like(dt), lam, S0)
    assert (o1 - o2).abs().max() > 1e-2


def test_streaming_invariant():
    """One parallel pass == T recurrent steps == a split pass resumed from the saved state."""
    T, cut = 63, 40
    q, k, v, dt, lam, S0 = inputs(T)
    o_par, S_par = parallel_retention(q, k, v, dt, lam, S0, output_final_state=True)
    S, steps = S0, []
    for n in range(T):
        o, S = fused_recurrent_retention(q[:, n : n + 1], k[:, n : n + 1], v[:, n : n + 1], dt[:, n : n + 1], lam, S, True)
        steps.append(o)
    close(torch.cat(steps, 1), o_par)
    close(S, S_par)
    o_a, S_a = chunk_retention(q[:, :cut], k[:, :cut], v[:, :cut], dt[:, :cut], lam, S0, True, chunk_size=16)
    saved = S_a.clone()
    o_b, S_b = parallel_retention(q[:, cut:], k[:, cut:], v[:, cut:], dt[:, cut:], lam, saved, True)
    close(torch.cat([o_a, o_b], 1), o_par)
    close(S_b, S_par)


@pytest.mark.parametrize("form", ["parallel", "chunk", "fused_recurrent"])
def test_gradients_equal_reference(form):
    q, k, v, dt, lam, S0 = inputs(63, B=1)
    leaves = [x.clone().requires_grad_(True) for x in (q, k, v, S0)]
    ref_leaves = [x.clone().requires_grad_(True) for x in (q, k, v, S0)]
    o, S = FORMS[form](*leaves[:3], dt, lam, leaves[3], output_final_state=True)
    ro, rS = naive_retention(*ref_leaves[:3], dt, lam, ref_leaves[3], output_final_state=True)
    w_o, w_S = torch.randn_like(o), torch.randn_like(S)
    ((o * w_o).sum() + (S * w_S).sum()).backward()
    ((ro * w_o).sum() + (rS * w_S).sum()).backward()
    for a, b in zip(leaves, ref_leaves, strict=True):
        close(a.grad, b.grad)


def test_ten_years_no_overflow():
    """Ten years of daily-ish acquisitions (3650 days, ~1800 tokens, a 130-day gap): finite, and the
    chunk and fused forms equal the reference; dates given as days since 1970 would not change dt."""
    rng = np.random.default_rng(3)
    steps = rng.choice([0.0, 1.0, 2.0, 3.0], size=1800)
    steps[900] = 130.0
    steps *= 3650.0 / steps.sum()
    dt = torch.from_numpy(steps).float()[None]
    T = dt.shape[1]
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, T, 2, 4, generator=g), torch.randn(1, T, 2, 4, generator=g)
    v = torch.randn(1, T, 2, 4, generator=g)
    lam = torch.log(torch.tensor([0.5, 0.9999]))  # a steep and a very slow head
    ref_o, ref_S = naive_retention(q, k, v, dt, lam, None, True)
    for form in (chunk_retention, fused_recurrent_retention):
        o, S = form(q, k, v, dt, lam, None, True)
        assert torch.isfinite(o).all() and torch.isfinite(S).all()
        # fp32 tolerance relative to the magnitude reached (the slow head sums ~1800 tokens)
        assert (o - ref_o).abs().max() <= 1e-4 * ref_o.abs().max()
        assert (S - ref_S).abs().max() <= 1e-4 * ref_S.abs().max()


def test_fused_inplace_updates_given_state():
    q, k, v, dt, lam, S0 = inputs(1, B=5)
    ref_o, ref_S = naive_retention(q, k, v, dt, lam, S0, True)
    S = S0.clone()
    with torch.no_grad():
        o, S_out = fused_recurrent_retention(q, k, v, dt, lam, S, True, inplace=True)
    assert S_out.data_ptr() == S.data_ptr()
    close(S, ref_S)
    close(o, ref_o)


def test_reference_switch(monkeypatch):
    calls = []

    def spy(*args, **kwargs):
        calls.append(1)
        return naive_retention(*args, **kwargs)

    monkeypatch.setattr(fused_module, "naive_retention", spy)
    q, k, v, dt, lam, S0 = inputs(5)
    fused_recurrent_retention(q, k, v, dt, lam, S0)
    assert calls == []
    monkeypatch.setenv(REFERENCE_ENV, "1")
    fused_recurrent_retention(q, k, v, dt, lam, S0)
    assert calls == [1]
    monkeypatch.delenv(REFERENCE_ENV)
    with force_reference():
        fused_recurrent_retention(q, k, v, dt, lam, S0)
    assert calls == [1, 1]


@pytest.mark.parametrize("form", [naive_retention, *FORMS.values()])
def test_bad_input(form):
    q, k, v, dt, lam, S0 = inputs(5)
    bad_dt = dt.clone()
    bad_dt[0, 3] = -1.0
    with pytest.raises(UnsortedTimesError):
        form(q, k, v, bad_dt, lam, S0)
    with pytest.raises(StateShapeError):
        form(q, k, v, dt, lam, S0[:, :, :-1])
    with pytest.raises(ShapeError):
        form(q, k[:, :-1], v, dt, lam, S0)
    with pytest.raises(ShapeError):
        form(q, k, v, dt, lam[:-1], S0)
    assert issubclass(StateShapeError, SitsError) and issubclass(SitsError, ValueError)


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("parallel", [False, True])
def test_numba_kernels_match_reference(parallel, inplace):
    """Serial and threaded numba kernels (the CPU hot path) against the reference, over several tokens,
    in place or into a separate state (then the input state is only read)."""
    from sits.ops.retention.kernels import fused_step_numpy

    q, k, v, dt, lam, S0 = inputs(3, B=7)
    ref_o, ref_S = naive_retention(q, k, v, dt, lam, S0, True)
    S = S0.numpy().copy()
    out, S_out = fused_step_numpy(q.numpy(), k.numpy(), v.numpy(), dt.numpy(), lam.numpy(), S,
                                  S if inplace else None, parallel=parallel)
    assert (S_out is S) == inplace
    assert inplace or np.array_equal(S, S0.numpy())
    close(torch.from_numpy(out), ref_o)
    close(torch.from_numpy(S_out), ref_S)


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("B", [5, 700])  # serial and threaded
def test_layer_kernel_matches_reference(B, inplace):
    """The kernel as the streaming layer runs it (q, k, v strided views of one fused projection, ``q``
    scaled, per-head layer norm of the read-out) against the reference step followed by the norm."""
    from sits.ops.retention.kernels import fused_retention_step

    H, K = 4, 8
    g = torch.Generator().manual_seed(3)
    qkv = torch.randn(B, 3 * H * K, generator=g)
    dt = torch.rand(B, generator=g) * 120  # gaps up to four months
    lam = multiscale_log_decay(H, 4.0, 365.0)
    S0 = torch.randn(B, H, K, K, generator=g)
    q, k, v = qkv.view(B, 1, 3, H, K).unbind(2)
    ref_o, ref_S = naive_retention(q * K**-0.5, k, v, dt[:, None], lam, S0, True)
    ref_o = torch.nn.functional.layer_norm(ref_o, (K,)).reshape(B, H * K)
    S = S0.numpy().copy()
    S_out = S if inplace else np.full_like(S, np.nan)
    out = np.empty((B, 1, H, K), np.float32)
    q5 = qkv.view(B, 1, 3, H, K).numpy()
    views = (q5[:, :, 0], q5[:, :, 1], q5[:, :, 2], dt[:, None].numpy(), lam.numpy())
    fused_retention_step(*views, S, S_out, out, q_scale=K**-0.5, layer_norm=True)
    assert inplace or np.array_equal(S, S0.numpy())
    close(torch.from_numpy(out).reshape(B, H * K), ref_o)
    close(torch.from_numpy(S_out), ref_S)
    buf = np.zeros((B + 1, H, K, K), np.float32)  # overlapping, not the same: refused
    with pytest.raises(ValueError, match="separate array"):
        fused_retention_step(*views, buf[:-1], buf[1:], out)


@pytest.mark.parametrize("state_dtype", [torch.float32, torch.bfloat16])
def test_batched_state_loop_on_cpu(state_dtype):
    """The CUDA code path is plain torch: check it on CPU (bf16 state to bf16 tolerance)."""
    from sits.ops.retention.fused_recurrent import batched_state_loop

    q, k, v, dt, lam, S0 = inputs(20)
    ref_o, ref_S = naive_retention(q, k, v, dt, lam, S0, True)
    out, S = batched_state_loop(q, k, v, dt, lam, S0.clone(), state_dtype)
    tol = 2e-4 if state_dtype == torch.float32 else 0.1
    torch.testing.assert_close(out, ref_o, atol=tol * ref_o.abs().max(), rtol=tol)
    torch.testing.assert_close(S.float(), ref_S, atol=tol * ref_S.abs().max(), rtol=tol)


@pytest.mark.requires_cuda
@pytest.mark.parametrize("state_dtype", [torch.float32, torch.bfloat16])
def test_fused_recurrent_cuda(state_dtype):
    q, k, v, dt, lam, S0 = inputs(63)
    ref_o, ref_S = naive_retention(q, k, v, dt, lam, S0, True)
    dev = torch.device("cuda")
    o, S = fused_recurrent_retention(*(x.to(dev) for x in (q, k, v, dt, lam, S0)), output_final_state=True,
                                     state_dtype=state_dtype)
    tol = 2e-4 if state_dtype == torch.float32 else 0.1
    torch.testing.assert_close(o.cpu(), ref_o, atol=tol * ref_o.abs().max(), rtol=tol)
    torch.testing.assert_close(S.float().cpu(), ref_S, atol=tol * ref_S.abs().max(), rtol=tol)
    with force_reference():
        o_ref, _ = fused_recurrent_retention(*(x.to(dev) for x in (q, k, v, dt, lam, S0)))
    torch.testing.assert_close(o_ref.cpu(), ref_o, atol=ATOL, rtol=RTOL)
