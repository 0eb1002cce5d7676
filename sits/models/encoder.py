"""The dual-form encoder: tokens → pre-norm blocks (retention | linear attention | softmax) → heads.

Forms, one result (tested): :meth:`SitsEncoder.run` (``mode="parallel" | "chunk" | "recurrent"``, the
plain blocks; training, :meth:`~SitsEncoder.encode` and backfill) and :meth:`SitsEncoder.step`, one
token per row for streaming, whose one route (target state, row blocks, fused or plain block steps)
is described in :mod:`sits.models.streaming`. Date features are in :mod:`sits.models.features`, the
heads' priors and the climatology in :mod:`sits.models.priors`. Public entry points validate their
input and raise :class:`sits.SitsError` subclasses.

Times: the public API takes int64 seconds since 1970 UTC (``time_s``; also datetime64 or ISO strings);
inside, token times are float64 days since :data:`sits.tokens.EPOCH` (``t_days``; see there why).
"""

from __future__ import annotations

import hashlib
import logging
import math

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
from sits.models import priors
from sits.models.config import EncoderConfig
from sits.models.features import (  # noqa: F401 - re-exported: the module's public names before the split
    MAX_GAP_FEATURE_DAYS,
    N_SEASONAL_HARMONICS,
    N_TIME_FEATURES,
    seasonal_features,
    time_features,
)
from sits.models.outputs import Encoded, GapFill, StepOutput
from sits.models.priors import N_PERSIST_FEATURES, N_PRIOR_FEATURES
from sits.models.streaming import RECURRENT_ROW_CHUNK, recurrent_step, resolve_target  # noqa: F401
from sits.state import EncoderState
from sits.tokens import (
    DB_FLOOR,
    S1,
    S2,
    AcquisitionBatch,
    Normalization,
    Series,
    TokenBatch,
    batch_observation,
    batch_series,
    seconds_to_days,
    to_seconds,
)

logger = logging.getLogger(__name__)
PARALLEL_MAX_T = 256  # encode(mode="auto"): parallel up to this length, chunkwise beyond


