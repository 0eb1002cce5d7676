"""Linear attention with a normaliser and optional time decay, the specification (plain float32 loop).

    S_n = γ_h ** Δt_n · S_(n−1) + φ(k_n)ᵀ v_n,   z_n = γ_h ** Δt_n · z_(n−1) + φ(k_n)
    o_n = φ(q_n) S_n / (φ(q_n) · z_n + eps)

``q`` and ``k`` given here are already the features ``φ(·)`` (non-negative; the layers use
:func:`feature_map`, elu + 1). Without ``log_decay`` there is no decay (plain causal linear attention).
The state is ONE plain tensor ``[B, H, K, V + 1]``: ``S`` in ``[..., :V]`` and the normaliser ``z`` in
``[..., V]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sits.errors import StateShapeError
from sits.ops.utils import check_inputs, decay_log, zero_dt

EPS = 1e-6


def feature_map(x: torch.Tensor) -> torch.Tensor:
    """elu(x) + 1: the positive feature map of linear attention."""
    return F.elu(x) + 1.0


def check_state(initial_state: torch.Tensor | None, q: torch.Tensor, v: torch.Tensor) -> None:
    if initial_state is None:
        return
    B, _, H, K = q.shape
    expected = (B, H, K, v.shape[-1] + 1)
    if tuple(initial_state.shape) != expected:
        raise StateShapeError(f"linear-attention state must be [B, H, K, V+1] = {expected}; got {tuple(initial_state.shape)}")


def naive_linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    dt: torch.Tensor | None = None,
    log_decay: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    eps: float = EPS,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Reference. q, k ``[B, T, H, K]`` (features ≥ 0), v ``[B, T, H, V]``, dt ``[B, T]`` days or None,
    log_decay ``[H]`` or None, initial_state ``[B, H, K, V+1]``. Returns ``(out [B, T, H, V], state)``."""
    check_inputs(q, k, v, dt, log_decay, None)
    check_state(initial_state, q, v)
    dtype = q.dtype
    q, k, v = q.float(), k.float(), v.float()
    B, T, H, K = q.shape
    V = v.shape[-1]
    lam = decay_log(log_decay, H, q)
    dt = zero_dt(B, T, q) if dt is None else dt.float()
    if initial_state is None:
        S, z = q.new_zeros(B, H, K, V), q.new_zeros(B, H, K)
    else:
        S, z = initial_state[..., :V].float(), initial_state[..., V].float()
    outs = []
    for n in range(T):
        g = torch.exp(lam[None, :] * dt[:, n, None])  # [B, H]
        S = g[:, :, None, None] * S + k[:, n, :, :, None] * v[:, n, :, None, :]
        z = g[:, :, None] * z + k[:, n]
        num = torch.einsum("bhk,bhkv->bhv", q[:, n], S)
        den = torch.einsum("bhk,bhk->bh", q[:, n], z)
        outs.append(num / (den[..., None] + eps))
    out = torch.stack(outs, 1) if outs else q.new_zeros(B, 0, H, V)
    final = torch.cat([S, z[..., None]], dim=-1) if output_final_state else None
    return out.to(dtype), final
