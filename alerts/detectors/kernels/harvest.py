"""The harvest kernels: the S1 rules, and the S1 + S2 rules (``HarvestParams.use_s2``)."""

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
    day_of_year,
    window_step,
)

# -- harvest ----------------------------------------------------------------------------------------

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
) = range(12)
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
)
HARVEST_SENSOR_S1, HARVEST_SENSOR_S2 = 0, 1
HC_PRE, HC_POST, HC_DROP, HC_K = 5, 6, 7, 8
HARVEST_EVENT_COLS = 9


@njit(cache=True)
def _harvest_accept(P, i, date, last_harvest):
    """The season and separation test of a harvest dated ``date`` (``H_*`` indices are the first of
    both harvest parameter vectors)."""
    doy = day_of_year(date)
    return P[H_DOY_LO] <= doy <= P[H_DOY_HI] and not (date - last_harvest[i] < P[H_MIN_SEPARATION_DAYS])


@njit(cache=True)
def _harvest_window(
    P, i, buf, n, min_drop, margin, scale, sensor, last_harvest, ev_parcel, ev_f, n_ev, tv, xv, scratch
):
    """``find_step`` on parcel i's buffer and its event (``HarvestDetector``'s step rule)."""
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
        min_drop,
        margin,
        True,
        scratch,
    )
    if k < 0:
        return n_ev
    date = 0.5 * (tv[k - 1] + tv[k])
    if not _harvest_accept(P, i, date, last_harvest):
        return n_ev
    conf = 1.0 - math.exp(-1.5 * drop / scale)  # in [0, 1): drop >= min_drop > 0
    _emit(ev_parcel, ev_f, n_ev, i, date, tv[k - 1], tv[k], min(max(conf, 0.0), 1.0), sensor)
    ev_f[n_ev, HC_PRE] = pre
    ev_f[n_ev, HC_POST] = post
    ev_f[n_ev, HC_DROP] = drop
    ev_f[n_ev, HC_K] = k
    last_harvest[i] = date
    return n_ev + 1


@njit(cache=True)
def harvest_step(
    P, is_s2, X, t_last, sensors, n_obs, last_harvest, s1, n1, s2, n2, overflow, ev_parcel, ev_f
):
    """Fold one acquisition into the harvest states; returns the number of event rows."""
    cap = max(s1.shape[1], s2.shape[1]) + 2
    tv = np.empty(cap)
    xv = np.empty(cap)
    scratch = np.empty(cap)
    n_ev = 0
    for i in range(X.shape[0]):
        value = _fold_in(i, is_s2, X, t_last, sensors, n_obs)
        if np.isnan(value):
            continue
        t = X[i, X_T]
        horizon = t - P[H_BUFFER_DAYS]
        if is_s2:
            _append(s2, n2, i, horizon, overflow, t, value, 0.0)
        else:
            db = 10.0 * math.log10(value)
            if P[H_USE_REF] > 0 and np.isfinite(X[i, X_VH_REF]):
                db -= X[i, X_VH_REF]
            _append(s1, n1, i, horizon, overflow, t, db, 0.0)
        if t - last_harvest[i] < P[H_MIN_SEPARATION_DAYS]:
            continue
        if n1[i] > 0:  # S1 decides once the parcel has S1; S2 only for S2-only parcels
            if not is_s2:
                n_ev = _harvest_window(
                    P, i, s1, n1[i], P[H_MIN_DROP_DB], P[H_PERSIST_MARGIN_DB], P[H_MIN_DROP_DB],
                    HARVEST_SENSOR_S1, last_harvest, ev_parcel, ev_f, n_ev, tv, xv, scratch,
                )  # fmt: skip
        else:
            n_ev = _harvest_window(
                P, i, s2, n2[i], P[H_MIN_DROP_NDVI], 0.5 * P[H_MIN_DROP_NDVI], P[H_MIN_DROP_NDVI],
                HARVEST_SENSOR_S2, last_harvest, ev_parcel, ev_f, n_ev, tv, xv, scratch,
            )  # fmt: skip
    return n_ev


# -- harvest, S1 and S2 side by side (the rules of alerts/detectors/harvest.py with ``use_s2``) ---------

(
    H2_BEFORE_DAYS,
    H2_AFTER_DAYS,
    H2_MIN_BEFORE,
    H2_MIN_AFTER,
    H2_MIN_DROP_DB,
    H2_PERSIST_MARGIN_DB,
    H2_MIN_DROP_NDVI,
    H2_DOY_LO,
    H2_DOY_HI,
    H2_MIN_SEPARATION_DAYS,
    H2_BUFFER_DAYS,
    H2_USE_REF,
    H2_USE_S2,
    H2_USE_S1,
    H2_S2_MAX_GAP_DAYS,
    H2_GREEN_NDVI,
    H2_GREEN_MIN_DROP_NDTI,
    H2_MIN_DROP_NDTI,
    H2_BARE_NDTI,
    H2_CONFIRM_MARGIN_NDTI,
) = range(20)
HARVEST2_PARAM_NAMES = (
    *HARVEST_PARAM_NAMES,
    "use_s2",
    "use_s1",
    "s2_max_gap_days",
    "green_ndvi",
    "green_min_drop_ndti",
    "min_drop_ndti",
    "bare_ndti",
    "confirm_margin_ndti",
)
HARVEST_SENSOR_S2S1 = 2
# S2 rows: kind (0 green, 1 dry), NDVI before/after, NDTI before/after, drop, S1 drop, confirming day
H2_KIND, H2_N0, H2_N1, H2_D0, H2_D1, H2_DROP, H2_S1DROP, H2_CONFIRMED = range(5, 13)
HARVEST2_EVENT_COLS = 13


