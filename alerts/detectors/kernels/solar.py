"""The parcel solar kernel (``alerts.detectors.solar`` rules: panels, works phase)."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from alerts.detectors.kernels.common import (
    X_ORBIT,
    X_T,
    X_VV,
    X_VV_REF,
    _append,
    _distinct_orbits,
    _emit,
    _fold_in,
    _median,
    _scratch,
    step_down,
)

# -- solar (parcel level) -------------------------------------------------------------------------

(
    S_RISE_DB,
    S_MIN_LEVEL_DB,
    S_ONSET_DB,
    S_CONFIRM_DAYS,
    S_MIN_CONFIRM,
    S_BASELINE_DAYS,
    S_BASELINE_GAP_DAYS,
    S_MIN_BASELINE,
    S_LEAD_DAYS,
    S_WORKS_SEARCH_DAYS,
    S_WORKS_VH_DROP_DB,
    S_WORKS_NDVI_DROP,
    S_BUFFER_DAYS,
    S_WORKS_PHASE,
    S_WORKS_RISE_DB,
    S_WORKS_ONSET_DB,
    S_WORKS_MIN_DAYS,
    S_WORKS_MIN_VIEWS,
    S_WORKS_BARE_NDVI,
    S_WORKS_SOIL_MIN_NDVI,
    S_WORKS_GREEN_NDVI,
    S_WORKS_GREEN_DAYS,
    S_RAMP_DAYS,
) = range(23)
SOLAR_PARAM_NAMES = (
    "rise_db",
    "min_level_db",
    "onset_db",
    "confirm_days",
    "min_confirm",
    "baseline_days",
    "baseline_gap_days",
    "min_baseline",
    "lead_days",
    "works_search_days",
    "works_vh_drop_db",
    "works_ndvi_drop",
    "buffer_days",
    "works_phase",
    "works_rise_db",
    "works_onset_db",
    "works_min_days",
    "works_min_views",
    "works_bare_ndvi",
    "works_soil_min_ndvi",
    "works_green_ndvi",
    "works_green_days",
    "ramp_days",
)
SOLAR_PHASE_PANELS, SOLAR_PHASE_WORKS = 0, 1
# panels: baseline, recent median, onset, excerpt start index | works: rise, ndvi before, ndvi after max, onset
SC_A, SC_B, SC_C, SC_D = 5, 6, 7, 8
SOLAR_EVENT_COLS = 9


@njit(cache=True)
def _solar_works(P, i, now, s1a, n1a, s2, n2, ev_parcel, ev_f, n_ev, x, scratch, orbits):
    """``solar._works_phase``: works begun, no panels yet."""
    n = n1a[i]
    if n < P[S_MIN_BASELINE] + P[S_WORKS_MIN_VIEWS] or n2[i] < 2:
        return n_ev
    b_lo = now - P[S_BASELINE_DAYS]
    b_hi = now - P[S_BASELINE_GAP_DAYS]
    for j in range(n):
        x[j] = s1a[i, j, 1]
    for oi in range(_distinct_orbits(s1a, i, n, orbits)):
        o = orbits[oi]
        c = 0
        for q in range(n):
            tq = s1a[i, q, 0]
            if s1a[i, q, 2] == o and tq >= b_lo and tq < b_hi:
                scratch[c] = s1a[i, q, 1]
                c += 1
        if c < P[S_MIN_BASELINE]:
            return n_ev
        med = _median(scratch, c)
        for q in range(n):
            if s1a[i, q, 2] == o:
                x[q] = s1a[i, q, 1] - med
    c = 0
    for j in range(n):
        if s1a[i, j, 0] > now - P[S_WORKS_MIN_DAYS]:
            scratch[c] = x[j]
            c += 1
    if c < P[S_WORKS_MIN_VIEWS]:
        return n_ev
    rise = _median(scratch, c)
    if rise < P[S_WORKS_RISE_DB]:
        return n_ev
    k = n - 1
    while k > 0 and x[k - 1] >= P[S_WORKS_ONSET_DB]:
        k -= 1
    if not (x[n - 1] >= P[S_WORKS_ONSET_DB]) or k == 0 or s1a[i, k, 0] > now - P[S_WORKS_MIN_DAYS]:
        return n_ev
    onset = s1a[i, k, 0]
    last_base = s1a[i, k - 1, 0]
    # the last green view in the works_green_days before the onset
    g = -1
    for j in range(n2[i]):
        tj = s2[i, j, 0]
        if tj <= onset and tj >= onset - P[S_WORKS_GREEN_DAYS] and s2[i, j, 1] >= P[S_WORKS_GREEN_NDVI]:
            g = j
    if g < 0:
        return n_ev
    t_green = s2[i, g, 0]
    first_after = np.nan
    smax = -np.inf
    smin = np.inf
    n_settled = 0
    for j in range(n2[i]):
        tj = s2[i, j, 0]
        if tj > t_green:
            if np.isnan(first_after):
                first_after = tj
            if tj > t_green + P[S_RAMP_DAYS]:
                n_settled += 1
                smax = max(smax, s2[i, j, 1])
                smin = min(smin, s2[i, j, 1])
    if np.isnan(first_after) or n_settled == 0 or smax > P[S_WORKS_BARE_NDVI]:
        return n_ev
    if smin < P[S_WORKS_SOIL_MIN_NDVI]:
        return n_ev
    start = min(0.5 * (t_green + first_after), onset)
    r = n_ev
    _emit(
        ev_parcel,
        ev_f,
        r,
        i,
        start,
        min(start, last_base),
        onset,
        min(1.0, 0.4 + 0.1 * rise),
        SOLAR_PHASE_WORKS,
    )
    ev_f[r, SC_A] = rise
    ev_f[r, SC_B] = s2[i, g, 1]
    ev_f[r, SC_C] = smax
    ev_f[r, SC_D] = onset
    return n_ev + 1


@njit(cache=True)
def solar_step(
    P, is_s2, X, t_last, sensors, n_obs, found, s1, n1, s2, n2, s1a, n1a, overflow, ev_parcel, ev_f
):
    """Fold one acquisition into the parcel solar states; returns the number of event rows."""
    tv, xv, scratch, orbits = _scratch(max(s1.shape[1], s2.shape[1], s1a.shape[1]) + 2)
    n_ev = 0
    for i in range(X.shape[0]):
        value = _fold_in(i, is_s2, X, t_last, sensors, n_obs)
        if np.isnan(value) or found[i]:
            continue
        t = X[i, X_T]
        horizon = t - P[S_BUFFER_DAYS]
        if is_s2:
            _append(s2, n2, i, horizon, overflow, t, value, 0.0)
            continue
        vv = X[i, X_VV]
        if not (np.isfinite(vv) and vv > 0):
            continue
        vv_db = 10.0 * math.log10(vv)
        _append(s1, n1, i, horizon, overflow, t, vv_db, 10.0 * math.log10(value))
        if np.isfinite(X[i, X_VV_REF]):
            _append(s1a, n1a, i, horizon, overflow, t, vv_db - X[i, X_VV_REF], X[i, X_ORBIT])
        n = n1[i]
        c = 0
        for j in range(n):
            tj = s1[i, j, 0]
            if tj >= t - P[S_BASELINE_DAYS] and tj < t - P[S_BASELINE_GAP_DAYS]:
                scratch[c] = s1[i, j, 1]
                c += 1
        if c < P[S_MIN_BASELINE]:
            continue
        base = _median(scratch, c)
        c = 0
        vmin = np.inf
        for j in range(n):
            if s1[i, j, 0] > t - P[S_CONFIRM_DAYS]:
                scratch[c] = s1[i, j, 1]
                vmin = min(vmin, s1[i, j, 1])
                c += 1
        panels = c >= P[S_MIN_CONFIRM] and vmin >= base + P[S_RISE_DB]
        recent_med = _median(scratch, c) if c > 0 else np.nan
        if not (panels and recent_med >= P[S_MIN_LEVEL_DB]):
            if P[S_WORKS_PHASE] > 0:
                before = n_ev
                n_ev = _solar_works(P, i, t, s1a, n1a, s2, n2, ev_parcel, ev_f, n_ev, xv, scratch, orbits)
                if n_ev > before:
                    found[i] = True
            continue
        k = n - 1
        while k > 0 and s1[i, k - 1, 1] >= base + P[S_ONSET_DB]:
            k -= 1
        onset = s1[i, k, 0]
        last_base = s1[i, k - 1, 0] if k > 0 else onset
        start = onset - P[S_LEAD_DAYS]
        lo = onset - P[S_WORKS_SEARCH_DAYS]
        for j in range(n):
            tv[j] = s1[i, j, 0]
            xv[j] = s1[i, j, 2]
        vh_step = step_down(tv, xv, n, lo, onset, P[S_WORKS_VH_DROP_DB], 2, False)
        nd_step = np.nan
        if P[S_WORKS_NDVI_DROP] > 0 and n2[i] >= 2:
            for j in range(n2[i]):
                tv[j] = s2[i, j, 0]
                xv[j] = s2[i, j, 1]
            nd_step = step_down(tv, xv, n2[i], lo, onset, P[S_WORKS_NDVI_DROP], 1, False)
        if not np.isnan(vh_step) or not np.isnan(nd_step):
            start = (
                vh_step if np.isnan(nd_step) else (nd_step if np.isnan(vh_step) else max(vh_step, nd_step))
            )
        elif P[S_WORKS_PHASE] > 0 and n1a[i] >= 4:
            for j in range(n1a[i]):
                tv[j] = s1a[i, j, 0]
                xv[j] = -s1a[i, j, 1]
            vv_step = step_down(tv, xv, n1a[i], lo, onset, P[S_WORKS_RISE_DB], 2, True)
            if not np.isnan(vv_step):
                start = vv_step
        r = n_ev
        conf = min(1.0, 0.5 + 0.1 * (recent_med - base))
        _emit(ev_parcel, ev_f, r, i, start, min(start, last_base), onset, conf, SOLAR_PHASE_PANELS)
        ev_f[r, SC_A] = base
        ev_f[r, SC_B] = recent_med
        ev_f[r, SC_C] = onset
        ev_f[r, SC_D] = k
        n_ev += 1
        found[i] = True
    return n_ev
