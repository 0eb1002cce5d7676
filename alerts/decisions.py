"""Evidence for a parcel's light: how well the window was observed, and whether anything happened.

The detectors say what they found; the light also needs to know what they could have found. Per
parcel and campaign window, counted on the observations up to ``as_of`` only:

- coverage: clear S2 views and the longest gap between them (window edges included), S1 views and
  their longest gap — a red is only given on a window observed well enough to have seen the activity;
- the largest *persistent* NDVI drop in the window: the envelope (highest clear NDVI of the previous
  ``envelope_days``) minus the higher of a view and its successor (a residual-cloud dip that recovers
  on the next view does not count; a drop on the newest view, not confirmed yet, counts in full, which
  errs towards orange), and the largest single-view dip (no persistence: a cut followed by a fast
  regrowth shows on one view only); a small value is evidence that nothing was cut or harvested;
- the encoder's residuals (observed minus expected NDVI, in units of the model's std, from
  ``alerts.expectation.add_model_expectations``) with the same persistence: a strongly negative one
  is a departure the rules did not name, so the light stays orange instead of red;
- the largest S1 VH fall of the window in units of the parcel's own VH noise (``s1_drop_z``): a cut
  lowers the backscatter of the sward, and S1 sees through the clouds that may hide it from S2. The
  noise is the parcel's own (the median change between consecutive views of one orbit), so a
  speckled single-pixel series (grassland-sk-dev: a median of 1.9 noise units, as pure noise gives)
  and a clean parcel mean (the demo archive) are judged on one scale.

Times are float days since 1970-01-01 UTC (``alerts.series``).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from alerts.expectation import EXPECTED, EXPECTED_STD
from contracts.indices import ndvi as index_ndvi

ENVELOPE_DAYS = 25.0  # a cut or harvest is measured against the last month's green level
BRIDGE_DAYS = 60.0  # after a longer cloudy spell, against the last view before it (else a cut hidden
# in a gap longer than ENVELOPE_DAYS would leave no measurable drop and could turn red)
PERSIST_DAYS = 15.0  # a successor later than this cannot tell a cloud dip from a cut
RESIDUAL_DAYS = 30.0  # an event is compared with the first clear view at most this long after it
SHAPE_GAP_DAYS = 20.0  # views further apart cannot tell a cut's fall from a season's decline
REGROWTH_DAYS = 45.0  # cut grass is back near its level within about six weeks
MIN_STD = 0.02  # NDVI; the model's std is floored so a confident model cannot make noise significant
S1_LEAD_DAYS = 30.0  # S1 views this long before the window give the level a fall at its start is measured from
S1_MIN_VIEWS = 6  # fewer views of one orbit give no noise estimate: that orbit says nothing
S1_MIN_NOISE_DB = 0.05  # a noise floor, so a constant series cannot make any change significant


@dataclass(frozen=True, slots=True)
class Coverage:
    """How densely ``[start, stop]`` (days) was observed: view counts and longest gaps (days)."""

    start: float
    stop: float
    n_clear_s2: int
    max_s2_gap_days: float
    n_s1: int
    max_s1_gap_days: float


@dataclass(frozen=True, slots=True)
class WindowEvidence:
    """What the series says about one parcel in one window (up to ``as_of``).

    Gaps in days; ``max_drop`` in NDVI (0 when fewer than two clear views); ``min_residual_z``
    NaN without the encoder's expectation; pixel counts -1 when the series does not carry them.
    """

    n_clear_s2: int
    max_s2_gap_days: float
    n_s1: int
    max_s1_gap_days: float
    max_drop: float
    drop_day: float
    min_residual_z: float
    max_dip: float = 0.0  # the largest drop of any single view below its envelope (no persistence)
    s2_pixels: int = -1
    s1_pixels: int = -1
    n_rows: int = 0
    residuals: tuple[tuple[float, float], ...] = ()  # (day, z) of clear views up to as_of, with the model
    s2_days: tuple[float, ...] = ()  # clear S2 views and S1 views up to as_of (any time: a rule's
    s1_days: tuple[float, ...] = ()  # coverage window may differ from its event window)
    s2_ndvi: tuple[float, ...] = ()  # the NDVI of each of ``s2_days`` (how soon a detected cut recovers)
    as_of_day: float = math.inf
    # the shape of the largest fall between two clear views of the window at most SHAPE_GAP_DAYS
    # apart: the fall (NDVI), the regrowth after it within REGROWTH_DAYS (NDVI), and the largest
    # rise of the SWIR/NIR index (B11 - B08) / (B11 + B08) between such views (cut grass shows litter
    # and soil; a cloud shadow or a slow drought decline does not rise as fast)
    max_step_drop_ndvi: float = 0.0
    regrowth_ndvi: float = 0.0
    max_swir_rise: float = 0.0
    # the largest S1 VH fall of the window (``s1_drop_z``), in units of the parcel's VH noise, and its day
    s1_drop_z: float = 0.0
    s1_drop_day: float = math.nan
    # the most S1 views of one relative orbit that ``s1_drop_z`` could use (fewer than S1_MIN_VIEWS:
    # S1 can veto nothing, whatever its value)
    s1_orbit_views: int = 0

    def coverage_in(self, start: float, end: float) -> Coverage:
        """Views and longest gaps inside ``[start, min(end, as_of)]`` (edges count as boundaries)."""
        stop = min(end, self.as_of_day)
        n2, gap2 = _count_gap(self.s2_days, start, stop)
        n1, gap1 = _count_gap(self.s1_days, start, stop)
        return Coverage(start, stop, n2, gap2, n1, gap1)

    def residual_after(self, day: float, within_days: float = RESIDUAL_DAYS) -> float:
        """The encoder residual z at the first clear view on or after ``day`` (NaN if none within)."""
        for t, z in self.residuals:
            if day <= t <= day + within_days:
                return z
        return math.nan


def _count_gap(days: tuple[float, ...], start: float, end: float) -> tuple[int, float]:
    """Views of sorted ``days`` inside ``[start, end]`` and the longest gap (edges count); plain
    Python, as the CV calls it once per parcel-year and constant combination."""
    inside = days[bisect.bisect_left(days, start):bisect.bisect_right(days, end)]
    if end <= start:
        return len(inside), 0.0
    edges = (start, *inside, end)
    return len(inside), max(b - a for a, b in zip(edges, edges[1:], strict=False))


def max_gap(days: np.ndarray, start: float, end: float) -> float:
    """Longest interval without a view in ``[start, end]`` (edges count as boundaries)."""
    if end <= start:
        return 0.0
    inside = np.sort(days[(days >= start) & (days <= end)])
    edges = np.r_[start, inside, end]
    return float(np.diff(edges).max())


def persistent_drops(t: np.ndarray, v: np.ndarray, persist: bool = True) -> np.ndarray:
    """Per clear view: envelope − max(view, successor within ``PERSIST_DAYS``) (``persist``) or
    envelope − view; NaN without envelope. The envelope is the highest view of the previous
    ``ENVELOPE_DAYS``, or, after a longer gap, the last view before it (within ``BRIDGE_DAYS``)."""
    n = len(t)
    out = np.full(n, np.nan)
    for i in range(n):
        prev = (t >= t[i] - ENVELOPE_DAYS) & (t < t[i])
        if not prev.any():
            if i == 0 or t[i] - t[i - 1] > BRIDGE_DAYS:
                continue
            prev = np.arange(n) == i - 1
        low = v[i]
        if persist and i + 1 < n and t[i + 1] - t[i] <= PERSIST_DAYS:
            low = max(low, v[i + 1])
        out[i] = float(v[prev].max()) - low
    return out


def persistent_min(t: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Per view: max(z, successor's z within ``PERSIST_DAYS``), the residual that held."""
    out = z.copy()
    for i in range(len(t) - 1):
        if t[i + 1] - t[i] <= PERSIST_DAYS and np.isfinite(z[i + 1]):
            out[i] = max(z[i], z[i + 1])
    return out


