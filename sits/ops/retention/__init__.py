"""Time-aware retention: reference, parallel, chunkwise and recurrent forms with one signature
``(q, k, v, dt, log_decay, initial_state=None, output_final_state=False) -> (out, final_state)``."""

from sits.ops.retention.chunk import chunk_retention
from sits.ops.retention.fused_recurrent import fused_recurrent_retention
from sits.ops.retention.naive import naive_retention
from sits.ops.retention.parallel import parallel_retention

__all__ = ["chunk_retention", "fused_recurrent_retention", "naive_retention", "parallel_retention"]
