"""Layers: sequence mixers (retention, linear attention, softmax attention) and the pre-norm block."""

from sits.layers.block import Block
from sits.layers.mixers import (
    LinearAttentionMixer,
    RetentionMixer,
    SoftmaxAttentionMixer,
    make_mixer,
    multiscale_log_decay,
    rotate_by_day,
)

__all__ = ["Block", "LinearAttentionMixer", "RetentionMixer", "SoftmaxAttentionMixer", "make_mixer",
           "multiscale_log_decay", "rotate_by_day"]
