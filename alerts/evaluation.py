"""Evaluation harness: event matching, detection scores, cross-validation, gap-fill scores.

Event scoring follows the MODCiX rule (grassland-sk-dev README): a detection is a hit if it lies
within ``tolerance_days`` of a reference event of the same type on the same parcel and year,
matched one-to-one (optimal assignment, closest pairs first); only events whose day of year lies
in ``doy_range`` count (detections and references alike). Scores are reported over the
parcel-years that have a reference event and over all parcel-years (false alarms on parcel-years
without a reference count there).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Scores:
    tp: int
    fp: int
    fn: int
    mae_days: float

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
            "mae_days": round(self.mae_days, 2) if np.isfinite(self.mae_days) else None,
        }


def match_dates(det: Sequence[float], ref: Sequence[float], tolerance: float) -> list[tuple[int, int, float]]:
    """One-to-one matches (i_det, i_ref, |error|) within ``tolerance`` days, minimising total error."""
    if not len(det) or not len(ref):
        return []
    d = np.abs(np.subtract.outer(np.asarray(det, float), np.asarray(ref, float)))
    big = 1e6
    cost = np.where(d <= tolerance, d, big)
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c), float(d[r, c])) for r, c in zip(rows, cols, strict=True) if d[r, c] <= tolerance]


def _days(s: pd.Series) -> np.ndarray:
    ts = pd.to_datetime(s, utc=True)
    return ((ts - pd.Timestamp("1970-01-01", tz="UTC")).dt.total_seconds() / 86400.0).to_numpy()


def score_events(
    detections: pd.DataFrame,
    reference: pd.DataFrame,
    parcel_years: Iterable[tuple[str, int]],
    *,
    tolerance_days: float = 12.0,
    doy_range: tuple[int, int] | None = (75, 300),
) -> dict[str, Scores]:
    """Scores over parcel-years with a reference event (``with_event``) and over all (``all``).

    ``detections`` and ``reference``: columns ``parcel_id, date`` (already one event type).
    ``parcel_years``: the universe of (parcel_id, year) evaluated (e.g. every parcel × year of data).
    """

    def prep(df: pd.DataFrame) -> pd.DataFrame:
        df = df[["parcel_id", "date"]].copy()
        ts = pd.to_datetime(df["date"], utc=True)
        df["year"] = ts.dt.year
        df["doy"] = ts.dt.dayofyear
        df["d"] = _days(df["date"])
        if doy_range is not None:
            df = df[(df.doy >= doy_range[0]) & (df.doy <= doy_range[1])]
        return df

    det, ref = prep(detections), prep(reference)
    universe = set(parcel_years)
    det_g = {k: g["d"].to_numpy() for k, g in det.groupby(["parcel_id", "year"])}
    ref_g = {k: g["d"].to_numpy() for k, g in ref.groupby(["parcel_id", "year"])}
    out = {}
    for name, keys in (("with_event", [k for k in universe if k in ref_g]), ("all", list(universe))):
        tp = fp = fn = 0
        errors: list[float] = []
        for k in keys:
            dd = det_g.get(k, np.empty(0))
            rr = ref_g.get(k, np.empty(0))
            m = match_dates(dd, rr, tolerance_days)
            tp += len(m)
            fp += len(dd) - len(m)
            fn += len(rr) - len(m)
            errors.extend(e for _, _, e in m)
        out[name] = Scores(tp, fp, fn, float(np.mean(errors)) if errors else float("nan"))
    return out


def kfold_groups(ids: Sequence[str], k: int, seed: int) -> list[list[str]]:
    """Split ids into ``k`` folds at random (fixed seed)."""
    ids = sorted(set(ids))
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(ids))
    return [[ids[j] for j in perm[i::k]] for i in range(k)]


def param_grid(grid: dict[str, Sequence]) -> list[dict]:
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]


def cross_validate_events(
    detections_by_params: Sequence[pd.DataFrame],
    reference: pd.DataFrame,
    parcel_years: Sequence[tuple[str, int]],
    *,
    folds: int,
    seed: int,
    select: Callable[[dict[str, Scores]], float],
    tolerance_days: float = 12.0,
    doy_range: tuple[int, int] | None = (75, 300),
) -> dict:
    """k-fold cross-validation by parcel over precomputed detections per parameter set.

    The detector is per-parcel, so detections for each parameter set are computed once; for each
    fold, the parameter set maximising ``select`` on the training parcels is applied to the held-out
    parcels. Held-out detections are pooled and scored once (the CV estimate).
    """
    parcels = sorted({p for p, _ in parcel_years})
    fold_ids = kfold_groups(parcels, folds, seed)
    pooled = []
    chosen = []
    for test_ids in fold_ids:
        test = set(test_ids)
        train_py = [py for py in parcel_years if py[0] not in test]
        train_ref = reference[~reference.parcel_id.isin(test)]
        best, best_val = 0, -np.inf
        for i, det in enumerate(detections_by_params):
            s = score_events(
                det[~det.parcel_id.isin(test)],
                train_ref,
                train_py,
                tolerance_days=tolerance_days,
                doy_range=doy_range,
            )
            val = select(s)
            if val > best_val:
                best, best_val = i, val
        chosen.append(best)
        det = detections_by_params[best]
        pooled.append(det[det.parcel_id.isin(test)])
    pooled_det = (
        pd.concat(pooled, ignore_index=True) if pooled else pd.DataFrame(columns=["parcel_id", "date"])
    )
    scores = score_events(
        pooled_det, reference, parcel_years, tolerance_days=tolerance_days, doy_range=doy_range
    )
    return {"scores": scores, "chosen": chosen, "folds": fold_ids, "detections": pooled_det}


# -- gap filling ------------------------------------------------------------------------------------


def holdout_random(clear_index: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices (subset of ``clear_index``) hidden at random."""
    rng = np.random.default_rng(seed)
    n = int(round(fraction * len(clear_index)))
    return np.sort(rng.choice(clear_index, size=n, replace=False))


