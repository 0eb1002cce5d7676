"""Linear attention (elu+1 features, normaliser, optional time decay) in four forms with one signature
``(q, k, v, dt=None, log_decay=None, initial_state=None, output_final_state=False) -> (out, state)``."""

from sits.ops.linear_attention.forms import (
    chunk_linear_attention,
    fused_recurrent_linear_attention,
    parallel_linear_attention,
)
from sits.ops.linear_attention.naive import feature_map, naive_linear_attention

__all__ = [
    "chunk_linear_attention",
    "feature_map",
    "fused_recurrent_linear_attention",
    "naive_linear_attention",
    "parallel_linear_attention",
]
