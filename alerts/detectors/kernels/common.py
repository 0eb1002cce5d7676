"""Shared numba helpers of the detector kernels: numpy-exact sums and medians, the day of year, the
watermark and fold-in of the base workflow, per-parcel buffers, event rows and the step finders.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# watermark: sensors already folded in at t_last, as bits
BIT_S2 = 1
BIT_S1 = 2

# event rows: columns of ev_f
E_DATE, E_W0, E_W1, E_CONF, E_SENSOR = range(5)


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
    """``ParcelAcquisition.ndvi`` of a clear S2 view (NaN otherwise): ``contracts.indices.ndvi``, its guard
    and arithmetic, in numba."""
    if not (clear >= 0.5):  # NaN (unknown) is not clear
        return np.nan
    if not (np.isfinite(red) and np.isfinite(nir)) or red < 0 or nir < 0 or red + nir <= 0:
        return np.nan
    return (nir - red) / (nir + red)


# per-acquisition inputs: one [M, X_COLS] float64 array (batch_kernels.gather_inputs), in this column order
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
def _distinct_orbits(buf, i, n, orbits):
    """The distinct orbits (column 2) of parcel i's first ``n`` buffer entries, written to
    ``orbits`` in first-seen order; returns how many (the reference's ``np.unique`` order does not
    matter: orbits are disjoint, each one's median is removed from its own views only)."""
    n_orb = 0
    for j in range(n):
        o = buf[i, j, 2]
        seen = False
        for q in range(n_orb):
            if orbits[q] == o:
                seen = True
                break
        if not seen:
            orbits[n_orb] = o
            n_orb += 1
    return n_orb


@njit(cache=True)
def _scratch(cap):
    """Four work vectors of ``cap`` entries (a parcel's buffer copied out of its state: times,
    values, a sort scratch, orbits), allocated once per acquisition, not per parcel."""
    return np.empty(cap), np.empty(cap), np.empty(cap), np.empty(cap)


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