def holdout_windows(
    obs: pd.DataFrame, window_days: float, seed: int, doy_range: tuple[int, int] = (90, 270)
) -> np.ndarray:
    """Row indices of every S2 view in one random ``window_days`` window per parcel-year.

    The window start is drawn uniformly so that the window lies inside ``doy_range`` (the growing
    season, where gaps matter), per parcel-year with a fixed seed.
    """
    rng = np.random.default_rng(seed)
    ts = obs["time"]
    year = ts.dt.year.to_numpy()
    doy = ts.dt.dayofyear.to_numpy() + ts.dt.hour.to_numpy() / 24.0
    is_s2 = (obs["sensor"] == "S2").to_numpy()
    hidden = []
    for (_pid, _yr), idx in obs.groupby([obs["parcel_id"], year]).indices.items():
        start = rng.uniform(doy_range[0], doy_range[1] - window_days)
        sel = idx[is_s2[idx] & (doy[idx] >= start) & (doy[idx] < start + window_days)]
        hidden.extend(obs.index[sel])
    return np.sort(np.asarray(hidden, dtype=int))


# -- mowing -----------------------------------------------------------------------------------------

MOWING_GRID: dict[str, Sequence] = {
    "min_drop": (0.18, 0.21, 0.24),
    "date_fraction": (0.5, 0.75, 1.0),
    "season_doy": ((75, 300), (120, 290)),
    "persist_days": (12.0, 25.0),
    "s1_spells": (False, True),
}


def events_frame(events: Iterable) -> pd.DataFrame:
    """Detector events as an interchange table: parcel_id, event, date, window_start, window_end, confidence."""
    from alerts.series import from_days

    rows = [
        {
            "parcel_id": e.parcel_id,
            "event": e.event,
            "date": e.date_iso,
            "window_start": from_days(e.window[0]).date().isoformat(),
            "window_end": from_days(e.window[1]).date().isoformat(),
            "confidence": round(float(e.confidence), 4),
            "sensor": e.sensor,
        }
        for e in events
    ]
    cols = ["parcel_id", "event", "date", "window_start", "window_end", "confidence", "sensor"]
    return pd.DataFrame(rows, columns=cols)


def parcel_years_of(obs: pd.DataFrame) -> list[tuple[str, int]]:
    """Every (parcel, year) that has observations."""
    years = obs["time"].dt.year
    return sorted({(p, int(y)) for p, y in zip(obs["parcel_id"], years, strict=True)})


