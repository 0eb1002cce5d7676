"""Numba kernels: the mowing, harvest and parcel solar rules stepped over all parcels of a tile.

Each kernel folds ONE acquisition (one sensor, one time per parcel, NaN = no row for that parcel)
into state arrays that hold every parcel of a tile, in place, and writes the events it confirms
into an event table (one row per event: parcel index, then the detector's numeric fields). The
Python side (``alerts.detectors.batch``) builds ``Event`` objects only for those rows.

The plain reference is the per-parcel Python code (``BaseDetector.update`` and each detector's
``_step``); ``tests/alerts/test_batch_kernels.py`` holds every kernel equal to it, event for event
and state for state. To make that equality exact rather than approximate, the kernels reproduce the
reference's arithmetic: means are summed in numpy's pairwise order (``_np_sum``), medians are the
middle of a sorted copy (the mean of the two middle values for even counts, as ``np.median``), and
logarithms/exponentials call the same libm functions as ``math``.

State layout (per detector, all parcels of a tile): scalar fields as ``[N]`` arrays; each series
buffer as ``[N, CAP, C]`` (column 0 the time in days since 1970, oldest first) with its fill count
``[N]``. Buffers are pruned to the detector's horizon at every append as the reference prunes its
tuples; when a buffer is full the oldest entry is dropped and the parcel's ``overflow`` counter
counts it (the capacities are sized for the densest real revisit; see ``batch.CAPACITY``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# watermark: sensors already folded in at t_last, as bits
BIT_S2 = 1
BIT_S1 = 2

# -- shared helpers ---------------------------------------------------------------------------------


@njit(cache=True)
def _np_sum_block(a, lo, n):
    """numpy's pairwise sum of a[lo:lo+n] for n <= 128 (8 accumulators, then the rest)."""
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[lo + i]
        return res
    r0 = a[lo]
    r1 = a[lo + 1]
    r2 = a[lo + 2]
    r3 = a[lo + 3]
    r4 = a[lo + 4]
    r5 = a[lo + 5]
    r6 = a[lo + 6]
    r7 = a[lo + 7]
    i = 8
    while i < n - (n % 8):
        r0 += a[lo + i]
        r1 += a[lo + i + 1]
        r2 += a[lo + i + 2]
        r3 += a[lo + i + 3]
        r4 += a[lo + i + 4]
        r5 += a[lo + i + 5]
        r6 += a[lo + i + 6]
        r7 += a[lo + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@njit(cache=True)
def _half(n):
    n2 = n // 2
    return n2 - n2 % 8


@njit(cache=True)
def _np_sum_l1(a, lo, n):  # n <= 142: halves are blocks
    if n <= 128:
        return _np_sum_block(a, lo, n)
    h = _half(n)
    return _np_sum_block(a, lo, h) + _np_sum_block(a, lo + h, n - h)


@njit(cache=True)
def _np_sum_l2(a, lo, n):  # n <= 268
    if n <= 128:
        return _np_sum_block(a, lo, n)
    h = _half(n)
    return _np_sum_l1(a, lo, h) + _np_sum_l1(a, lo + h, n - h)


@njit(cache=True)
def _np_sum_l3(a, lo, n):  # n <= 520
    if n <= 128:
        return _np_sum_block(a, lo, n)
    h = _half(n)
    return _np_sum_l2(a, lo, h) + _np_sum_l2(a, lo + h, n - h)


@njit(cache=True)
def _np_sum(a, lo, n):
    """Sum of a[lo:lo+n] in numpy's pairwise order (``np.add.reduce`` on a contiguous float64
    array: blocks of at most 128 summed by 8 accumulators, larger ranges halved at a multiple of 8),
    for n <= 1024 (buffer capacities are checked against ``MAX_CAPACITY``). The halving is unrolled
    into four levels rather than recursive: numba's on-disk cache mishandles recursive functions."""
    if n <= 128:
        return _np_sum_block(a, lo, n)
    h = _half(n)
    return _np_sum_l3(a, lo, h) + _np_sum_l3(a, lo + h, n - h)


MAX_CAPACITY = 1024


@njit(cache=True)
def _mean(a, n):
    """``np.mean`` of a[:n] (n > 0)."""
    return _np_sum(a, 0, n) / n


@njit(cache=True)
def _median(a, n):
    """``np.median`` of a[:n] (n > 0); sorts a[:n] in place."""
    a[:n].sort()
    h = n // 2
    if n % 2 == 1:
        return a[h]
    return (a[h - 1] + a[h]) / 2.0


@njit(cache=True)
def _days_from_civil(y, m, d):
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    mp = m + 9 if m <= 2 else m - 3
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@njit(cache=True)
def day_of_year(days):
    """``alerts.series.day_of_year``: the UTC day of year of float days since 1970, rounded to the
    second half-to-even as ``round()`` does."""
    z = int(np.floor(np.rint(days * 86400.0) / 86400.0)) + 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy_mar = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy_mar + 2) // 153
    m = mp + 3 if mp < 10 else mp - 9
    if m <= 2:
        y += 1
    return z - 719468 - _days_from_civil(y, 1, 1) + 1


