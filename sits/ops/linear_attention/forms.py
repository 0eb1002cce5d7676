"""Linear attention in parallel, chunkwise and recurrent forms.

Each runs the matching retention form on ``v`` augmented with a column of ones, so numerator and
normaliser share one state ``[B, H, K, V + 1]`` and one kernel; the output is ``num / (den + eps)``.
Same signature and results as :func:`sits.ops.linear_attention.naive_linear_attention`.
"""

from __future__ import annotations

import torch

from sits.ops.dispatch import use_reference
from sits.ops.linear_attention.naive import EPS, check_state, naive_linear_attention
from sits.ops.retention import chunk_retention, fused_recurrent_retention, parallel_retention
from sits.ops.utils import check_inputs, decay_log, zero_dt


def _run(form, q, k, v, dt, log_decay, initial_state, output_final_state, eps, **kw):
    check_inputs(q, k, v, dt, log_decay, None)
    check_state(initial_state, q, v)
    B, T, H, _ = q.shape
    V = v.shape[-1]
    lam = decay_log(log_decay, H, q)
    dt = zero_dt(B, T, q) if dt is None else dt
    v_aug = torch.cat([v.float(), v.new_ones(B, T, H, 1, dtype=torch.float32)], dim=-1)
    o, state = form(q.float(), k.float(), v_aug, dt, lam, initial_state, output_final_state, **kw)
    out = o[..., :V] / (o[..., V:] + eps)
    return out.to(q.dtype), state


def parallel_linear_attention(q, k, v, dt=None, log_decay=None, initial_state=None, output_final_state=False, eps=EPS):
    """Parallel form (training)."""
    if use_reference():
        return naive_linear_attention(q, k, v, dt, log_decay, initial_state, output_final_state, eps)
    return _run(parallel_retention, q, k, v, dt, log_decay, initial_state, output_final_state, eps)


def chunk_linear_attention(
    q, k, v, dt=None, log_decay=None, initial_state=None, output_final_state=False, eps=EPS, chunk_size=64
):
    """Chunkwise form (long series, backfill)."""
    if use_reference():
        return naive_linear_attention(q, k, v, dt, log_decay, initial_state, output_final_state, eps)
    return _run(chunk_retention, q, k, v, dt, log_decay, initial_state, output_final_state, eps, chunk_size=chunk_size)


def fused_recurrent_linear_attention(
    q, k, v, dt=None, log_decay=None, initial_state=None, output_final_state=False, eps=EPS, *, inplace=False
):
    """Recurrent form (streaming; fused numba kernel on CPU inference)."""
    if use_reference():
        return naive_linear_attention(q, k, v, dt, log_decay, initial_state, output_final_state, eps)
    return _run(
        fused_recurrent_retention, q, k, v, dt, log_decay, initial_state, output_final_state, eps, inplace=inplace
    )