def drop_shape(t: np.ndarray, v: np.ndarray, swir: np.ndarray, start: float) -> tuple[float, float, float]:
    """(largest fall, regrowth after it, largest SWIR-index rise) between consecutive clear views
    ``t`` (sorted days) at most ``SHAPE_GAP_DAYS`` apart, the later one on or after ``start``."""
    if len(t) < 2:
        return 0.0, 0.0, 0.0
    close = (np.diff(t) <= SHAPE_GAP_DAYS) & (t[1:] >= start)
    if not close.any():
        return 0.0, 0.0, 0.0
    fall = v[:-1] - v[1:]
    k = int(np.flatnonzero(close)[np.argmax(fall[close])]) + 1
    later = (t > t[k]) & (t <= t[k] + REGROWTH_DAYS)
    regrowth = float(v[later].max() - v[k]) if later.any() else 0.0
    rise = np.diff(swir)[close]
    rise = rise[np.isfinite(rise)]
    return float(fall[close].max()), regrowth, float(rise.max()) if len(rise) else 0.0


def s1_drop_z(days: np.ndarray, vh: np.ndarray, orbit: np.ndarray, start: float, stop: float) -> tuple[float, float]:
    """(largest VH fall, its day): per relative orbit, the mean of two views minus the mean of the
    next two (one view where none follows yet), in dB, divided by the orbit's noise (the median
    absolute change between its consecutive views); the falling view inside ``[start, stop]``.
    ``vh`` linear power; views from ``S1_LEAD_DAYS`` before ``start`` give the level. (0, NaN)
    without S1, or with fewer than ``S1_MIN_VIEWS`` views of every orbit."""
    keep = (days >= start - S1_LEAD_DAYS) & (days <= stop) & np.isfinite(vh) & (vh > 0)
    best, best_day = 0.0, math.nan
    t_all, db_all = days[keep], 10.0 * np.log10(vh[keep])
    orb = np.where(np.isfinite(orbit[keep]), orbit[keep], -1.0)
    for o in np.unique(orb):
        sel = orb == o
        t, v = t_all[sel], db_all[sel]
        order = np.argsort(t, kind="stable")
        t, v = t[order], v[order]
        if len(t) < S1_MIN_VIEWS:
            continue
        noise = max(float(np.median(np.abs(np.diff(v)))), S1_MIN_NOISE_DB)
        before = 0.5 * (v[:-2] + v[1:-1])  # views i-2, i-1 for i = 2 .. n-1
        after = 0.5 * (v[2:] + np.r_[v[3:], v[-1]])  # views i, i+1 (the last view alone)
        fall = np.where(t[2:] >= start, (before - after) / noise, -np.inf)
        k = int(np.argmax(fall)) if len(fall) else -1
        if k >= 0 and fall[k] > best:
            best, best_day = float(fall[k]), float(t[k + 2])
    return best, best_day


