"""Time units shared by every stage. Names carry their unit:

- ``time_s``: integer seconds since 1970-01-01 UTC (the cube's ``time`` axis, bus messages, ledger);
- ``t_days``: float days since 1970-01-01 UTC (the alert detectors: differences of days are what every
  rule needs, and float64 days resolve about 1e-9 day, far below a second).

``sits`` keeps its own reference date internally (``sits.tokens.EPOCH``, 2015-01-01, days since it as
the encoder's days-since-epoch feature): the feature enters the model as a float32 input, where small
numbers in the Sentinel era (0..~5000) keep more precision than days since 1970 (~20 000) and a
trained checkpoint's normalisation depends on it, so it stays. Only differences of days reach the
retention decay, so the choice never affects overflow; ``sits`` converts from ``time_s`` at its
boundary (``sits.tokens.seconds_to_days``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

SECONDS_PER_DAY = 86400.0
UNIX_EPOCH = pd.Timestamp("1970-01-01", tz="UTC")


def _utc(time: pd.Timestamp | np.datetime64 | str) -> pd.Timestamp:
    ts = pd.Timestamp(time)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts


def to_time_s(time: pd.Timestamp | np.datetime64 | str) -> int:
    """A UTC time (naive times are taken as UTC) → integer seconds since 1970 (floored)."""
    return int(_utc(time).value // 1_000_000_000)


def to_t_days(time: pd.Timestamp | np.datetime64 | str) -> float:
    """A UTC time (naive times are taken as UTC) → float days since 1970."""
    return _utc(time).value / 1e9 / SECONDS_PER_DAY


def t_days_from_time_s(time_s: int | float | np.ndarray) -> float | np.ndarray:
    """Seconds since 1970 → float days since 1970 (array in, array out)."""
    if np.ndim(time_s) == 0:
        return float(time_s) / SECONDS_PER_DAY
    return np.asarray(time_s, dtype=np.float64) / SECONDS_PER_DAY


def time_s_from_t_days(t_days: float | np.ndarray) -> int | np.ndarray:
    """Float days since 1970 → integer seconds since 1970, rounded to the nearest second."""
    if np.ndim(t_days) == 0:
        if not math.isfinite(float(t_days)):
            raise ValueError(f"time in days is not finite: {t_days}")
        return round(float(t_days) * SECONDS_PER_DAY)
    return np.rint(np.asarray(t_days, dtype=np.float64) * SECONDS_PER_DAY).astype(np.int64)


def timestamp_from_t_days(t_days: float) -> pd.Timestamp:
    """Float days since 1970 → UTC timestamp, rounded to the second."""
    return pd.Timestamp(time_s_from_t_days(t_days), unit="s", tz="UTC")


def utc_day(time_s: int) -> str:
    """``YYYYMMDD`` of the UTC day holding ``time_s`` (how slots of one acquisition day are named)."""
    return np.datetime64(int(time_s), "s").astype("datetime64[D]").astype(str).replace("-", "")
