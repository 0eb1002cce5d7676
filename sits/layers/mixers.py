"""Sequence mixers: time-aware retention, linear attention (elu+1, optional time decay) and a standard
softmax attention for comparison.

Every mixer maps ``x [B, T, d_model]`` to ``[B, T, d_model]`` with the layer signature
``forward(x, dt, t, valid, initial_state=None, output_final_state=False, mode="parallel")``:
``dt [B, T]`` float32 days since the previous token (``dt[:, 0]``: since the state's time), ``t [B, T]``
float64 days since the epoch (for the optional rotation), ``valid [B, T]`` bool. Invalid tokens
(padding, "no observation") write nothing into the state: their key is zeroed and their ``dt`` is 0.
``mode``: "parallel" (training), "chunk" (long series), "recurrent" (streaming, fused kernel). The
pre-norm block around a mixer, and its fused streaming step, are in :mod:`sits.layers.block`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sits.errors import ConfigError
from sits.ops.linear_attention import (
    chunk_linear_attention,
    feature_map,
    fused_recurrent_linear_attention,
    parallel_linear_attention,
)
from sits.ops.retention import chunk_retention, fused_recurrent_retention, parallel_retention

MODES = ("parallel", "chunk", "recurrent")


def multiscale_log_decay(n_heads: int, halflife_min: float, halflife_max: float) -> torch.Tensor:
    """``[H]`` ln(γ_h) per day, half-lives spaced geometrically from ``halflife_min`` to ``halflife_max`` days."""
    if not (0 < halflife_min <= halflife_max):
        raise ConfigError(f"half-lives must satisfy 0 < min <= max; got {halflife_min}, {halflife_max}")
    if n_heads == 1:
        hl = torch.tensor([math.sqrt(halflife_min * halflife_max)], dtype=torch.float64)
    else:
        hl = torch.logspace(math.log10(halflife_min), math.log10(halflife_max), n_heads, dtype=torch.float64)
    return (math.log(0.5) / hl).float()


def rotate_by_day(x: torch.Tensor, t: torch.Tensor, periods: torch.Tensor) -> torch.Tensor:
    """Rotate pairs of ``x [B, T, H, D]`` by angles ``2π t / period`` (t float64 days ``[B, T]``, periods
    ``[D/2]`` days). Angles are reduced modulo 2π in float64 before the cast, so q_n·k_m depends on
    ``t_n − t_m`` only, at fp32 precision, whatever the absolute date."""
    ang = torch.remainder(t[..., None].double() * (2 * math.pi / periods.double()), 2 * math.pi).float()  # [B,T,D/2]
    cos, sin = torch.cos(ang)[:, :, None, :], torch.sin(ang)[:, :, None, :]
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)


def _mask_invalid(k: torch.Tensor, dt: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero the keys and day gaps of invalid tokens, so that they leave the state unchanged."""
    if bool(valid.all()):
        return k, dt
    return k * valid[:, :, None, None].to(k.dtype), dt * valid.to(dt.dtype)


