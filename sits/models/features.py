"""Date features of the encoder's tokens and queries, and the seasonal basis of the climatology.

Times here are float64 days since :data:`sits.tokens.EPOCH` (``t_days``); gaps are days (``dt``).
"""

from __future__ import annotations

import math

import torch

N_TIME_FEATURES = 6
N_SEASONAL_HARMONICS = 3  # day-of-year harmonics of the per-channel climatology (seasonal prior)
MAX_GAP_FEATURE_DAYS = 3650.0
DAYS_PER_YEAR = 365.25


def time_features(t_days: torch.Tensor, dt_days: torch.Tensor) -> torch.Tensor:
    """``[B, T, 6]`` float32: day-of-year harmonics (2 × sin/cos), decades since the epoch (centred on
    2020), log-gap since the previous token. ``t_days`` float64 days since the epoch, ``dt_days`` ≥ 0."""
    phase = torch.remainder(t_days.double(), DAYS_PER_YEAR) * (2 * math.pi / DAYS_PER_YEAR)
    feats = [torch.sin(phase), torch.cos(phase), torch.sin(2 * phase), torch.cos(2 * phase),
             t_days.double() / 3652.5 - 0.5, torch.log1p(dt_days.double().clamp(0, MAX_GAP_FEATURE_DAYS)) / 5.0]
    return torch.stack(feats, dim=-1).float()


def seasonal_features(t_days: torch.Tensor, n_harmonics: int = N_SEASONAL_HARMONICS) -> torch.Tensor:
    """``[..., 2·n_harmonics + 1]`` float32: 1, then sin/cos of k·(day-of-year phase), k = 1..n_harmonics."""
    phase = torch.remainder(t_days.double(), DAYS_PER_YEAR) * (2 * math.pi / DAYS_PER_YEAR)
    feats = [torch.ones_like(phase)]
    for k in range(1, n_harmonics + 1):
        feats += [torch.sin(k * phase), torch.cos(k * phase)]
    return torch.stack(feats, dim=-1).float()


def log_gap(t_from: torch.Tensor, t_to: torch.Tensor, has: torch.Tensor) -> torch.Tensor:
    """``log1p(days from t_from to t_to, clamped to [0, MAX_GAP_FEATURE_DAYS]) / 5`` where ``has``, else 0."""
    return torch.where(has, torch.log1p((t_to - t_from).clamp(0, MAX_GAP_FEATURE_DAYS)) / 5, torch.zeros_like(t_to))
