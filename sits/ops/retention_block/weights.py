"""The weights of a pre-norm retention block, as plain tensors (so the ops need no ``nn.Module``)."""

from __future__ import annotations

from typing import NamedTuple

import torch


class RetentionBlockWeights(NamedTuple):
    """Shapes for ``d = d_model``, ``H`` heads of size ``K = d / H``, FFN width ``F``; all float32.

    ``norm1_*``, ``norm2_*``: the two pre-norm LayerNorms (``[d]``, ``eps``); ``qkv``: ``[3d, d]`` (rows: q,
    then k, then v, each head-major), no bias; ``log_decay``: ``[H]`` ln of the per-day decay; ``out``:
    ``[d, d]``, no bias; ``ffn_in``/``ffn_in_bias``: ``[F, d]``/``[F]``; ``ffn_out``/``ffn_out_bias``:
    ``[d, F]``/``[d]``. The head read-out is scaled by ``K ** -0.5`` on ``q`` and layer-normed per head
    without affine (eps ``head_eps``)."""

    norm1_weight: torch.Tensor
    norm1_bias: torch.Tensor
    norm1_eps: float
    qkv: torch.Tensor
    log_decay: torch.Tensor
    n_heads: int
    out: torch.Tensor
    norm2_weight: torch.Tensor
    norm2_bias: torch.Tensor
    norm2_eps: float
    ffn_in: torch.Tensor
    ffn_in_bias: torch.Tensor
    ffn_out: torch.Tensor
    ffn_out_bias: torch.Tensor
    head_eps: float = 1e-5
