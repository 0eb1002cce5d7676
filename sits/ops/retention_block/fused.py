"""The retention block's streaming step on CPU, fused: the results of
:func:`sits.ops.retention_block.naive_retention_block_step` (to fp32 tolerance, tested) with three
GEMMs (``addmm`` into the residual where it can) and one numba pass for decay, rank-one update,
read-out, ``q`` scaling and the per-head layer norm
(:func:`sits.ops.retention.kernels.fused_retention_step`). The pass reads each state element once and
writes it once, into ``S_out`` (which may be ``S`` itself): the step is bound by memory bandwidth, the
floor that ``sitsmon bench encoder`` measures beside it.

Needs CPU float32 tensors, contiguous states, inference (no autograd): :func:`supports` says whether
it applies; :meth:`sits.layers.Block.step` chooses between this op and the block's plain form.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sits.errors import StateShapeError, UnsortedTimesError
from sits.ops.retention.kernels import fused_retention_step
from sits.ops.retention_block.signature import block_step


def supports(x: torch.Tensor, S: torch.Tensor | None) -> bool:
    """Whether the fused op serves these inputs: inference on CPU float32, one token per row."""
    return (S is not None and x.dim() == 3 and x.shape[1] == 1 and x.dtype == torch.float32
            and S.dtype == torch.float32 and x.device.type == "cpu" and S.device.type == "cpu"
            and not torch.is_grad_enabled())


@block_step
@torch.no_grad()
def fused_retention_block_step(x, dt, valid, S, w, S_out, H, K):
    """Signature of :func:`sits.ops.retention_block.naive_retention_block_step`. ``S`` is only read
    unless ``S_out`` is ``S`` itself (in place); ``S_out`` must be a contiguous float32 ``[B, H, K, K]``
    tensor (a row slice of a larger state is fine); None: a new tensor."""
    B, _, d = x.shape
    if S_out is None:  # the kernel reads the old state and writes the new one: no separate copy pass
        S_out = torch.empty(S.shape, dtype=torch.float32)
    elif S_out.shape != S.shape or S_out.dtype != torch.float32 or not S_out.is_contiguous():
        raise StateShapeError(f"S_out must be a contiguous float32 {tuple(S.shape)} tensor")
    S_in = S_out if S_out is S else S.contiguous()
    x2 = x.reshape(B, d)
    qkv = torch.mm(F.layer_norm(x2, (d,), w.norm1_weight, w.norm1_bias, w.norm1_eps), w.qkv.t())
    dt = dt.to(torch.float32)
    if not bool(valid.all()):  # invalid rows write nothing: zero key and day gap (as the mixers do)
        inv = ~valid[:, 0]
        qkv[inv, d : 2 * d] = 0.0
        dt = dt * valid.to(torch.float32)
    if bool((dt < 0).any()):
        raise UnsortedTimesError("dt holds negative day differences: token times must be non-decreasing")
    q5 = qkv.view(B, 1, 3, H, K).numpy()  # q, k, v: strided views of the one projection
    o = torch.empty(B, d)
    fused_retention_step(q5[:, :, 0], q5[:, :, 1], q5[:, :, 2], dt.numpy(), w.log_decay.numpy(), S_in.numpy(),
                         S_out.numpy(), o.view(B, 1, H, K).numpy(), q_scale=K**-0.5, layer_norm=True, eps=w.head_eps)
    y = torch.addmm(x2, o, w.out.t())  # x + out(LN_head(retention))
    h1 = torch.addmm(w.ffn_in_bias, F.layer_norm(y, (d,), w.norm2_weight, w.norm2_bias, w.norm2_eps), w.ffn_in.t())
    torch._C._nn.gelu(h1, out=h1)  # exact GELU in place (F.gelu has no out=)
    y.addmm_(h1, w.ffn_out.t()).add_(w.ffn_out_bias)
    return y.view(B, 1, d), S_out
