"""Input checks shared by the ops (shapes only: cheap enough for the hot path).

Layouts, declared once:
- ``q``, ``k``: ``[B, T, H, K]`` (batch, tokens, heads, key size)
- ``v``: ``[B, T, H, V]``
- ``dt``: ``[B, T]`` days between a token and the previous one of the same series; ``dt[:, 0]`` is the
  number of days since the time of ``initial_state`` (ignored when there is none). Non-negative; 0 for
  same-day tokens.
- ``log_decay``: ``[H]``, natural log of the per-day decay ``γ_h`` (≤ 0), so the decay over ``Δt`` days is
  ``exp(log_decay * Δt) = γ_h ** Δt``.
- state: ``[B, H, K, V]``.
"""

from __future__ import annotations

import torch

from sits.errors import ShapeError, StateShapeError, UnsortedTimesError

QK_DIMS = ("batch", "time", "head", "key")
STATE_DIMS = ("batch", "head", "key", "value")


def check_inputs(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    dt: torch.Tensor | None,
    log_decay: torch.Tensor | None,
    initial_state: torch.Tensor | None,
    *,
    check_dt_sign: bool = True,
) -> None:
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ShapeError(f"q, k, v must be [B, T, H, D]; got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if q.shape != k.shape:
        raise ShapeError(f"q {tuple(q.shape)} and k {tuple(k.shape)} differ")
    if v.shape[:3] != q.shape[:3]:
        raise ShapeError(f"v {tuple(v.shape)} does not match q {tuple(q.shape)} in [B, T, H]")
    B, T, H, K = q.shape
    if dt is not None:
        if dt.shape != (B, T):
            raise ShapeError(f"dt must be [B, T] = {(B, T)}; got {tuple(dt.shape)}")
        if check_dt_sign and T > 0 and bool((dt < 0).any()):
            raise UnsortedTimesError("dt holds negative day differences: token times must be non-decreasing")
    if log_decay is not None and log_decay.shape != (H,):
        raise ShapeError(f"log_decay must be [H] = ({H},); got {tuple(log_decay.shape)}")
    if initial_state is not None and initial_state.shape != (B, H, K, v.shape[-1]):
        raise StateShapeError(
            f"initial_state must be [B, H, K, V] = {(B, H, K, v.shape[-1])}; got {tuple(initial_state.shape)}"
        )


def decay_log(log_decay: torch.Tensor | None, H: int, like: torch.Tensor) -> torch.Tensor:
    """``log_decay`` as float32 ``[H]``; zeros (no decay) when None."""
    if log_decay is None:
        return torch.zeros(H, dtype=torch.float32, device=like.device)
    return log_decay.to(torch.float32)


def zero_dt(B: int, T: int, like: torch.Tensor) -> torch.Tensor:
    return torch.zeros(B, T, dtype=torch.float32, device=like.device)
