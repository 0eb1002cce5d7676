"""Time-aware retention, recurrent form (streaming): state in and out as plain tensors.

Paths, all with the signature and results of :func:`sits.ops.retention.naive_retention`:
- autograd needed: a differentiable torch loop over time;
- CPU inference: the fused numba kernel (:mod:`sits.ops.retention.kernels`), one pass over the state;
- CUDA inference: :func:`batched_state_loop`, batched in-place state updates on the device
  (``state_dtype=torch.bfloat16`` keeps the state in bf16 and computes each update in float32);
- ``SITSMON_SITS_REFERENCE=1``: the reference loop.
"""

from __future__ import annotations

import torch

from sits.ops.dispatch import use_reference
from sits.ops.retention.kernels import fused_step_numpy
from sits.ops.retention.naive import naive_retention
from sits.ops.retention.signature import retention_form


def _needs_grad(*tensors: torch.Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _torch_loop(q, k, v, dt, lam, S):
    B, T, H, K = q.shape
    outs = []
    for n in range(T):
        g = torch.exp(lam[None, :] * dt[:, n, None].float())
        S = g[:, :, None, None] * S + k[:, n, :, :, None] * v[:, n, :, None, :]
        outs.append(torch.einsum("bhk,bhkv->bhv", q[:, n], S))
    out = torch.stack(outs, 1) if outs else q.new_zeros(B, 0, H, v.shape[-1])
    return out, S


def batched_state_loop(q, k, v, dt, lam, S, state_dtype=torch.float32, inplace=False):
    """The device path (CUDA; plain torch, so it also runs on CPU for testing): per token, the state is
    decayed and updated in place with batched rank-one products (``baddbmm_``), then read out (``bmm``).
    ``state_dtype=torch.bfloat16`` keeps the state in bf16 and computes each update in float32.
    Returns ``(out [B, T, H, V] float32, state [B, H, K, V] in state_dtype)``."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    if not (inplace and S.dtype == state_dtype and S.is_contiguous()):
        S = S.to(state_dtype, copy=True).contiguous()
    out = q.new_empty(B, T, H, V, dtype=torch.float32)
    for n in range(T):
        g = torch.exp(lam[None, :] * dt[:, n, None].float())  # [B, H]
        Sf = S if state_dtype == torch.float32 else S.float()
        Sf.mul_(g[:, :, None, None])
        Sf.view(B * H, K, V).baddbmm_(k[:, n].reshape(B * H, K, 1).float(), v[:, n].reshape(B * H, 1, V).float())
        out[:, n] = torch.bmm(q[:, n].reshape(B * H, 1, K).float(), Sf.view(B * H, K, V)).view(B, H, V)
        if Sf is not S:
            S.copy_(Sf)
    return out, S


@retention_form
def fused_recurrent_retention(q, k, v, dt, lam, initial_state, output_final_state, *, inplace: bool = False,
                              state_dtype: torch.dtype | None = None):
    """Recurrent retention. Shapes as :func:`sits.ops.retention.naive_retention`.

    ``inplace=True`` (inference only) writes the new state into ``initial_state`` itself and returns it.
    ``state_dtype`` (CUDA only): dtype in which the state is kept (float32 or bfloat16).
    """
    if use_reference():
        return naive_retention(q, k, v, dt, lam, initial_state, output_final_state)
    B, T, H, K = q.shape
    V = v.shape[-1]
    if _needs_grad(q, k, v, lam, initial_state):
        S0 = q.new_zeros(B, H, K, V, dtype=torch.float32) if initial_state is None else initial_state.float()
        return _torch_loop(q.float(), k.float(), v.float(), dt, lam, S0)
    with torch.no_grad():
        if q.device.type == "cuda":
            S0 = initial_state if initial_state is not None else q.new_zeros(B, H, K, V, dtype=torch.float32)
            return batched_state_loop(q, k, v, dt, lam, S0, state_dtype or S0.dtype, inplace)
        if initial_state is None:
            S_in = S_out = torch.zeros(B, H, K, V, dtype=torch.float32)
        elif inplace:
            if initial_state.dtype != torch.float32 or not initial_state.is_contiguous():
                raise ValueError("inplace=True needs a contiguous float32 state")
            S_in = S_out = initial_state.detach()
        else:  # the kernel reads the old state and writes the new one: no separate copy pass
            S_in = initial_state.detach().to(torch.float32).contiguous()
            S_out = torch.empty(B, H, K, V, dtype=torch.float32)
        out_np, _ = fused_step_numpy(
            q.detach().float().numpy(), k.detach().float().numpy(), v.detach().float().numpy(),
            dt.detach().float().numpy(), lam.detach().numpy(), S_in.numpy(), S_out.numpy(),
        )
        return torch.from_numpy(out_np), S_out
