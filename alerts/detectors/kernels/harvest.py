"""The harvest kernel: the rules of ``alerts/detectors/harvest.py``, S1 and S2 side by side."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from alerts.detectors.kernels.common import (
    X_B11,
    X_B12,
    X_T,
    X_VH_REF,
    _append,
    _emit,
    _fold_in,
    _scratch,
    day_of_year,
    window_step,
)

# parameter vector: HarvestParams packed in HARVEST_PARAM_NAMES order (batch_kernels._pack)
HARVEST_PARAM_NAMES = (
    "before_days",
    "after_days",
    "min_before",
    "min_after",
    "min_drop_db",
    "persist_margin_db",
    "min_drop_ndvi",
    "season_doy[0]",
    "season_doy[1]",
    "min_separation_days",
    "buffer_days",
    "use_regional_reference",
    "use_s2",
    "use_s1",
    "s2_max_gap_days",
    "green_ndvi",
    "green_min_drop_ndti",
    "min_drop_ndti",
    "bare_ndti",
    "confirm_margin_ndti",
    "regrowth_ndvi",
    "regrowth_days",
    "unconfirmed_factor",
    "resown_ndvi",
)
(
    H_BEFORE_DAYS,
    H_AFTER_DAYS,
    H_MIN_BEFORE,
    H_MIN_AFTER,
    H_MIN_DROP_DB,
    H_PERSIST_MARGIN_DB,
    H_MIN_DROP_NDVI,
    H_DOY_LO,
    H_DOY_HI,
    H_MIN_SEPARATION_DAYS,
    H_BUFFER_DAYS,
    H_USE_REF,
    H_USE_S2,
    H_USE_S1,
    H_S2_MAX_GAP_DAYS,
    H_GREEN_NDVI,
    H_GREEN_MIN_DROP_NDTI,
    H_MIN_DROP_NDTI,
    H_BARE_NDTI,
    H_CONFIRM_MARGIN_NDTI,
    H_REGROWTH_NDVI,
    H_REGROWTH_DAYS,
    H_UNCONFIRMED_FACTOR,
    H_RESOWN_NDVI,
) = range(len(HARVEST_PARAM_NAMES))
HARVEST_SENSOR_S1, HARVEST_SENSOR_S2, HARVEST_SENSOR_S2S1 = 0, 1, 2
# event rows after the common columns: S1 events: mean before/after, drop, split index;
# S2 events: kind (0 green, 1 dry, 2 resown), NDVI before/after, NDTI before/after, drop, S1 drop, confirming day
HC_PRE, HC_POST, HC_DROP, HC_K = range(5, 9)
HC_KIND, HC_N0, HC_N1, HC_D0, HC_D1, HC_NDROP, HC_S1DROP, HC_CONFIRMED = range(5, 13)
HARVEST_EVENT_COLS = 13


@njit(cache=True)
def _harvest_accept(P, i, date, last_harvest):
    """The season and separation test of a harvest dated ``date``."""
    doy = day_of_year(date)
    return P[H_DOY_LO] <= doy <= P[H_DOY_HI] and not (date - last_harvest[i] < P[H_MIN_SEPARATION_DAYS])


@njit(cache=True)
def _harvest_s1(P, i, buf, n, last_harvest, ev_parcel, ev_f, n_ev, tv, xv, scratch):
    """``HarvestDetector._s1_step``: the best windowed VH step down of parcel i and its event."""
    for j in range(n):
        tv[j] = buf[i, j, 0]
        xv[j] = buf[i, j, 1]
    k, drop, pre, post = window_step(
        tv,
        xv,
        n,
        P[H_BEFORE_DAYS],
        P[H_AFTER_DAYS],
        P[H_MIN_BEFORE],
        P[H_MIN_AFTER],
        P[H_MIN_DROP_DB],
        P[H_PERSIST_MARGIN_DB],
        True,
        scratch,
    )
    if k < 0:
        return n_ev
    date = 0.5 * (tv[k - 1] + tv[k])
    if not _harvest_accept(P, i, date, last_harvest):
        return n_ev
    conf = 1.0 - math.exp(-1.5 * drop / P[H_MIN_DROP_DB])  # in [0, 1): drop >= min_drop > 0
    _emit(ev_parcel, ev_f, n_ev, i, date, tv[k - 1], tv[k], min(max(conf, 0.0), 1.0), HARVEST_SENSOR_S1)
    ev_f[n_ev, HC_PRE] = pre
    ev_f[n_ev, HC_POST] = post
    ev_f[n_ev, HC_DROP] = drop
    ev_f[n_ev, HC_K] = k
    last_harvest[i] = date
    return n_ev + 1


@njit(cache=True)
def _s2_split(P, t0, n0, d0, t1, nv1, d1):
    """``s2_split``: (kind 0 green / 1 dry / -1 none, drop, scale) between two clear views."""
    if t1 - t0 > P[H_S2_MAX_GAP_DAYS]:
        return -1, 0.0, 1.0
    if not (np.isfinite(n0) and np.isfinite(nv1) and np.isfinite(d0) and np.isfinite(d1)):
        return -1, 0.0, 1.0
    if n0 >= P[H_GREEN_NDVI]:
        ok = n0 - nv1 >= P[H_MIN_DROP_NDVI] and d0 - d1 >= P[H_GREEN_MIN_DROP_NDTI] and nv1 < P[H_GREEN_NDVI]
        ok = ok and d1 <= P[H_BARE_NDTI]
        return (0 if ok else -1), n0 - nv1, P[H_MIN_DROP_NDVI]
    ok = d0 - d1 >= P[H_MIN_DROP_NDTI] and d1 <= P[H_BARE_NDTI]
    return (1 if ok else -1), d0 - d1, P[H_MIN_DROP_NDTI]


@njit(cache=True)
def _s2_resown(P, s2, i, n):
    """``s2_resown``: (kind 2 / -1 none, NDVI rise) between views n−2 and n−1 of parcel i."""
    if n < 3 or not np.isfinite(P[H_RESOWN_NDVI]):
        return -1, 0.0
    t0, n0, d0 = s2[i, n - 2, 0], s2[i, n - 2, 1], s2[i, n - 2, 2]
    t1, nv1, d1 = s2[i, n - 1, 0], s2[i, n - 1, 1], s2[i, n - 1, 2]
    if not (np.isfinite(n0) and np.isfinite(nv1) and np.isfinite(d0) and np.isfinite(d1)):
        return -1, 0.0
    if not (P[H_REGROWTH_DAYS] <= t1 - t0 <= P[H_S2_MAX_GAP_DAYS]):
        return -1, 0.0
    declining = False  # senescence, not emergence: an earlier held view at least as green
    for j in range(n - 2):
        if s2[i, j, 1] >= n0:  # NaN compares False, as the reference skips it
            declining = True
            break
    if declining and n0 < P[H_GREEN_NDVI] and d0 > P[H_BARE_NDTI] and nv1 - n0 >= P[H_RESOWN_NDVI]:
        return 2, nv1 - n0
    return -1, 0.0


@njit(cache=True)
def _harvest_s2(P, i, s2, n2, s1, n1, last_harvest, ev_parcel, ev_f, n_ev):
    """``s2_harvest`` on the newest clear views (confirmed, else straw then a new crop, else a strong
    drop at once where no S1 view is held), ``s1_date`` and the S2 event."""
    n = n2[i]
    if n < 2:
        return n_ev
    kind = -1
    confirmed = False
    drop, scale = 0.0, 1.0
    t0, n0, d0, t1, nv1, d1 = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    if n >= 3:
        t0, n0, d0 = s2[i, n - 3, 0], s2[i, n - 3, 1], s2[i, n - 3, 2]
        t1, nv1, d1 = s2[i, n - 2, 0], s2[i, n - 2, 1], s2[i, n - 2, 2]
        t2, nv2, d2 = s2[i, n - 1, 0], s2[i, n - 1, 1], s2[i, n - 1, 2]
        if np.isfinite(nv2) and np.isfinite(d2):
            kind, drop, scale = _s2_split(P, t0, n0, d0, t1, nv1, d1)
            if kind >= 0:
                came_back = d2 > d1 + P[H_CONFIRM_MARGIN_NDTI] or nv2 > nv1 + P[H_MIN_DROP_NDVI] / 2
                regrown = nv2 >= n0 + P[H_REGROWTH_NDVI] and t2 - t1 >= P[H_REGROWTH_DAYS]
                if came_back and not regrown:
                    kind = -1
                else:
                    confirmed = True
    if kind < 0:
        kind, drop = _s2_resown(P, s2, i, n)
        if kind >= 0:
            confirmed = True
            scale = P[H_RESOWN_NDVI]
            t0, n0, d0 = s2[i, n - 2, 0], s2[i, n - 2, 1], s2[i, n - 2, 2]
            t1, nv1, d1 = s2[i, n - 1, 0], s2[i, n - 1, 1], s2[i, n - 1, 2]
    if kind < 0:
        if P[H_USE_S1] > 0 and n1[i] > 0:  # S1 at hand: it confirms within days
            return n_ev
        t0, n0, d0 = s2[i, n - 2, 0], s2[i, n - 2, 1], s2[i, n - 2, 2]
        t1, nv1, d1 = s2[i, n - 1, 0], s2[i, n - 1, 1], s2[i, n - 1, 2]
        kind, drop, scale = _s2_split(P, t0, n0, d0, t1, nv1, d1)
        if kind < 0 or drop < P[H_UNCONFIRMED_FACTOR] * scale:
            return n_ev
    date = 0.5 * (t0 + t1)
    sensor = HARVEST_SENSOR_S2
    conf = (0.9 if confirmed else 0.7) * (1.0 - math.exp(-1.5 * drop / scale))
    s1_day = np.nan
    s1_drop = 0.0
    if P[H_USE_S1] > 0:  # s1_date: the largest VH drop between consecutive S1 views inside (t0, t1]
        prev = -1
        for j in range(n1[i]):
            tj = s1[i, j, 0]
            if not (t0 - 6.0 <= tj <= t1 + 6.0):
                continue
            if prev >= 0:
                mid = 0.5 * (s1[i, prev, 0] + tj)
                if s1[i, prev, 1] - s1[i, j, 1] > s1_drop and t0 <= mid <= t1:
                    s1_day = mid
                    s1_drop = s1[i, prev, 1] - s1[i, j, 1]
            prev = j
    if np.isfinite(s1_day):
        date = s1_day
        sensor = HARVEST_SENSOR_S2S1
        conf = 1.0 - (1.0 - conf) * (1.0 - min(0.9, max(0.0, s1_drop / (2 * P[H_MIN_DROP_DB]))))
    if not _harvest_accept(P, i, date, last_harvest):
        return n_ev
    _emit(ev_parcel, ev_f, n_ev, i, date, t0, t1, min(max(conf, 0.0), 1.0), sensor)
    ev_f[n_ev, HC_KIND] = kind
    ev_f[n_ev, HC_N0] = n0
    ev_f[n_ev, HC_N1] = nv1
    ev_f[n_ev, HC_D0] = d0
    ev_f[n_ev, HC_D1] = d1
    ev_f[n_ev, HC_NDROP] = drop
    ev_f[n_ev, HC_S1DROP] = s1_drop
    ev_f[n_ev, HC_CONFIRMED] = s2[i, n - 1, 0]
    last_harvest[i] = date
    return n_ev + 1


@njit(cache=True)
def harvest_step(
    P, is_s2, X, t_last, sensors, n_obs, last_harvest, s1, n1, s2, n2, overflow, ev_parcel, ev_f
):
    """Fold one acquisition into the harvest states (S1 and S2 side by side); returns event rows."""
    tv, xv, scratch, _ = _scratch(max(s1.shape[1], s2.shape[1]) + 2)
    n_ev = 0
    for i in range(X.shape[0]):
        value = _fold_in(i, is_s2, X, t_last, sensors, n_obs)
        if np.isnan(value):
            continue
        t = X[i, X_T]
        horizon = t - P[H_BUFFER_DAYS]
        if is_s2:
            b11, b12 = X[i, X_B11], X[i, X_B12]
            nd = (
                (b11 - b12) / (b11 + b12)
                if np.isfinite(b11) and np.isfinite(b12) and b11 + b12 > 0
                else np.nan
            )
            _append(s2, n2, i, horizon, overflow, t, value, nd)
            if P[H_USE_S2] > 0 and not (t - last_harvest[i] < P[H_MIN_SEPARATION_DAYS]):
                n_ev = _harvest_s2(P, i, s2, n2, s1, n1, last_harvest, ev_parcel, ev_f, n_ev)
            continue
        db = 10.0 * math.log10(value)
        if P[H_USE_REF] > 0 and np.isfinite(X[i, X_VH_REF]):
            db -= X[i, X_VH_REF]
        _append(s1, n1, i, horizon, overflow, t, db, 0.0)
        if P[H_USE_S1] <= 0 or t - last_harvest[i] < P[H_MIN_SEPARATION_DAYS]:
            continue
        n_ev = _harvest_s1(P, i, s1, n1[i], last_harvest, ev_parcel, ev_f, n_ev, tv, xv, scratch)
    return n_ev