@njit(cache=True)
def _watermark(i, t, bit, t_last, sensors):
    """The base workflow's watermark: False for a duplicate re-delivery (skipped), else moves it."""
    if t == t_last[i]:
        if sensors[i] & bit:
            return False
        sensors[i] |= bit
    else:
        sensors[i] = bit
    t_last[i] = t
    return True


@njit(cache=True)
def _prune(buf, cnt, i, horizon):
    """Drop the leading entries of parcel i's buffer older than ``horizon`` (column 0: time)."""
    n = cnt[i]
    k = 0
    while k < n and buf[i, k, 0] < horizon:
        k += 1
    if k > 0:
        for j in range(n - k):
            for c in range(buf.shape[2]):
                buf[i, j, c] = buf[i, j + k, c]
        cnt[i] = n - k


@njit(cache=True)
def _slot(buf, cnt, i, overflow):
    """Index of a new last entry of parcel i's buffer (the oldest dropped when full)."""
    n = cnt[i]
    cap = buf.shape[1]
    if n == cap:
        for j in range(cap - 1):
            for c in range(buf.shape[2]):
                buf[i, j, c] = buf[i, j + 1, c]
        overflow[i] += 1
        return cap - 1
    cnt[i] = n + 1
    return n


@njit(cache=True)
def _ndvi(red, nir, clear):
    """``Observation.ndvi`` of a clear S2 view (NaN otherwise)."""
    if not (clear >= 0.5):  # NaN (unknown) is not clear
        return np.nan
    if not (np.isfinite(red) and np.isfinite(nir)) or red + nir <= 0:
        return np.nan
    return (nir - red) / (nir + red)


# per-acquisition inputs: one [M, X_COLS] float64 array (batch.gather_inputs), in this column order
X_T, X_RED, X_NIR, X_CLEAR, X_VV, X_VH, X_ORBIT, X_VH_REF, X_VV_REF, X_B11, X_B12 = range(11)
X_COLS = 11


@njit(cache=True)
def _fold_in(i, is_s2, X, t_last, sensors, n_obs):
    """The base workflow (``BaseDetector.update``) for parcel i: NaN when there is nothing to fold
    in (no row, a re-delivery, an unusable view: cloudy S2, no VH), else the value — NDVI for S2, VH
    (linear) for S1 — with the watermark moved and the count of valid views raised."""
    t = X[i, X_T]
    if np.isnan(t):
        return np.nan
    if is_s2:
        value = _ndvi(X[i, X_RED], X[i, X_NIR], X[i, X_CLEAR])
    else:
        vh = X[i, X_VH]
        value = vh if vh > 0 and np.isfinite(vh) else np.nan
    if not _watermark(i, t, BIT_S2 if is_s2 else BIT_S1, t_last, sensors) or np.isnan(value):
        return np.nan
    n_obs[i] += 1
    return value


@njit(cache=True)
def _append(buf, cnt, i, horizon, overflow, t, a, b):
    """Prune parcel i's buffer to ``horizon`` and append (t, a[, b]) (b ignored for 2 columns)."""
    _prune(buf, cnt, i, horizon)
    j = _slot(buf, cnt, i, overflow)
    buf[i, j, 0] = t
    buf[i, j, 1] = a
    if buf.shape[2] > 2:
        buf[i, j, 2] = b


