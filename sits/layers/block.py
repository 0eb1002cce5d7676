"""The pre-norm residual block around a mixer, and its streaming step.

Two forms, one result (tested): :meth:`Block.forward` is the plain form for every mode (the mixer's
parallel, chunkwise or recurrent op between the norms and the FFN); :meth:`Block.step` folds one token
per row into a state and chooses, in one line, between the fused op
:func:`sits.ops.retention_block.fused_retention_block_step` (a retention block on CPU inference) and
the plain recurrent form. The fused op takes the block's weights as plain tensors
(:meth:`Block.retention_weights`), so an edit to the block is made in ``forward``, in the op's
reference :func:`sits.ops.retention_block.naive_retention_block_step`, and in the fused op, and the
tests hold all three equal.
"""

from __future__ import annotations

import torch
from torch import nn

from sits.ops.dispatch import use_reference
from sits.ops.retention_block import RetentionBlockWeights, fused_retention_block_step
from sits.ops.retention_block.fused import supports as fused_op_supports


class Block(nn.Module):
    """Pre-norm residual block: ``x + mixer(LN(x))`` then ``x + FFN(LN(x))`` (GELU, ``ffn_mult·d``)."""

    def __init__(self, mixer: nn.Module, d_model: int, ffn_mult: int = 2) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.mixer = mixer
        self.norm2 = nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(nn.Linear(d_model, ffn_mult * d_model), nn.GELU(), nn.Linear(ffn_mult * d_model, d_model))

    def forward(self, x, dt, t, valid, initial_state=None, output_final_state=False, mode="parallel", inplace=False):
        """The plain form (every mode; differentiable). Returns ``(x_out [B, T, d], state or None)``."""
        h, S = self.mixer(self.norm1(x), dt, t, valid, initial_state, output_final_state, mode, inplace)
        x = x + h
        return x + self.ffn(self.norm2(x)), S

    @torch.no_grad()
    def step(self, x, dt, t, valid, S, *, S_out=None):
        """One token per row into state ``S`` (inference): ``x [B, 1, d]``, ``dt [B, 1]`` days since the
        state's time, ``t [B, 1]`` float64 days since the epoch, ``valid [B, 1]``. The new state goes to
        ``S_out`` (``S`` itself: in place; another tensor of ``S``'s shape: there, ``S`` only read;
        None: a new tensor). Returns ``(x_out [B, 1, d], new state)``; the results of
        ``forward(..., mode="recurrent")``."""
        if self.has_fused_step(x, S):  # the one place where the fused op is chosen (conditions below)
            return fused_retention_block_step(x, dt, valid, S, self.retention_weights(), S_out=S_out)
        return self._plain_step(x, dt, t, valid, S, S_out)

    def has_fused_step(self, x: torch.Tensor, S: torch.Tensor | None) -> bool:
        """Whether :meth:`step` runs the fused op: a retention mixer without rotation, the exact GELU
        (what the op computes), the reference path not forced (``SITSMON_SITS_REFERENCE``), and inputs
        the op serves (CPU float32 inference, one token per row: :func:`fused.supports`)."""
        m = self.mixer
        return (getattr(m, "kind", None) == "retention" and not m.rotation
                and isinstance(self.ffn[1], nn.GELU) and self.ffn[1].approximate == "none"
                and not use_reference() and fused_op_supports(x, S))

    def retention_weights(self) -> RetentionBlockWeights:
        """This block's weights for the retention block ops (views, no copies)."""
        m, lin1, lin2 = self.mixer, self.ffn[0], self.ffn[2]
        return RetentionBlockWeights(
            norm1_weight=self.norm1.weight, norm1_bias=self.norm1.bias, norm1_eps=self.norm1.eps,
            qkv=m.qkv.weight, log_decay=m.log_decay, n_heads=m.n_heads, out=m.out.weight,
            norm2_weight=self.norm2.weight, norm2_bias=self.norm2.bias, norm2_eps=self.norm2.eps,
            ffn_in=lin1.weight, ffn_in_bias=lin1.bias, ffn_out=lin2.weight, ffn_out_bias=lin2.bias,
        )

    def _plain_step(self, x, dt, t, valid, S, S_out):
        """The plain recurrent form with the new state in ``S_out`` (the mixer's op updates a copy in
        place; ops that return a new tensor, such as the reference, are copied back)."""
        if S_out is None:
            return self(x, dt, t, valid, S, True, "recurrent")
        if S_out is not S:
            S_out.copy_(S)
        y, new = self(x, dt, t, valid, S_out, True, "recurrent", inplace=True)
        if new is not S_out:
            S_out.copy_(new)
        return y, S_out
