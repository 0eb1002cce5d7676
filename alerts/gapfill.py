"""Cloud-gap filling of S2 reflectance per parcel, fused with S1, with an uncertainty.

Model (non-neural, fitted per dataset on the *visible clear* observations only):

1. Seasonal climatology per band ``C_b(doy)``: a Gaussian-kernel mean over day of year of every
   visible clear view of the dataset (``clim_sigma_days``), so a long gap follows the season's
   shape instead of a straight line.
1b. The parcel's own seasonal prior (``parcel_prior_days`` > 0): the kernel mean over day of year of
   the parcel's anomaly in its *other* years (never the year being filled), shrunk towards 0 by
   ``parcel_prior_count`` pseudo-views, added to the climatology; a parcel mown at the same time
   every year keeps that shape through a cloudy spell.
2. Time smoother on the anomaly ``r = y − C_b(doy)``: linear interpolation between the neighbouring
   visible clear views, shrunk towards the parcel's mean anomaly as the gap grows
   (``shrink_days``). With no shrink and a flat climatology this *is* linear interpolation.
2b. Boosted trees (``boost``, default on; ``alerts.gapfill_boost``): inside the observed range, the
   NDVI of step 2 is corrected by a gradient-boosted tree ensemble fitted on the dataset's own clear
   views, each described as a cloudy spell would leave it (itself and the views within 0, 10, 20 or
   30 days hidden: ``BOOST_HIDE_DAYS``) by its neighbourhood (``BOOST_FEATURES``: days to and NDVI
   of the two views on each side, blue and SWIR of the nearest ones as haze and moisture cues, the
   climatology, the parcel's prior, the S1 change). The smoother cannot tell a cut (a step) from a
   noisy neighbour; the trees learn it from the data being filled, with no label but the views
   (on the dev set: 25–30 % below linear interpolation's NDVI MAE with 20 % of clear views hidden,
   against 6–9 % for the smoother; docs/harvest-and-gapfill.md). The bands then come from the
   trees' out-of-fold errors.
3. S1 fusion: a ridge regression, learned on the visible views (leave-one-out residuals of step
   2), maps the change of S1 VH, VV and VH/VV (dB) between the bracketing views and the query time
   to a correction of each band's anomaly, weighted by the gap (no correction at a view).
4. Uncertainty, calibrated on held-out errors rather than assumed Gaussian (with the trees: their
   out-of-fold errors on the training samples, folds by parcel, in place of the residuals below): an error scale
   ``s(d) = a + b·sqrt(d)`` (``d`` days to the nearest visible clear view) is fitted to the
   leave-one-out absolute errors at the visible views; the band that holds 68 % of those errors
   (``uncertainty``, the "1σ" band) and the one that holds 90 % (``interval90``) are their empirical
   quantiles in units of ``s(d)`` (NDVI errors are heavy-tailed: a Gaussian σ from the mean absolute
   error covers ~79 % instead of 68 %).
5. The season's edges: a query after the last (before the first) clear S2 view is filled — not refused
   — when an S1 view lies within ``s1_extrapolate_days`` of it: the edge view's anomaly carried onto the
   seasonal prior, corrected by the S1 change since the edge view (step 3), with its own, wider bands
   calibrated on leave-one-out extrapolations of each parcel's first and last clear views
   (``status = "extrapolated"``). Without S1 that near, only ``max_extrapolate_days`` are filled;
   further out the status is ``out_of_range``.

Output rows carry ``filled=1`` and a ``method``; rows outside a parcel's observed range or for a
parcel with no clear view come back with NaN values and an explicit ``status`` instead of an error.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from alerts import gapfill_boost as gb
from alerts.errors import SeriesError, UnknownParcelError
from alerts.series import S2_BANDS, normalise_observations
from contracts.indices import ndvi

logger = logging.getLogger(__name__)

NB = len(S2_BANDS)
I_RED, I_NIR = S2_BANDS.index("B04"), S2_BANDS.index("B08")
S1_FEATURES = ("dVH", "dVV", "dRATIO")


@dataclass(frozen=True, slots=True)
class GapFillParams:
    clim_sigma_days: float = 12.0
    shrink_days: float = 0.0
    use_s1: bool = True
    use_climatology: bool = True
    s1_window_days: float = 7.0
    ridge: float = 10.0
    max_extrapolate_days: float = 0.0
    s1_extrapolate_days: float = 12.0
    parcel_prior_days: float = 20.0  # the parcel's own seasonal anomaly from its other years (kernel σ; 0: off)
    parcel_prior_count: float = 3.0  # pseudo-views shrinking that prior towards 0 where the years are few
    horizon_calibration: bool = True  # the bands' quantiles per horizon (days to the nearest view)
    boost: bool = True  # a boosted tree ensemble corrects the smoother's NDVI inside the observed range

    def __post_init__(self) -> None:
        if self.clim_sigma_days <= 0:
            raise ValueError("GapFillParams.clim_sigma_days must be > 0")
        if self.shrink_days < 0 or self.ridge < 0 or self.s1_window_days <= 0:
            raise ValueError("GapFillParams: shrink_days, ridge >= 0 and s1_window_days > 0 required")


@dataclass(frozen=True, slots=True)
class GapFillModel:
    """Fitted per dataset. ``clim``: (366, bands) climatology by day of year (index doy-1);
    ``s1_coef``: (features + 1, bands) ridge coefficients (last row: intercept);
    ``sigma``: (a, b) of the NDVI error scale ``s(d) = a + b·sqrt(days to nearest view)``;
    ``k68``/``k90``: the 68 % and 90 % quantiles of |error|/s(d) inside the observed range,
    ``k68_edge``/``k90_edge``: the same for extrapolations beyond the first/last clear view."""

    params: GapFillParams
    clim: np.ndarray
    s1_coef: np.ndarray | None
    sigma: tuple[float, float]
    n_fit: int = 0
    info: dict = field(default_factory=dict, compare=False)
    k68: float = 1.0
    k90: float = 1.645
    k68_edge: float = 1.0
    k90_edge: float = 1.645
    # per-horizon quantiles inside the observed range: (lower edge in days to the nearest view, k68, k90)
    # per bin of HORIZON_EDGES_DAYS; empty: k68/k90 at every horizon
    k_horizon: tuple[tuple[float, float, float], ...] = ()
    # the boosted residual of NDVI inside the observed range (``alerts.gapfill_boost.TreeArrays`` as
    # arrays, so that a fit is stored without pickle); None: the smoother alone
    boost_nodes: np.ndarray | None = None
    boost_roots: np.ndarray | None = None
    boost_baseline: float = 0.0


def _doy(days: np.ndarray) -> np.ndarray:
    ts = pd.to_datetime(np.asarray(days) * 86400.0, unit="s")
    return np.asarray(ts.dayofyear, dtype=int)


def _values(df: pd.DataFrame) -> np.ndarray:
    """(n, bands + 1): the ten reflectances and NDVI (the last column), filled as one more channel."""
    x = df[list(S2_BANDS)].to_numpy(float)
    return np.c_[x, _ndvi(x)]


def _clear_s2(df: pd.DataFrame) -> pd.DataFrame:
    ok = (df["sensor"] == "S2") & (df["clear"] >= 0.5)
    ok &= np.isfinite(df["B04"]) & np.isfinite(df["B08"])
    return df[ok]


def climatology(days: np.ndarray, values: np.ndarray, sigma: float) -> np.ndarray:
    """(366, bands) Gaussian-kernel mean by day of year (circular), NaN-aware per band."""
    doy = _doy(days) - 1
    grid = np.arange(366)
    d = np.abs(grid[:, None] - doy[None, :])
    d = np.minimum(d, 366 - d)
    w = np.exp(-0.5 * (d / sigma) ** 2)  # (366, n)
    out = np.empty((366, values.shape[1]))
    for b in range(values.shape[1]):
        ok = np.isfinite(values[:, b])
        ws = w[:, ok].sum(1)
        out[:, b] = (w[:, ok] @ values[ok, b]) / np.where(ws > 0, ws, 1.0)
        out[ws <= 0, b] = np.nan
    return out


def _interp_anomaly(
    t_vis: np.ndarray, r_vis: np.ndarray, tq: np.ndarray, shrink_days: float
) -> tuple[np.ndarray, np.ndarray]:
    """Anomaly at ``tq`` (linear between neighbours, shrunk to the mean with the gap) and the gap weight.

    Returns (anomaly (nq, bands), weight (nq,)) where weight = position inside the gap, 0 at a view,
    up to 1 in the middle of a long gap (``min(d_prev, d_next) / 15 days``, capped at 1)."""
    j = np.searchsorted(t_vis, tq, side="left")
    j0 = np.clip(j - 1, 0, len(t_vis) - 1)
    j1 = np.clip(j, 0, len(t_vis) - 1)
    exact = (j < len(t_vis)) & (t_vis[j1] == tq)
    j0 = np.where(exact, j1, j0)
    t0, t1 = t_vis[j0], t_vis[j1]
    span = np.where(t1 > t0, t1 - t0, 1.0)
    a = np.where(t1 > t0, (tq - t0) / span, 0.0)[:, None]
    r = (1 - a) * r_vis[j0] + a * r_vis[j1]
    dist = np.minimum(np.abs(tq - t0), np.abs(t1 - tq))
    if shrink_days > 0:
        keep = np.exp(-dist / shrink_days)[:, None]
        r = keep * r + (1 - keep) * np.nanmean(r_vis, axis=0)[None, :]
    weight = np.clip(dist / 15.0, 0.0, 1.0)
    return r, weight


def parcel_prior(t_vis: np.ndarray, r_vis: np.ndarray, tq: np.ndarray, p: GapFillParams) -> np.ndarray:
    """(nq, bands) the parcel's seasonal anomaly at ``tq`` from its views of *other* years: a
    Gaussian-kernel mean over day of year (σ ``parcel_prior_days``), shrunk towards 0 by
    ``parcel_prior_count`` pseudo-views (a parcel mown early every year keeps that shape in a gap)."""
    r = np.where(np.isfinite(r_vis), r_vis, 0.0)
    years_v = pd.to_datetime(t_vis * 86400.0, unit="s").year.to_numpy()
    years_q = pd.to_datetime(np.asarray(tq) * 86400.0, unit="s").year.to_numpy()
    d = np.abs(_doy(tq)[:, None] - _doy(t_vis)[None, :]).astype(float)
    d = np.minimum(d, 366 - d)
    w = np.exp(-0.5 * (d / p.parcel_prior_days) ** 2) * (years_q[:, None] != years_v[None, :])
    return (w @ r) / (w.sum(1, keepdims=True) + p.parcel_prior_count)


def _s1_db(s1: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ok = np.isfinite(s1["VH"]) & (s1["VH"] > 0) & np.isfinite(s1["VV"]) & (s1["VV"] > 0)
    s1 = s1[ok]
    vh = 10 * np.log10(s1["VH"].to_numpy(float))
    vv = 10 * np.log10(s1["VV"].to_numpy(float))
    return s1["days"].to_numpy(float), vh, vv


def _s1_at(t1: np.ndarray, vh: np.ndarray, vv: np.ndarray, tq: np.ndarray, window: float) -> np.ndarray:
    """(nq, 3) mean VH, VV, VH−VV (dB) of the S1 views within ``window`` days of each time (NaN if none)."""
    out = np.full((len(tq), 3), np.nan)
    if len(t1) == 0:
        return out
    d = np.abs(tq[:, None] - t1[None, :])
    w = (d <= window).astype(float)
    n = w.sum(1)
    ok = n > 0
    out[ok, 0] = (w[ok] @ vh) / n[ok]
    out[ok, 1] = (w[ok] @ vv) / n[ok]
    out[ok, 2] = out[ok, 0] - out[ok, 1]
    return out


def _s1_change(t1, vh, vv, t_vis, tq, window) -> np.ndarray:
    """(nq, 3): S1 at the query minus S1 interpolated at the query from the bracketing views' times."""
    at_q = _s1_at(t1, vh, vv, tq, window)
    at_vis = _s1_at(t1, vh, vv, t_vis, window)
    j = np.clip(np.searchsorted(t_vis, tq), 1, len(t_vis) - 1) if len(t_vis) > 1 else np.zeros(len(tq), int)
    j0 = np.maximum(j - 1, 0)
    t0, tt1 = t_vis[j0], t_vis[j]
    a = np.where(tt1 > t0, np.clip((tq - t0) / np.where(tt1 > t0, tt1 - t0, 1.0), 0, 1), 0.0)[:, None]
    ref = (1 - a) * at_vis[j0] + a * at_vis[j]
    return at_q - ref


