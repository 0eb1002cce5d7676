"""The one signature both block-step ops share, declared once:
``(x, dt, valid, S, weights, *, S_out=None) -> (x_out, S_out)``.

:func:`block_step` wraps an op's body with it: the state's shape is checked against ``x`` and the
weights, and the body gets the head count ``H`` and head size ``K`` beside the arguments.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from sits.errors import StateShapeError
from sits.ops.retention_block.weights import RetentionBlockWeights

Step = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def block_step(body: Step) -> Step:
    """``body(x, dt, valid, S, weights, S_out, H, K) -> (x_out, new state)`` as a block-step op."""

    def op(
        x: torch.Tensor,
        dt: torch.Tensor,
        valid: torch.Tensor,
        S: torch.Tensor,
        weights: RetentionBlockWeights,
        *,
        S_out: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        B, _, d = x.shape
        H = weights.n_heads
        K = d // H
        if S.shape != (B, H, K, K):
            raise StateShapeError(f"state must be [B, H, K, K] = {(B, H, K, K)}; got {tuple(S.shape)}")
        return body(x, dt, valid, S, weights, S_out, H, K)

    functools.update_wrapper(op, body)
    del op.__wrapped__  # help() and inspect show the shared signature above, not the body's
    return op
