"""Harvest and solar detection scored against synthetic truth (``evaluate_synthetic``), and the
harvest cross-validation: per sensor set, constants chosen on training parcels.

Every parameter set of the grid is run once on all parcels (the numba kernel, held equal to the
per-parcel reference by the tests); each fold then picks the set with the best F1 on its training
parcels and applies it to its held-out parcels, whose detections are pooled and scored once.

Two selections are made from the same runs and reported side by side:
- ``held_out`` / ``per_fold``: chosen by the **interval** F1, the primary figure (harvest markers are
  interval records; see ``alerts.evaluation_intervals`` and docs/harvest-and-gapfill.md);
- ``selected_by_point``: chosen by the point-date F1 (±``tolerance`` days), the figure reported
  before intervals were scored.
Each reports both F1s of its held-out detections and the interval lengths, so that a gain in
interval F1 bought with long intervals is visible.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from alerts.evaluation import _days, events_frame, kfold_groups, match_dates, param_grid, score_events
from alerts.evaluation_intervals import interval_lengths, match_counts, score_intervals


def _date_errors(det: pd.DataFrame, ref: pd.DataFrame, tolerance: float) -> list[float]:
    """Signed date errors (days) of one-to-one matches per parcel within ``tolerance``."""
    errs: list[float] = []
    dd = {k: _days(g["date"]) for k, g in det.groupby("parcel_id")}
    for pid, g in ref.groupby("parcel_id"):
        if pid not in dd:
            continue
        r = _days(g["date"])
        for i, j, _ in match_dates(dd[pid], r, tolerance):
            errs.append(float(dd[pid][i] - r[j]))
    return errs


def evaluate_synthetic(
    task: str, obs: pd.DataFrame, parcels: pd.DataFrame, events: pd.DataFrame, *, tolerance_days: float,
    cv_folds: int = 0, cv_seed: int = 0, progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Harvest or solar detection against synthetic truth.

    harvest: on arable parcels; also with every S2 view marked cloudy (S1 alone) to show detection
    through clouds, with S1 rows only and with S2 rows only. Each carries the point-date scores and,
    under ``interval``, the interval scores and lengths (``alerts.evaluation_intervals``). With
    ``cv_folds`` > 1, also ``cv`` (``harvest_cv``).
    solar: the parcel-level detector on all parcels (false alarms on every other parcel count).
    Reports F1 at ``tolerance_days`` and the median absolute date error of matches.
    """
    from alerts.detectors import HarvestDetector, SolarDetector

    if task == "harvest":
        det, ev_type = HarvestDetector(), "harvest"
    elif task == "solar":
        det, ev_type = SolarDetector(), "solar_construction"
    else:
        raise ValueError(f"task must be harvest or solar, got {task!r}")
    ref = events[events["event"] == ev_type]
    scored_parcels = [p for p, lu in zip(parcels.parcel_id, parcels.land_use, strict=True) if det.handles(lu)]
    year = int(obs["time"].dt.year.min())
    py = [(p, year) for p in scored_parcels]
    ref = ref[ref["parcel_id"].isin(scored_parcels)]

    def score(df: pd.DataFrame) -> dict:
        s = score_events(df, ref, py, tolerance_days=tolerance_days, doy_range=None)["all"]
        errs = _date_errors(df, ref, tolerance_days)
        point = {
            **s.as_dict(),
            "median_abs_date_error_days": round(float(np.median(np.abs(errs))), 2) if errs else None,
            "share_within_7_days": round(float(np.mean(np.abs(errs) <= 7)), 3) if errs else None,
        }
        if task != "harvest":
            return point
        interval = score_intervals(df, ref, py, tolerance_days=tolerance_days).as_dict()
        return {**point, "interval": {**interval, "lengths": interval_lengths(df, tolerance_days)}}

    def one(table: pd.DataFrame, detector=det) -> dict:
        return score(events_frame(detector.run_frame(table, parcels)[0]))

    out = {
        "task": task,
        "tolerance_days": tolerance_days,
        "parcels": len(scored_parcels),
        "reference_events": int(len(ref)),
        "all_sensors": one(obs),
    }
    if task == "harvest":
        clouded = obs.copy()
        clouded.loc[clouded["sensor"] == "S2", "clear"] = 0.0
        out["s2_clouded_over"] = one(clouded)
        out["s1_only"] = one(obs[obs["sensor"] == "S1"])
        out["s2_only"] = one(obs[obs["sensor"] == "S2"])
        out["s2_observable_share"] = s2_observable(obs, ref, det.params.s2_max_gap_days)
        if cv_folds > 1:
            out["cv"] = harvest_cv(obs, parcels, ref, py, tolerance_days, cv_folds, cv_seed, score, progress)
    return out


HARVEST_S2_GRID: dict[str, Sequence] = {
    "min_drop_ndti": (0.015, 0.02, 0.025),
    "unconfirmed_factor": (float("inf"), 3.0, 1.5),
    "regrowth_ndvi": (0.05, 0.1),
    "s2_max_gap_days": (30.0, 40.0, 60.0, 90.0),
    "resown_ndvi": (float("inf"), 0.1, 0.2),
}
HARVEST_S1_GRID: dict[str, Sequence] = {"min_drop_db": (2.0, 2.5, 3.0)}
HARVEST_SENSORS = {"all_sensors": None, "s1_only": "S1", "s2_only": "S2"}
SELECTIONS = {"interval": True, "point": False}  # name: match by interval