def _parcel_design(
    clim: np.ndarray, p: GapFillParams, g: pd.DataFrame, tq: np.ndarray, exclude_self: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For one parcel: (smoother prediction (nq,bands), S1 change features (nq,3), gap weight, distance)."""
    vis = _clear_s2(g)
    t_vis = vis["days"].to_numpy(float)
    y_vis = _values(vis)
    r_vis = y_vis - clim[_doy(t_vis) - 1]
    r_vis = np.where(np.isfinite(r_vis), r_vis, 0.0)
    prior_q = np.zeros((len(tq), r_vis.shape[1]))
    if p.parcel_prior_days > 0 and len(t_vis):
        r_vis = r_vis - parcel_prior(t_vis, r_vis, t_vis, p)
        prior_q = parcel_prior(t_vis, y_vis - clim[_doy(t_vis) - 1], tq, p)
    if exclude_self:  # leave-one-out at the visible views themselves
        preds = np.empty((len(tq), NB + 1))
        weights = np.empty(len(tq))
        dists = np.empty(len(tq))
        for i in range(len(tq)):
            m = np.ones(len(t_vis), bool)
            m[i] = False
            r, w = _interp_anomaly(t_vis[m], r_vis[m], tq[i : i + 1], p.shrink_days)
            preds[i] = r[0]
            weights[i] = w[0]
            tv = t_vis[m]
            dists[i] = np.min(np.abs(tv - tq[i]))
        feats_tv = t_vis
    else:
        preds, weights = _interp_anomaly(t_vis, r_vis, tq, p.shrink_days)
        dists = np.min(np.abs(t_vis[None, :] - tq[:, None]), axis=1)
        feats_tv = t_vis
    pred = clim[_doy(tq) - 1] + prior_q + preds
    s1 = g[g["sensor"] == "S1"]
    t1, vh, vv = _s1_db(s1)
    feats = _s1_change(t1, vh, vv, feats_tv, tq, p.s1_window_days)
    return pred, feats, weights, dists


BOOST_HIDE_DAYS = (0.0, 10.0, 20.0, 30.0)  # training: each view predicted with itself and the views this near hidden
BOOST_MIN_SAMPLES = 2000  # fewer training samples (or parcels): the smoother alone
BOOST_MIN_PARCELS = 8
BOOST_FEATURES = (
    "days_prev", "days_next", "position", "ndvi_prev", "ndvi_next", "ndvi_prev2", "ndvi_next2",
    "days_prev2", "days_next2", "linear", "smoother", "climatology", "parcel_prior", "anomaly",
    "blue_prev", "blue_next", "swir_prev", "swir_next", "dVH", "dVV", "dRATIO", "VH", "VV", "doy",
)


@dataclass(frozen=True, slots=True)
class BoostViews:
    """One parcel's clear S2 views as the trees' features read them, computed once per parcel:
    days ``t``, NDVI ``y``, the anomaly less the parcel's prior ``ra`` and that prior ``prior``, blue
    and SWIR, S1 at each view's time ``s1`` (nan without S1), and the S1 series for the queries."""

    t: np.ndarray
    y: np.ndarray
    ra: np.ndarray
    prior: np.ndarray
    blue: np.ndarray
    swir: np.ndarray
    s1: np.ndarray
    s1_series: tuple[np.ndarray, np.ndarray, np.ndarray]
    r: np.ndarray  # the anomaly itself: the prior at query times is its kernel mean over other years


def boost_views(clim: np.ndarray, p: GapFillParams, g: pd.DataFrame) -> BoostViews:
    """The clear S2 views of one parcel's rows ``g`` for :func:`boost_features` (see :class:`BoostViews`)."""
    v = _clear_s2(g)
    t = v["days"].to_numpy(float)
    y = _values(v)[:, -1]
    r = y - clim[_doy(t) - 1, -1]
    r = np.where(np.isfinite(r), r, 0.0)
    prior = parcel_prior(t, r[:, None], t, p)[:, 0] if p.parcel_prior_days > 0 and len(t) else np.zeros(len(t))
    s1_series = _s1_db(g[g["sensor"] == "S1"])
    s1 = _s1_at(*s1_series, t, p.s1_window_days) if p.use_s1 else np.full((len(t), 3), np.nan)
    return BoostViews(t, y, r - prior, prior, v["B02"].to_numpy(float), v["B11"].to_numpy(float), s1, s1_series, r)


def boost_features(
    clim: np.ndarray, p: GapFillParams, views: BoostViews, tq: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The neighbourhood of each query time: (features (nq, BOOST_FEATURES), the smoother's NDVI (nq,),
    inside (nq,): a clear view on both sides). A query at a view's time has that view on both sides."""
    t = views.t
    if len(t) == 0:
        nq = len(tq)
        return np.full((nq, len(BOOST_FEATURES)), np.nan), np.full(nq, np.nan), np.zeros(nq, bool)
    prior_q = parcel_prior(t, views.r[:, None], tq, p)[:, 0] if p.parcel_prior_days > 0 else np.zeros(len(tq))
    s1_q = _s1_at(*views.s1_series, tq, p.s1_window_days) if p.use_s1 else np.full((len(tq), 3), np.nan)
    j0 = np.searchsorted(t, tq, side="right") - 1
    j1 = np.searchsorted(t, tq, side="left")
    return _neighbourhood(clim, views, tq, j0, j1, prior_q, s1_q)


def boost_training_features(
    clim: np.ndarray, views: BoostViews, hide_days: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`boost_features` at each clear view itself, with the views within ``hide_days`` of it
    (its own included) left out: the view as a cloudy spell of that length would leave it."""
    t = views.t
    j0 = np.searchsorted(t, t - hide_days, side="left") - 1
    j1 = np.searchsorted(t, t + hide_days, side="right")
    return _neighbourhood(clim, views, t, j0, j1, views.prior, views.s1)


def _neighbourhood(clim, views: BoostViews, tq, j0, j1, prior_q, s1_q):
    """The features at ``tq`` from the views ``j0`` (before) and ``j1`` (after) of each query."""
    t, y, n = views.t, views.y, len(views.t)
    inside = (j0 >= 0) & (j1 < n)
    a0, a1 = np.clip(j0, 0, n - 1), np.clip(j1, 0, n - 1)
    b0, b1 = np.clip(j0 - 1, 0, n - 1), np.clip(j1 + 1, 0, n - 1)
    d0, d1 = tq - t[a0], t[a1] - tq
    pos = np.where(d0 + d1 > 0, d0 / np.maximum(d0 + d1, 1e-9), 0.5)
    c_q = clim[_doy(tq) - 1, -1]
    anomaly = (1 - pos) * views.ra[a0] + pos * views.ra[a1]
    smoother = c_q + prior_q + anomaly
    s1_ref = (1 - pos[:, None]) * views.s1[a0] + pos[:, None] * views.s1[a1]
    cap = 120.0  # days: beyond this a neighbour says nothing more
    F = np.c_[np.minimum(d0, cap), np.minimum(d1, cap), pos, y[a0], y[a1], y[b0], y[b1],
              np.minimum(t[a0] - t[b0], cap), np.minimum(t[b1] - t[a1], cap),
              (1 - pos) * y[a0] + pos * y[a1], smoother, c_q, prior_q, anomaly,
              views.blue[a0], views.blue[a1], views.swir[a0], views.swir[a1], s1_q - s1_ref, s1_q[:, :2], _doy(tq)]
    return F, smoother, inside


def _boost_samples(clim: np.ndarray, p: GapFillParams, obs: pd.DataFrame):
    """Training samples: every clear view of every parcel with ≥ 4, described once per
    ``BOOST_HIDE_DAYS`` (features, target = NDVI − smoother, parcel, days to the nearest view left)."""
    F, Y, G, D = [], [], [], []
    for k, (_, g) in enumerate(obs.groupby("parcel_id", sort=True)):
        views = boost_views(clim, p, g)
        if len(views.t) < 4:
            continue
        for w in BOOST_HIDE_DAYS:
            f, smooth, inside = boost_training_features(clim, views, w)
            ok = inside & np.isfinite(views.y) & np.isfinite(smooth)
            F.append(f[ok])
            Y.append((views.y - smooth)[ok])
            G.append(np.full(int(ok.sum()), k))
            D.append(np.minimum(f[ok, 0], f[ok, 1]))
    if not F:
        return np.zeros((0, len(BOOST_FEATURES))), np.zeros(0), np.zeros(0, int), np.zeros(0)
    return np.concatenate(F), np.concatenate(Y), np.concatenate(G), np.concatenate(D)


def _fit_boost(clim: np.ndarray, p: GapFillParams, obs: pd.DataFrame):
    """(TreeArrays, out-of-fold |NDVI error|, days to the nearest view, info) or None when the dataset
    is too small. The out-of-fold errors (each parcel's views predicted by trees fitted without its
    fold's parcels) calibrate the bands: the final trees have seen every view."""
    X, Y, G, D = _boost_samples(clim, p, obs)
    if len(Y) < BOOST_MIN_SAMPLES or len(np.unique(G)) < BOOST_MIN_PARCELS:
        return None
    trees, oof, info = gb.fit(X, Y, G)
    info.update(samples=int(len(Y)), oof_ndvi_mae=float(np.mean(np.abs(Y - oof))),
                smoother_ndvi_mae=float(np.mean(np.abs(Y))))
    return trees, np.abs(Y - oof), D, info


def _ndvi(x: np.ndarray) -> np.ndarray:
    """NDVI of a (…, bands) array, by the project's one definition (``contracts.indices.ndvi``)."""
    return ndvi(x[..., I_RED], x[..., I_NIR])


def fit(obs: pd.DataFrame, params: GapFillParams | None = None) -> GapFillModel:
    """Fit the climatology, the S1 ridge and the uncertainty on the visible clear views of ``obs``."""
    p = params or GapFillParams()
    if "days" not in obs.columns:
        obs = normalise_observations(obs)
    vis = _clear_s2(obs)
    if len(vis) < 3:
        raise SeriesError(f"gap-fill fit needs at least 3 clear S2 views, got {len(vis)}")
    clim = climatology(vis["days"].to_numpy(float), _values(vis), p.clim_sigma_days)
    if not p.use_climatology:
        clim = np.zeros_like(clim)
    # leave-one-out residuals of the smoother at every visible view (parcels with ≥ 3 views)
    X, Y, W, D, E = [], [], [], [], []
    for _, g in obs.groupby("parcel_id", sort=True):
        v = _clear_s2(g)
        if len(v) < 3:
            continue
        tq = v["days"].to_numpy(float)
        pred, feats, w, dist = _parcel_design(clim, p, g, tq, exclude_self=True)
        y = _values(v)
        X.append(feats)
        Y.append(y - pred)
        W.append(w)
        D.append(dist)
        E.append(np.abs(y[:, -1] - pred[:, -1]))
    X, Y, W, D, E = (np.concatenate(a) for a in (X, Y, W, D, E))
    coef = None
    if p.use_s1:
        ok = np.all(np.isfinite(X), 1) & (W > 0)
        if ok.sum() > 50:
            Xo = np.c_[X[ok] * W[ok, None], W[ok]]  # correction scales with the gap weight
            Yo = np.where(np.isfinite(Y[ok]), Y[ok], 0.0)
            A = Xo.T @ Xo + p.ridge * np.eye(Xo.shape[1])
            coef = np.linalg.solve(A, Xo.T @ Yo)
    boosted = _fit_boost(clim, p, obs) if p.boost else None
    if boosted is not None:  # the bands from the trees' out-of-fold errors, the model that fills
        trees, E, D, boost_info = boosted
    else:
        cal_d, cal_e = _block_residuals(clim, p, obs)
        D, E = np.r_[D, cal_d], np.r_[E, cal_e]
        trees, boost_info = None, None
    sigma, ratio = _error_scale(D, E)
    k68, k90 = (float(np.quantile(ratio, q)) for q in (0.68, 0.90))
    partial = GapFillModel(p, clim, coef, sigma, n_fit=int(len(vis)), k68=k68, k90=k90)
    k_horizon: tuple = ()
    if p.horizon_calibration:
        okE = np.isfinite(E)
        hd, hr = (D[okE], ratio) if trees is not None else _holdout_ratios(partial, obs)
        k_horizon = horizon_quantiles(hd, hr, (k68, k90)) if len(hr) >= HORIZON_MIN_COUNT else ()
    edge = _edge_ratios(partial, obs)  # beyond the observed range: the smoother and S1, never the trees
    k68e, k90e = (float(np.quantile(edge, q)) for q in (0.68, 0.90)) if len(edge) >= 20 else (2 * k68, 2 * k90)
    info = {"loo_ndvi_mae": float(np.nanmean(E)), "edge_cases": int(len(edge))}
    if boost_info is not None:
        info["boost"] = boost_info
    return GapFillModel(
        p, clim, coef, sigma, n_fit=int(len(vis)), info=info,
        k68=k68, k90=k90, k68_edge=max(k68e, k68), k90_edge=max(k90e, k90), k_horizon=k_horizon,
        boost_nodes=None if trees is None else trees.nodes,
        boost_roots=None if trees is None else trees.roots,
        boost_baseline=0.0 if trees is None else trees.baseline,
    )


def _error_scale(D: np.ndarray, E: np.ndarray) -> tuple[tuple[float, float], np.ndarray]:
    """``(a, b)`` of the NDVI error scale ``s(d) = a + b·sqrt(d)`` fitted to absolute errors ``E`` at
    ``D`` days from the nearest view, and the errors in units of it (finite errors only)."""
    okE = np.isfinite(E)
    sq = np.sqrt(np.clip(D[okE], 0, 120))
    ab = np.linalg.lstsq(np.c_[np.ones_like(sq), sq], E[okE], rcond=None)[0]
    sigma = (float(max(ab[0], 1e-3)), float(max(ab[1], 0.0)))
    return sigma, E[okE] / (sigma[0] + sigma[1] * sq)


HORIZON_EDGES_DAYS = (0.0, 4.0, 8.0, 12.0, 16.0, 22.0)  # bins of days to the nearest visible clear view
HORIZON_MIN_COUNT = 50  # fewer calibration errors in a bin: the overall quantiles there


def horizon_quantiles(dist: np.ndarray, ratio: np.ndarray, overall: tuple[float, float]):
    """Per bin of ``HORIZON_EDGES_DAYS``: (lower edge, 68 %, 90 % quantile of |error|/s(d)). The
    scale s(d) is one curve for all horizons; the errors' shape is not (mostly noise next to a view,
    a missed event in a long gap), so each horizon gets its own band."""
    edges = np.asarray(HORIZON_EDGES_DAYS)
    b = np.searchsorted(edges, dist, side="right") - 1
    out = []
    for i, lo in enumerate(edges):
        r = ratio[b == i]
        out.append((float(lo), *(float(np.quantile(r, q)) for q in (0.68, 0.90)))
                   if len(r) >= HORIZON_MIN_COUNT else (float(lo), *overall))
    return tuple(out)


CAL_WINDOW_DAYS = 45.0  # a cloudy spell hidden per parcel-year by the horizon calibration
CAL_RANDOM_SHARE = 0.2  # and the share of clear views hidden at random
CAL_SEED = 20  # its fixed draw


def _holdout_ratios(model: GapFillModel, obs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(days to the nearest view left, |NDVI error|/s(d)) of visible clear views hidden from the
    *fitted* model (S1 correction included): one ``CAL_WINDOW_DAYS`` spell per parcel-year in the
    growing season, and ``CAL_RANDOM_SHARE`` of the views at random. The leave-one-out and block
    residuals that fit s(d) skip the S1 correction, so their quantiles over-cover long gaps."""
    rng = np.random.default_rng(CAL_SEED)
    dists, ratios = [], []
    for _, g in obs.groupby("parcel_id", sort=True):
        v = _clear_s2(g)
        if len(v) < 6:
            continue
        t = v["days"].to_numpy(float)
        doy = _doy(t)
        year = pd.to_datetime(t * 86400.0, unit="s").year.to_numpy()
        hide_w = np.zeros(len(t), bool)
        for y in np.unique(year):
            start = rng.uniform(90.0, 270.0 - CAL_WINDOW_DAYS)
            hide_w |= (year == y) & (doy >= start) & (doy < start + CAL_WINDOW_DAYS)
        hide_r = rng.random(len(t)) < CAL_RANDOM_SHARE
        truth = _values(v)[:, -1]
        for hide in (hide_w, hide_r):
            left = ~hide
            inside = hide & (t > t[left].min(initial=np.inf)) & (t < t[left].max(initial=-np.inf))
            if left.sum() < 3 or not inside.any():
                continue
            rest = g.drop(index=v.index[hide])
            pred, scale = predict_parcel(model, rest, t[inside])
            err = np.abs(_ndvi(pred) - truth[inside])
            d = np.min(np.abs(t[left][None, :] - t[inside][:, None]), axis=1)
            ok = np.isfinite(err)
            dists.append(d[ok])
            ratios.append(err[ok] / scale[ok])
    if not ratios:
        return np.empty(0), np.empty(0)
    return np.concatenate(dists), np.concatenate(ratios)


def band_factors(model: GapFillModel, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(k68, k90) at each distance (days to the nearest visible clear view) inside the observed range."""
    if not model.k_horizon:
        return np.full(len(dist), model.k68), np.full(len(dist), model.k90)
    lo, k68, k90 = (np.asarray(x) for x in zip(*model.k_horizon, strict=True))
    b = np.clip(np.searchsorted(lo, dist, side="right") - 1, 0, len(lo) - 1)
    return k68[b], k90[b]


CAL_HALF_WIDTHS = (10.0, 20.0)  # days hidden around a view, so calibration sees long gaps too


def _block_residuals(clim: np.ndarray, p: GapFillParams, obs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(distance, |NDVI error|) of each visible view predicted with every visible view within
    ``CAL_HALF_WIDTHS`` days of it hidden too: leave-one-out only sees short gaps, and a scale
    fitted on them alone is wrong for cloudy spells."""
    dists, errs = [], []
    for _, g in obs.groupby("parcel_id", sort=True):
        v = _clear_s2(g)
        if len(v) < 4:
            continue
        t = v["days"].to_numpy(float)
        y = _values(v)[:, -1]
        r = y - clim[_doy(t) - 1, -1]
        r = np.where(np.isfinite(r), r, 0.0)
        prior = parcel_prior(t, r[:, None], t, p)[:, 0] if p.parcel_prior_days > 0 else np.zeros(len(t))
        r = r - prior  # the prior comes from the parcel's other years: no view predicts itself
        for w in CAL_HALF_WIDTHS:
            for i in range(len(t)):
                keep = np.abs(t - t[i]) > w
                if keep.sum() < 2 or not (t[keep] < t[i]).any() or not (t[keep] > t[i]).any():
                    continue  # the observed range only; the edges are calibrated apart
                a, _ = _interp_anomaly(t[keep], r[keep, None], t[i : i + 1], p.shrink_days)
                errs.append(abs(clim[_doy(t[i : i + 1])[0] - 1, -1] + prior[i] + a[0, 0] - y[i]))
                dists.append(float(np.min(np.abs(t[keep] - t[i]))))
    return np.asarray(dists), np.asarray(errs)


def _edge_ratios(model: GapFillModel, obs: pd.DataFrame) -> np.ndarray:
    """|error|/s(d) of each parcel's first and last clear view predicted from the others by
    extrapolation (the S1 condition of ``fill`` applied): the calibration of the edge bands."""
    p = model.params
    out = []
    for _, g in obs.groupby("parcel_id", sort=True):
        v = _clear_s2(g)
        if len(v) < 4:
            continue
        s1_days = g.loc[(g["sensor"] == "S1") & (g["VH"] > 0), "days"].to_numpy(float)
        for drop in (v.index[0], v.index[-1]):
            rest = g.drop(index=drop)
            tq = np.array([float(g.loc[drop, "days"])])
            if not (len(s1_days) and np.min(np.abs(s1_days - tq[0])) <= p.s1_extrapolate_days):
                continue
            pred, _ = predict_parcel(model, rest, tq)
            truth = _ndvi(g.loc[[drop], list(S2_BANDS)].to_numpy(float))[0]
            dist = np.min(np.abs(_clear_s2(rest)["days"].to_numpy(float) - tq[0]))
            err = abs(_ndvi(pred)[0] - truth)
            if np.isfinite(err):
                out.append(err / (model.sigma[0] + model.sigma[1] * math.sqrt(min(dist, 120.0))))
    return np.asarray(out)


def predict_parcel(model: GapFillModel, g: pd.DataFrame, tq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bands (nq, bands) and the NDVI error scale s(d) (nq,) for one parcel's rows ``g`` at days ``tq``."""
    p = model.params
    pred, feats, w, dist = _parcel_design(model.clim, p, g, tq, exclude_self=False)
    if model.s1_coef is not None:
        ok = np.all(np.isfinite(feats), 1)
        Xq = np.c_[np.where(ok[:, None], feats, 0.0) * w[:, None], w]
        corr = Xq @ model.s1_coef
        pred = pred + np.where(ok[:, None], corr, 0.0)
    if model.boost_nodes is not None:  # NDVI inside the observed range, off a view: the trees' correction
        F, smoother, inside = boost_features(model.clim, p, boost_views(model.clim, p, g), tq)
        use = inside & (dist > 0) & np.isfinite(smoother)
        if use.any():
            trees = gb.TreeArrays(model.boost_nodes, model.boost_roots, model.boost_baseline)
            pred[use, NB] = smoother[use] + gb.predict(trees, F[use])
    scale = model.sigma[0] + model.sigma[1] * np.sqrt(np.clip(dist, 0, 120))
    return _consistent(pred), scale


def _consistent(pred: np.ndarray) -> np.ndarray:
    """Bands (nq, bands) from the filled channels: B04/B08 rescaled to the filled NDVI, same sum."""
    bands = pred[:, :NB].copy()
    ndvi = np.clip(pred[:, NB], -1.0, 1.0)
    total = bands[:, I_RED] + bands[:, I_NIR]
    bands[:, I_NIR] = total * (1 + ndvi) / 2
    bands[:, I_RED] = total * (1 - ndvi) / 2
    return bands


def fill(model: GapFillModel, obs: pd.DataFrame, queries: pd.DataFrame) -> pd.DataFrame:
    """Filled S2 bands at each query (``parcel_id, time``).

    Returns ``parcel_id, time, B02…B12, NDVI, uncertainty`` (half-width of the band holding 68 % of
    held-out NDVI errors, the "1σ" band), ``interval90`` (the 90 % half-width), ``filled`` (1),
    ``method``, ``status``: ``ok``; ``extrapolated`` (beyond the first/last clear view, an S1 view
    within ``s1_extrapolate_days``: wider bands); ``out_of_range`` (neither sensor near) or
    ``no_clear_data``. Unknown parcel ids raise ``UnknownParcelError``.
    """
    if "days" not in obs.columns:
        obs = normalise_observations(obs)
    for col in ("parcel_id", "time"):
        if col not in queries.columns:
            raise SeriesError(f"queries: missing column {col}")
    q = queries[["parcel_id", "time"]].copy()
    q["parcel_id"] = q["parcel_id"].astype(str)
    try:
        qt = pd.to_datetime(q["time"], utc=True, format="ISO8601")
    except (ValueError, TypeError) as e:
        raise SeriesError(f"queries: unparseable time ({e})") from e
    q["time"] = qt
    q["days"] = (qt - pd.Timestamp("1970-01-01", tz="UTC")).dt.total_seconds() / 86400.0
    known = set(obs["parcel_id"])
    unknown = sorted(set(q["parcel_id"]) - known)
    if unknown:
        raise UnknownParcelError(f"queries name parcel id {unknown[0]!r} that has no observations")
    out = np.full((len(q), NB), np.nan)
    sig = np.full(len(q), np.nan)
    q90 = np.full(len(q), np.nan)
    status = np.array(["ok"] * len(q), dtype=object)
    groups = dict(tuple(obs.groupby("parcel_id", sort=False)))
    method = "climatology+anomaly-interp" + ("+s1-ridge" if model.s1_coef is not None else "") + (
        "+boosted-trees" if model.boost_nodes is not None else "")
    for pid, idx in q.groupby("parcel_id", sort=False).indices.items():
        g = groups[pid]
        vis = _clear_s2(g)
        if len(vis) == 0:
            status[idx] = "no_clear_data"
            continue
        tq = q["days"].to_numpy(float)[idx]
        first, last = vis["days"].min(), vis["days"].max()
        within = (tq >= first) & (tq <= last)
        near = (tq >= first - model.params.max_extrapolate_days) & (tq <= last + model.params.max_extrapolate_days)
        s1_days = g.loc[(g["sensor"] == "S1") & (g["VH"] > 0), "days"].to_numpy(float)
        if len(s1_days):
            gap = np.min(np.abs(s1_days[None, :] - tq[:, None]), axis=1)
            near |= gap <= model.params.s1_extrapolate_days
        edge = near & ~within
        status[idx[~near]] = "out_of_range"
        status[idx[edge]] = "extrapolated"
        if near.any():
            pred, scale = predict_parcel(model, g, tq[near])
            out[idx[near]] = pred
            dist = np.min(np.abs(vis["days"].to_numpy(float)[None, :] - tq[near][:, None]), axis=1)
            k68_in, k90_in = band_factors(model, dist)
            k68 = np.where(edge[near], model.k68_edge, k68_in)
            k90 = np.where(edge[near], model.k90_edge, k90_in)
            sig[idx[near]] = k68 * scale
            q90[idx[near]] = k90 * scale
    res = pd.DataFrame(out, columns=list(S2_BANDS))
    res.insert(0, "time", q["time"].dt.strftime("%Y-%m-%dT%H:%M:%SZ").to_numpy())
    res.insert(0, "parcel_id", q["parcel_id"].to_numpy())
    res["NDVI"] = _ndvi(out)
    res["uncertainty"] = sig
    res["interval90"] = q90
    res["filled"] = 1
    res["method"] = method
    res["status"] = status
    return res


def linear_interpolation_ndvi(obs: pd.DataFrame, queries: pd.DataFrame) -> np.ndarray:
    """The baseline: NDVI linearly interpolated between the parcel's visible clear views (NaN outside)."""
    vis = _clear_s2(obs)
    out = np.full(len(queries), np.nan)
    qd = queries["days"].to_numpy(float)
    groups = {k: g for k, g in vis.groupby("parcel_id")}
    for pid, idx in queries.groupby("parcel_id", sort=False).indices.items():
        g = groups.get(pid)
        if g is None or len(g) == 0:
            continue
        t = g["days"].to_numpy(float)
        v = _ndvi(g[list(S2_BANDS)].to_numpy(float))
        inside = (qd[idx] >= t[0]) & (qd[idx] <= t[-1])
        out[idx[inside]] = np.interp(qd[idx[inside]], t, v)
    return out


def nan_to_none(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x
