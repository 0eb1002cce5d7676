"""The mowing kernel (``alerts.detectors.mowing`` rules: S2 cuts, S1 cloudy spells)."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from alerts.detectors.kernels.common import (
    X_ORBIT,
    X_T,
    X_VH_REF,
    _append,
    _distinct_orbits,
    _emit,
    _fold_in,
    _median,
    _scratch,
    day_of_year,
    window_step,
)

# -- mowing -----------------------------------------------------------------------------------------

# MowingParams packed into a float64 vector (batch_kernels.MowingKernel.param_vector), in this order
(
    M_MIN_DROP,
    M_ABRUPT_DROP,
    M_ABRUPT_DAYS,
    M_MIN_REL_DROP,
    M_MIN_GREEN,
    M_ENVELOPE_DAYS,
    M_SPIKE_DROP,
    M_SPIKE_RECOVER,
    M_SPIKE_DAYS,
    M_PERSIST_DAYS,
    M_REGROWTH,
    M_REGROWTH_DAYS,
    M_MIN_SEPARATION_DAYS,
    M_DATE_FRACTION,
    M_USE_S1,
    M_S1_DATING,
    M_S1_GAP_DAYS,
    M_S1_MIN_DROP_DB,
    M_S1_SPELLS,
    M_S1_BEFORE_DAYS,
    M_S1_AFTER_DAYS,
    M_S1_STEP_DB,
    M_S1_BLIND_DAYS,
    M_MIN_CONFIDENCE,
    M_DOY_LO,
    M_DOY_HI,
    M_BUFFER_DAYS,
) = range(27)
MOWING_PARAM_NAMES = (
    "min_drop",
    "abrupt_drop",
    "abrupt_days",
    "min_rel_drop",
    "min_green",
    "envelope_days",
    "spike_drop",
    "spike_recover",
    "spike_days",
    "persist_days",
    "regrowth",
    "regrowth_days",
    "min_separation_days",
    "date_fraction",
    "use_s1",
    "s1_dating",
    "s1_gap_days",
    "s1_min_drop_db",
    "s1_spells",
    "s1_before_days",
    "s1_after_days",
    "s1_step_db",
    "s1_blind_days",
    "min_confidence",
    "season_doy[0]",
    "season_doy[1]",
    "buffer_days",
)
MOW_SENSOR_S2, MOW_SENSOR_S2S1, MOW_SENSOR_S1 = 0, 1, 2
# S2 cut: envelope, before, after, next, drop, s1 drop, excerpt length, excerpt (day, ndvi) × 6
MC_ENV, MC_BEFORE, MC_AFTER, MC_NEXT, MC_DROP, MC_S1DROP, MC_NEX, MC_EX = range(5, 13)
MOW_EXCERPT = 6
MOW_EVENT_COLS = MC_EX + 2 * MOW_EXCERPT
# S1 spell: mean before, mean after, drop
MS_PRE, MS_POST, MS_DROP = 5, 6, 7


@njit(cache=True)
def _s1_locate(s1, i, n1, lo, hi):
    """``mowing.s1_locate`` on parcel i's S1 buffer (day, dB, orbit)."""
    best_day = np.nan
    best_drop = 0.0
    for j in range(n1):
        day = s1[i, j, 0]
        if day > hi:
            break
        if day > lo:
            orbit = s1[i, j, 2]
            for b in range(j - 1, -1, -1):  # the last earlier view of the same orbit
                if s1[i, b, 2] == orbit:
                    if day - s1[i, b, 0] <= 13.0:
                        drop = s1[i, b, 1] - s1[i, j, 1]
                        if drop > best_drop:
                            best_day = 0.5 * (day + s1[i, b, 0])
                            best_drop = drop
                    break
    return best_day, best_drop


