"""Time-aware retention, the specification: a plain float32 loop over time, never optimised.

    S_n = γ_h ** Δt_n · S_(n−1) + k_nᵀ v_n,     o_n = q_n S_n

with ``Δt_n`` in days (``dt``), ``log_decay = ln γ_h`` per head. Shapes in :mod:`sits.ops.utils`.
"""

from __future__ import annotations

import torch

from sits.ops.retention.signature import retention_form


@retention_form
def naive_retention(q, k, v, dt, lam, initial_state, output_final_state):
    """Reference retention.

    Args:
        q, k: ``[B, T, H, K]``; v: ``[B, T, H, V]``; dt: ``[B, T]`` days (``dt[:, 0]``: days since the
        state's time); log_decay: ``[H]`` (ln of the per-day decay); initial_state: ``[B, H, K, V]``.
    Returns:
        ``(out [B, T, H, V], final_state [B, H, K, V] or None)``, out in ``q``'s dtype, state float32.
    """
    q, k, v, dt = q.float(), k.float(), v.float(), dt.float()
    B, T, H, K = q.shape
    V = v.shape[-1]
    S = q.new_zeros(B, H, K, V) if initial_state is None else initial_state.float()
    outs = []
    for n in range(T):
        g = torch.exp(lam[None, :] * dt[:, n, None])  # [B, H]
        S = g[:, :, None, None] * S + k[:, n, :, :, None] * v[:, n, :, None, :]
        outs.append(torch.einsum("bhk,bhkv->bhv", q[:, n], S))
    out = torch.stack(outs, dim=1) if outs else q.new_zeros(B, 0, H, V)
    return out, S