def orbit_views(days: np.ndarray, vh: np.ndarray, orbit: np.ndarray, start: float, stop: float) -> int:
    """The most S1 views of one relative orbit among those ``s1_drop_z`` reads for ``[start, stop]``."""
    keep = (days >= start - S1_LEAD_DAYS) & (days <= stop) & np.isfinite(vh) & (vh > 0)
    orb = np.where(np.isfinite(orbit[keep]), orbit[keep], -1.0)
    return int(np.unique(orb, return_counts=True)[1].max()) if keep.any() else 0


def window_evidence(g: pd.DataFrame, start: float, end: float, as_of: float) -> WindowEvidence:
    """Evidence of one parcel's normalised rows ``g`` for the window ``[start, end]`` seen at ``as_of``.

    Rows after ``as_of`` are ignored (they were not known then); the envelope may use views up to
    ``ENVELOPE_DAYS`` before the window.
    """
    g = g[g["days"] <= as_of]
    stop = min(end, as_of)
    sensor = g["sensor"].to_numpy()
    days = g["days"].to_numpy(float)
    ndvi = index_ndvi(g["B04"].to_numpy(float), g["B08"].to_numpy(float))
    clear = (sensor == "S2") & (g["clear"].to_numpy(float) >= 0.5) & np.isfinite(ndvi)
    vh = g["VH"].to_numpy(float)
    s1 = (sensor == "S1") & np.isfinite(vh) & (vh > 0)
    t2, v2 = days[clear], ndvi[clear]
    order = np.argsort(t2, kind="stable")
    in_win = (t2 >= start) & (t2 <= stop)
    near = t2 >= start - BRIDGE_DAYS
    drops = persistent_drops(t2[near], v2[near])
    win_near = in_win[near]
    d = drops[win_near]
    ok = np.isfinite(d)
    max_drop = float(d[ok].max()) if ok.any() else 0.0
    drop_day = float(t2[near][win_near][ok][np.argmax(d[ok])]) if ok.any() else math.nan
    dips = persistent_drops(t2[near], v2[near], persist=False)[win_near]
    max_dip = float(np.nanmax(dips)) if np.isfinite(dips).any() else 0.0
    min_z = math.nan
    residuals: tuple[tuple[float, float], ...] = ()
    if EXPECTED in g.columns:
        exp = g[EXPECTED].to_numpy(float)[clear]
        std = np.maximum(g[EXPECTED_STD].to_numpy(float)[clear], MIN_STD)
        z = (v2 - exp) / std
        zp = persistent_min(t2, z)[in_win]
        zp = zp[np.isfinite(zp)]
        min_z = float(zp.min()) if len(zp) else math.nan
        keep = (t2 >= start) & (t2 <= stop + RESIDUAL_DAYS) & np.isfinite(z)
        residuals = tuple((float(a), round(float(b), 3)) for a, b in zip(t2[keep], z[keep], strict=True))
    b08, b11 = g["B08"].to_numpy(float)[clear], g["B11"].to_numpy(float)[clear]
    with np.errstate(invalid="ignore", divide="ignore"):
        swir = (b11 - b08) / (b11 + b08)
    shape_views = (t2 >= start - BRIDGE_DAYS) & (t2 <= stop)
    step_drop, regrowth, swir_rise = drop_shape(t2[shape_views], v2[shape_views], swir[shape_views], start)
    orbit = g["orbit"].to_numpy(float) if "orbit" in g.columns else np.full(len(g), -1.0)
    s1_z, s1_day = s1_drop_z(days[s1], vh[s1], orbit[s1], start, stop)
    s1_views = orbit_views(days[s1], vh[s1], orbit[s1], start, stop)
    pix = g["pixel_count"].to_numpy(float) if "pixel_count" in g.columns else None
    s2_pixels = s1_pixels = -1
    if pix is not None:
        p2, p1 = pix[sensor == "S2"], pix[sensor == "S1"]
        s2_pixels = int(np.nanmax(p2)) if len(p2) and np.isfinite(p2).any() else 0
        s1_pixels = int(np.nanmax(p1)) if len(p1) and np.isfinite(p1).any() else 0
    return WindowEvidence(
        n_clear_s2=int(in_win.sum()),
        max_s2_gap_days=max_gap(t2, start, stop),
        n_s1=int(((days[s1] >= start) & (days[s1] <= stop)).sum()),
        max_s1_gap_days=max_gap(days[s1], start, stop),
        max_drop=max_drop,
        drop_day=drop_day,
        min_residual_z=min_z,
        s2_pixels=s2_pixels,
        s1_pixels=s1_pixels,
        n_rows=len(g),
        residuals=residuals,
        max_dip=max_dip,
        s2_days=tuple(float(x) for x in t2[order]),
        s2_ndvi=tuple(float(x) for x in v2[order]),
        s1_days=tuple(sorted(float(x) for x in days[s1])),
        as_of_day=float(as_of),
        max_step_drop_ndvi=step_drop,
        regrowth_ndvi=regrowth,
        max_swir_rise=swir_rise,
        s1_drop_z=s1_z,
        s1_drop_day=s1_day,
        s1_orbit_views=s1_views,
    )


NO_SERIES = WindowEvidence(0, math.inf, 0, math.inf, 0.0, math.nan, math.nan, -1, -1, 0)