@njit(cache=True)
def _mowing_s2(P, i, s2, n2, s1, n1, last_cut, ev_parcel, ev_f, n_ev, tk, vk):
    """The S2 path: the outlier filter and the newest candidates of ``mowing.scan``, then the
    event filter of ``MowingDetector._step``."""
    n = n2[i]
    if n < 3:
        return n_ev
    # outlier_mask: a view well below its last kept predecessor whose successor is back up
    m = 0
    prev = 0
    tk[0] = s2[i, 0, 0]
    vk[0] = s2[i, 0, 1]
    m = 1
    for k in range(1, n - 1):
        vj = s2[i, prev, 1]
        if (
            s2[i, k, 1] < vj - P[M_SPIKE_DROP]
            and s2[i, k + 1, 1] >= vj - P[M_SPIKE_RECOVER]
            and s2[i, k + 1, 0] - s2[i, k, 0] <= P[M_SPIKE_DAYS]
        ):
            continue
        prev = k
        tk[m] = s2[i, k, 0]
        vk[m] = s2[i, k, 1]
        m += 1
    tk[m] = s2[i, n - 1, 0]
    vk[m] = s2[i, n - 1, 1]
    m += 1
    first = 1 if P[M_REGROWTH] > 0 else max(1, m - 4)
    last = last_cut[i]  # scan's "after"
    has_s1 = P[M_USE_S1] > 0 and n1[i] > 0
    need = min(P[M_MIN_DROP], P[M_ABRUPT_DROP])
    for c in range(first, m - 1):
        if tk[c] - last < P[M_MIN_SEPARATION_DAYS]:
            continue
        env = -np.inf
        any_win = False
        for j in range(m):
            if tk[j] >= tk[c] - P[M_ENVELOPE_DAYS] and tk[j] < tk[c]:
                any_win = True
                if vk[j] > env:
                    env = vk[j]
        if not any_win or env < P[M_MIN_GREEN]:
            continue
        drop = env - vk[c]
        abrupt = tk[c] - tk[c - 1] <= P[M_ABRUPT_DAYS] and vk[c - 1] - vk[c] >= P[M_ABRUPT_DROP]
        if not abrupt and (drop < P[M_MIN_DROP] or drop < P[M_MIN_REL_DROP] * env):
            continue
        if env - vk[c - 1] >= need:
            continue
        nxt = c + 1
        if tk[nxt] - tk[c] <= P[M_PERSIST_DAYS] and env - vk[nxt] < 0.5 * need:
            continue
        vmin = min(vk[c], vk[nxt])
        if P[M_REGROWTH] > 0:
            later_any = False
            later_max = -np.inf
            for j in range(m):
                if tk[j] > tk[c] and tk[j] <= tk[c] + P[M_REGROWTH_DAYS]:
                    later_any = True
                    later_max = max(later_max, vk[j])
            if not (later_any and later_max - vmin >= P[M_REGROWTH]):
                continue
        t_hi = tk[c - 1]
        t_lo = tk[c]
        date = t_hi + P[M_DATE_FRACTION] * (t_lo - t_hi)
        s1_day = np.nan
        s1_drop = 0.0
        if has_s1:
            s1_day, s1_drop = _s1_locate(s1, i, n1[i], t_hi, t_lo)
            if (
                P[M_S1_DATING] > 0
                and t_lo - t_hi > P[M_S1_GAP_DAYS]
                and s1_drop >= P[M_S1_MIN_DROP_DB]
                and np.isfinite(s1_day)
            ):
                date = min(max(s1_day, t_hi), t_lo)
        conf = 1.0 - math.exp(-1.2 * drop / need)
        conf *= 0.85 + 0.15 * min(1.0, max(0.0, env - vk[nxt]) / need)
        if has_s1:
            conf = min(1.0, conf + 0.05 * min(1.0, s1_drop / 3.0))
        conf = min(max(conf, 0.0), 1.0)
        if conf < P[M_MIN_CONFIDENCE]:
            continue
        last = tk[c]  # scan's own separation
        # MowingDetector._step's filter over scan's cuts
        if date - last_cut[i] < P[M_MIN_SEPARATION_DAYS] or last_cut[i] >= t_hi:
            continue
        doy = day_of_year(date)
        if not (P[M_DOY_LO] <= doy <= P[M_DOY_HI]):
            continue
        last_cut[i] = date
        r = n_ev
        _emit(
            ev_parcel,
            ev_f,
            r,
            i,
            date,
            t_hi,
            t_lo,
            conf,
            MOW_SENSOR_S2S1 if np.isfinite(s1_day) else MOW_SENSOR_S2,
        )
        ev_f[r, MC_ENV] = env
        ev_f[r, MC_BEFORE] = vk[c - 1]
        ev_f[r, MC_AFTER] = vk[c]
        ev_f[r, MC_NEXT] = vk[nxt]
        ev_f[r, MC_DROP] = drop
        ev_f[r, MC_S1DROP] = s1_drop
        lo = max(0, c - 3)
        hi = min(m, nxt + 2)
        ev_f[r, MC_NEX] = hi - lo
        for j in range(lo, hi):
            ev_f[r, MC_EX + 2 * (j - lo)] = tk[j]
            ev_f[r, MC_EX + 2 * (j - lo) + 1] = vk[j]
        n_ev += 1
    return n_ev


