"""Step-down finders shared by the detectors (one plain reference each; the numba kernels in
``alerts.detectors.kernels`` mirror them: ``window_step`` and ``step_down``).

- ``find_window_step``: a split k (between views k-1 and k) compares the mean of the views in the
  ``before_days`` before it with the mean of those in the ``after_days`` after it; the step must
  persist (every view after lies ``margin`` below the mean before) and the view before the split
  must not already be low. Used by mowing's S1 cloudy-spell rule (``pick="first"``) and harvest's
  S1 rule (``pick="best"``).
- ``step_down_midpoint``: the ``n`` views before a split against the ``n`` after, within a time
  range; the solar detector dates works with it (latest split, or the earliest with ``first``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class WindowStep:
    """A confirmed step down at split ``k``: times of the views either side (``t_hi`` before,
    ``t_lo`` after), the means before/after and their difference ``drop`` (units of the series)."""

    k: int
    t_hi: float
    t_lo: float
    pre: float
    post: float
    drop: float


def find_window_step(
    t: np.ndarray,
    v: np.ndarray,
    *,
    before_days: float,
    after_days: float,
    min_before: int,
    min_after: int,
    min_drop: float,
    margin: float,
    pick: str = "best",
) -> WindowStep | None:
    """The step down of ``v`` (times ``t``, sorted) whose after-window completed with the newest
    view (older splits were decided by earlier calls: their windows were complete already).

    ``pick="best"``: the largest drop among those splits; ``"first"``: the earliest one.
    """
    if pick not in ("best", "first"):
        raise ValueError(f"pick must be 'best' or 'first', got {pick!r}")
    n = len(t)
    best: WindowStep | None = None
    for k in range(1, n):
        if t[k] + after_days <= t[-2]:
            continue  # its windows were already complete at the previous view: decided then
        if t[-1] < t[k] + after_days:
            if pick == "first":
                break  # later splits are not complete either
            continue
        pre = (t >= t[k] - before_days) & (t < t[k])
        post = (t >= t[k]) & (t <= t[k] + after_days)
        if pre.sum() < min_before or post.sum() < min_after:
            continue
        m_pre, m_post = float(v[pre].mean()), float(v[post].mean())
        drop = m_pre - m_post
        if drop < min_drop or float(v[post].max()) > m_pre - margin or v[k - 1] < m_pre - margin:
            continue
        step = WindowStep(k, float(t[k - 1]), float(t[k]), m_pre, m_post, drop)
        if pick == "first":
            return step
        if best is None or drop > best.drop:
            best = step
    return best


def step_down_midpoint(
    t: np.ndarray, v: np.ndarray, lo: float, hi: float, min_drop: float, n: int, first: bool = False
) -> float | None:
    """Midpoint of the latest (``first``: earliest) split in (lo, hi] where the mean of ``n`` views
    after is ``min_drop`` below the mean of the ``n`` views before (NaN views ignored)."""
    best = None
    for k in range(n, len(t) - n + 1):
        if not lo < t[k] <= hi:
            continue
        drop = float(np.nanmean(v[k - n : k]) - np.nanmean(v[k : k + n]))
        if drop >= min_drop:
            best = 0.5 * (t[k - 1] + t[k])
            if first:
                break
    return best
