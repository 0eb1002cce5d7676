"""sitsmon pipeline stage: sits — the modelling library (time-aware dual-form encoder).

Imports no other stage. Every error is a :class:`SitsError` (a ``ValueError``) subclass. Values are in
PHYSICAL units: S2 surface reflectance 0–1, S1 linear power (VV, VH); the model works in a normalised
space (S1 in dB, plus a derived NDVI channel) with statistics stored in the checkpoint. Times: numpy
datetime64, ISO strings or int64 seconds since 1970 UTC.

Streaming API (monitor: per-acquisition update; alerts: gap filling and detector residuals)::

    import sits
    model = sits.load_model()                    # packaged default (sits/checkpoints/default.pt), eval mode
    model.bands.s2, model.bands.s1               # column order of every input array
    state = model.init_state(n)                  # sits.EncoderState: per layer [n, H, K, V], h_last, t_last, count
    obs = sits.AcquisitionBatch(time_s=t, sensor="S2", values=values_NxC, clear=clear_N)  # or "S1", [n, 2], orbit=
                                                 # (sits.Observation(time, sensor, values, ...): its former name)
    state, out = model.step(state, obs)          # NEW state (old one stays valid: a rewind checkpoint);
                                                 # all-NaN rows are left unchanged (out.updated[n] False);
                                                 # a time before t_last -> UnsortedTimesError
    state, out = model.step(state, obs, out=state)      # in place (also spelt inplace=True): the hot loop
    new, out = model.step(state, obs, out=spare)  # double buffering: into spare (state.clone() made
                                                 # once), state kept intact; then swap the two
    pred = model.forecast(state, time_s, "S2")   # what the model expects: pred.mean / pred.std [n, C],
                                                 # pred.bands (S2 bands + "NDVI"), pred.ndvi() -> (mean, std)
    pred = model.reconstruct(state, time_s)      # cloud-gap fill at `time_s` (causal), state not changed

Batch API (backfill, dashboards, training)::

    s = sits.Series(times, sensor, values_TxC, bands=model.bands, clear=..., orbit=..., id="parcel")
    enc = model.encode([s, ...], state=None)     # enc.embeddings [T_i, d], enc.state (one row per series)
    gap = model.gapfill(s)                       # every S2 token; cloudy ones withheld and reconstructed
                                                 # (bidirectional smoothing head when the model has one)
    sits.EncoderState.to_zarr / from_zarr / save / load / equals / clone / select / concat

Times: inputs in int64 seconds since 1970 UTC (``time_s``); inside, float64 days since :data:`EPOCH`
(see there why sits keeps its own origin).

Layout (as flash-linear-attention): ``ops/<op>/{naive,parallel,chunk,fused_recurrent}.py`` — the naive
float32 loop is the specification; ``ops/retention_block/`` the retention block's fused streaming step
beside its reference; ``layers/`` (mixers; the pre-norm block, whose ``step`` chooses the fused op in
one line); ``models/`` (config, encoder, streaming step, features, priors); ``tokens.py``,
``state.py``, ``heads.py``, ``train.py``, ``evaluate.py``, ``checkpoint.py``, ``bench.py``. Set
``SITSMON_SITS_REFERENCE=1`` to force every fast kernel onto the reference path. How the parts fit:
``docs/encoder.md``.
"""

from sits.checkpoint import DEFAULT_CHECKPOINT, load_model, save_checkpoint
from sits.errors import (
    BandSetError,
    CheckpointError,
    CheckpointVersionError,
    ConfigError,
    EmptySeriesError,
    NonFiniteInputError,
    ShapeError,
    SitsError,
    StateShapeError,
    UnsortedTimesError,
)
from sits.heads import Prediction
from sits.models import Encoded, EncoderConfig, GapFill, SitsEncoder, StepOutput
from sits.state import STATE_SCHEMA, EncoderState
from sits.tokens import EPOCH, AcquisitionBatch, BandSet, Normalization, Observation, Series, TokenBatch

__all__ = [
    "AcquisitionBatch", "DEFAULT_CHECKPOINT", "EPOCH", "STATE_SCHEMA", "BandSet", "BandSetError", "CheckpointError",
    "CheckpointVersionError", "ConfigError", "EmptySeriesError", "Encoded", "EncoderConfig", "EncoderState",
    "GapFill", "NonFiniteInputError", "Normalization", "Observation", "Prediction", "Series", "ShapeError",
    "SitsEncoder", "SitsError", "StateShapeError", "StepOutput", "TokenBatch", "UnsortedTimesError",
    "load_model", "save_checkpoint",
]