@njit(cache=True)
def _mowing_s1_spell(P, i, s1n, n1n, s2, n2, last_cut, ev_parcel, ev_f, n_ev, tv, vv, scratch, orbits):
    """``MowingDetector._s1_spell``: a VH step down (regional reference and per-orbit offsets
    removed) while S2 saw nothing clear."""
    n = n1n[i]
    for j in range(n):
        tv[j] = s1n[i, j, 0]
        vv[j] = s1n[i, j, 1]
    # per-orbit median removed (orbits are disjoint, so the order of removal does not matter)
    for oi in range(_distinct_orbits(s1n, i, n, orbits)):
        o = orbits[oi]
        c = 0
        for q in range(n):
            if s1n[i, q, 2] == o:
                scratch[c] = s1n[i, q, 1]
                c += 1
        med = _median(scratch, c)
        for q in range(n):
            if s1n[i, q, 2] == o:
                vv[q] = s1n[i, q, 1] - med
    k, drop, pre, post = window_step(
        tv,
        vv,
        n,
        P[M_S1_BEFORE_DAYS],
        P[M_S1_AFTER_DAYS],
        2,
        2,
        P[M_S1_STEP_DB],
        1.0,
        False,
        scratch,
    )
    if k < 0:
        return n_ev
    t_hi = tv[k - 1]
    t_lo = tv[k]
    date = 0.5 * (t_hi + t_lo)
    if date - last_cut[i] < P[M_MIN_SEPARATION_DAYS]:
        return n_ev
    for j in range(n2[i]):
        if abs(s2[i, j, 0] - date) <= P[M_S1_BLIND_DAYS]:
            return n_ev
    doy = day_of_year(date)
    if not (P[M_DOY_LO] <= doy <= P[M_DOY_HI]):
        return n_ev
    conf = min(0.9, max(0.3, 0.5 + 0.1 * (drop - P[M_S1_STEP_DB])))
    last_cut[i] = date
    r = n_ev
    _emit(ev_parcel, ev_f, r, i, date, t_hi, t_lo, conf, MOW_SENSOR_S1)
    ev_f[r, MS_PRE] = pre
    ev_f[r, MS_POST] = post
    ev_f[r, MS_DROP] = drop
    return n_ev + 1


@njit(cache=True)
def mowing_step(
    P, is_s2, X, t_last, sensors, n_obs, last_cut, s2, n2, s1, n1, s1n, n1n, overflow, ev_parcel, ev_f
):
    """Fold one acquisition into the mowing states of all parcels; returns the number of event rows."""
    tk, vk, scratch, orbits = _scratch(max(s2.shape[1], s1.shape[1], s1n.shape[1]) + 2)
    n_ev = 0
    for i in range(X.shape[0]):
        value = _fold_in(i, is_s2, X, t_last, sensors, n_obs)
        if np.isnan(value):
            continue
        t = X[i, X_T]
        horizon = t - P[M_BUFFER_DAYS]
        if is_s2:
            _append(s2, n2, i, horizon, overflow, t, value, 0.0)
            n_ev = _mowing_s2(P, i, s2, n2, s1, n1, last_cut, ev_parcel, ev_f, n_ev, tk, vk)
            continue
        db = 10.0 * math.log10(value)
        _append(s1, n1, i, horizon, overflow, t, db, X[i, X_ORBIT])
        if P[M_S1_SPELLS] > 0 and np.isfinite(X[i, X_VH_REF]):
            _append(s1n, n1n, i, horizon, overflow, t, db - X[i, X_VH_REF], X[i, X_ORBIT])
            n_ev = _mowing_s1_spell(
                P, i, s1n, n1n, s2, n2, last_cut, ev_parcel, ev_f, n_ev, tk, vk, scratch, orbits
            )
    return n_ev
