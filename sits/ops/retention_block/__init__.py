"""The retention block's streaming step as an op of its own: one token per row through a whole pre-norm
retention block (LayerNorm → q/k/v → time-aware retention → per-head LayerNorm → out → residual →
LayerNorm → FFN with exact GELU → residual), the new state written where the caller says.

``naive.py`` is the specification (plain torch, the reference retention loop); ``fused.py`` is the CPU
fast path (three GEMMs and one numba pass). Both take the block's weights as a
:class:`RetentionBlockWeights` and share one signature
``(x, dt, valid, S, weights, *, S_out=None) -> (x_out, S_out)``; the tests hold them equal to each other
and to the block's plain recurrent form (:meth:`sits.layers.Block.forward` with ``mode="recurrent"``).
"""

from sits.ops.retention_block.fused import fused_retention_block_step
from sits.ops.retention_block.naive import naive_retention_block_step
from sits.ops.retention_block.weights import RetentionBlockWeights

__all__ = ["RetentionBlockWeights", "fused_retention_block_step", "naive_retention_block_step"]
