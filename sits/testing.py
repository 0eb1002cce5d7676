"""Synthetic series for tests and benchmarks (small, seeded): irregular merged S1/S2 dates with
same-day tokens, clouds and a gap of more than 100 days. Not a simulator of real signals."""

from __future__ import annotations

import numpy as np

from sits.tokens import S1, S2, BandSet, Series

DAY = 86400
T0 = int(np.datetime64("2021-01-01T00:00:00", "s").astype(np.int64))


def merged_days(rng: np.random.Generator, n: int, gap_at: float = 0.4, gap_days: float = 130.0) -> np.ndarray:
    """``[n]`` float days, non-decreasing: S2-like steps (0–5 days, many same-day pairs) with one gap
    of ``gap_days`` (> 100) at fraction ``gap_at`` of the series."""
    steps = rng.choice([0.0, 0.0, 1.0, 2.0, 3.0, 5.0, 6.0], size=n).astype(np.float64)
    steps[0] = 0.0
    if n > 4:
        steps[int(gap_at * n)] = gap_days
    return np.cumsum(steps)


def dt_from_days(days: np.ndarray) -> np.ndarray:
    return np.diff(days, prepend=days[:1])


def synthetic_series(rng: np.random.Generator, n: int, bands: BandSet = BandSet(), start: int = T0,
                     pid: str = "p") -> Series:
    """A merged S1/S2 series of ``n`` tokens with a seasonal signal, same-day S1/S2 pairs, clouds and a
    >100-day gap."""
    days = merged_days(rng, n)
    sensor = rng.choice([S2, S1], size=n, p=[0.55, 0.45])
    # on same-day pairs put S1 first (the order the readers produce)
    times = (start + np.round(days * DAY)).astype(np.int64)
    order = np.lexsort((-sensor, times))
    times, sensor = times[order], sensor[order]
    doy = ((times - start) / DAY) % 365.25
    season = 0.5 + 0.3 * np.sin(2 * np.pi * (doy - 100) / 365.25)
    values = np.full((n, len(bands.all)), np.nan, np.float32)
    for j in range(bands.n_s2):
        values[:, j] = np.clip(0.05 + 0.1 * j / bands.n_s2 + season * (0.3 if j >= bands.n_s2 // 2 else -0.05)
                               + rng.normal(0, 0.01, n), 0.001, 1.0)
    for j in range(bands.n_s1):
        values[:, bands.n_s2 + j] = 10 ** ((-12 - 6 * j + 3 * season + rng.normal(0, 0.5, n)) / 10)
    values[sensor == S2, bands.n_s2 :] = np.nan
    values[sensor == S1, : bands.n_s2] = np.nan
    clear = (rng.random(n) > 0.3).astype(np.float32)
    orbit = np.where(sensor == S1, rng.choice([29, 175], size=n), 0)
    return Series(times, sensor, values, bands, clear, orbit, id=pid)
