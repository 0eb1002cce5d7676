"""The variants of ``sitsmon eval lights`` beyond the calibration itself, each cross-validated.

- The coverage constants of the calibrated (mowing) rule, chosen in a dataset's own folds with the
  calibration as shipped (meant for a dataset the packaged calibration never saw, the demo
  archive's truth, so each constant comes from one dataset and is scored on the other too):
  the S1 veto of a red (``cross_validate_s1_veto``), the S2 gap a red may span where no S1 can veto
  it (``cross_validate_s2_gap``), and that limit measured on the training parcels' own detected
  cuts (``alerts.visibility``; ``cross_validate_s2_visibility``, or shared by both datasets:
  ``cross_validate_s2_visibility_joint``).
- ``add_variants``: every variant's CV beside the rule's, and the ``comparison`` table
  (``alerts.confidence_cv`` holds the calibration's own CV, which these reuse).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import date

import numpy as np
import pandas as pd

from alerts.confidence_cv import (
    DROPS,
    _measured,
    _outer_splits,
    _summary,
    _traces,
    cross_validate_calibrated,
)
from alerts.evaluation import kfold_groups
from alerts.evaluation_lights import Case, _spread, judge, objective, score, with_params
from alerts.lights_rules import LandUseRule, Scheme
from alerts.series import to_days
from alerts.traffic_light import Light

# The S1 veto's grid, strictest first (a tie goes to the stricter: "prefer orange to a wrong red");
# None: S1 vetoes nothing.
S1_Z_GRID: tuple[float | None, ...] = (3.0, 3.5, 4.0, 4.5, 5.0, 6.0, None)


# The longest S2 gap a red may span where no S1 can veto it, strictest first; None: no such limit
# (the rule's max_s2_gap_days alone). 10 days decides no red on the demo archive (its fallback).
S2_GAP_WITHOUT_S1_GRID: tuple[float | None, ...] = (10.0, 15.0, 20.0, 25.0, 30.0, None)


def cross_validate_s1_veto(cases: Sequence[Case], scheme: Scheme, *, grid: Sequence[float | None] = S1_Z_GRID,
                           **kw) -> dict:
    """Plot-blocked k-fold (and leave-one-year-out) CV of the S1 veto of ``scheme``'s calibrated
    rule (``max_red_s1_drop_z``), everything else as shipped (``cross_validate_constant``).

    Meant for a dataset the calibration never saw (the demo archive's truth: the packaged model is
    fitted on grassland-sk-dev): the veto is then chosen on one dataset and the calibration on the
    other, and the figures of each are out of sample.
    """
    return cross_validate_constant(cases, scheme, "max_red_s1_drop_z", grid, variant="s1_veto", **kw)


def cross_validate_s2_gap(cases: Sequence[Case], scheme: Scheme, *,
                          grid: Sequence[float | None] = S2_GAP_WITHOUT_S1_GRID, **kw) -> dict:
    """CV of ``max_s2_gap_without_s1_days`` of ``scheme``'s calibrated rule, everything else as
    shipped: meaningful on S2-only cases (``--sensors S2``), where no S1 can veto a red."""
    return cross_validate_constant(cases, scheme, "max_s2_gap_without_s1_days", grid, variant="s2_gap", **kw)


def cross_validate_constant(
    cases: Sequence[Case],
    scheme: Scheme,
    key: str,
    grid: Sequence[float | None],
    *,
    variant: str,
    folds: int = 5,
    seed: int = 0,
    target: float = 0.92,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Plot-blocked k-fold (and leave-one-year-out) CV of one setting ``key`` of ``scheme``'s
    calibrated (mowing) rule, everything else as given: on the training parcel-years, the value of
    ``grid`` that decides the most of the rule's cases with red and green precision ≥ ``target``
    (``alerts.evaluation_lights.objective``; ties: the earlier in ``grid``, the stricter), applied to
    the held-out ones."""
    rule = next(r for r in scheme.rules if "mowing" in r.events)
    mine = np.flatnonzero([scheme.rule_for(c.land_use) is rule for c in cases])
    sub = [cases[j] for j in mine]
    variants = [scheme.model_copy(update={"rules": tuple(
        r.model_copy(update={key: k}) if r is rule else r for r in scheme.rules)}) for k in grid]
    lights = [judge(sub, v) for v in variants]
    base = judge(cases, scheme)
    plots = np.asarray([c.parcel_id for c in sub])
    years = np.asarray([c.campaign for c in sub])
    splits = _outer_splits(plots, years, folds, seed)

    def best_on(mask: np.ndarray) -> int:
        where = np.flatnonzero(mask)
        vals = [objective(score([sub[j] for j in where], [lt[j] for j in where]), target) for lt in lights]
        return max(range(len(grid)), key=lambda i: (vals[i], -i))

    out: dict = {"variant": variant, "setting": key, "grid": list(grid), "target_precision": target}
    for name, parts in splits.items():
        pooled = list(base)
        per_fold = []
        for label, test in parts:
            k = best_on(~test)
            where = np.flatnonzero(test)
            for j in where:
                pooled[mine[j]] = lights[k][j]
            per_fold.append({"fold": label, "chosen": {key: grid[k]},
                             **score([sub[j] for j in where], [lights[k][j] for j in where])})
            if progress:
                progress(f"{variant} {name} {label}")
        out[name] = _summary(cases, pooled, sub, mine, per_fold)
    out["chosen_on_all"] = {key: grid[best_on(np.ones(len(sub), bool))]}
    return out