@njit(cache=True)
def _emit(ev_parcel, ev_f, r, i, date, w0, w1, conf, code):
    """Write the common columns of event row r (parcel i)."""
    ev_parcel[r] = i
    ev_f[r, E_DATE] = date
    ev_f[r, E_W0] = w0
    ev_f[r, E_W1] = w1
    ev_f[r, E_CONF] = conf
    ev_f[r, E_SENSOR] = code


@njit(cache=True)
def step_down(t, v, n_views, lo, hi, min_drop, n, first):
    """The solar detector's step-down finder (``alerts.detectors.steps.step_down_midpoint``) on
    t[:n_views], v[:n_views]; NaN when none."""
    best = np.nan
    for k in range(n, n_views - n + 1):
        if not (lo < t[k] <= hi):
            continue
        s_a = 0.0
        c_a = 0
        s_b = 0.0
        c_b = 0
        for j in range(k - n, k):
            if not np.isnan(v[j]):
                s_a += v[j]
                c_a += 1
        for j in range(k, k + n):
            if not np.isnan(v[j]):
                s_b += v[j]
                c_b += 1
        drop = s_a / c_a - s_b / c_b if c_a > 0 and c_b > 0 else np.nan
        if drop >= min_drop:
            best = 0.5 * (t[k - 1] + t[k])
            if first:
                break
    return best


@njit(cache=True)
def window_step(
    t, v, n, before_days, after_days, min_before, min_after, min_drop, margin, best_only, scratch
):
    """The windowed step-down finder (``alerts.detectors.steps.find_window_step``) on t[:n], v[:n].

    Returns (k, drop, mean_before, mean_after); k = -1 when none. ``best_only``: the largest drop
    among the newly complete splits (harvest), else the first one (mowing's S1 step)."""
    bk = -1
    bdrop = 0.0
    bpre = 0.0
    bpost = 0.0
    for k in range(1, n):
        if n > 1 and t[k] + after_days <= t[n - 2]:
            continue
        if not best_only and t[n - 1] < t[k] + after_days:
            break
        n_pre = 0
        for j in range(n):
            if t[j] >= t[k] - before_days and t[j] < t[k]:
                scratch[n_pre] = v[j]
                n_pre += 1
        if n_pre < min_before:
            continue
        m_pre = _mean(scratch, n_pre)
        n_post = 0
        vmax = -np.inf
        for j in range(n):
            if t[j] >= t[k] and t[j] <= t[k] + after_days:
                scratch[n_post] = v[j]
                n_post += 1
                if v[j] > vmax:
                    vmax = v[j]
        if n_post < min_after:
            continue
        if t[n - 1] < t[k] + after_days:
            continue
        m_post = _mean(scratch, n_post)
        drop = m_pre - m_post
        if drop < min_drop or vmax > m_pre - margin or v[k - 1] < m_pre - margin:
            continue
        if not best_only:
            return k, drop, m_pre, m_post
        if bk < 0 or drop > bdrop:
            bk, bdrop, bpre, bpost = k, drop, m_pre, m_post
    return bk, bdrop, bpre, bpost


# -- mowing -----------------------------------------------------------------------------------------

# MowingParams packed into a float64 vector (batch.mowing_param_vector), in this order
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
# event rows: columns of ev_f
E_DATE, E_W0, E_W1, E_CONF, E_SENSOR = range(5)
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
    n_orb = 0
    for j in range(n):
        o = s1n[i, j, 2]
        seen = False
        for q in range(n_orb):
            if orbits[q] == o:
                seen = True
                break
        if seen:
            continue
        orbits[n_orb] = o
        n_orb += 1
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
    cap = max(s2.shape[1], s1.shape[1], s1n.shape[1]) + 2
    tk = np.empty(cap)
    vk = np.empty(cap)
    scratch = np.empty(cap)
    orbits = np.empty(cap)
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
    n_orb = 0
    for j in range(n):
        o = s1a[i, j, 2]
        seen = False
        for q in range(n_orb):
            if orbits[q] == o:
                seen = True
                break
        if seen:
            continue
        orbits[n_orb] = o
        n_orb += 1
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
    cap = max(s1.shape[1], s2.shape[1], s1a.shape[1]) + 2
    tv = np.empty(cap)
    xv = np.empty(cap)
    scratch = np.empty(cap)
    orbits = np.empty(cap)
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
