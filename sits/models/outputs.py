"""What the encoder returns: the streaming step's output, whole-series encodings, gap fills."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sits.heads import Prediction
from sits.state import EncoderState


@dataclass(frozen=True, slots=True, eq=False)
class StepOutput:
    """``embedding [N, d_model]`` (the representation after the token), ``updated [N]`` bool."""

    embedding: torch.Tensor
    updated: torch.Tensor


@dataclass(frozen=True, slots=True, eq=False)
class Encoded:
    """``embeddings``: one ``[T_i, d_model]`` tensor per series; ``state``: the state after each series."""

    embeddings: list[torch.Tensor]
    state: EncoderState | None


@dataclass(frozen=True, slots=True, eq=False)
class GapFill:
    """Reconstruction of the S2 tokens of one series: ``times [M]`` int64 seconds, ``index [M]`` positions
    in the series, ``hidden [M]`` whether the token was withheld, ``prediction`` ``[M, n_s2c]`` (S2 bands
    and NDVI)."""

    times: np.ndarray
    index: np.ndarray
    hidden: np.ndarray
    prediction: Prediction