# (s2_visibility_quantile, s2_visibility_recovery) options: how low a quantile of the detected cuts'
# visible traces, and how far back (the share of the drop still missing) a cut counts as recovered;
# None: no measured limit (the rule's max_s2_gap_without_s1_days as given).
S2_VISIBILITY_GRID: tuple[tuple[float, float] | None, ...] = (
    *((q, rec) for q in (0.1, 0.25, 0.5) for rec in (0.1, 0.25, 0.5)), None)


def cross_validate_s2_visibility(
    cases: Sequence[Case],
    scheme: Scheme,
    *,
    grid: Sequence[tuple[float, float] | None] = S2_VISIBILITY_GRID,
    folds: int = 5,
    seed: int = 0,
    target: float = 0.92,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Plot-blocked k-fold (and leave-one-year-out) CV of the measured S2-only limit of ``scheme``'s
    calibrated rule, everything else as given (for a dataset the calibration never saw): per split,
    each option of ``grid`` has its limit measured on the training parcels' detected cuts
    (``alerts.visibility``), the option deciding the most training parcel-years with both
    precisions ≥ ``target`` (``objective``; ties: the stricter limit) is kept, and the held-out
    parcel-years are judged with that limit, as measured on the training parcels."""
    rule = next(r for r in scheme.rules if "mowing" in r.events)
    mine = np.flatnonzero([scheme.rule_for(c.land_use) is rule for c in cases])
    sub = [cases[j] for j in mine]
    traces = _traces(sub, rule, grid)
    cache: dict[float | None, list[Light]] = {}

    def lights_with(r: LandUseRule) -> list[Light]:
        lim = r.max_s2_gap_without_s1_days
        if lim not in cache:
            cache[lim] = judge(sub, scheme.model_copy(update={"rules": tuple(
                r if x is rule else x for x in scheme.rules)}))
        return cache[lim]

    def best_on(train: np.ndarray) -> tuple[int, LandUseRule]:
        picks = []
        for i, opt in enumerate(grid):
            r = _measured(rule, opt, traces, train)
            lim = r.max_s2_gap_without_s1_days
            lt = lights_with(r)
            val = objective(score([sub[j] for j in train], [lt[j] for j in train]), target)
            picks.append(((val, -(lim if lim is not None else np.inf), -i), i, r))
        _, i, r = max(picks, key=lambda p: p[0])
        return i, r

    base = judge(cases, scheme)
    plots = np.asarray([c.parcel_id for c in sub])
    years = np.asarray([c.campaign for c in sub])
    splits = _outer_splits(plots, years, folds, seed)
    out: dict = {"variant": "s2_visibility", "grid": [None if o is None else list(o) for o in grid],
                 "target_precision": target}
    for name, parts in splits.items():
        pooled = list(base)
        per_fold = []
        for label, test in parts:
            i, r = best_on(np.flatnonzero(~test))
            lt = lights_with(r)
            where = np.flatnonzero(test)
            for j in where:
                pooled[mine[j]] = lt[j]
            per_fold.append({"fold": label, "chosen": {"s2_visibility": None if grid[i] is None else list(grid[i]),
                                                       "max_s2_gap_without_s1_days": r.max_s2_gap_without_s1_days},
                             **score([sub[j] for j in where], [lt[j] for j in where])})
            if progress:
                progress(f"s2_visibility {name} {label}")
        out[name] = _summary(cases, pooled, sub, mine, per_fold)
    everything = np.arange(len(sub))
    i, r = best_on(everything)
    out["chosen_on_all"] = {"s2_visibility": None if grid[i] is None else list(grid[i]),
                            "max_s2_gap_without_s1_days": r.max_s2_gap_without_s1_days}
    # what each option measures on all the parcels, and how it would judge them (in sample)
    out["per_option_on_all"] = []
    for opt in grid:
        r = _measured(rule, opt, traces, everything)
        out["per_option_on_all"].append({"s2_visibility": None if opt is None else list(opt),
                                         "max_s2_gap_without_s1_days": r.max_s2_gap_without_s1_days,
                                         "cuts": len([d for j in everything for d in traces[opt[1]][j]]) if opt else 0,
                                         **score(sub, lights_with(r))})
    return out


def cross_validate_s2_visibility_joint(
    case_sets: Mapping[str, Sequence[Case]],
    scheme: Scheme,
    *,
    folds: int = 5,
    seed: int = 0,
    target: float = 0.92,
    progress: Callable[[str], None] | None = None,
    unseen: Sequence[str] = ("synthetic",),
    grid: Sequence[tuple[float, float] | None] = S2_VISIBILITY_GRID,
) -> dict:
    """One measuring option for every dataset, chosen inside the cross-validation of all of them:
    the constants of ``alerts.visibility`` must serve a region that gets no tuning, so the option
    (quantile, recovery) is shared while each dataset measures its own limit with it.

    Fold k of the plot-blocked split is fold k of each dataset's own plot-blocked folds: on the
    training parcels of every dataset, each option's limit is measured and the lights judged (the
    calibration as given); the option feasible (both precisions ≥ ``target``) on the most datasets
    (a dataset no option makes feasible does not veto the others' choice), then deciding the largest
    share on the worst one, then on average, is kept (``joint_choice``'s rule, so extended). Leave-one-year-out (datasets with several campaigns): the year held out of those, the
    others whole. Held-out lights: a dataset in ``unseen`` (the calibration never saw it) with the
    calibration as given and the limit measured on its training parcels; the others through
    ``cross_validate_calibrated`` with the option chosen per fold (calibration refitted in fold).
    The in-fold score of the latter uses the calibration as given (for grassland-sk-dev: fitted on
    all its plots): it ranks the options, not the thresholds, and the held-out figures refit it."""
    rule = next(r for r in scheme.rules if "mowing" in r.events)
    data = {}
    for name, cases in case_sets.items():
        mine = np.flatnonzero([scheme.rule_for(c.land_use) is rule for c in cases])
        sub = [cases[j] for j in mine]
        plots = np.asarray([c.parcel_id for c in sub])
        data[name] = {"cases": cases, "mine": mine, "sub": sub, "plots": plots,
                      "years": np.asarray([c.campaign for c in sub]), "traces": _traces(sub, rule, grid),
                      "folds": kfold_groups(list(plots), folds, seed), "cache": {}}

    def lights_with(d: dict, r: LandUseRule) -> list[Light]:
        lim = r.max_s2_gap_without_s1_days
        if lim not in d["cache"]:
            d["cache"][lim] = judge(d["sub"], scheme.model_copy(update={"rules": tuple(
                r if x is rule else x for x in scheme.rules)}))
        return d["cache"][lim]

    def pick(train: Mapping[str, np.ndarray]) -> int:
        best = None
        for i, opt in enumerate(grid):
            vals = []
            for name, d in data.items():
                lt = lights_with(d, _measured(rule, opt, d["traces"], train[name]))
                sc = score([d["sub"][j] for j in train[name]], [lt[j] for j in train[name]])
                rp = 1.0 if sc["red_precision"] is None else sc["red_precision"]
                gp = 1.0 if sc["green_precision"] is None else sc["green_precision"]
                vals.append((rp >= target and gp >= target,
                             (sc["counts"]["red"] + sc["counts"]["green"]) / max(sc["parcel_years"], 1)))
            key = (sum(v[0] for v in vals), min(v[1] for v in vals), float(np.mean([v[1] for v in vals])), -i)
            if best is None or key > best[0]:
                best = (key, i)
        return best[1]

    def label_opt(i: int) -> list | None:
        return None if grid[i] is None else list(grid[i])

    out: dict = {"variant": "s2_visibility_joint", "grid": [None if o is None else list(o) for o in grid],
                 "datasets": list(data), "target_precision": target}
    splits: dict[str, list[tuple[str, dict[str, np.ndarray]]]] = {"plot_kfold": [
        (f"fold{k + 1}", {n: ~np.isin(d["plots"], d["folds"][k]) for n, d in data.items()}) for k in range(folds)]}
    multi = [n for n, d in data.items() if len(set(d["years"])) > 1]
    if multi:
        years = sorted({int(y) for n in multi for y in data[n]["years"]})
        splits["leave_one_year_out"] = [(str(y), {n: (d["years"] != y) if n in multi else np.ones(len(d["sub"]), bool)
                                                  for n, d in data.items()}) for y in years]
    for split, parts in splits.items():
        chosen = {}
        for label, train_mask in parts:
            chosen[label] = pick({n: np.flatnonzero(m) for n, m in train_mask.items()})
            if progress:
                progress(f"s2_visibility_joint {split} {label}")
        res: dict = {"chosen": {lab: label_opt(i) for lab, i in chosen.items()}}
        for name, d in data.items():
            if split == "leave_one_year_out" and name not in multi:
                continue
            if name in unseen:
                pooled, per_fold = judge(d["cases"], scheme), []
                for label, train_mask in parts:
                    r = _measured(rule, grid[chosen[label]], d["traces"], np.flatnonzero(train_mask[name]))
                    lt, where = lights_with(d, r), np.flatnonzero(~train_mask[name])
                    for j in where:
                        pooled[d["mine"][j]] = lt[j]
                    per_fold.append({"fold": label, "chosen": {"s2_visibility": label_opt(chosen[label]),
                                                               "max_s2_gap_without_s1_days": r.max_s2_gap_without_s1_days},
                                     **score([d["sub"][j] for j in where], [lt[j] for j in where])})
                res[name] = {"pooled": score(d["cases"], pooled), "per_fold": per_fold, "spread": _spread(per_fold)}
            else:
                cv = cross_validate_calibrated(d["cases"], with_params(scheme, {"decision": "rule"}), folds=folds,
                                               seed=seed, target=target,
                                               visibility=defaultdict(lambda: None, {lab: grid[i] for lab, i in chosen.items()}))
                res[name] = {k: v for k, v in cv[split].items() if k != "per_campaign"}
        out[split] = res
    i = pick({n: np.arange(len(d["sub"])) for n, d in data.items()})
    out["chosen_on_all"] = {"s2_visibility": label_opt(i), **{
        f"max_s2_gap_without_s1_days_{n}": _measured(rule, grid[i], d["traces"], np.arange(len(d["sub"])))
        .max_s2_gap_without_s1_days for n, d in data.items()}}
    return out


VARIANTS = ("rule", "rule_encoder", "calibrated", "calibrated_encoder", "head", "s1_veto", "s2_gap", "s2_visibility")


def add_variants(out: dict, cases: Sequence[Case], obs: pd.DataFrame, scheme: Scheme, model: object | None = None,
                 variants: Sequence[str] = VARIANTS, calibration_unseen: bool = False, selection: str = "point",
                 wilson_z: float = 1.0, **kw) -> dict:
    """``out`` (one dataset's ``evaluate_lights``) with the calibrated variants' CV beside the rule's:
    ``cv_calibrated``, with the encoder ``cv_calibrated_encoder`` and ``cv_head``, and the
    ``comparison`` table. ``calibration_unseen``: the dataset is not the one the packaged calibration
    was fitted on; then, for a scheme whose mowing rule is calibrated, ``cv_s1_veto`` (the S1 veto
    chosen in this dataset's folds, the calibration as shipped) and, on S2-only cases, ``cv_s2_gap``
    (``max_s2_gap_without_s1_days`` chosen likewise). ``selection``, ``wilson_z``: the calibrated
    variants' inner precision test (``precision_test``). ``kw``: folds, seed, target, progress."""
    rule_scheme = with_params(scheme, {"decision": "rule"})
    calibrated = [r for r in scheme.rules if "mowing" in r.events and r.decision == "calibrated"]
    if calibration_unseen and calibrated and "s1_veto" in variants:
        out["cv_s1_veto"] = cross_validate_s1_veto(cases, scheme, **kw)
    # the S2-only gap limit binds only where no S1 can veto: chosen on S2-only cases (--sensors S2)
    s2_only = not any(c.evidence is not None and c.evidence.s1_days for c in cases)
    if calibration_unseen and calibrated and s2_only and "s2_gap" in variants:
        out["cv_s2_gap"] = cross_validate_s2_gap(cases, scheme, **kw)
    # the measured limit (alerts.visibility): with the calibration as shipped where it never saw the
    # dataset; else chosen in fold together with the calibration (the real set)
    if calibrated and "s2_visibility" in variants:
        if calibration_unseen:
            out["cv_s2_visibility"] = cross_validate_s2_visibility(cases, scheme, **kw)
            shipped_opt = [(r.s2_visibility_quantile, r.s2_visibility_recovery) for r in calibrated
                           if r.s2_visibility_quantile is not None]
            if shipped_opt:  # the scheme's own option, its limit measured on each fold's training parcels
                out["cv_s2_visibility_shipped"] = cross_validate_s2_visibility(cases, scheme, grid=shipped_opt[:1], **kw)
        else:
            out["cv_calibrated_s2_visibility"] = cross_validate_calibrated(
                cases, rule_scheme, variant="calibrated", selection=selection, wilson_z=wilson_z,
                visibility=S2_VISIBILITY_GRID, **kw)
    if any("mowing" in r.events for r in scheme.rules):
        if "calibrated" in variants:
            out["cv_calibrated"] = cross_validate_calibrated(cases, rule_scheme, variant="calibrated",
                                                             selection=selection, wilson_z=wilson_z, **kw)
        if model is not None and "calibrated_encoder" in variants:
            out["cv_calibrated_encoder"] = cross_validate_calibrated(
                cases, rule_scheme, variant="calibrated_encoder", selection=selection, wilson_z=wilson_z, **kw)
        if model is not None and "head" in variants:
            out["cv_head"] = _head_cv(obs, model, cases, rule_scheme, kw)
    out["comparison"] = comparison(out)
    return out


HEAD_L2 = (10.0, 100.0, 1000.0)  # the representation has 128 columns for a few hundred parcel-years


def _head_cv(obs: pd.DataFrame, model: object, cases: Sequence[Case], scheme: Scheme, kw: dict) -> dict:
    """The learned head on the encoder's representation of each parcel-year's window (with the
    detected event's confidence, so that a green still needs a detection), and the same head with
    the rule's drops beside it."""
    from alerts.heads import representation_names, window_representation

    wins = []
    for c in cases:
        rule = scheme.rule_for(c.land_use)
        ws, we = rule.window_dates(c.campaign) if rule else (date(c.campaign, 1, 1), date(c.campaign, 12, 31))
        wins.append((c.parcel_id, to_days(pd.Timestamp(ws)), min(to_days(pd.Timestamp(we)), to_days(pd.Timestamp(c.as_of))) + 1.0))
    rep = window_representation(obs, model, wins)
    names = representation_names(rep.shape[1] // 2)
    return {
        "representation": cross_validate_calibrated(
            cases, scheme, variant="head", extra=rep, extra_names=names, candidates=[("event_confidence", *names)],
            l2s=HEAD_L2, **kw),
        "representation_plus_drops": cross_validate_calibrated(
            cases, scheme, variant="head_plus_drops", extra=rep, extra_names=names, candidates=[(*DROPS, *names)],
            l2s=HEAD_L2, **kw),
    }


def comparison(out: dict) -> list[dict]:
    """One row per variant, split and fold (and pooled): orange share, red and green precision."""
    variants = {"rule": out.get("cv_rule_only"), "rule_plus_encoder_residuals_grid": out.get("cv_rule_plus_encoder"),
                "calibrated": out.get("cv_calibrated"), "calibrated_plus_encoder_residuals": out.get("cv_calibrated_encoder"),
                "calibrated_shipped_s1_veto_in_fold": out.get("cv_s1_veto"),
                "calibrated_shipped_s2_gap_without_s1_in_fold": out.get("cv_s2_gap"),
                "calibrated_shipped_s2_visibility_in_fold": out.get("cv_s2_visibility"),
                "calibrated_shipped_s2_visibility_shipped": out.get("cv_s2_visibility_shipped"),
                "calibrated_s2_visibility_in_fold": out.get("cv_calibrated_s2_visibility"),
                **{f"head_{k}": v for k, v in (out.get("cv_head") or {}).items()}}
    rows = []
    for name, cv in variants.items():
        if not cv:
            continue
        for split in ("plot_kfold", "leave_one_year_out"):
            if split not in cv:
                continue
            for f in [*cv[split]["per_fold"], {"fold": "pooled", **cv[split]["pooled"]}]:
                rows.append({"variant": name, "split": split, "fold": f["fold"], "orange": f["share"]["orange"],
                             "red_precision": f["red_precision"], "reds": f["counts"]["red"],
                             "green_precision": f["green_precision"], "greens": f["counts"]["green"]})
    return rows


__all__ = ["S1_Z_GRID", "S2_GAP_WITHOUT_S1_GRID", "S2_VISIBILITY_GRID", "VARIANTS", "add_variants", "comparison",
           "cross_validate_constant", "cross_validate_s1_veto", "cross_validate_s2_gap", "cross_validate_s2_visibility",
           "cross_validate_s2_visibility_joint"]
