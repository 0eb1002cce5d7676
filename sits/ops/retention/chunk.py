"""Time-aware retention, chunkwise form (long series, backfill).

Within a chunk of ``chunk_size`` tokens: the parallel form on chunk-local day offsets; across chunks:
the state carried as in the recurrent form. Offsets are chunk-local cumulative sums of ``dt`` and
every exponent is a difference ``≤ 0`` (no ``exp(λ·t)`` on absolute days, no overflow).
"""

from __future__ import annotations

import torch

from sits.ops.retention.signature import retention_form


@retention_form
def chunk_retention(q, k, v, dt, lam, initial_state, output_final_state, chunk_size: int = 64):
    """Same signature, shapes and results as :func:`sits.ops.retention.naive_retention`, and
    ``chunk_size`` (tokens per chunk)."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    q, k, v = q.float(), k.float(), v.float()
    B, T, H, K = q.shape
    V = v.shape[-1]
    S = q.new_zeros(B, H, K, V) if initial_state is None else initial_state.float()
    outs = []
    for s in range(0, T, chunk_size):
        e = min(s + chunk_size, T)
        L = e - s
        qc, kc, vc = q[:, s:e], k[:, s:e], v[:, s:e]
        c = torch.cumsum(dt[:, s:e].double(), dim=1)  # [B, L] days since the carried state's time
        diff = (c[:, :, None] - c[:, None, :]).float().clamp_min(0)
        causal = torch.ones(L, L, dtype=torch.bool, device=q.device).tril()
        D = torch.where(causal, torch.exp(lam[None, :, None, None] * diff[:, None]), torch.zeros((), device=q.device))
        o = torch.einsum("bhnm,bmhv->bnhv", torch.einsum("bnhk,bmhk->bhnm", qc, kc) * D, vc)
        g_in = torch.exp(lam[None, None, :] * c.float()[:, :, None])  # [B, L, H]
        o = o + torch.einsum("bnhk,bhkv->bnhv", qc * g_in[..., None], S)
        outs.append(o)
        c_last = c[:, -1:]
        g_k = torch.exp(lam[None, None, :] * (c_last - c).float()[:, :, None])  # [B, L, H]
        g_S = torch.exp(lam[None, :] * c_last.float())  # [B, H]
        S = g_S[:, :, None, None] * S + torch.einsum("bmhk,bmhv->bhkv", kc * g_k[..., None], vc)
    out = torch.cat(outs, dim=1) if outs else q.new_zeros(B, 0, H, V)
    return out, S