def _block_stack(config: EncoderConfig) -> nn.ModuleList:
    """``config.n_layers`` pre-norm blocks of the configured mechanism."""
    d = config.d_model
    return nn.ModuleList(
        Block(make_mixer(config.mechanism, d, config.n_heads, halflife_min=config.halflife_min,
                         halflife_max=config.halflife_max, rotation=config.rotation,
                         linear_decay=config.linear_decay, chunk_size=config.chunk_size), d, config.ffn_mult)
        for _ in range(config.n_layers)
    )


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
        return EncoderState(layers=layers, h_last=torch.zeros(n, self.config.d_model, device=dev),
                            t_last=torch.zeros(n, dtype=torch.float64, device=dev),
                            count=torch.zeros(n, dtype=torch.int64, device=dev),
                            last_clear=torch.zeros(n, self.bands.n_s2c, device=dev),
                            t_last_clear=torch.full((n,), -math.inf, dtype=torch.float64, device=dev),
                            model_id=self.model_id)

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
        t = tb.t_days
        # a row without history starts at its first valid token (t[:, 0] for right-padded series; a block
        # of acquisitions, sits.models.block_fold, may open with "no observation" tokens)
        first = t.gather(1, tb.valid.to(torch.uint8).argmax(dim=1, keepdim=True))[:, 0] if T else None
        if state is not None:
            has = state.count > 0
            t0 = torch.where(has, state.t_last, first if T else state.t_last)
        else:
            has = torch.zeros(B, dtype=torch.bool, device=t.device)
            t0 = first if T else torch.zeros(B, dtype=torch.float64, device=t.device)
        prev_valid = torch.where(tb.valid, t, torch.full_like(t, -math.inf))
        prev_valid = torch.cummax(prev_valid, dim=1).values
        prev = torch.cat([t0[:, None], prev_valid[:, :-1]], dim=1)
        prev = torch.maximum(prev, t0[:, None])
        prev = torch.where(torch.isfinite(prev), prev, t)
        dt = (t - prev).clamp_min(0.0)
        return torch.where(tb.valid, dt, torch.zeros_like(dt)).float()

    def embed(self, tb: TokenBatch, dt: torch.Tensor, t_features: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, T, d_model]`` token embeddings (date features from ``t_features``, default ``tb.t_days``)."""
        is_s2 = (tb.sensor == S2).float()
        clear = tb.clear * is_s2 * (~tb.hidden).float()
        feats = torch.cat([tb.values, tb.mask.float(), clear[..., None], tb.hidden.float()[..., None]], dim=-1)
        orbit = torch.remainder(tb.orbit, self.config.n_orbits)
        return (self.value_proj(feats) + self.time_proj(time_features(tb.t_days if t_features is None else t_features, dt)) + self.sensor_emb(tb.sensor)
                + self.orbit_emb(orbit))

    def run(self, tb: TokenBatch, state: EncoderState | None = None, mode: str = "parallel",
            output_final_state: bool = True) -> tuple[torch.Tensor, EncoderState | None]:
        """Encode a token batch from ``state`` (None: from scratch) in one of the plain forms
        (``mode``: "parallel", "chunk" or "recurrent", through :meth:`sits.layers.Block.forward`).
        Returns ``(h [B, T, d], state or None)``. No validation here beyond shapes (see
        ``encode``/``step``); differentiable in every mode. Streaming uses :meth:`step` instead."""
        B, T = tb.shape
        if state is not None:
            self.check_state(state, B)
        dt = self._dt(tb, state)
        x = self.embed(tb, dt)
        keep_state = output_final_state and self.stateful
        new_layers = []
        for i, block in enumerate(self.blocks):
            S0 = state.layers[i] if state is not None else None
            x, S = block(x, dt, tb.t_days, tb.valid, S0, keep_state, mode)
            new_layers.append(S)
        h = self.final_norm(x)
        if not keep_state:
            return h, None
        if state is None:
            state = self.init_state(B)
        n_valid = tb.valid.sum(dim=1)
        any_valid = n_valid > 0
        idx = torch.arange(T, device=h.device).expand(B, T)
        last = torch.where(tb.valid, idx, torch.full_like(idx, -1)).max(dim=1).values.clamp_min(0)
        rows = torch.arange(B, device=h.device)
        h_last_new = h[rows, last] if T else state.h_last
        t_last_new = tb.t_days[rows, last] if T else state.t_last
        anchor = priors.clear_anchor(tb, self.bands.n_s2c)
        last_a = torch.where(anchor, idx, torch.full_like(idx, -1)).max(dim=1).values if T else torch.full((B,), -1, device=h.device)
        has_a = last_a >= 0
        ia = last_a.clamp_min(0)
        lc_new = tb.values[rows, ia, : self.bands.n_s2c] if T else state.last_clear
        tlc_new = tb.t_days[rows, ia] if T else state.t_last_clear
        return h, EncoderState(
            layers=tuple(new_layers),
            h_last=torch.where(any_valid[:, None], h_last_new, state.h_last),
            t_last=torch.where(any_valid, t_last_new, state.t_last),
            count=state.count + n_valid.to(torch.int64),
            last_clear=torch.where(has_a[:, None], lc_new, state.last_clear),
            t_last_clear=torch.where(has_a, tlc_new, state.t_last_clear),
            model_id=self.model_id,
        )

    def run_backward(self, tb: TokenBatch, mode: str = "parallel") -> torch.Tensor:
        """Backward stack over the time-reversed series (bidirectional models). Returns ``[B, T, d]``
        aligned with ``tb`` (position n summarises tokens n..end, token n's own values included
        unless hidden)."""
        if not self.config.bidirectional:
            raise ConfigError("this model has no backward stack (config.bidirectional is False)")
        B, T = tb.shape
        lengths = tb.valid.sum(dim=1)
        ar = torch.arange(T, device=tb.t_days.device).expand(B, T)
        rev = torch.where(ar < lengths[:, None], lengths[:, None] - 1 - ar, ar)
        g2 = rev[..., None]

        def flip(x):
            return torch.gather(x, 1, rev) if x.dim() == 2 else torch.gather(x, 1, g2.expand_as(x))

        t_orig = flip(tb.t_days)
        rb = TokenBatch(flip(tb.values), flip(tb.mask), flip(tb.clear), flip(tb.sensor), flip(tb.orbit),
                        -t_orig, flip(tb.valid), flip(tb.hidden))
        dt = self._dt(rb, None)
        x = self.embed(rb, dt, t_features=t_orig) + self.backward_dir
        for block in self.backward_blocks:
            x, _ = block(x, dt, rb.t_days, rb.valid, None, False, mode)
        return flip(self.backward_norm(x))

    def persistence_prior(self, tb: TokenBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`sits.models.priors.persistence_prior` for this model's S2 channels."""
        return priors.persistence_prior(tb, self.bands.n_s2c)

    def climatology(self, t: torch.Tensor) -> torch.Tensor:
        """Seasonal prior: the per-channel day-of-year climatology (normalised S2 channels) at days ``t``
        → ``[*t.shape, n_s2c]`` (zeros for a model without one)."""
        return seasonal_features(t) @ self.clim_coef.T

    @torch.no_grad()
    def fit_climatology(self, series: list[Series], ridge: float = 1e-3) -> torch.Tensor:
        """Fit the seasonal prior on ``series`` (training data only;
        :func:`sits.models.priors.fit_climatology`) into the ``clim_coef`` buffer (so into checkpoints;
        zeros when there are too few clear observations); returns it."""
        coef = priors.fit_climatology(series, self.normalization, self.bands.n_s2c, ridge)
        if coef is None:
            self.clim_coef.zero_()
        else:
            self.clim_coef.copy_(coef.float().to(self.clim_coef.device))
        return self.clim_coef

    def interpolation_prior(self, tb: TokenBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`sits.models.priors.interpolation_prior` with this model's climatology."""
        return priors.interpolation_prior(tb, self.bands.n_s2c, self.climatology)

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
        t = tb.t_days[:, 0]
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
    def step(self, state: EncoderState, obs: AcquisitionBatch | TokenBatch, inplace: bool = False,
             out: EncoderState | None = None) -> tuple[EncoderState, StepOutput]:
        """Fold one acquisition into ``state`` (the streaming form). Returns ``(new state, StepOutput)``.

        ``obs``: an :class:`~sits.tokens.AcquisitionBatch` (``sits.Observation``) for ``state.n`` rows
        (rows whose values are all NaN leave their state unchanged), or a ``[N, 1]``
        :class:`TokenBatch`. A time before a row's ``t_last`` raises :class:`UnsortedTimesError`.

        Where the new state goes is the caller's choice (the owner of the buffers, e.g. the monitor's
        state store), one route for all three (:mod:`sits.models.streaming`):

        - ``out=None``: new tensors; ``state`` stays valid (a rewind point);
        - ``out=state`` (or ``inplace=True``, the same): ``state``'s own tensors, returned as the new
          state; the old values are gone (clone first to keep a rewind point);
        - ``out=spare``: another state of this model and size (``state.clone()``, made once): written
          there, ``state`` only read; swap the two for the next step (double buffering)."""
        tb = batch_observation(obs, self.normalization, self.device) if isinstance(obs, AcquisitionBatch) else obs
        if tb.shape[1] != 1:
            raise ShapeError(f"step takes one token per row ([N, 1]); got {tb.shape}")
        self._validate_step(state, tb)
        target = resolve_target(self, state, out, inplace)
        h, new = recurrent_step(self, tb, state, target)
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
        """:func:`sits.models.priors.persistence_features` with this model's climatology."""
        return priors.persistence_features(t, last_clear, t_last_clear, self.climatology)

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
        return self.forecast_fields(state.h_last, state.t_last, state.count, state.last_clear, state.t_last_clear,
                                    t, sensor, orbit_t)

    @torch.no_grad()
    def forecast_fields(self, h_last: torch.Tensor, t_last: torch.Tensor, count: torch.Tensor,
                        last_clear: torch.Tensor, t_last_clear: torch.Tensor, t: torch.Tensor, sensor: str = "S2",
                        orbit: torch.Tensor | None = None) -> Prediction:
        """:meth:`forecast` from a state's row fields (``[M, ...]``, as :class:`EncoderState` holds them) at
        float64 days ``t [M]``, unchecked: what a block fold (:mod:`sits.models.block_fold`) gives as the
        fields before each token."""
        code = S1 if str(sensor).upper() == "S1" else S2
        orbit_t = torch.zeros_like(count) if orbit is None else orbit
        t_prev = torch.where(count > 0, t_last, t)
        mean, logvar = self._forecast_raw(h_last, t_prev, t, torch.full_like(orbit_t, code), orbit_t,
                                          last_clear, t_last_clear)
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
        h, _ = recurrent_step(self, tb, state, resolve_target(self, state, None))
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
        """Encode whole series: ``mode`` "parallel", "chunk", "recurrent" (the plain recurrent form over
        every token) or "auto" (parallel up to :data:`PARALLEL_MAX_T` tokens, chunkwise beyond).

        ``state``: optional start state with one row per series (times must follow its ``t_last``)."""
        self._check_series(series)
        tb = batch_series(series, self.normalization, self.device)
        if state is not None:
            self.check_state(state, len(series))
            first = tb.t_days[:, 0]
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
            mean, logvar = self.recon(h[0, sel], tb.t_days[0, sel], pv[0, sel], pt[0, sel])
        else:
            hb = self.run_backward(tb, mode=mode)
            prior, pf = self.interpolation_prior(tb)
            mean, logvar = self.smooth(h[0, sel], hb[0, sel], prior[0, sel], pf[0, sel])
        pred = self.to_physical(mean, logvar, self.bands.channel_columns(S2))
        return GapFill(series.times[idx], idx, hide[idx], pred)
