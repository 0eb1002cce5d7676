"""The retention block's streaming step, the specification: plain torch, the reference retention loop.

    h = LN1(x);  q, k, v = h W_qkvᵀ;  o = LN_head(retention(q · K^-½, k, v, dt))     (state S → S')
    y = x + o W_outᵀ;  x_out = y + W_2 GELU(W_1 LN2(y) + b_1) + b_2

Rows whose token is not valid write nothing into the state (key and day gap zeroed, as the mixers do).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sits.ops.retention.naive import naive_retention
from sits.ops.retention_block.signature import block_step


@block_step
def naive_retention_block_step(x, dt, valid, S, w, S_out, H, K):
    """One token per row. ``x [B, 1, d]`` float32, ``dt [B, 1]`` days since the state's time, ``valid
    [B, 1]`` bool, ``S [B, H, K, K]`` float32 (only read). ``S_out``: where the new state goes (may be
    ``S``: in place); None: a new tensor. Returns ``(x_out [B, 1, d], new state)``."""
    B, T, d = x.shape
    h = F.layer_norm(x, (d,), w.norm1_weight, w.norm1_bias, w.norm1_eps)
    q, k, v = F.linear(h, w.qkv).view(B, T, 3, H, K).unbind(2)
    keep = valid.to(x.dtype)
    o, S_new = naive_retention(q * K**-0.5, k * keep[..., None, None], v, dt.to(torch.float32) * keep, w.log_decay,
                               S, output_final_state=True)
    o = F.layer_norm(o, (K,), eps=w.head_eps)
    y = x + F.linear(o.reshape(B, T, d), w.out)
    ffn = F.linear(F.gelu(F.linear(F.layer_norm(y, (d,), w.norm2_weight, w.norm2_bias, w.norm2_eps), w.ffn_in,
                                   w.ffn_in_bias)), w.ffn_out, w.ffn_out_bias)
    if S_out is not None:
        S_out.copy_(S_new)
        S_new = S_out
    return y + ffn, S_new