def harvest_cv(
    obs: pd.DataFrame, parcels: pd.DataFrame, ref: pd.DataFrame, py: list[tuple[str, int]],
    tolerance_days: float, folds: int, seed: int, score: Callable[[pd.DataFrame], dict],
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Per sensor set of ``HARVEST_SENSORS``: k-fold CV by parcel over ``HARVEST_S2_GRID`` (S2 alone,
    both) or ``HARVEST_S1_GRID`` (S1 alone); ``score`` scores a detection table (point and interval)."""
    from alerts.detectors import HarvestDetector
    from alerts.detectors.batch_base import iter_acquisitions
    from alerts.detectors.batch_kernels import KERNELS

    base = HarvestDetector().params
    plan = {name: HARVEST_S1_GRID if sensor == "S1" else HARVEST_S2_GRID for name, sensor in HARVEST_SENSORS.items()}
    total, done = sum(len(param_grid(g)) for g in plan.values()), 0
    out: dict = {"folds": folds, "seed": seed, "primary": "interval",
                 "grids": {k: {n: [_plain(x) for x in v] for n, v in g.items()} for k, g in plan.items()}}
    index = pd.Index(parcels["parcel_id"].astype(str))
    fold_ids = kfold_groups(sorted({p for p, _ in py}), folds, seed)
    for name, sensor in HARVEST_SENSORS.items():
        table = HarvestDetector().prepare(obs if sensor is None else obs[obs["sensor"] == sensor])
        acquisitions = [inputs for _, inputs in iter_acquisitions(table, index)]
        cands = param_grid(plan[name])
        dets = []
        for c in cands:
            kernel = KERNELS["harvest"](replace(base, **c))
            states = kernel.init_states(list(index), list(parcels["land_use"]))
            dets.append(events_frame([e for inputs in acquisitions for e in kernel.step(states, inputs)]))
            done += 1
            if progress:
                progress(done, total)
        runs = {}
        for selection, by_interval in SELECTIONS.items():
            counts = [match_counts(d, ref, py, tolerance_days=tolerance_days, by_interval=by_interval)[0]
                      for d in dets]
            runs[selection] = _select(dets, counts, cands, fold_ids, ref, py, tolerance_days, score)
        out[name] = {**runs["interval"], "selected_by_point": runs["point"]}
    return out


def _f1(tp_fp_fn: np.ndarray) -> float:
    tp, fp, fn = (float(x) for x in tp_fp_fn)
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def _select(dets, counts, cands, fold_ids, ref, py, tolerance_days, score) -> dict:
    """Each fold's choice (best training F1 from the per-parcel ``counts``), pooled held-out scores."""
    pooled, per_fold = [], []
    for test_ids in fold_ids:
        test = set(test_ids)
        train_f1 = [_f1(sum((v for p, v in c.items() if p not in test), np.zeros(3, int))) for c in counts]
        best = int(np.argmax(train_f1))  # the first best on a tie, as the grid is ordered
        held = dets[best][dets[best].parcel_id.isin(test)]
        pooled.append(held)
        test_ref = ref[ref.parcel_id.isin(test)]
        test_py = [k for k in py if k[0] in test]
        per_fold.append({
            "chosen": {k: _plain(v) for k, v in cands[best].items()},
            "interval_f1": round(score_intervals(held, test_ref, test_py, tolerance_days=tolerance_days).f1, 4),
            "point_f1": round(_point_f1(held, test_ref, test_py, tolerance_days), 4),
            "interval_days": interval_lengths(held, tolerance_days),
        })
    det = pd.concat(pooled, ignore_index=True)
    return {"held_out": score(det), "per_fold": per_fold}


def _point_f1(det: pd.DataFrame, ref: pd.DataFrame, py: list[tuple[str, int]], tolerance_days: float) -> float:
    counts, _ = match_counts(det, ref, py, tolerance_days=tolerance_days, by_interval=False)
    return _f1(sum(counts.values(), np.zeros(3, int)))


def _plain(v: object) -> object:
    """A grid value as JSON writes it (inf as the string "inf")."""
    return "inf" if isinstance(v, float) and np.isinf(v) else v


def s2_observable(obs: pd.DataFrame, ref: pd.DataFrame, max_gap_days: float) -> float | None:
    """Share of reference events between two clear S2 views at most ``max_gap_days`` apart: the
    events an S2-only detector can bracket with an interval that short (the rest lie in longer
    cloudy spells)."""
    clear = obs[(obs["sensor"] == "S2") & (obs["clear"] >= 0.5)]
    days = {pid: np.sort(g["days"].to_numpy(float)) for pid, g in clear.groupby("parcel_id")}
    ok = []
    for pid, d in zip(ref["parcel_id"], _days(ref["date"]), strict=True):
        t = days.get(pid, np.empty(0))
        k = int(np.searchsorted(t, d))
        ok.append(0 < k < len(t) and t[k] - t[k - 1] <= max_gap_days)
    return round(float(np.mean(ok)), 4) if ok else None
