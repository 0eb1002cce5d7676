"""Scoring marker-style event records by their interval, beside the point date.

A harvest (or tillage) marker says "between the last clear view before the change and the first
clear view showing it": an agency's question is "was the parcel harvested within the scheme's
window?", which the interval answers whenever it lies inside or outside the window. A detection
therefore matches a reference event when the reference date lies inside
``[window_start − tolerance, window_end + tolerance]`` (one-to-one per parcel-year, optimal
assignment: first the fewest days outside the interval, then the nearest point date). The point
date F1 (``alerts.evaluation.score_events``) is reported beside it, and so are the interval
lengths: an interval is only as long as the gap between the detector's two bracketing views
(clear S2 views, or consecutive S1 acquisitions), and the median and 90th percentile say how
sharp the answers are, so that no detector can score by answering with wide intervals.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from alerts.evaluation import Scores, _days, match_dates

NEAREST_DATE_WEIGHT = 1e-3  # among intervals holding the truth, prefer the nearest point date


def match_intervals(
    starts: np.ndarray, ends: np.ndarray, dates: np.ndarray, ref: np.ndarray, tolerance: float
) -> list[tuple[int, int, float]]:
    """One-to-one matches (i_det, i_ref, days outside the interval) with the reference date inside
    ``[start − tolerance, end + tolerance]``; arrays in days."""
    if not len(dates) or not len(ref):
        return []
    lo, hi = np.minimum(starts, ends), np.maximum(starts, ends)
    r = np.asarray(ref, float)[None, :]
    outside = np.maximum(0.0, np.maximum(lo[:, None] - r, r - hi[:, None]))
    ok = outside <= tolerance
    cost = np.where(ok, outside + NEAREST_DATE_WEIGHT * np.abs(dates[:, None] - r), 1e6)
    rows, cols = linear_sum_assignment(cost)
    return [(int(i), int(j), float(outside[i, j])) for i, j in zip(rows, cols, strict=True) if ok[i, j]]


def _by_parcel_year(df: pd.DataFrame, columns: tuple[str, ...]) -> dict[tuple[str, int], np.ndarray]:
    """Rows of ``columns`` (as days) per (parcel_id, year of ``date``)."""
    if not len(df):
        return {}
    cols = np.column_stack([_days(df[c]) for c in columns])
    year = pd.to_datetime(df["date"], utc=True).dt.year.to_numpy()
    out: dict[tuple[str, int], list[int]] = {}
    for k, (pid, y) in enumerate(zip(df["parcel_id"].astype(str), year, strict=True)):
        out.setdefault((pid, int(y)), []).append(k)
    return {key: cols[idx] for key, idx in out.items()}


def match_counts(
    detections: pd.DataFrame, reference: pd.DataFrame, parcel_years: Iterable[tuple[str, int]], *,
    tolerance_days: float, by_interval: bool,
) -> tuple[dict[str, np.ndarray], list[float]]:
    """Per parcel: (tp, fp, fn) summed over its parcel-years in ``parcel_years``, matched by
    interval (``by_interval``) or by point date within ``tolerance_days``; and the absolute point
    date errors of the matches."""
    det = _by_parcel_year(detections, ("date", "window_start", "window_end") if by_interval else ("date",))
    ref = _by_parcel_year(reference, ("date",))
    counts: dict[str, np.ndarray] = {}
    errors: list[float] = []
    for key in set(parcel_years):
        dd = det.get(key, np.empty((0, 3)))
        rr = ref.get(key, np.empty((0, 1)))[:, 0]
        if by_interval:
            m = match_intervals(dd[:, 1], dd[:, 2], dd[:, 0], rr, tolerance_days)
        else:
            m = match_dates(dd[:, 0], rr, tolerance_days)
        c = counts.setdefault(str(key[0]), np.zeros(3, int))
        c += (len(m), len(dd) - len(m), len(rr) - len(m))
        errors.extend(abs(dd[i, 0] - rr[j]) for i, j, _ in m)
    return counts, errors


def score_intervals(
    detections: pd.DataFrame, reference: pd.DataFrame, parcel_years: Iterable[tuple[str, int]], *,
    tolerance_days: float = 12.0,
) -> Scores:
    """Interval scores over ``parcel_years`` (false alarms on parcel-years without an event count).

    ``detections``: ``parcel_id, date, window_start, window_end``; ``reference``: ``parcel_id, date``.
    ``mae_days`` is the mean absolute error of the matched detections' point dates.
    """
    counts, errors = match_counts(detections, reference, parcel_years, tolerance_days=tolerance_days,
                                  by_interval=True)
    tp, fp, fn = (int(x) for x in sum(counts.values(), np.zeros(3, int)))
    return Scores(tp, fp, fn, float(np.mean(errors)) if errors else float("nan"))


def interval_lengths(detections: pd.DataFrame, tolerance_days: float = 12.0) -> dict:
    """Median, 90th percentile and largest interval length (days) of ``detections``, and the share
    no longer than two tolerances (those whose midpoint is within ``tolerance_days`` of any day inside)."""
    n = (_days(detections["window_end"]) - _days(detections["window_start"])) if len(detections) else np.empty(0)
    if not len(n):
        return {"n": 0, "median_days": None, "p90_days": None, "max_days": None, "share_within_2_tolerances": None}
    return {"n": int(len(n)), "median_days": round(float(np.median(n)), 1),
            "p90_days": round(float(np.percentile(n, 90)), 1), "max_days": round(float(np.max(n)), 1),
            "share_within_2_tolerances": round(float(np.mean(n <= 2 * tolerance_days)), 3)}
