"""Tokens: one per acquisition of one sensor for one parcel or pixel.

A token carries its values (normalised with per-band statistics stored with the model; S1 in dB),
a per-band presence mask, the clear flag (S2), the sensor and relative orbit (embedded by the model),
and its time as days since :data:`EPOCH` (day-of-year and days-since-epoch features are derived in
the model). S1 and S2 are merged in time order; same-day tokens are allowed (S1 before S2 on ties, so
that a masked S2 token sees its concurrent S1).

Layouts (declared once): series arrays ``[T, C]`` with ``C = len(bands.all)`` (S2 bands then S1 bands);
token batches ``[B, T, C]``; times ``[B, T]`` float64 days since :data:`EPOCH`.

Units of time: inputs (:class:`Series` ``times``, :class:`AcquisitionBatch` ``time_s``, query times) are
int64 seconds since 1970 UTC; token batches and encoder states hold float64 days since :data:`EPOCH`
(``TokenBatch.t_days``, ``EncoderState.t_last``); gaps ``dt`` are days.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from sits.errors import (
    BandSetError,
    EmptySeriesError,
    NonFiniteInputError,
    ShapeError,
    SitsError,
    UnsortedTimesError,
)

EPOCH = np.datetime64("2015-01-01T00:00:00", "s")
"""The origin of sits's internal time axis, ``t_days``: float64 days since 2015-01-01 UTC (the Sentinel
era). The public API speaks int64 seconds since 1970 UTC (``time_s``, the unit of ingest and of the
cubes); :func:`seconds_to_days` converts at the boundary. Why sits keeps its own axis: the encoder's
"decades since the epoch" date feature (:func:`sits.models.features.time_features`) is an input of the
trained weights, so the origin is part of the checkpoint and moving it would change every output;
and day gaps, the only thing that reaches an exponential, are taken as float64 differences before any
float32 cast, so the choice never affects overflow or precision."""
SECONDS_PER_DAY = 86400.0
S2, S1 = 0, 1
SENSORS = ("S2", "S1")
ALL_S2_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
S1_BANDS = ("VV", "VH")
DB_FLOOR = 1e-5  # linear power floor before 10·log10
SERIES_DIMS = ("time", "band")
BATCH_DIMS = ("batch", "time", "band")


@dataclass(frozen=True, slots=True)
class BandSet:
    """The bands a model reads and predicts: S2 bands (reflectance) then S1 polarisations (linear power)."""

    s2: tuple[str, ...] = ALL_S2_BANDS
    s1: tuple[str, ...] = S1_BANDS

    def __post_init__(self) -> None:
        object.__setattr__(self, "s2", tuple(self.s2))
        object.__setattr__(self, "s1", tuple(self.s1))
        if not self.s2:
            raise BandSetError("a band set needs at least one S2 band")
        unknown = [b for b in self.s2 if b not in ALL_S2_BANDS] + [b for b in self.s1 if b not in S1_BANDS]
        if unknown:
            raise BandSetError(f"unknown bands {unknown}; S2 bands are {ALL_S2_BANDS}, S1 {S1_BANDS}")
        if len(set(self.all)) != len(self.all):
            raise BandSetError(f"duplicate bands in {self.all}")

    @property
    def all(self) -> tuple[str, ...]:
        return self.s2 + self.s1

    @property
    def n_s2(self) -> int:
        return len(self.s2)

    @property
    def n_s1(self) -> int:
        return len(self.s1)

    def of(self, sensor: str) -> tuple[str, ...]:
        return self.s2 if sensor == "S2" else self.s1

    def sensor_columns(self, sensor: int) -> slice:
        """Columns of ``sensor`` in physical arrays (``all``)."""
        return slice(0, self.n_s2) if sensor == S2 else slice(self.n_s2, self.n_s2 + self.n_s1)

    @property
    def derived(self) -> tuple[str, ...]:
        """Indices the model also reads and predicts as channels: NDVI when B04 and B08 are present."""
        return ("NDVI",) if "B04" in self.s2 and "B08" in self.s2 else ()

    @property
    def channels(self) -> tuple[str, ...]:
        """Model-space channels: S2 bands, derived S2 indices, S1 bands (dB)."""
        return self.s2 + self.derived + self.s1

    @property
    def n_s2c(self) -> int:
        """Number of S2 channels in model space (bands plus derived indices)."""
        return self.n_s2 + len(self.derived)

    def channel_columns(self, sensor: int) -> slice:
        """Columns of ``sensor`` in model-space arrays (``channels``)."""
        return slice(0, self.n_s2c) if sensor == S2 else slice(self.n_s2c, self.n_s2c + self.n_s1)


def to_seconds(times) -> np.ndarray:
    """Times (datetime64, ISO strings, pandas timestamps or int seconds) as int64 seconds since 1970 UTC."""
    arr = np.asarray(times)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise NonFiniteInputError("times hold NaN or infinity")
        return arr.astype(np.int64)
    try:
        if arr.dtype.kind in "OU" or arr.dtype.kind == "S":
            arr = np.array([str(x).replace("Z", "").replace("+00:00", "") for x in arr.ravel()]).reshape(arr.shape)
        dt64 = arr.astype("datetime64[s]")
    except (ValueError, TypeError) as e:
        raise SitsError(f"unreadable times: {e}") from e
    if np.isnat(dt64).any():
        raise NonFiniteInputError("times hold NaT (missing time)")
    return dt64.astype(np.int64)


def seconds_to_days(seconds: np.ndarray) -> np.ndarray:
    """int64 seconds since 1970 → float64 days since :data:`EPOCH`."""
    return (np.asarray(seconds, dtype=np.int64) - EPOCH.astype(np.int64)) / SECONDS_PER_DAY


def _sensor_codes(sensor, T: int) -> np.ndarray:
    arr = np.asarray(sensor)
    if arr.ndim == 0:
        arr = np.full(T, arr.item())
    if arr.dtype.kind in "iu":
        codes = arr.astype(np.int8)
        if not np.isin(codes, (S2, S1)).all():
            raise SitsError(f"sensor codes must be {S2} (S2) or {S1} (S1)")
        return codes
    names = np.char.upper(arr.astype(str))
    bad = ~np.isin(names, SENSORS)
    if bad.any():
        raise SitsError(f"unknown sensor {names[bad][0]!r} at index {int(np.argmax(bad))}; expected S2 or S1")
    return np.where(names == "S1", S1, S2).astype(np.int8)


@dataclass(frozen=True, slots=True, eq=False)
class Series:
    """One parcel's (or pixel's) merged S1/S2 series.

    Attributes:
        times: ``[T]`` int64 seconds since 1970 UTC, non-decreasing (same-day tokens allowed).
        sensor: ``[T]`` int8, 0 = S2, 1 = S1 (names "S2"/"S1" accepted).
        values: ``[T, C]`` float32 physical units, columns ``bands.all`` (S2 reflectance 0–1, then S1 linear
            power). NaN = band missing; a token needs at least one finite value of its own sensor.
        bands: the :class:`BandSet` of ``values``' columns.
        clear: ``[T]`` float32, 1 clear / 0 cloudy (S2; forced to 1 for S1). Default 1.
        orbit: ``[T]`` int64 relative orbit (0 = unknown). Default 0.
        id: parcel or pixel id, for messages.
    """

    times: np.ndarray
    sensor: np.ndarray
    values: np.ndarray
    bands: BandSet = field(default_factory=BandSet)
    clear: np.ndarray | None = None
    orbit: np.ndarray | None = None
    id: str = ""

    def __post_init__(self) -> None:
        times = to_seconds(self.times).ravel()
        T = times.shape[0]
        if T == 0:
            raise EmptySeriesError(f"series {self.id!r} is empty")
        if (np.diff(times) < 0).any():
            i = int(np.argmax(np.diff(times) < 0))
            raise UnsortedTimesError(f"series {self.id!r}: times not sorted at index {i + 1} ({times[i]} > {times[i + 1]})")
        sensor = _sensor_codes(self.sensor, T)
        values = np.asarray(self.values, dtype=np.float32)
        C = len(self.bands.all)
        if values.shape != (T, C):
            raise ShapeError(f"series {self.id!r}: values must be [T, C] = {(T, C)} for bands {self.bands.all}; got {values.shape}")
        if np.isinf(values).any():
            raise NonFiniteInputError(f"series {self.id!r}: values hold infinity")
        values = values.copy()
        own = np.zeros((T, C), dtype=bool)
        own[sensor == S2, : self.bands.n_s2] = True
        own[sensor == S1, self.bands.n_s2 :] = True
        values[~own] = np.nan
        empty = ~np.isfinite(np.where(own, values, np.nan)).any(axis=1)
        if empty.any():
            i = int(np.argmax(empty))
            raise NonFiniteInputError(
                f"series {self.id!r}: token {i} ({SENSORS[sensor[i]]}) has no finite value for its bands (all NaN)"
            )
        clear = np.ones(T, np.float32) if self.clear is None else np.asarray(self.clear, dtype=np.float32).ravel()
        if clear.shape != (T,):
            raise ShapeError(f"series {self.id!r}: clear must be [T] = ({T},); got {clear.shape}")
        clear = np.where(np.isfinite(clear), clear, 0.0).astype(np.float32)
        clear[sensor == S1] = 1.0
        orbit = np.zeros(T, np.int64) if self.orbit is None else np.asarray(self.orbit, dtype=np.float64).ravel()
        if orbit.shape != (T,):
            raise ShapeError(f"series {self.id!r}: orbit must be [T] = ({T},); got {orbit.shape}")
        orbit = np.where(np.isfinite(orbit), orbit, 0).astype(np.int64)
        for name, val in (("times", times), ("sensor", sensor), ("values", values), ("clear", clear), ("orbit", orbit)):
            object.__setattr__(self, name, val)

    def __len__(self) -> int:
        return int(self.times.shape[0])

    def slice(self, start: int, stop: int) -> Series:
        return Series(self.times[start:stop], self.sensor[start:stop], self.values[start:stop], self.bands,
                      self.clear[start:stop], self.orbit[start:stop], self.id)

    @property
    def days(self) -> np.ndarray:
        """``[T]`` float64 days since :data:`EPOCH`."""
        return seconds_to_days(self.times)


@dataclass(frozen=True, slots=True, eq=False, kw_only=True)
class AcquisitionBatch:
    """One acquisition of one sensor for ``N`` parcels/pixels: the streaming input of ``model.step``.

    Attributes (after validation):
        time_s: ``[N]`` int64 seconds since 1970 UTC (given as a scalar for all rows or ``[N]``; int
            seconds, datetime64 or ISO strings accepted).
        sensor: "S2" or "S1".
        values: ``[N, len(bands.of(sensor))]`` float32 physical units (S2 reflectance 0–1, S1 linear
            power), NaN = missing band; a row with all NaN means "no observation" (its state is left
            unchanged).
        clear: ``[N]`` float32, 1 clear / 0 cloudy (S2; scalar or ``[N]``; default 1).
        orbit: ``[N]`` int64 relative orbit (scalar or ``[N]``; default 0 = unknown).

    Not to be confused with ``alerts.series.Observation`` (one parcel's acquisition as the detectors
    read it); :class:`Observation` is this class under its former name.
    """

    time_s: object
    sensor: str
    values: np.ndarray
    clear: object = None
    orbit: object = None

    def __post_init__(self) -> None:
        sensor = str(self.sensor).upper()
        if sensor not in SENSORS:
            raise SitsError(f"unknown sensor {self.sensor!r}; expected S2 or S1")
        values = np.asarray(self.values, dtype=np.float32)
        if values.ndim != 2:
            raise ShapeError(f"observation values must be [N, C]; got shape {values.shape}")
        if np.isinf(values).any():
            raise NonFiniteInputError("observation values hold infinity")
        N = values.shape[0]
        t = to_seconds(self.time_s)
        t = np.full(N, int(t)) if t.ndim == 0 else t.ravel()
        if t.shape != (N,):
            raise ShapeError(f"observation time must be a scalar or [N] = ({N},); got {t.shape}")
        clear = np.ones(N, np.float32) if self.clear is None else np.broadcast_to(np.asarray(self.clear, np.float32), (N,)).copy() if np.ndim(self.clear) == 0 else np.asarray(self.clear, np.float32)
        if clear.shape != (N,):
            raise ShapeError(f"observation clear must be a scalar or [N] = ({N},); got {clear.shape}")
        orbit = np.zeros(N, np.int64) if self.orbit is None else (np.full(N, int(self.orbit)) if np.ndim(self.orbit) == 0 else np.asarray(self.orbit, np.int64))
        if orbit.shape != (N,):
            raise ShapeError(f"observation orbit must be a scalar or [N] = ({N},); got {orbit.shape}")
        object.__setattr__(self, "sensor", sensor)
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "time_s", t)
        object.__setattr__(self, "clear", np.where(np.isfinite(clear), clear, 0).astype(np.float32))
        object.__setattr__(self, "orbit", orbit)

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def time(self) -> np.ndarray:
        """Deprecated name of :attr:`time_s`."""
        return self.time_s


class Observation(AcquisitionBatch):
    """Deprecated name of :class:`AcquisitionBatch`, kept until the other stages are rewired:
    ``Observation(time, sensor, values, clear=None, orbit=None)``, ``time`` being ``time_s``."""

    __slots__ = ()

    def __init__(self, time: object, sensor: str, values: np.ndarray, clear: object = None,
                 orbit: object = None) -> None:
        AcquisitionBatch.__init__(self, time_s=time, sensor=sensor, values=values, clear=clear, orbit=orbit)


@dataclass(frozen=True, slots=True)
class Normalization:
    """Per-channel statistics (model space: S2 reflectance, NDVI, S1 dB), stored with the model.

    ``mean``/``std``: one float per channel of ``bands.channels``.
    """

    bands: BandSet
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        C = len(self.bands.channels)
        object.__setattr__(self, "mean", tuple(float(x) for x in self.mean))
        object.__setattr__(self, "std", tuple(float(x) for x in self.std))
        if len(self.mean) != C or len(self.std) != C:
            raise ShapeError(f"normalization needs {C} means and stds for {self.bands.channels}")
        if not all(np.isfinite(self.mean)) or not all(np.isfinite(s) and s > 0 for s in self.std):
            raise NonFiniteInputError("normalization statistics must be finite with std > 0")

    @classmethod
    def fit(cls, series: list[Series], bands: BandSet) -> Normalization:
        """Statistics over all present values of ``series`` (S2: clear tokens only)."""
        rows = []
        for s in series:
            x = to_model_space(s.values, bands)
            keep = (s.sensor == S1) | (s.clear >= 0.5)
            rows.append(x[keep])
        C = len(bands.channels)
        x = np.concatenate(rows) if rows else np.zeros((0, C), np.float32)
        mean = np.nanmean(x, axis=0) if len(x) else np.zeros(C)
        std = np.nanstd(x, axis=0) if len(x) else np.ones(C)
        mean = np.where(np.isfinite(mean), mean, 0.0)
        std = np.where(np.isfinite(std) & (std > 1e-6), std, 1.0)
        return cls(bands, tuple(mean), tuple(std))

    def normalize(self, values: np.ndarray) -> np.ndarray:
        """``[..., len(bands.all)]`` physical → normalised model space ``[..., len(bands.channels)]`` (NaN stays NaN)."""
        return (to_model_space(values, self.bands) - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)


def to_model_space(values: np.ndarray, bands: BandSet) -> np.ndarray:
    """``[..., len(bands.all)]`` physical → ``[..., len(bands.channels)]``: S2 unchanged, NDVI derived from
    B04/B08 (NaN where either is missing), S1 from linear power to dB."""
    x = np.asarray(values, dtype=np.float32)
    s2 = x[..., : bands.n_s2]
    parts = [s2]
    if bands.derived:
        r, n = s2[..., bands.s2.index("B04")], s2[..., bands.s2.index("B08")]
        with np.errstate(invalid="ignore", divide="ignore"):
            parts.append(((n - r) / np.maximum(np.abs(n + r), 1e-6))[..., None].astype(np.float32))
    with np.errstate(invalid="ignore", divide="ignore"):
        parts.append(10.0 * np.log10(np.maximum(x[..., bands.n_s2 :], DB_FLOOR)))
    return np.concatenate(parts, axis=-1).astype(np.float32)


@dataclass(frozen=True, slots=True, eq=False)
class TokenBatch:
    """Tensors of a batch of token sequences (right-padded).

    values ``[B, T, C]`` (``C = len(bands.channels)``) float32 normalised (0 where missing or hidden); mask ``[B, T, C]`` bool (band
    present); clear ``[B, T]`` float32; sensor ``[B, T]`` long; orbit ``[B, T]`` long; t_days ``[B, T]``
    float64 days since :data:`EPOCH` (also readable as ``t``, its former name); valid ``[B, T]`` bool (False = padding or "no observation"); hidden
    ``[B, T]`` bool (values withheld: a reconstruction query).
    """

    values: torch.Tensor
    mask: torch.Tensor
    clear: torch.Tensor
    sensor: torch.Tensor
    orbit: torch.Tensor
    t_days: torch.Tensor
    valid: torch.Tensor
    hidden: torch.Tensor

    def __post_init__(self) -> None:
        B, T, C = self.values.shape
        for name in ("clear", "sensor", "orbit", "t_days", "valid", "hidden"):
            if tuple(getattr(self, name).shape) != (B, T):
                raise ShapeError(f"TokenBatch.{name} must be [B, T] = {(B, T)}; got {tuple(getattr(self, name).shape)}")
        if tuple(self.mask.shape) != (B, T, C):
            raise ShapeError(f"TokenBatch.mask must be [B, T, C] = {(B, T, C)}; got {tuple(self.mask.shape)}")

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.values.shape[0]), int(self.values.shape[1])

    @property
    def t(self) -> torch.Tensor:
        """Former name of :attr:`t_days`."""
        return self.t_days

    def to(self, device) -> TokenBatch:
        return TokenBatch(*(getattr(self, n).to(device) for n in TokenBatch.__slots__))

    def rows(self, index) -> TokenBatch:
        """Rows ``index`` (a slice gives views)."""
        return TokenBatch(*(getattr(self, n)[index] for n in TokenBatch.__slots__))

    def with_hidden(self, hidden: torch.Tensor) -> TokenBatch:
        hidden = hidden & self.valid
        keep = ~hidden
        return TokenBatch(self.values * keep[..., None], self.mask & keep[..., None], self.clear, self.sensor,
                          self.orbit, self.t_days, self.valid, hidden)


def batch_series(series: list[Series], norm: Normalization, device=None) -> TokenBatch:
    """Right-padded :class:`TokenBatch` of ``series`` (each with ``norm.bands``)."""
    if not series:
        raise EmptySeriesError("no series to batch")
    for s in series:
        if s.bands != norm.bands:
            raise BandSetError(f"series {s.id!r} has bands {s.bands.all}, the model reads {norm.bands.all}")
    B, T, C = len(series), max(len(s) for s in series), len(norm.bands.channels)
    values = np.zeros((B, T, C), np.float32)
    mask = np.zeros((B, T, C), bool)
    clear = np.zeros((B, T), np.float32)
    sensor = np.zeros((B, T), np.int64)
    orbit = np.zeros((B, T), np.int64)
    t = np.zeros((B, T), np.float64)
    valid = np.zeros((B, T), bool)
    for i, s in enumerate(series):
        n = len(s)
        x = norm.normalize(s.values)
        m = np.isfinite(x)
        values[i, :n] = np.where(m, x, 0.0)
        mask[i, :n] = m
        clear[i, :n] = s.clear
        sensor[i, :n] = s.sensor
        orbit[i, :n] = s.orbit
        d = s.days
        t[i, :n] = d
        t[i, n:] = d[-1]
        valid[i, :n] = True
    tb = TokenBatch(*(torch.from_numpy(a) for a in (values, mask, clear, sensor, orbit, t, valid)),
                    hidden=torch.zeros(B, T, dtype=torch.bool))
    return tb.to(device) if device is not None else tb


def batch_observation(obs: AcquisitionBatch, norm: Normalization, device=None) -> TokenBatch:
    """``[N, 1]`` :class:`TokenBatch` of one acquisition; rows with all values NaN are not valid."""
    bands = norm.bands
    cols = bands.of(obs.sensor)
    N = len(obs)
    if obs.values.shape[1] != len(cols):
        raise BandSetError(f"{obs.sensor} observation has {obs.values.shape[1]} columns; the model reads {cols}")
    full = np.full((N, len(bands.all)), np.nan, np.float32)
    sl = bands.sensor_columns(S2 if obs.sensor == "S2" else S1)
    full[:, sl] = obs.values
    x = norm.normalize(full)
    m = np.isfinite(x)
    valid = m.any(axis=1)
    code = S2 if obs.sensor == "S2" else S1
    clear = obs.clear if code == S2 else np.ones(N, np.float32)
    arrays = (np.where(m, x, 0.0)[:, None].astype(np.float32), m[:, None], clear[:, None].astype(np.float32),
              np.full((N, 1), code, np.int64), obs.orbit[:, None], seconds_to_days(obs.time_s)[:, None], valid[:, None])
    tb = TokenBatch(*(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays), hidden=torch.zeros(N, 1, dtype=torch.bool))
    return tb.to(device) if device is not None else tb
