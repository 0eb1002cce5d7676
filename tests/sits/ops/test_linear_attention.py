"""Linear attention forms against the float32 reference (``sits/ops/linear_attention/naive.py``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sits.errors import StateShapeError
from sits.layers import multiscale_log_decay
from sits.ops.linear_attention import (
    chunk_linear_attention,
    feature_map,
    fused_recurrent_linear_attention,
    naive_linear_attention,
    parallel_linear_attention,
)
from sits.testing import dt_from_days, merged_days
from tests.sits.ops.forms import ATOL, RTOL, assert_form_matches, each_form_and_length

FORMS = {
    "parallel": parallel_linear_attention,
    "chunk": lambda *a, **kw: chunk_linear_attention(*a, **kw, chunk_size=16),
    "fused_recurrent": fused_recurrent_linear_attention,
}


def inputs(T, B=2, H=2, K=8, V=5, seed=0, with_state=True, decay=True):
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    q, k = feature_map(torch.randn(B, T, H, K, generator=g)), feature_map(torch.randn(B, T, H, K, generator=g))
    v = torch.randn(B, T, H, V, generator=g)
    dt = torch.from_numpy(np.stack([dt_from_days(merged_days(rng, T)) for _ in range(B)])).float()
    dt[:, 0] = 3.0
    lam = multiscale_log_decay(H, 5.0, 300.0) if decay else None
    S0 = torch.rand(B, H, K, V + 1, generator=g) if with_state else None
    return q, k, v, dt, lam, S0


@each_form_and_length
@pytest.mark.parametrize("decay", [True, False])
def test_forms_equal_reference(T, form, decay):
    assert_form_matches(FORMS[form], naive_linear_attention, inputs(T, decay=decay))


def test_streaming_invariant():
    T, cut = 63, 21
    q, k, v, dt, lam, S0 = inputs(T)
    o_par, S_par = parallel_linear_attention(q, k, v, dt, lam, S0, True)
    S, outs = S0, []
    for n in range(T):
        sl = slice(n, n + 1)
        o, S = fused_recurrent_linear_attention(q[:, sl], k[:, sl], v[:, sl], dt[:, sl], lam, S, True)
        outs.append(o)
    torch.testing.assert_close(torch.cat(outs, 1), o_par, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(S, S_par, atol=ATOL, rtol=RTOL)
    o_a, S_a = chunk_linear_attention(q[:, :cut], k[:, :cut], v[:, :cut], dt[:, :cut], lam, S0, True)
    o_b, S_b = chunk_linear_attention(q[:, cut:], k[:, cut:], v[:, cut:], dt[:, cut:], lam, S_a, True)
    torch.testing.assert_close(torch.cat([o_a, o_b], 1), o_par, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(S_b, S_par, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("form", ["parallel", "chunk", "fused_recurrent"])
def test_gradients_equal_reference(form):
    q, k, v, dt, lam, S0 = inputs(63, B=1)
    a = [x.clone().requires_grad_(True) for x in (q, k, v, S0)]
    b = [x.clone().requires_grad_(True) for x in (q, k, v, S0)]
    o, S = FORMS[form](*a[:3], dt, lam, a[3], True)
    ro, rS = naive_linear_attention(*b[:3], dt, lam, b[3], True)
    w, wS = torch.randn_like(o), torch.randn_like(S)
    ((o * w).sum() + (S * wS).sum()).backward()
    ((ro * w).sum() + (rS * wS).sum()).backward()
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x.grad, y.grad, atol=ATOL, rtol=RTOL)


def test_ten_years_without_decay_stays_finite():
    """No decay: the state grows with every token; ten years (1800 tokens) stays finite and normalised."""
    T = 1800
    g = torch.Generator().manual_seed(0)
    q, k = feature_map(torch.randn(1, T, 2, 4, generator=g)), feature_map(torch.randn(1, T, 2, 4, generator=g))
    v = torch.randn(1, T, 2, 4, generator=g)
    ref_o, ref_S = naive_linear_attention(q, k, v, None, None, None, True)
    o, S = chunk_linear_attention(q, k, v, None, None, None, True)
    assert torch.isfinite(o).all() and torch.isfinite(S).all()
    assert o.abs().max() <= v.abs().max() + 1e-4  # a convex combination of values
    torch.testing.assert_close(o, ref_o, atol=ATOL, rtol=RTOL)


def test_state_shape_checked():
    q, k, v, dt, lam, S0 = inputs(4)
    for form in (naive_linear_attention, *FORMS.values()):
        with pytest.raises(StateShapeError):
            form(q, k, v, dt, lam, S0[..., :-1])