class _MixerBase(nn.Module):
    """The projections every mixer shares: fused q/k/v in, one out, ``n_heads`` heads."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ConfigError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        self.d_model, self.n_heads, self.head_dim = d_model, n_heads, d_model // n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)

    def _qkv(self, x):
        B, T, _ = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, self.head_dim).unbind(2)
        return q, k, v


class RetentionMixer(_MixerBase):
    """Multi-scale time-aware retention: a fixed per-day decay per head (half-lives from
    ``halflife_min`` to ``halflife_max`` days), optional rotation by day, per-head normalisation.
    State per item: ``[H, Dh, Dh]``."""

    kind = "retention"

    def __init__(self, d_model, n_heads, halflife_min=4.0, halflife_max=365.0, rotation=False, chunk_size=64):
        super().__init__(d_model, n_heads)
        self.register_buffer("log_decay", multiscale_log_decay(n_heads, halflife_min, halflife_max))
        self.rotation = bool(rotation)
        self.chunk_size = chunk_size
        if self.rotation:
            if self.head_dim % 2:
                raise ConfigError("rotation needs an even head size")
            periods = torch.logspace(math.log10(8.0), math.log10(365.25), self.head_dim // 2, dtype=torch.float64)
            self.register_buffer("periods", periods.float())

    def state_shape(self) -> tuple[int, int, int]:
        return (self.n_heads, self.head_dim, self.head_dim)

    def forward(self, x, dt, t, valid, initial_state=None, output_final_state=False, mode="parallel", inplace=False):
        q, k, v = self._qkv(x)
        q = q * self.head_dim**-0.5
        if self.rotation:
            q, k = rotate_by_day(q, t, self.periods), rotate_by_day(k, t, self.periods)
        k, dt = _mask_invalid(k, dt, valid)
        if mode == "parallel":
            o, S = parallel_retention(q, k, v, dt, self.log_decay, initial_state, output_final_state)
        elif mode == "chunk":
            o, S = chunk_retention(q, k, v, dt, self.log_decay, initial_state, output_final_state, self.chunk_size)
        elif mode == "recurrent":
            o, S = fused_recurrent_retention(q, k, v, dt, self.log_decay, initial_state, output_final_state, inplace=inplace)
        else:
            raise ConfigError(f"unknown mode {mode!r}; expected one of {MODES}")
        o = F.layer_norm(o, (self.head_dim,))
        B, T = x.shape[:2]
        return self.out(o.reshape(B, T, self.d_model)), S


class LinearAttentionMixer(_MixerBase):
    """Linear attention with elu+1 features and a normaliser, optionally with the multi-scale time decay.
    State per item: ``[H, Dh, Dh + 1]`` (numerator and normaliser)."""

    kind = "linear"

    def __init__(self, d_model, n_heads, halflife_min=4.0, halflife_max=365.0, decay=True, chunk_size=64):
        super().__init__(d_model, n_heads)
        self.decay = bool(decay)
        if self.decay:
            self.register_buffer("log_decay", multiscale_log_decay(n_heads, halflife_min, halflife_max))
        else:
            self.log_decay = None
        self.chunk_size = chunk_size

    def state_shape(self) -> tuple[int, int, int]:
        return (self.n_heads, self.head_dim, self.head_dim + 1)

    def forward(self, x, dt, t, valid, initial_state=None, output_final_state=False, mode="parallel", inplace=False):
        q, k, v = self._qkv(x)
        q, k = feature_map(q), feature_map(k)
        k, dt = _mask_invalid(k, dt, valid)
        if mode == "parallel":
            o, S = parallel_linear_attention(q, k, v, dt, self.log_decay, initial_state, output_final_state)
        elif mode == "chunk":
            o, S = chunk_linear_attention(q, k, v, dt, self.log_decay, initial_state, output_final_state,
                                          chunk_size=self.chunk_size)
        elif mode == "recurrent":
            o, S = fused_recurrent_linear_attention(q, k, v, dt, self.log_decay, initial_state, output_final_state,
                                                    inplace=inplace)
        else:
            raise ConfigError(f"unknown mode {mode!r}; expected one of {MODES}")
        B, T = x.shape[:2]
        return self.out(o.reshape(B, T, self.d_model)), S


class SoftmaxAttentionMixer(_MixerBase):
    """Standard causal softmax multi-head attention (the comparison baseline). It has no recurrent
    state: a new acquisition means re-encoding the whole series."""

    kind = "softmax"

    def state_shape(self):
        return None

    def forward(self, x, dt, t, valid, initial_state=None, output_final_state=False, mode="parallel", inplace=False):
        if initial_state is not None or output_final_state or mode == "recurrent":
            raise ConfigError("softmax attention has no recurrent state; re-encode the whole series instead")
        B, T, _ = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(o.transpose(1, 2).reshape(B, T, self.d_model)), None


def make_mixer(mechanism: str, d_model: int, n_heads: int, *, halflife_min=4.0, halflife_max=365.0,
               rotation=False, linear_decay=True, chunk_size=64) -> nn.Module:
    if mechanism == "retention":
        return RetentionMixer(d_model, n_heads, halflife_min, halflife_max, rotation, chunk_size)
    if mechanism == "linear":
        return LinearAttentionMixer(d_model, n_heads, halflife_min, halflife_max, linear_decay, chunk_size)
    if mechanism == "softmax":
        return SoftmaxAttentionMixer(d_model, n_heads)
    raise ConfigError(f"unknown mechanism {mechanism!r}; expected retention, linear or softmax")
