"""Priors of the gap-filling and forecast heads, in normalised model space (the heads learn a residual).

- the clear anchors: visible clear S2 tokens with every S2 channel present;
- the causal persistence prior: the last anchor at or before each token (:func:`persistence_prior`),
  and its seasonal-anomaly form for a query time (:func:`persistence_features`);
- the bidirectional interpolation prior (:func:`interpolation_prior`);
- the seasonal climatology: least squares of the anchors' channels on day-of-year harmonics
  (:func:`fit_climatology`), stored in the model's ``clim_coef`` buffer.

``climatology`` arguments are callables ``t_days → [*t.shape, n_s2c]`` (the model's
:meth:`~sits.models.SitsEncoder.climatology`); times are float64 days since :data:`sits.tokens.EPOCH`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from sits.models.features import N_SEASONAL_HARMONICS, log_gap, seasonal_features
from sits.tokens import S2, Normalization, Series, TokenBatch

N_PRIOR_FEATURES = 5  # has-before, has-after, log-gap before, log-gap after, log span between them
N_PERSIST_FEATURES = 2  # has, log-gap
Climatology = Callable[[torch.Tensor], torch.Tensor]


def clear_anchor(tb: TokenBatch, n_s2c: int) -> torch.Tensor:
    """``[B, T]`` bool: visible clear S2 tokens with every S2 channel present (prior anchors)."""
    return tb.valid & ~tb.hidden & (tb.sensor == S2) & (tb.clear >= 0.5) & tb.mask[..., :n_s2c].all(dim=-1)


def persistence_prior(tb: TokenBatch, n_s2c: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For each position, the last visible clear S2 token at or before it (causal): normalised S2
    channels ``[B, T, n_s2c]`` (0 where none) and its time ``[B, T]`` float64 (−inf where none)."""
    B, T = tb.shape
    c2 = n_s2c
    idx = torch.arange(T, device=tb.t_days.device).expand(B, T)
    prev = torch.cummax(torch.where(clear_anchor(tb, c2), idx, torch.full_like(idx, -1)), dim=1).values
    has = prev >= 0
    pi = prev.clamp_min(0)
    vals = torch.gather(tb.values[..., :c2], 1, pi[..., None].expand(B, T, c2)) * has.float()[..., None]
    t_prev = torch.where(has, torch.gather(tb.t_days, 1, pi), torch.full_like(tb.t_days, -math.inf))
    return vals, t_prev


def persistence_features(t: torch.Tensor, last_clear: torch.Tensor, t_last_clear: torch.Tensor,
                         climatology: Climatology) -> tuple[torch.Tensor, torch.Tensor]:
    """Seasonal-anomaly persistence prior at query times ``t``: the climatology at ``t`` plus the anomaly
    of the last clear S2 values ``last_clear [..., n_s2c]`` at ``t_last_clear`` (−inf: none, the
    climatology alone), and its features ``[..., N_PERSIST_FEATURES]`` (has, log-gap)."""
    has = torch.isfinite(t_last_clear)
    gap = log_gap(t_last_clear, t, has)
    t_lc = torch.where(has, t_last_clear, t)
    anomaly = (last_clear - climatology(t_lc)) * has.float()[..., None]
    return climatology(t) + anomaly, torch.stack([has.double(), gap], dim=-1).float()


def interpolation_prior(tb: TokenBatch, n_s2c: int, climatology: Climatology) -> tuple[torch.Tensor, torch.Tensor]:
    """Seasonal-anomaly interpolation prior (model space) of the S2 channels: the climatology at each
    position plus the linear interpolation in time of the anomalies (value − climatology) of the
    nearest visible clear S2 tokens with every S2 channel present, before and at/after it (one side
    only: that side's anomaly; none: the climatology). Without a climatology it is plain linear
    interpolation. Returns ``(prior [B, T, n_s2c], features [B, T, N_PRIOR_FEATURES + 2·n_s2c])``:
    has-before, has-after, log-gaps in days to each and between them (0 where absent), then the
    plain linear interpolation and the climatology, both minus the prior."""
    B, T = tb.shape
    c2 = n_s2c
    anchor = clear_anchor(tb, c2)
    idx = torch.arange(T, device=tb.t_days.device).expand(B, T)
    prev = torch.cummax(torch.where(anchor, idx, torch.full_like(idx, -1)), dim=1).values
    nxt = torch.flip(torch.cummin(torch.flip(torch.where(anchor, idx, torch.full_like(idx, T)), [1]), dim=1).values, [1])
    has_p, has_n = prev >= 0, nxt < T
    pi, ni = prev.clamp(0, max(T - 1, 0)), nxt.clamp(0, max(T - 1, 0))
    vals = tb.values[..., :c2]
    vp = torch.gather(vals, 1, pi[..., None].expand(B, T, c2))
    vn = torch.gather(vals, 1, ni[..., None].expand(B, T, c2))
    tp, tn = torch.gather(tb.t_days, 1, pi), torch.gather(tb.t_days, 1, ni)
    span = (tn - tp).clamp_min(1e-6)
    w = torch.where(has_p & has_n, ((tb.t_days - tp) / span).clamp(0, 1), torch.where(has_p, 0.0, 1.0).double()).float()
    any_a = (has_p | has_n).float()[..., None]
    linear = ((1 - w)[..., None] * vp + w[..., None] * vn) * any_a
    clim = climatology(tb.t_days)
    anomaly = (1 - w)[..., None] * (vp - climatology(tp)) + w[..., None] * (vn - climatology(tn))
    prior = clim + anomaly * any_a
    gp, gn, gs = log_gap(tp, tb.t_days, has_p), log_gap(tb.t_days, tn, has_n), log_gap(tp, tn, has_p & has_n)
    feats = torch.stack([has_p.double(), has_n.double(), gp, gn, gs], dim=-1).float()
    return prior, torch.cat([feats, linear - prior, clim - prior], dim=-1)


def fit_climatology(series: list[Series], normalization: Normalization, n_s2c: int,
                    ridge: float = 1e-3) -> torch.Tensor | None:
    """Ridge least squares of the normalised S2 channels of the clear S2 observations with every S2
    channel present on the day-of-year harmonics → ``[n_s2c, 2·N_SEASONAL_HARMONICS + 1]`` float64
    coefficients; None when there are too few observations to fit."""
    rows, ts = [], []
    c2 = n_s2c
    for s in series:
        x = normalization.normalize(s.values)[:, :c2]
        ok = (s.sensor == S2) & (s.clear >= 0.5) & np.isfinite(x).all(axis=1)
        rows.append(x[ok])
        ts.append(s.days[ok])
    y = torch.from_numpy(np.concatenate(rows)).double() if rows else torch.zeros(0, c2, dtype=torch.float64)
    if len(y) < 4 * N_SEASONAL_HARMONICS + 2:
        return None
    X = seasonal_features(torch.from_numpy(np.concatenate(ts))).double()
    A = X.T @ X + ridge * len(X) * torch.eye(X.shape[1], dtype=torch.float64)
    return torch.linalg.solve(A, X.T @ y).T  # [c2, F]
