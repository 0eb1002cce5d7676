"""The dual-form encoder: tokens → pre-norm blocks (retention | linear attention | softmax) → heads.

Forms: ``encode``/``run(mode="parallel"|"chunk")`` for training and backfill, ``step`` (recurrent, fused
kernel) for streaming; the three give the same outputs and states (tested). Public entry points
validate their input and raise :class:`sits.SitsError` subclasses.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from sits.errors import (
    ConfigError,
    EmptySeriesError,
    NonFiniteInputError,
    ShapeError,
    StateShapeError,
    UnsortedTimesError,
)
from sits.heads import GaussianHead, Prediction
from sits.layers import Block, make_mixer
from sits.models.config import EncoderConfig
from sits.state import STATE_SCHEMA, EncoderState
from sits.tokens import (
    DB_FLOOR,
    S1,
    S2,
    Normalization,
    Observation,
    Series,
    TokenBatch,
    batch_observation,
    batch_series,
    seconds_to_days,
    to_seconds,
)

logger = logging.getLogger(__name__)
N_TIME_FEATURES = 6
N_PRIOR_FEATURES = 5  # has-before, has-after, log-gap before, log-gap after, log span between them
N_SEASONAL_HARMONICS = 3  # day-of-year harmonics of the per-channel climatology (seasonal prior)
N_PERSIST_FEATURES = 2
RECURRENT_ROW_CHUNK = 8192  # rows per block in the CPU recurrent path (intermediates stay in cache)
PARALLEL_MAX_T = 256  # encode(mode="auto"): parallel up to this length, chunkwise beyond
MAX_GAP_FEATURE_DAYS = 3650.0


def time_features(t: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
    """``[B, T, 6]`` float32: day-of-year harmonics (2), decades since the epoch, log-gap since the
    previous token. ``t`` float64 days since the epoch, ``dt`` days (≥ 0)."""
    phase = torch.remainder(t.double(), 365.25) * (2 * math.pi / 365.25)
    feats = [torch.sin(phase), torch.cos(phase), torch.sin(2 * phase), torch.cos(2 * phase),
             t.double() / 3652.5 - 0.5, torch.log1p(dt.double().clamp(0, MAX_GAP_FEATURE_DAYS)) / 5.0]
    return torch.stack(feats, dim=-1).float()


def seasonal_features(t: torch.Tensor, n_harmonics: int = N_SEASONAL_HARMONICS) -> torch.Tensor:
    """``[..., 2·n_harmonics + 1]`` float32: 1, then sin/cos of k·(day-of-year phase), k = 1..n_harmonics."""
    phase = torch.remainder(t.double(), 365.25) * (2 * math.pi / 365.25)
    feats = [torch.ones_like(phase)]
    for k in range(1, n_harmonics + 1):
        feats += [torch.sin(k * phase), torch.cos(k * phase)]
    return torch.stack(feats, dim=-1).float()


def _block_stack(config: EncoderConfig) -> nn.ModuleList:
    """``config.n_layers`` pre-norm blocks of the configured mechanism."""
    d = config.d_model
    return nn.ModuleList(
        Block(make_mixer(config.mechanism, d, config.n_heads, halflife_min=config.halflife_min,
                         halflife_max=config.halflife_max, rotation=config.rotation,
                         linear_decay=config.linear_decay, chunk_size=config.chunk_size), d, config.ffn_mult)
        for _ in range(config.n_layers)
    )


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


class SitsEncoder(nn.Module):
    """Time-aware dual-form encoder with forecast and reconstruction heads.

    Build with a config and the normalisation statistics; ``version`` names the weights (set by
    training and checkpoints) and is carried by every state it makes.
    """

    def __init__(self, config: EncoderConfig, normalization: Normalization | None = None) -> None:
        super().__init__()
        self.config = config
        bands = config.bands
        self.bands = bands
        C, d = len(bands.channels), config.d_model
        if normalization is None:
            normalization = Normalization(bands, [0.0] * C, [1.0] * C)
        if normalization.bands != bands:
            raise ConfigError(f"normalization bands {normalization.bands.all} differ from the model's {bands.all}")
        if len(normalization.mean) != C:
            raise ConfigError(f"normalization has {len(normalization.mean)} channels, the model {C}")
        self.register_buffer("norm_mean", torch.tensor(normalization.mean, dtype=torch.float32))
        self.register_buffer("norm_std", torch.tensor(normalization.std, dtype=torch.float32))
        # seasonal prior: per-S2-channel day-of-year climatology in normalised model space, fitted on the
        # training series (``fit_climatology``) and stored with the weights; zeros = no seasonal prior
        # (the gap-filling priors then reduce to plain linear interpolation / persistence)
        self.register_buffer("clim_coef", torch.zeros(bands.n_s2c, 2 * N_SEASONAL_HARMONICS + 1))
        self.value_proj = nn.Linear(2 * C + 2, d)
        self.time_proj = nn.Linear(N_TIME_FEATURES, d)
        self.sensor_emb = nn.Embedding(2, d)
        self.orbit_emb = nn.Embedding(config.n_orbits, d)
        self.blocks = _block_stack(config)
        self.final_norm = nn.LayerNorm(d)
        if config.bidirectional:
            self.backward_blocks = _block_stack(config)
            self.backward_norm = nn.LayerNorm(d)
            self.backward_dir = nn.Parameter(torch.zeros(d))
            self.smooth_head = GaussianHead(2 * d + 3 * bands.n_s2c + N_PRIOR_FEATURES, config.head_hidden, bands.n_s2c)
            self.smooth_head.zero_mean_output()  # starts exactly at the prior (residual form)
        self.query_time = nn.Linear(N_TIME_FEATURES, d)
        self.query_sensor = nn.Embedding(2, d)
        self.query_orbit = nn.Embedding(config.n_orbits, d)
        self.forecast_head = GaussianHead(2 * d + bands.n_s2c + N_PERSIST_FEATURES, config.head_hidden, C)
        extra = bands.n_s2c + N_PERSIST_FEATURES if config.recon_prior else 0
        self.recon_head = GaussianHead(d + extra, config.head_hidden, bands.n_s2c)
        self.version = f"untrained-{config.fingerprint()}"

    # ---- identity ----------------------------------------------------------------------------
    @property
    def normalization(self) -> Normalization:
        return Normalization(self.bands, self.norm_mean.tolist(), self.norm_std.tolist())

    @property
    def device(self) -> torch.device:
        return self.norm_mean.device

    @property
    def model_id(self) -> str:
        """Fingerprint carried by states: config and weights version."""
        return f"{self.config.fingerprint()}:{self.version}"

    def weights_digest(self) -> str:
        h = hashlib.sha1()
        for name, tensor in sorted(self.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:12]

    @property
    def stateful(self) -> bool:
        return self.config.mechanism != "softmax"

    # ---- core --------------------------------------------------------------------------------
    def init_state(self, n: int) -> EncoderState:
        """Empty state for ``n`` parcels/pixels (nothing folded in)."""
        if not self.stateful:
            raise ConfigError("a softmax encoder has no recurrent state")
        if n < 0:
            raise ShapeError(f"n must be >= 0; got {n}")
        dev = self.device
        layers = tuple(torch.zeros((n, *b.mixer.state_shape()), dtype=torch.float32, device=dev) for b in self.blocks)
        return EncoderState(layers, torch.zeros(n, self.config.d_model, device=dev),
                            torch.zeros(n, dtype=torch.float64, device=dev), torch.zeros(n, dtype=torch.int64, device=dev),
                            self.model_id, STATE_SCHEMA, torch.zeros(n, self.bands.n_s2c, device=dev),
                            torch.full((n,), -math.inf, dtype=torch.float64, device=dev))

    def check_state(self, state: EncoderState, n: int | None = None) -> None:
        if not isinstance(state, EncoderState):
            raise StateShapeError(f"expected an EncoderState, got {type(state).__name__}")
        if state.model_id != self.model_id:
            raise StateShapeError(f"state made by model {state.model_id!r}, this model is {self.model_id!r}")
        if len(state.layers) != len(self.blocks):
            raise StateShapeError(f"state has {len(state.layers)} layers, the model {len(self.blocks)}")
        for i, (S, b) in enumerate(zip(state.layers, self.blocks, strict=True)):
            if tuple(S.shape[1:]) != b.mixer.state_shape():
                raise StateShapeError(f"state layer {i} is {tuple(S.shape[1:])} per item, the model needs {b.mixer.state_shape()}")
        if state.last_clear.shape[1] != self.bands.n_s2c:
            raise StateShapeError(f"state last_clear has {state.last_clear.shape[1]} channels, the model {self.bands.n_s2c}")
        if state.h_last.shape[1] != self.config.d_model:
            raise StateShapeError(f"state h_last has width {state.h_last.shape[1]}, the model {self.config.d_model}")
        if n is not None and state.n != n:
            raise StateShapeError(f"state holds {state.n} items, the input {n}")

    def _dt(self, tb: TokenBatch, state: EncoderState | None) -> torch.Tensor:
        """``[B, T]`` float32 days since the previous VALID token (first: since ``t_last``; 0 if none)."""
        B, T = tb.shape
        t = tb.t
        if state is not None:
            has = state.count > 0
            t0 = torch.where(has, state.t_last, t[:, 0] if T else state.t_last)
        else:
            has = torch.zeros(B, dtype=torch.bool, device=t.device)
            t0 = t[:, 0] if T else torch.zeros(B, dtype=torch.float64, device=t.device)
        prev_valid = torch.where(tb.valid, t, torch.full_like(t, -math.inf))
        prev_valid = torch.cummax(prev_valid, dim=1).values
        prev = torch.cat([t0[:, None], prev_valid[:, :-1]], dim=1)
        prev = torch.maximum(prev, t0[:, None])
        prev = torch.where(torch.isfinite(prev), prev, t)
        dt = (t - prev).clamp_min(0.0)
        return torch.where(tb.valid, dt, torch.zeros_like(dt)).float()

    def embed(self, tb: TokenBatch, dt: torch.Tensor, t_features: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, T, d_model]`` token embeddings (date features from ``t_features``, default ``tb.t``)."""
        is_s2 = (tb.sensor == S2).float()
        clear = tb.clear * is_s2 * (~tb.hidden).float()
        feats = torch.cat([tb.values, tb.mask.float(), clear[..., None], tb.hidden.float()[..., None]], dim=-1)
        orbit = torch.remainder(tb.orbit, self.config.n_orbits)
        return (self.value_proj(feats) + self.time_proj(time_features(tb.t if t_features is None else t_features, dt)) + self.sensor_emb(tb.sensor)
                + self.orbit_emb(orbit))

    def run(self, tb: TokenBatch, state: EncoderState | None = None, mode: str = "parallel",
            output_final_state: bool = True, inplace: bool = False) -> tuple[torch.Tensor, EncoderState | None]:
        """Encode a token batch from ``state`` (None: from scratch). Returns ``(h [B, T, d], state)``.

        No validation here beyond shapes (see ``encode``/``step``); differentiable in parallel/chunk modes.
        The recurrent mode on CPU runs the whole model on blocks of :data:`RECURRENT_ROW_CHUNK` rows, so
        that every intermediate stays in cache (one token per row through retention blocks:
        :meth:`_stream`; otherwise the states are updated in place on a copy, or on ``state`` itself with
        ``inplace=True``)."""
        B, T = tb.shape
        if (mode != "recurrent" or state is None or not output_final_state or self.device.type != "cpu"
                or torch.is_grad_enabled()):
            return self._run(tb, state, mode, output_final_state, inplace)
        self.check_state(state, B)
        if self._streams(tb, state):
            return self._stream(tb, state, state if inplace else None)
        if B <= RECURRENT_ROW_CHUNK:
            return self._run(tb, state, mode, output_final_state, inplace)
        layers = state.layers if inplace else tuple(S.clone() for S in state.layers)
        work = EncoderState(layers, state.h_last, state.t_last, state.count, state.model_id, STATE_SCHEMA,
                            state.last_clear, state.t_last_clear)
        hs, parts = [], []
        for a in range(0, B, RECURRENT_ROW_CHUNK):
            rows = slice(a, min(B, a + RECURRENT_ROW_CHUNK))
            h, part = self._run(tb.rows(rows), work.select(rows), mode, True, True)
            hs.append(h)
            parts.append(part)
        new = EncoderState(layers, torch.cat([p.h_last for p in parts]), torch.cat([p.t_last for p in parts]),
                           torch.cat([p.count for p in parts]), self.model_id, STATE_SCHEMA,
                           torch.cat([p.last_clear for p in parts]), torch.cat([p.t_last_clear for p in parts]))
        return torch.cat(hs), new

    def _streams(self, tb: TokenBatch, state: EncoderState) -> bool:
        """Whether :meth:`_stream` serves this step (CPU inference, one token per row, every block a
        retention block that can stream)."""
        return (tb.shape[1] == 1 and self.device.type == "cpu" and not torch.is_grad_enabled()
                and all(b.can_stream(S) for b, S in zip(self.blocks, state.layers, strict=True)))

    def _stream(self, tb: TokenBatch, state: EncoderState, out: EncoderState | None) -> tuple[torch.Tensor, EncoderState]:
        """The CPU streaming step: the rows go through the whole model in blocks of
        :data:`RECURRENT_ROW_CHUNK`, so the activations stay in cache, and every block's fused step writes
        its new state straight into the output state while reading the old one. ``out``: the state to
        write into (``state`` itself: in place; another state: double buffering); None: new tensors.
        Same results as ``_run(..., mode="recurrent")`` (tested)."""
        B = tb.shape[0]
        dt = self._dt(tb, state)
        layers = out.layers if out is not None else tuple(torch.empty_like(S) for S in state.layers)
        h = torch.empty(B, 1, self.config.d_model)
        for a in range(0, B, RECURRENT_ROW_CHUNK):
            rows = slice(a, min(B, a + RECURRENT_ROW_CHUNK))
            x = self.embed(tb.rows(rows), dt[rows])
            for block, S_in, S_out in zip(self.blocks, state.layers, layers, strict=True):
                x, _ = block.stream_step(x, dt[rows], tb.valid[rows], S_in[rows], S_out=S_out[rows])
            h[rows] = self.final_norm(x)
        valid = tb.valid[:, 0]
        anchor = self._clear_anchor(tb)[:, 0]
        c2 = self.bands.n_s2c

        def keep(cond, new, name):  # the new value where cond, else the old one (into out's tensor if any)
            cond = cond if new.dim() == 1 else cond[:, None]
            old = getattr(state, name)
            return torch.where(cond, new, old) if out is None else torch.where(cond, new, old, out=getattr(out, name))

        count = state.count + valid if out is None else torch.add(state.count, valid, out=out.count)
        new = EncoderState(layers, keep(valid, h[:, 0], "h_last"), keep(valid, tb.t[:, 0], "t_last"), count,
                           self.model_id, STATE_SCHEMA, keep(anchor, tb.values[:, 0, :c2], "last_clear"),
                           keep(anchor, tb.t[:, 0], "t_last_clear"))
        return h, new

    def _run(self, tb: TokenBatch, state: EncoderState | None, mode: str, output_final_state: bool,
             inplace: bool) -> tuple[torch.Tensor, EncoderState | None]:
        B, T = tb.shape
        if state is not None:
            self.check_state(state, B)
        dt = self._dt(tb, state)
        x = self.embed(tb, dt)
        keep_state = output_final_state and self.stateful
        new_layers = []
        for i, block in enumerate(self.blocks):
            S0 = state.layers[i] if state is not None else None
            x, S = block(x, dt, tb.t, tb.valid, S0, keep_state, mode, inplace and mode == "recurrent")
            new_layers.append(S)
        h = self.final_norm(x)
        if not keep_state:
            return h, None
        n_valid = tb.valid.sum(dim=1)
        any_valid = n_valid > 0
        idx = torch.arange(T, device=h.device).expand(B, T)
        last = torch.where(tb.valid, idx, torch.full_like(idx, -1)).max(dim=1).values.clamp_min(0)
        rows = torch.arange(B, device=h.device)
        h_last_new = h[rows, last] if T else torch.zeros(B, self.config.d_model, device=h.device)
        t_last_new = tb.t[rows, last] if T else torch.zeros(B, dtype=torch.float64, device=h.device)
        if state is None:
            h_last0 = torch.zeros(B, self.config.d_model, device=h.device)
            t_last0 = torch.zeros(B, dtype=torch.float64, device=h.device)
            count0 = torch.zeros(B, dtype=torch.int64, device=h.device)
            lc0 = torch.zeros(B, self.bands.n_s2c, device=h.device)
            tlc0 = torch.full((B,), -math.inf, dtype=torch.float64, device=h.device)
        else:
            h_last0, t_last0, count0 = state.h_last, state.t_last, state.count
            lc0, tlc0 = state.last_clear, state.t_last_clear
        anchor = self._clear_anchor(tb)
        last_a = torch.where(anchor, idx, torch.full_like(idx, -1)).max(dim=1).values if T else torch.full((B,), -1, device=h.device)
        has_a = last_a >= 0
        ia = last_a.clamp_min(0)
        lc_new = tb.values[rows, ia, : self.bands.n_s2c] if T else lc0
        tlc_new = tb.t[rows, ia] if T else tlc0
        new_state = EncoderState(
            tuple(new_layers),
            torch.where(any_valid[:, None], h_last_new, h_last0),
            torch.where(any_valid, t_last_new, t_last0),
            count0 + n_valid.to(torch.int64),
            self.model_id,
            STATE_SCHEMA,
            torch.where(has_a[:, None], lc_new, lc0),
            torch.where(has_a, tlc_new, tlc0),
        )
        return h, new_state

    def run_backward(self, tb: TokenBatch, mode: str = "parallel") -> torch.Tensor:
        """Backward stack over the time-reversed series (bidirectional models). Returns ``[B, T, d]``
        aligned with ``tb`` (position n summarises tokens n..end, token n's own values included
        unless hidden)."""
        if not self.config.bidirectional:
            raise ConfigError("this model has no backward stack (config.bidirectional is False)")
        B, T = tb.shape
        lengths = tb.valid.sum(dim=1)
        ar = torch.arange(T, device=tb.t.device).expand(B, T)
        rev = torch.where(ar < lengths[:, None], lengths[:, None] - 1 - ar, ar)
        g2 = rev[..., None]

        def flip(x):
            return torch.gather(x, 1, rev) if x.dim() == 2 else torch.gather(x, 1, g2.expand_as(x))

        t_orig = flip(tb.t)
        rb = TokenBatch(flip(tb.values), flip(tb.mask), flip(tb.clear), flip(tb.sensor), flip(tb.orbit),
                        -t_orig, flip(tb.valid), flip(tb.hidden))
        dt = self._dt(rb, None)
        x = self.embed(rb, dt, t_features=t_orig) + self.backward_dir
        for block in self.backward_blocks:
            x, _ = block(x, dt, rb.t, rb.valid, None, False, mode)
        return flip(self.backward_norm(x))

    def _clear_anchor(self, tb: TokenBatch) -> torch.Tensor:
        """``[B, T]`` bool: visible clear S2 tokens with every S2 channel present (prior anchors)."""
        c2 = self.bands.n_s2c
        return tb.valid & ~tb.hidden & (tb.sensor == S2) & (tb.clear >= 0.5) & tb.mask[..., :c2].all(dim=-1)

    def persistence_prior(self, tb: TokenBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """For each position, the last visible clear S2 token at or before it (causal): normalised S2
        channels ``[B, T, n_s2c]`` (0 where none) and its time ``[B, T]`` float64 (−inf where none)."""
        B, T = tb.shape
        c2 = self.bands.n_s2c
        idx = torch.arange(T, device=tb.t.device).expand(B, T)
        prev = torch.cummax(torch.where(self._clear_anchor(tb), idx, torch.full_like(idx, -1)), dim=1).values
        has = prev >= 0
        pi = prev.clamp_min(0)
        vals = torch.gather(tb.values[..., :c2], 1, pi[..., None].expand(B, T, c2)) * has.float()[..., None]
        t_prev = torch.where(has, torch.gather(tb.t, 1, pi), torch.full_like(tb.t, -math.inf))
        return vals, t_prev

    def climatology(self, t: torch.Tensor) -> torch.Tensor:
        """Seasonal prior: the per-channel day-of-year climatology (normalised S2 channels) at days ``t``
        → ``[*t.shape, n_s2c]`` (zeros for a model without one)."""
        return seasonal_features(t) @ self.clim_coef.T

    @torch.no_grad()
    def fit_climatology(self, series: list[Series], ridge: float = 1e-3) -> torch.Tensor:
        """Fit the seasonal prior on ``series`` (training data only): least squares of the normalised S2
        channels of the clear S2 observations with every S2 channel present on the day-of-year
        harmonics. Stored in the ``clim_coef`` buffer (so in checkpoints); returns it."""
        rows, ts = [], []
        c2 = self.bands.n_s2c
        for s in series:
            x = self.normalization.normalize(s.values)[:, :c2]
            ok = (s.sensor == S2) & (s.clear >= 0.5) & np.isfinite(x).all(axis=1)
            rows.append(x[ok])
            ts.append(s.days[ok])
        y = torch.from_numpy(np.concatenate(rows)).double() if rows else torch.zeros(0, c2, dtype=torch.float64)
        if len(y) < 4 * N_SEASONAL_HARMONICS + 2:
            self.clim_coef.zero_()
            return self.clim_coef
        X = seasonal_features(torch.from_numpy(np.concatenate(ts))).double()
        A = X.T @ X + ridge * len(X) * torch.eye(X.shape[1], dtype=torch.float64)
        coef = torch.linalg.solve(A, X.T @ y)  # [F, c2]
        self.clim_coef.copy_(coef.T.float().to(self.clim_coef.device))
        return self.clim_coef

    def interpolation_prior(self, tb: TokenBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Seasonal-anomaly interpolation prior (model space) of the S2 channels: the climatology at each
        position plus the linear interpolation in time of the anomalies (value − climatology) of the
        nearest visible clear S2 tokens with every S2 channel present, before and at/after it (one side
        only: that side's anomaly; none: the climatology). Without a climatology it is plain linear
        interpolation. Returns ``(prior [B, T, n_s2c], features [B, T, N_PRIOR_FEATURES + 2·n_s2c])``:
        has-before, has-after, log-gaps in days to each and between them (0 where absent), then the
        plain linear interpolation and the climatology, both minus the prior."""
        B, T = tb.shape
        c2 = self.bands.n_s2c
        anchor = self._clear_anchor(tb)
        idx = torch.arange(T, device=tb.t.device).expand(B, T)
        prev = torch.cummax(torch.where(anchor, idx, torch.full_like(idx, -1)), dim=1).values
        nxt = torch.flip(torch.cummin(torch.flip(torch.where(anchor, idx, torch.full_like(idx, T)), [1]), dim=1).values, [1])
        has_p, has_n = prev >= 0, nxt < T
        pi, ni = prev.clamp(0, max(T - 1, 0)), nxt.clamp(0, max(T - 1, 0))
        vals = tb.values[..., :c2]
        vp = torch.gather(vals, 1, pi[..., None].expand(B, T, c2))
        vn = torch.gather(vals, 1, ni[..., None].expand(B, T, c2))
        tp, tn = torch.gather(tb.t, 1, pi), torch.gather(tb.t, 1, ni)
        span = (tn - tp).clamp_min(1e-6)
        w = torch.where(has_p & has_n, ((tb.t - tp) / span).clamp(0, 1), torch.where(has_p, 0.0, 1.0).double()).float()
        any_a = (has_p | has_n).float()[..., None]
        linear = ((1 - w)[..., None] * vp + w[..., None] * vn) * any_a
        clim = self.climatology(tb.t)
        anomaly = (1 - w)[..., None] * (vp - self.climatology(tp)) + w[..., None] * (vn - self.climatology(tn))
        prior = clim + anomaly * any_a
        gp = torch.where(has_p, torch.log1p((tb.t - tp).clamp(0, MAX_GAP_FEATURE_DAYS)) / 5, torch.zeros_like(tb.t))
        gn = torch.where(has_n, torch.log1p((tn - tb.t).clamp(0, MAX_GAP_FEATURE_DAYS)) / 5, torch.zeros_like(tb.t))
        gs = torch.where(has_p & has_n, torch.log1p((tn - tp).clamp(0, MAX_GAP_FEATURE_DAYS)) / 5, torch.zeros_like(tb.t))
        feats = torch.stack([has_p.double(), has_n.double(), gp, gn, gs], dim=-1).float()
        return prior, torch.cat([feats, linear - prior, clim - prior], dim=-1)

    def smooth(self, h_fwd: torch.Tensor, h_bwd: torch.Tensor, prior: torch.Tensor,
               prior_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Smoothing head (bidirectional gap filling) → normalised S2 mean/logvar ``[..., n_s2c]``: a learned
        per-channel correction (from both directions' representations, S1 included, and the prior
        features) added to the seasonal-anomaly interpolation prior (zero correction = the prior)."""
        delta, logvar = self.smooth_head(torch.cat([h_fwd, h_bwd, prior, prior_features], dim=-1))
        return prior + delta, logvar

    # ---- streaming ---------------------------------------------------------------------------
    def _validate_step(self, state: EncoderState, tb: TokenBatch) -> None:
        self.check_state(state, tb.shape[0])
        t = tb.t[:, 0]
        if not bool(torch.isfinite(t).all()):
            raise NonFiniteInputError("observation times hold NaN")
        late = tb.valid[:, 0] & (state.count > 0) & (t < state.t_last)
        if bool(late.any()):
            i = int(torch.nonzero(late)[0])
            raise UnsortedTimesError(
                f"row {i}: acquisition at day {float(t[i]):.4f} is before the state's t_last {float(state.t_last[i]):.4f} "
                f"(days since epoch); rewind to an earlier state to fold in a late arrival"
            )

    @torch.no_grad()
    def step(self, state: EncoderState, obs: Observation | TokenBatch, inplace: bool = False,
             out: EncoderState | None = None) -> tuple[EncoderState, StepOutput]:
        """Fold one acquisition into ``state`` (recurrent form, fused kernel). Returns a NEW state.

        ``obs``: an :class:`Observation` for ``state.n`` rows (rows whose values are all NaN leave their
        state unchanged), or a ``[N, 1]`` :class:`TokenBatch`. Where the new state goes:
        ``inplace=True`` (hot streaming loops) writes it into ``state``'s own tensors, so the old state
        object must not be used afterwards (copy it first if it is a rewind checkpoint); ``out`` (another
        state of this model and size, e.g. ``state.clone()`` made once) writes it there and leaves
        ``state`` intact: double buffering, a rewind point kept without allocating a state per step.
        Otherwise new tensors are allocated."""
        tb = batch_observation(obs, self.normalization, self.device) if isinstance(obs, Observation) else obs
        if tb.shape[1] != 1:
            raise ShapeError(f"step takes one token per row ([N, 1]); got {tb.shape}")
        self._validate_step(state, tb)
        if out is None or out is state:
            h, new = self.run(tb, state, mode="recurrent", inplace=inplace or out is state)
            return new, StepOutput(h[:, 0], tb.valid[:, 0])
        if inplace:
            raise ConfigError("step: give inplace=True or out=, not both")
        self.check_state(out, state.n)
        for a, b in zip(out.tensors(), state.tensors(), strict=True):
            if a.dtype != b.dtype or a.device != b.device or not a.is_contiguous():
                raise StateShapeError("out must hold contiguous tensors of the state's dtypes and device")
            if a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr():
                raise StateShapeError("out shares memory with state: pass inplace=True instead")
        if self._streams(tb, state):
            h, new = self._stream(tb, state, out)
        else:
            h, new = self.run(tb, state, mode="recurrent")
            for a, b in zip(out.tensors(), new.tensors(), strict=True):
                a.copy_(b)
            new = out
        return new, StepOutput(h[:, 0], tb.valid[:, 0])

    def _query(self, state: EncoderState, time, sensor: str, orbit) -> tuple[torch.Tensor, torch.Tensor]:
        n = state.n
        secs = to_seconds(time)
        secs = np.full(n, int(secs)) if secs.ndim == 0 else secs.ravel()
        if secs.shape != (n,):
            raise ShapeError(f"query time must be a scalar or [N] = ({n},); got {secs.shape}")
        t = torch.from_numpy(seconds_to_days(secs)).to(self.device)
        code = S1 if str(sensor).upper() == "S1" else S2
        orbit_arr = np.zeros(n, np.int64) if orbit is None else np.broadcast_to(np.asarray(orbit, np.int64), (n,)).copy()
        return t, torch.from_numpy(orbit_arr).to(self.device), code

    def _forecast_raw(self, h: torch.Tensor, t_prev: torch.Tensor, t_next: torch.Tensor, sensor: torch.Tensor,
                      orbit: torch.Tensor, last_clear: torch.Tensor, t_last_clear: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """Forecast head on ``h [..., d]`` for queries at ``t_next`` (float64 days) → normalised mean/logvar
        ``[..., C]``. S2 channels are a learned correction of the seasonal-anomaly persistence prior (the
        climatology at ``t_next`` plus the anomaly of ``last_clear [..., n_s2c]`` at ``t_last_clear``, −inf
        when none); S1 channels are predicted directly."""
        feats = time_features(t_next, (t_next - t_prev).clamp_min(0))
        qe = self.query_time(feats) + self.query_sensor(sensor) + self.query_orbit(torch.remainder(orbit, self.config.n_orbits))
        prior, pf = self._persist_features(t_next, last_clear, t_last_clear)
        delta, logvar = self.forecast_head(torch.cat([h, qe, prior, pf], dim=-1))
        n_s1 = delta.shape[-1] - prior.shape[-1]
        return delta + torch.cat([prior, prior.new_zeros(*prior.shape[:-1], n_s1)], dim=-1), logvar

    def _persist_features(self, t: torch.Tensor, last_clear: torch.Tensor, t_last_clear: torch.Tensor):
        """Seasonal-anomaly persistence prior for the causal reconstruction: the climatology at ``t`` plus
        the anomaly of the last clear S2 values (none: the climatology), and its features (has, log-gap)."""
        has = torch.isfinite(t_last_clear)
        gap = torch.where(has, torch.log1p((t - t_last_clear).clamp(0, MAX_GAP_FEATURE_DAYS)) / 5, torch.zeros_like(t))
        t_lc = torch.where(has, t_last_clear, t)
        anomaly = (last_clear - self.climatology(t_lc)) * has.float()[..., None]
        return self.climatology(t) + anomaly, torch.stack([has.double(), gap], dim=-1).float()

    def recon(self, h: torch.Tensor, t: torch.Tensor, last_clear: torch.Tensor,
              t_last_clear: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Causal reconstruction head at withheld S2 tokens (time ``t``) → normalised mean/logvar
        ``[..., n_s2c]``; with ``config.recon_prior`` a correction of the seasonal-anomaly persistence prior
        (climatology at ``t`` + anomaly of the last clear S2 values)."""
        if not self.config.recon_prior:
            return self.recon_head(h)
        prior, pf = self._persist_features(t, last_clear, t_last_clear)
        delta, logvar = self.recon_head(torch.cat([h, prior, pf], dim=-1))
        return prior + delta, logvar

    def to_physical(self, mean: torch.Tensor, logvar: torch.Tensor, columns: slice) -> Prediction:
        """Normalised ``mean``/``logvar`` ``[..., c]`` for band ``columns`` → :class:`Prediction` in physical units."""
        mu = self.norm_mean[columns]
        sd = self.norm_std[columns]
        m = (mean * sd + mu).float()
        s = (torch.exp(0.5 * logvar) * sd).float()
        bands = self.bands.channels[columns]
        n_s2 = self.bands.n_s2c
        start = columns.start or 0
        m_np, s_np = m.detach().cpu().numpy().copy(), s.detach().cpu().numpy().copy()
        for j, _ in enumerate(bands):
            if start + j >= n_s2:  # S1 column: dB → linear power (std by the delta method)
                lin = np.power(10.0, m_np[..., j] / 10.0)
                s_np[..., j] = lin * math.log(10.0) / 10.0 * s_np[..., j]
                m_np[..., j] = np.maximum(lin, DB_FLOOR)
        return Prediction(m_np.astype(np.float32), s_np.astype(np.float32), tuple(bands))

    @torch.no_grad()
    def forecast(self, state: EncoderState, time, sensor: str = "S2", orbit=None) -> Prediction:
        """What the model expects for an acquisition of ``sensor`` at ``time`` (scalar or ``[N]``), from
        the history folded into ``state``. Returns the sensor's channels (S2: bands then NDVI), mean and std."""
        self.check_state(state)
        t, orbit_t, code = self._query(state, time, sensor, orbit)
        if bool(((state.count > 0) & (t < state.t_last)).any()):
            raise UnsortedTimesError("forecast time is before the state's t_last")
        if bool((state.count == 0).any()):
            logger.debug("forecast for %d rows with an empty history", int((state.count == 0).sum()))
        t_prev = torch.where(state.count > 0, state.t_last, t)
        mean, logvar = self._forecast_raw(state.h_last, t_prev, t, torch.full_like(orbit_t, code), orbit_t,
                                          state.last_clear, state.t_last_clear)
        cols = self.bands.channel_columns(code)
        return self.to_physical(mean[:, cols], logvar[:, cols], cols)

    @torch.no_grad()
    def reconstruct(self, state: EncoderState, time, orbit=None) -> Prediction:
        """Cloud-gap filling at ``time``: S2 bands reconstructed from the history (with any concurrent S1
        already folded in). ``state`` is not changed. Mean and std ``[N, n_s2c]`` (S2 bands, then NDVI)."""
        self.check_state(state)
        t, orbit_t, _ = self._query(state, time, "S2", orbit)
        n, C = state.n, len(self.bands.channels)
        dev = self.device
        tb = TokenBatch(torch.zeros(n, 1, C, device=dev), torch.zeros(n, 1, C, dtype=torch.bool, device=dev),
                        torch.zeros(n, 1, device=dev), torch.full((n, 1), S2, dtype=torch.int64, device=dev),
                        orbit_t[:, None], t[:, None], torch.ones(n, 1, dtype=torch.bool, device=dev),
                        torch.ones(n, 1, dtype=torch.bool, device=dev))
        self._validate_step(state, tb)
        h, _ = self.run(tb, state, mode="recurrent")
        mean, logvar = self.recon(h[:, 0], t, state.last_clear, state.t_last_clear)
        return self.to_physical(mean, logvar, self.bands.channel_columns(S2))

    # ---- batch -------------------------------------------------------------------------------
    def _check_series(self, series: list[Series]) -> None:
        if not series:
            raise EmptySeriesError("no series given")
        for s in series:
            if not isinstance(s, Series):
                raise ShapeError(f"expected sits.Series, got {type(s).__name__}")

    @torch.no_grad()
    def encode(self, series: list[Series], state: EncoderState | None = None, mode: str = "auto") -> Encoded:
        """Encode whole series (parallel or chunkwise form; ``mode="recurrent"`` loops the step).

        ``state``: optional start state with one row per series (times must follow its ``t_last``)."""
        self._check_series(series)
        tb = batch_series(series, self.normalization, self.device)
        if state is not None:
            self.check_state(state, len(series))
            first = tb.t[:, 0]
            if bool(((state.count > 0) & (first < state.t_last)).any()):
                raise UnsortedTimesError("a series starts before its state's t_last")
        if mode == "auto":
            mode = "parallel" if tb.shape[1] <= PARALLEL_MAX_T else "chunk"
        h, new = self.run(tb, state, mode=mode, output_final_state=self.stateful)
        return Encoded([h[i, : len(s)] for i, s in enumerate(series)], new)

    @torch.no_grad()
    def gapfill(self, series: Series, hide: np.ndarray | None = None, causal: bool | None = None) -> GapFill:
        """Reconstruct every S2 token of ``series``. Tokens in ``hide`` (``[T]`` bool; default: the cloudy
        S2 tokens) are withheld from the encoder and reconstructed; the others are reconstructed from
        their own values too (near identity). ``causal`` (default: True unless the model is
        bidirectional): from the history plus concurrent S1 only (a correction of the seasonal-anomaly
        persistence prior); else the smoothing head, which corrects the seasonal-anomaly interpolation
        prior (day-of-year climatology + linearly interpolated anomaly of the nearest visible clear S2
        observations) with both directions' representations (S1 included), also uses the observations
        after the token (backfill, dashboards)."""
        self._check_series([series])
        T = len(series)
        if hide is None:
            hide = (series.sensor == S2) & (series.clear < 0.5)
        hide = np.asarray(hide, dtype=bool)
        if hide.shape != (T,):
            raise ShapeError(f"hide must be [T] = ({T},); got {hide.shape}")
        hide = hide & (series.sensor == S2)
        tb = batch_series([series], self.normalization, self.device)
        tb = tb.with_hidden(torch.from_numpy(hide)[None].to(self.device))
        mode = "parallel" if T <= PARALLEL_MAX_T else "chunk"
        h, _ = self.run(tb, None, mode=mode, output_final_state=False)
        idx = np.nonzero(series.sensor == S2)[0]
        sel = torch.from_numpy(idx).to(self.device)
        if causal is None:
            causal = not self.config.bidirectional
        if causal:
            pv, pt = self.persistence_prior(tb)
            mean, logvar = self.recon(h[0, sel], tb.t[0, sel], pv[0, sel], pt[0, sel])
        else:
            hb = self.run_backward(tb, mode=mode)
            prior, pf = self.interpolation_prior(tb)
            mean, logvar = self.smooth(h[0, sel], hb[0, sel], prior[0, sel], pf[0, sel])
        pred = self.to_physical(mean, logvar, self.bands.channel_columns(S2))
        return GapFill(series.times[idx], idx, hide[idx], pred)