def evaluate_mowing(
    obs: pd.DataFrame,
    parcels: pd.DataFrame,
    reference: pd.DataFrame,
    *,
    grid: dict[str, Sequence] | None = None,
    base_params: dict | None = None,
    folds: int = 5,
    seed: int = 0,
    tolerance_days: float = 12.0,
    doy_range: tuple[int, int] = (75, 300),
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Cross-validated mowing scores (k-fold by parcel, parameters chosen on training folds only).

    Reference events of parcels without observations cannot be scored and are counted apart.
    Also reports the defaults' in-sample scores and S2-only CV scores (``use_s1`` fixed False).
    """
    from alerts.detectors.mowing import MowingDetector, MowingParams

    grid = dict(MOWING_GRID if grid is None else grid)
    base = dict(base_params or {})
    ref = reference[reference["event"] == "mowing"] if "event" in reference.columns else reference
    py = parcel_years_of(obs)
    known = {p for p, _ in py}
    py_set = set(py)
    ref_years = pd.to_datetime(ref["date"], utc=True).dt.year
    in_universe = [(p, int(y)) in py_set for p, y in zip(ref["parcel_id"], ref_years, strict=True)]
    unscorable = int(len(ref) - sum(in_universe))
    ref = ref[in_universe]
    combos = param_grid(grid)
    kw = {"tolerance_days": tolerance_days, "doy_range": doy_range}
    sub_parcels = parcels[parcels.parcel_id.isin(known)]

    def select(s: dict[str, Scores]) -> float:
        return s["with_event"].f1 + s["all"].f1

    def detections(table: pd.DataFrame, cands: list[dict]) -> list[pd.DataFrame]:
        dets = []
        for combo in cands:
            det = MowingDetector(MowingParams(**{**base, **combo}))
            events, _ = det.run_frame(table, sub_parcels)
            dets.append(events_frame(events))
            if progress:
                progress(len(dets), len(cands))
        return dets

    def run_cv(dets: list[pd.DataFrame], cands: list[dict]) -> dict:
        out = cross_validate_events(dets, ref, py, folds=folds, seed=seed, select=select, **kw)
        return {
            "with_event": out["scores"]["with_event"].as_dict(),
            "all": out["scores"]["all"].as_dict(),
            "chosen_per_fold": [cands[i] for i in out["chosen"]],
        }

    dets = detections(obs, combos)
    cv = run_cv(dets, combos)
    # the shipped S1 setting fixed (the grid's other parameters still chosen on the training folds)
    shipped = MowingParams(**base).s1_spells
    idx = [i for i, c in enumerate(combos) if c.get("s1_spells", shipped) == shipped]
    cv_shipped = run_cv([dets[i] for i in idx], [combos[i] for i in idx])
    # S2 alone: the S1 rows removed, so nothing of S1 can enter (dating nor confidence)
    s2_combos = [c for c in combos if not c.get("s1_dating", False) and not c.get("s1_spells", False)]
    cv_s2 = run_cv(detections(obs[obs["sensor"] == "S2"], s2_combos), s2_combos)
    default = MowingDetector(MowingParams(**base))
    d_events, _ = default.run_frame(obs, parcels[parcels.parcel_id.isin(known)])
    d_scores = score_events(events_frame(d_events), ref, py, **kw)
    return {
        "task": "mowing",
        "rule": f"±{tolerance_days:g} days one-to-one, DOY {doy_range[0]}–{doy_range[1]}",
        "parcel_years": {
            "all": len(py),
            "with_event": int(
                len(
                    {
                        (p, y)
                        for p, y in zip(
                            ref.parcel_id, pd.to_datetime(ref.date, utc=True).dt.year, strict=True
                        )
                    }
                )
            ),
        },
        "reference_events": int(len(ref)),
        "reference_events_unscorable": unscorable,
        "cv": {"folds": folds, "seed": seed, "grid": {k: list(v) for k, v in grid.items()}, **cv},
        "cv_s1_spells_as_shipped": {"s1_spells": shipped, **cv_shipped},
        "cv_s2_only": cv_s2,
        "defaults_in_sample": {k: v.as_dict() for k, v in d_scores.items()},
    }


# -- gap filling (scores) ---------------------------------------------------------------------------


def evaluate_gapfill(
    obs: pd.DataFrame,
    *,
    mode: str = "random",
    fraction: float = 0.2,
    window_days: float = 45.0,
    seed: int = 0,
    params: object | None = None,
    encoder: object | None = None,
    model_parcels: Sequence[str] | None = None,
) -> dict:
    """NDVI MAE of the gap filler vs linear interpolation on hidden clear S2 views.

    With ``encoder`` (a ``sits.SitsEncoder``): also its bidirectional gap-fill head (``model.gapfill``,
    the same views hidden, cloudy views withheld too) and the mean of the two, scored on
    ``model_parcels`` only (the plots the checkpoint was not trained on: its ``val_parcels``).

    ``mode="random"``: ``fraction`` of the clear S2 views hidden at random. ``mode="window"``:
    every S2 view inside one ``window_days`` window per parcel-year (growing season) hidden.
    The filler is fitted on the visible rows only. Hidden views outside a parcel's visible range
    (no view on one side) are scored for neither method.
    """
    from alerts import gapfill as gf

    obs = obs.reset_index(drop=True)
    clear = np.flatnonzero(
        ((obs["sensor"] == "S2") & (obs["clear"] >= 0.5) & np.isfinite(obs["B04"])).to_numpy()
    )
    if mode == "random":
        hidden = holdout_random(clear, fraction, seed)
    elif mode == "window":
        hidden = holdout_windows(obs, window_days, seed)
    else:
        raise ValueError(f"mode must be random or window, got {mode!r}")
    mask = np.zeros(len(obs), bool)
    mask[hidden] = True
    visible = obs[~mask]
    target = obs[mask & np.isin(np.arange(len(obs)), clear)]
    model = gf.fit(visible, params)  # type: ignore[arg-type]
    queries = target[["parcel_id", "time", "days"]].reset_index(drop=True)
    filled = gf.fill(model, visible, queries[["parcel_id", "time"]])
    truth = gf._ndvi(target[list(gf.S2_BANDS)].to_numpy(float))
    base = gf.linear_interpolation_ndvi(visible, queries)
    pred = filled["NDVI"].to_numpy(float)
    ok = np.isfinite(truth) & np.isfinite(base) & np.isfinite(pred)
    err_m = np.abs(pred[ok] - truth[ok])
    err_b = np.abs(base[ok] - truth[ok])
    sig = filled["uncertainty"].to_numpy(float)[ok]
    z = np.abs(pred[ok] - truth[ok]) / sig
    z90 = np.abs(pred[ok] - truth[ok]) / filled["interval90"].to_numpy(float)[ok]
    edge = (filled["status"].to_numpy() == "extrapolated") & np.isfinite(truth) & np.isfinite(pred)
    ez = np.abs(pred[edge] - truth[edge])
    vs_encoder = None
    if encoder is not None:
        enc = encoder_gapfill_ndvi(encoder, obs, mask)
        sub = target.index.to_numpy()
        e_pred = enc[sub]
        keep = ok & np.isfinite(e_pred)
        if model_parcels is not None:
            keep &= target["parcel_id"].isin(set(model_parcels)).to_numpy()

        def mae(x: np.ndarray) -> float:
            return round(float(np.abs(x[keep] - truth[keep]).mean()), 5) if keep.any() else None

        vs_encoder = {
            "parcels": "checkpoint's held-out plots" if model_parcels is not None else "all",
            "scored_views": int(keep.sum()),
            "ndvi_mae_filler": mae(pred),
            "ndvi_mae_encoder_head": mae(e_pred),
            "ndvi_mae_mean_of_both": mae(0.5 * (pred + e_pred)),
            "ndvi_mae_linear": mae(base),
        }
    return {
        "task": "gapfill",
        "mode": mode,
        **({"vs_encoder": vs_encoder} if vs_encoder is not None else {}),
        "hidden_views": int(len(target)),
        "scored_views": int(ok.sum()),
        "ndvi_mae": round(float(err_m.mean()), 5),
        "ndvi_mae_linear": round(float(err_b.mean()), 5),
        "improvement_vs_linear": round(float(1 - err_m.mean() / err_b.mean()), 4),
        "band_mae": {
            b: round(
                float(np.nanmean(np.abs(filled[b].to_numpy(float)[ok] - target[b].to_numpy(float)[ok]))), 5
            )
            for b in gf.S2_BANDS
            if np.isfinite(target[b].to_numpy(float)[ok]).any()
        },
        "uncertainty_coverage_1sigma": round(float(np.mean(z <= 1.0)), 3),
        "uncertainty_coverage_90": round(float(np.mean(z90 <= 1.0)), 3),
        "extrapolated": {
            "views": int(edge.sum()),
            "ndvi_mae": round(float(ez.mean()), 5) if edge.any() else None,
            "coverage_1sigma": round(float(np.mean(ez <= filled["uncertainty"].to_numpy(float)[edge])), 3)
            if edge.any() else None,
            "coverage_90": round(float(np.mean(ez <= filled["interval90"].to_numpy(float)[edge])), 3)
            if edge.any() else None,
        },
        "method": str(filled["method"].iloc[0]) if len(filled) else "",
        "seed": seed,
        **({"window_days": window_days} if mode == "window" else {"fraction": fraction}),
    }


def encoder_gapfill_ndvi(model: object, obs: pd.DataFrame, hidden: np.ndarray) -> np.ndarray:
    """NDVI of the encoder's bidirectional gap-fill head at every S2 row of ``obs`` (NaN elsewhere),
    with the rows of ``hidden`` and every cloudy S2 view withheld. ``obs``: normalised, index 0..n-1."""
    import sits

    out = np.full(len(obs), np.nan)
    cols = list(model.bands.all)  # type: ignore[attr-defined]
    for pid, idx in obs.groupby("parcel_id", sort=False).indices.items():
        g = obs.iloc[idx]
        is_s2 = (g["sensor"] == "S2").to_numpy()
        values = g.reindex(columns=cols).to_numpy(np.float32)
        has = np.where(is_s2, np.isfinite(values[:, : len(model.bands.s2)]).any(1),  # type: ignore[attr-defined]
                       np.isfinite(values[:, len(model.bands.s2) :]).any(1))  # type: ignore[attr-defined]
        if not has.any():
            continue
        sel = idx[has]
        g = obs.iloc[sel]
        clear = np.where(g["sensor"] == "S2", g["clear"].fillna(0).to_numpy(float), 1.0).astype(np.float32)
        series = sits.Series(
            times=(g["days"].to_numpy(float) * 86400).round().astype(np.int64),
            sensor=g["sensor"].to_numpy(), values=g.reindex(columns=cols).to_numpy(np.float32),
            bands=model.bands, clear=clear,  # type: ignore[attr-defined]
            orbit=g["orbit"].fillna(0).to_numpy(np.int64), id=str(pid),
        )
        hide = hidden[sel] | ((g["sensor"] == "S2").to_numpy() & (clear < 0.5))
        if not (g["sensor"] == "S2").any():
            continue
        fill = model.gapfill(series, hide=hide, causal=False)  # type: ignore[attr-defined]
        out[sel[fill.index]] = fill.prediction.ndvi()[0]
    return out


def score_solar_polygons(
    events: Sequence, sites: pd.DataFrame, *, tolerance_days: float = 30.0, min_iou: float = 0.1
) -> dict:
    """Pixel-level solar detections vs reference sites (one-to-one).

    ``events``: from ``detect_solar_pixels`` (polygon in the evidence); ``sites``: a GeoDataFrame in
    the same CRS with ``site_id`` and ``works_start``. A detection matches a site when their polygons
    overlap with IoU ≥ ``min_iou``; it is a hit when its start of works is within ``tolerance_days``.
    Sites are all counted (also those whose works only start near the end of the series).
    """
    from shapely.geometry import shape

    from alerts.series import to_days

    polys = [shape(e.evidence["polygon"]) for e in events]
    n_d, n_s = len(polys), len(sites)
    iou = np.zeros((n_d, n_s))
    err = np.full((n_d, n_s), np.inf)
    for i, g in enumerate(polys):
        for j, (geom, start) in enumerate(zip(sites.geometry, sites["works_start"], strict=True)):
            inter = g.intersection(geom).area
            if inter > 0:
                iou[i, j] = inter / g.union(geom).area
                err[i, j] = events[i].date - to_days(pd.Timestamp(start))
    ok = (iou >= min_iou) & (np.abs(err) <= tolerance_days)
    cost = np.where(ok, -iou, 1e6)
    pairs = []
    if n_d and n_s:
        rows, cols = linear_sum_assignment(cost)
        pairs = [(r, c) for r, c in zip(rows, cols, strict=True) if ok[r, c]]
    tp = len(pairs)
    s = Scores(
        tp, n_d - tp, n_s - tp, float(np.mean([abs(err[r, c]) for r, c in pairs])) if pairs else float("nan")
    )
    return {
        **s.as_dict(),
        "median_iou": round(float(np.median([iou[r, c] for r, c in pairs])), 3) if pairs else None,
        "matches": [
            {
                "site": str(sites["site_id"].iloc[c]),
                "iou": round(float(iou[r, c]), 3),
                "date_error_days": round(float(err[r, c]), 1),
            }
            for r, c in pairs
        ],
    }
