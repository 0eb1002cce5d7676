"""Self-supervised training: forecast the next acquisition and reconstruct hidden S2 tokens.

Each step takes random windows of ``window`` tokens from the series, hides a share of the S2 tokens
(single tokens and, with probability ``span_prob``, every S2 token of a 30–60-day span, like a cloudy
spell), runs the parallel form, and minimises the Gaussian NLL of (a) the reconstruction head at the
clear hidden tokens, (b) the forecast head for every next token (S1, or clear S2) and (c) with a
backward stack, the smoothing head at the hidden tokens. Before training, the seasonal prior (per-channel
day-of-year climatology of the training series, ``SitsEncoder.fit_climatology``) is fitted and stored
with the weights (``seasonal_prior``). Deterministic for a seed on a given device.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch

from sits.checkpoint import resolve_device
from sits.errors import ConfigError, EmptySeriesError
from sits.heads import gaussian_nll
from sits.models import EncoderConfig, SitsEncoder
from sits.tokens import S1, S2, Normalization, Series, TokenBatch, batch_series

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TrainConfig:
    epochs: int = 40
    batch_size: int = 16
    window: int = 160
    lr: float = 3e-3
    weight_decay: float = 1e-4
    hide_prob: float = 0.2
    span_prob: float = 0.5
    span_days: tuple[float, float] = (20.0, 60.0)
    forecast_weight: float = 1.0
    recon_weight: float = 1.0
    grad_clip: float = 1.0
    smooth_l1_weight: float = 0.0
    seasonal_prior: bool = True
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "span_days", tuple(self.span_days))
        if self.epochs < 1 or self.batch_size < 1 or self.window < 2:
            raise ConfigError(f"need epochs >= 1, batch_size >= 1, window >= 2; got {self.epochs}, {self.batch_size}, {self.window}")
        if not (0 <= self.hide_prob < 1 and 0 <= self.span_prob <= 1):
            raise ConfigError("hide_prob must be in [0, 1) and span_prob in [0, 1]")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0; got {self.lr}")


def hide_mask(tb: TokenBatch, rng: np.random.Generator, hide_prob: float, span_prob: float,
              span_days: tuple[float, float]) -> torch.Tensor:
    """``[B, T]`` bool: S2 tokens to withhold (random single tokens plus random spans of days)."""
    B, T = tb.shape
    s2 = (tb.sensor == S2) & tb.valid
    hide = torch.from_numpy(rng.random((B, T)) < hide_prob).to(tb.valid.device)
    t = tb.t_days
    for b in range(B):
        if rng.random() < span_prob:
            nv = int(tb.valid[b].sum())
            if nv < 2:
                continue
            t0 = float(t[b, int(rng.integers(0, nv))])
            length = float(rng.uniform(*span_days))
            hide[b] |= (t[b] >= t0) & (t[b] < t0 + length)
    return hide & s2


def losses(model: SitsEncoder, tb: TokenBatch, hidden: torch.Tensor, mode: str = "parallel") -> dict[str, torch.Tensor]:
    """The two self-supervised losses on ``tb`` with ``hidden`` S2 tokens withheld."""
    n_s2 = model.bands.n_s2c
    h, _ = model.run(tb.with_hidden(hidden), None, mode=mode, output_final_state=False)
    clear_s2 = (tb.sensor == S2) & (tb.clear >= 0.5)
    # reconstruction of hidden clear S2 tokens
    rw = (hidden & clear_s2)[..., None] & tb.mask[..., :n_s2]
    th = tb.with_hidden(hidden)
    pv, pt = model.persistence_prior(th)
    mean, logvar = model.recon(h, tb.t_days, pv, pt)
    recon = gaussian_nll(mean, logvar, tb.values[..., :n_s2], rw)
    # forecast of every next token (S1 or clear S2)
    nxt = tb.valid[:, 1:] & ((tb.sensor[:, 1:] == S1) | clear_s2[:, 1:])
    fw = nxt[..., None] & tb.mask[:, 1:]
    fm, fl = model._forecast_raw(h[:, :-1], tb.t_days[:, :-1], tb.t_days[:, 1:], tb.sensor[:, 1:], tb.orbit[:, 1:],
                                 pv[:, :-1], pt[:, :-1])
    forecast = gaussian_nll(fm, fl, tb.values[:, 1:], fw)
    out = {"recon": recon, "forecast": forecast, "n_recon": rw.sum(), "n_forecast": fw.sum()}
    if model.config.bidirectional:
        hb = model.run_backward(th, mode=mode)
        prior, pf = model.interpolation_prior(th)
        sm, sl = model.smooth(h, hb, prior, pf)
        out["smooth"] = gaussian_nll(sm, sl, tb.values[..., :n_s2], rw)
        w = rw.to(sm.dtype)
        out["smooth_l1"] = ((sm - tb.values[..., :n_s2]).abs() * w).sum() / w.sum().clamp_min(1.0)
    return out


def _windows(series: list[Series], window: int, rng: np.random.Generator) -> list[Series]:
    out = []
    for s in series:
        n = len(s)
        k = max(1, math.ceil(n / window))
        for _ in range(k):
            start = int(rng.integers(0, max(1, n - window + 1)))
            out.append(s.slice(start, min(n, start + window)))
    return out


def fit(series: list[Series], config: EncoderConfig, train: TrainConfig = TrainConfig(),
        progress: Callable[[dict], None] | None = None) -> tuple[SitsEncoder, list[dict]]:
    """Train a new encoder on ``series``. Returns ``(model in eval mode, per-epoch history)``."""
    if not series:
        raise EmptySeriesError("no series to train on")
    bands = config.bands
    for s in series:
        if s.bands != bands:
            from sits.errors import BandSetError

            raise BandSetError(f"series {s.id!r} has bands {s.bands.all}, the config {bands.all}")
    device = resolve_device(train.device)
    torch.manual_seed(train.seed)
    rng = np.random.default_rng(train.seed)
    norm = Normalization.fit(series, bands)
    model = SitsEncoder(config, norm)
    if train.seasonal_prior:
        model.fit_climatology(series)
    model = model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    n_windows = sum(max(1, math.ceil(len(s) / train.window)) for s in series)
    steps_per_epoch = max(1, math.ceil(n_windows / train.batch_size))
    total = train.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=train.lr, total_steps=total, pct_start=0.1)
    history = []
    model.train()
    t0 = time.perf_counter()
    for epoch in range(train.epochs):
        wins = _windows(series, train.window, rng)
        order = rng.permutation(len(wins))
        sums = {"recon": 0.0, "forecast": 0.0, "steps": 0}
        for i in range(0, len(order), train.batch_size):
            batch = [wins[j] for j in order[i : i + train.batch_size]]
            tb = batch_series(batch, norm, device)
            hidden = hide_mask(tb, rng, train.hide_prob, train.span_prob, train.span_days)
            parts = losses(model, tb, hidden)
            loss = train.recon_weight * parts["recon"] + train.forecast_weight * parts["forecast"]
            if "smooth" in parts:
                loss = loss + train.recon_weight * parts["smooth"] + train.smooth_l1_weight * parts["smooth_l1"]
                sums["smooth"] = sums.get("smooth", 0.0) + float(parts["smooth"].detach())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
            opt.step()
            sched.step()
            sums["recon"] += float(parts["recon"].detach())
            sums["forecast"] += float(parts["forecast"].detach())
            sums["steps"] += 1
        rec = {"epoch": epoch + 1, "recon_nll": sums["recon"] / sums["steps"],
               "forecast_nll": sums["forecast"] / sums["steps"],
               **({"smooth_nll": sums["smooth"] / sums["steps"]} if "smooth" in sums else {}), "elapsed_s": round(time.perf_counter() - t0, 2)}
        history.append(rec)
        logger.info("epoch %d/%d recon %.4f forecast %.4f", epoch + 1, train.epochs, rec["recon_nll"], rec["forecast_nll"])
        if progress is not None:
            progress(rec)
    model.eval()
    model.version = f"sha-{model.weights_digest()}"
    return model, history


def train_metadata(train: TrainConfig, n_series: int, history: list[dict]) -> dict:
    d = asdict(train)
    d["span_days"] = list(train.span_days)
    return {"train_config": d, "n_series": n_series, "history": history}
