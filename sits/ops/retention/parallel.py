"""Time-aware retention, parallel form (training): ``O = (Q Kᵀ ⊙ D) V`` with
``D_nm = γ_h ** (t_n − t_m)`` for ``m ≤ n``.

Day offsets come from a float64 cumulative sum of ``dt`` and are only ever used as differences
(``t_n − t_m ≥ 0``, or ``t_n − t_state ≥ 0``), so every exponent is ≤ 0: no overflow on ten years of days.
Memory is ``O(B·H·T²)``; use :func:`sits.ops.retention.chunk_retention` for long series.
"""

from __future__ import annotations

import torch

from sits.ops.retention.signature import retention_form


@retention_form
def parallel_retention(q, k, v, dt, lam, initial_state, output_final_state):
    """Same signature, shapes and results as :func:`sits.ops.retention.naive_retention`."""
    q, k, v = q.float(), k.float(), v.float()
    B, T, H, K = q.shape
    c = torch.cumsum(dt.double(), dim=1)  # [B, T] days since the state's time
    diff = (c[:, :, None] - c[:, None, :]).float()  # [B, T(n), T(m)]
    causal = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    logD = lam[None, :, None, None] * diff.clamp_min(0)[:, None]  # [B, H, T, T]
    D = torch.where(causal, torch.exp(logD), torch.zeros((), device=q.device))
    scores = torch.einsum("bnhk,bmhk->bhnm", q, k) * D
    out = torch.einsum("bhnm,bmhv->bnhv", scores, v)
    final = None
    if initial_state is not None:
        S0 = initial_state.float()
        g_in = torch.exp(lam[None, None, :] * c.float()[:, :, None])  # [B, T, H]
        out = out + torch.einsum("bnhk,bhkv->bnhv", q * g_in[..., None], S0)
    if output_final_state:
        if T == 0:
            final = initial_state.float() if initial_state is not None else q.new_zeros(B, H, K, v.shape[-1])
        else:
            c_last = c[:, -1:]
            g_k = torch.exp(lam[None, None, :] * (c_last - c).float()[:, :, None])  # [B, T, H]
            final = torch.einsum("bmhk,bmhv->bhkv", k * g_k[..., None], v)
            if initial_state is not None:
                g0 = torch.exp(lam[None, :] * c_last.float())  # [B, H]
                final = final + g0[:, :, None, None] * initial_state.float()
    return out, final