@njit(cache=True)
def _harvest2_s2(P, i, s2, n2, s1, n1, last_harvest, ev_parcel, ev_f, n_ev):
    """``s2_harvest`` on the three newest clear views, ``s1_date`` and the S2 event."""
    n = n2[i]
    if n < 3:
        return n_ev
    t0, n0, d0 = s2[i, n - 3, 0], s2[i, n - 3, 1], s2[i, n - 3, 2]
    t1, nv1, d1 = s2[i, n - 2, 0], s2[i, n - 2, 1], s2[i, n - 2, 2]
    nv2, d2 = s2[i, n - 1, 1], s2[i, n - 1, 2]
    if t1 - t0 > P[H2_S2_MAX_GAP_DAYS]:
        return n_ev
    if not (np.isfinite(n0) and np.isfinite(nv1) and np.isfinite(nv2)):
        return n_ev
    if not (np.isfinite(d0) and np.isfinite(d1) and np.isfinite(d2)):
        return n_ev
    if n0 >= P[H2_GREEN_NDVI]:
        kind = 0
        ok = (
            n0 - nv1 >= P[H2_MIN_DROP_NDVI]
            and d0 - d1 >= P[H2_GREEN_MIN_DROP_NDTI]
            and nv1 < P[H2_GREEN_NDVI]
        )
        ok = ok and d1 <= P[H2_BARE_NDTI]
        drop, scale = n0 - nv1, P[H2_MIN_DROP_NDVI]
    else:
        kind = 1
        ok = d0 - d1 >= P[H2_MIN_DROP_NDTI] and d1 <= P[H2_BARE_NDTI]
        drop, scale = d0 - d1, P[H2_MIN_DROP_NDTI]
    if not ok or d2 > d1 + P[H2_CONFIRM_MARGIN_NDTI] or nv2 > nv1 + P[H2_MIN_DROP_NDVI] / 2:
        return n_ev
    date = 0.5 * (t0 + t1)
    sensor = HARVEST_SENSOR_S2
    conf = 0.9 * (1.0 - math.exp(-1.5 * drop / scale))
    s1_day = np.nan
    s1_drop = 0.0
    if P[H2_USE_S1] > 0:  # s1_date: the largest VH drop between consecutive S1 views inside (t0, t1]
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
        conf = 1.0 - (1.0 - conf) * (1.0 - min(0.9, max(0.0, s1_drop / (2 * P[H2_MIN_DROP_DB]))))
    if not _harvest_accept(P, i, date, last_harvest):
        return n_ev
    _emit(ev_parcel, ev_f, n_ev, i, date, t0, t1, min(max(conf, 0.0), 1.0), sensor)
    ev_f[n_ev, H2_KIND] = kind
    ev_f[n_ev, H2_N0] = n0
    ev_f[n_ev, H2_N1] = nv1
    ev_f[n_ev, H2_D0] = d0
    ev_f[n_ev, H2_D1] = d1
    ev_f[n_ev, H2_DROP] = drop
    ev_f[n_ev, H2_S1DROP] = s1_drop
    ev_f[n_ev, H2_CONFIRMED] = s2[i, n - 1, 0]
    last_harvest[i] = date
    return n_ev + 1


@njit(cache=True)
def harvest_step_s2(
    P, is_s2, X, t_last, sensors, n_obs, last_harvest, s1, n1, s2, n2, overflow, ev_parcel, ev_f
):
    """Fold one acquisition into the harvest states (S1 and S2 side by side); returns event rows."""
    cap = max(s1.shape[1], s2.shape[1]) + 2
    tv = np.empty(cap)
    xv = np.empty(cap)
    scratch = np.empty(cap)
    n_ev = 0
    for i in range(X.shape[0]):
        value = _fold_in(i, is_s2, X, t_last, sensors, n_obs)
        if np.isnan(value):
            continue
        t = X[i, X_T]
        horizon = t - P[H2_BUFFER_DAYS]
        if is_s2:
            b11, b12 = X[i, X_B11], X[i, X_B12]
            nd = (
                (b11 - b12) / (b11 + b12)
                if np.isfinite(b11) and np.isfinite(b12) and b11 + b12 > 0
                else np.nan
            )
            _append(s2, n2, i, horizon, overflow, t, value, nd)
            if P[H2_USE_S2] > 0 and not (t - last_harvest[i] < P[H2_MIN_SEPARATION_DAYS]):
                n_ev = _harvest2_s2(P, i, s2, n2, s1, n1, last_harvest, ev_parcel, ev_f, n_ev)
            continue
        db = 10.0 * math.log10(value)
        if P[H2_USE_REF] > 0 and np.isfinite(X[i, X_VH_REF]):
            db -= X[i, X_VH_REF]
        _append(s1, n1, i, horizon, overflow, t, db, 0.0)
        if P[H2_USE_S1] <= 0 or t - last_harvest[i] < P[H2_MIN_SEPARATION_DAYS]:
            continue
        n_ev = _harvest_window(
            P, i, s1, n1[i], P[H2_MIN_DROP_DB], P[H2_PERSIST_MARGIN_DB], P[H2_MIN_DROP_DB],
            HARVEST_SENSOR_S1, last_harvest, ev_parcel, ev_f, n_ev, tv, xv, scratch,
        )  # fmt: skip
    return n_ev
