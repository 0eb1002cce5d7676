"""Cross-validation of the calibrated lights: every constant chosen inside the training folds.

For one outer split (plot-blocked k-fold, or leave-one-year-out), on the training parcel-years only:

1. out-of-fold probabilities by an inner plot-blocked k-fold, for each candidate feature set;
2. per candidate set and coverage gap limit, the thresholds ``red_probability`` and
   ``green_probability`` that decide the most training parcel-years while red and green precision
   stay at or above ``target`` (on those inner out-of-fold probabilities: an in-sample fit would
   look better than it is and choose thresholds too loose);
3. the best (set, gap, thresholds) is refitted on the whole training part and the held-out
   parcel-years get their lights from ``alerts.traffic_light.assess`` itself.

"Precision at or above ``target``" is the point estimate by default; ``precision_test`` also offers
its lower Wilson bound and "in every training campaign" (``sitsmon eval lights --selection``), the
group-robust and small-sample-robust criteria compared in docs/traffic-light.md (not shipped: out of
sample they bought no precision that the orange target could afford).

Variants: ``calibrated`` (the rule's own evidence, ``alerts.confidence.RULE_FEATURES``),
``calibrated_encoder`` (plus the encoder's residuals) and ``head`` (a logistic head on the encoder's
representation over the window, ``alerts.heads``, with the event's confidence so green keeps its
"detected" meaning). Only the cases of the calibrated rule (grassland) are judged by the variant; the
other rules' lights are the scheme's own.

``s1_veto`` (``cross_validate_s1_veto``): on a dataset the packaged calibration never saw (the demo
archive's truth), the S1 veto of a red (``max_red_s1_drop_z``) chosen in that dataset's own folds,
the calibration as shipped: each constant comes from one dataset and is scored on the other too. ``s2_gap``
(``cross_validate_s2_gap``): likewise the S2 gap a red may span where no S1 can veto it
(``max_s2_gap_without_s1_days``), on S2-only cases. ``s2_visibility``: that limit measured on the
training parcels' own detected cuts (``alerts.visibility``), its two constants chosen in fold, on one
dataset (``cross_validate_s2_visibility``, or with the calibration: ``cross_validate_calibrated``'s
``visibility``) or shared by both (``cross_validate_s2_visibility_joint``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from alerts.confidence import FEATURES, SHAPE_FEATURES, LogisticModel, features, fit_logistic
from alerts.evaluation import kfold_groups
from alerts.evaluation_lights import Case, _per_campaign, _spread, judge, objective, score, with_params
from alerts.lights_rules import LandUseRule, Scheme
from alerts.series import to_days
from alerts.traffic_light import Light, assess, coverage, day_number, known_by, observed, s1_vetoes
from alerts.visibility import cut_traces, measured_rule

DROPS = ("event_confidence", "max_drop_ndvi", "max_dip_ndvi")
_BASE = [DROPS, (*DROPS, "event_drop_ndvi"), (*DROPS, "event_drop_ndvi", "n_clear_s2", "max_s2_gap_days")]
CANDIDATES: dict[str, list[tuple[str, ...]]] = {"calibrated": [*_BASE, *((*s, *SHAPE_FEATURES) for s in _BASE)]}
CANDIDATES["calibrated_encoder"] = [(*s, "min_residual_z", "event_residual_z") for s in CANDIDATES["calibrated"]]
GAPS_DAYS = (30.0, 45.0)  # the coverage a red needs: longest S2 gap of the coverage window
L2 = 1.0
INNER_FOLDS = 5


@dataclass(frozen=True, slots=True)
class Table:
    """The calibrated rule's cases as arrays: features ``x`` ``[N, F]`` (``FEATURES`` plus any extra
    columns), labels, whether an event counted, whether each gap limit's coverage held (and S1 did
    not veto a red, where the rule sets ``max_red_s1_drop_z``)."""

    x: np.ndarray
    names: tuple[str, ...]
    active: np.ndarray
    has_event: np.ndarray
    covered: dict[float, np.ndarray]
    after_deadline: np.ndarray


def counted_events(case: Case, rule: LandUseRule):
    """The case's events that count for ``rule`` (inside its window, dated and known by ``as_of``)."""
    ws, we = rule.window_dates(case.campaign)
    w0, w1 = day_number(ws), day_number(we) + 1.0 - 1e-9
    as_of_day = day_number(case.as_of) + 1.0 - 1e-9
    return [e for e in case.events if e.event in rule.events and w0 <= e.date <= w1
            and e.date <= as_of_day and known_by(e) <= as_of_day]


def table(cases: Sequence[Case], rule: LandUseRule, extra: np.ndarray | None = None,
          extra_names: Sequence[str] = ()) -> Table:
    rows, has, cov_by, after = [], [], {g: [] for g in GAPS_DAYS}, []
    for c in cases:
        counted = counted_events(c, rule)
        cov = observed(rule, c.evidence, c.campaign)
        rows.append(features(c.evidence, counted, cov))
        has.append(bool(counted))
        vetoed = c.evidence is not None and s1_vetoes(rule, c.evidence)
        for g in GAPS_DAYS:
            cov_by[g].append(coverage(rule.model_copy(update={"max_s2_gap_days": g, "max_s2_gap_with_s1_days": g}),
                                      cov, c.evidence)[0] and not vetoed)
        after.append(c.as_of >= rule.deadline_date(c.campaign))
    x = np.asarray([[r[k] for k in FEATURES] for r in rows], float).reshape(len(rows), len(FEATURES))
    names = FEATURES
    if extra is not None:
        x = np.c_[x, extra]
        names = (*FEATURES, *extra_names)
    return Table(x, tuple(names), np.asarray([c.active and not c.contradicted for c in cases]),
                 np.asarray(has, bool), {g: np.asarray(v, bool) for g, v in cov_by.items()}, np.asarray(after, bool))


def lights_of(p: np.ndarray, has_event: np.ndarray, covered: np.ndarray, after: np.ndarray,
              red_p: float, green_p: float) -> np.ndarray:
    """The calibrated rule's lights from probabilities (vectorised; ``assess`` is the reference):
    2 green, 0 red, 1 orange."""
    out = np.ones(len(p), np.int8)
    out[after & covered & (p <= red_p)] = 0
    out[has_event & (p >= green_p)] = 2
    return out


# How the inner selection asks that a set of lights be precise enough (``precision_test``):
# "point": its precision ≥ target (the shipped procedure); "wilson": the lower Wilson bound of its
# precision (``wilson_z`` standard errors) ≥ target, so a few lucky lights cannot pass; "worst_year":
# the precision ≥ target in every campaign of the training part, not only pooled (a light must hold
# in a year it was not tuned on).
SELECTIONS = ("point", "wilson", "worst_year")


def wilson_lower(k: int, n: int, z: float) -> float:
    """The lower end of the Wilson score interval of a proportion ``k / n`` at ``z`` (0 for n = 0)."""
    if n <= 0:
        return 0.0
    ph = k / n
    centre = ph + z * z / (2 * n)
    half = z * np.sqrt(ph * (1 - ph) / n + z * z / (4 * n * n))
    return float((centre - half) / (1 + z * z / n))


PrecisionTest = Callable[[np.ndarray, np.ndarray], bool]


def precision_test(target: float, selection: str = "point", groups: np.ndarray | None = None,
                   wilson_z: float = 1.0) -> PrecisionTest:
    """``test(chosen, right)`` (boolean masks): whether the ``chosen`` lights are precise enough."""
    if selection == "point":
        return lambda sel, right: bool(sel.any()) and float(right[sel].mean()) >= target
    if selection == "wilson":
        return lambda sel, right: bool(sel.any()) and wilson_lower(int(right[sel].sum()), int(sel.sum()), wilson_z) >= target
    if selection == "worst_year":
        if groups is None:
            raise ValueError("worst_year selection needs the campaign of each parcel-year")
        labels = np.unique(groups)

        def every_year(sel: np.ndarray, right: np.ndarray) -> bool:
            return bool(sel.any()) and float(right[sel].mean()) >= target and all(
                float(right[sel & (groups == y)].mean()) >= target for y in labels if (sel & (groups == y)).any())
        return every_year
    raise ValueError(f"unknown selection {selection!r}; choose from {', '.join(SELECTIONS)}")


def thresholds(p: np.ndarray, active: np.ndarray, has_event: np.ndarray, covered: np.ndarray,
               after: np.ndarray, target: float, holds: PrecisionTest | None = None) -> tuple[float, float, int]:
    """(red_probability, green_probability, decided): the most parcel-years decided with red and
    green precision ≥ ``target`` (or passing ``holds``, ``precision_test``'s). Green first (it wins
    over red in ``assess``), red among the rest, below the green threshold. Thresholds sit halfway
    between neighbouring probabilities."""
    holds = holds or precision_test(target)
    cand = np.unique(p)
    mids = np.r_[cand[0] - 1e-6, 0.5 * (cand[1:] + cand[:-1]), cand[-1] + 1e-6] if len(cand) else np.array([0.5])
    green_p, n_green = 1.0 + 1e-9, 0
    for t in mids[::-1]:
        g = has_event & (p >= t)
        if g.sum() > n_green and holds(g, active):
            green_p, n_green = float(t), int(g.sum())
    red_p, n_red = -1e-9, 0
    base = after & covered & ~(has_event & (p >= green_p))
    for t in mids:
        r = base & (p <= t)
        if r.sum() > n_red and holds(r, ~active):
            red_p, n_red = float(t), int(r.sum())
    return red_p, min(max(green_p, 0.0), 1.0), n_green + n_red


def _columns(tab: Table, names: Sequence[str]) -> np.ndarray:
    return tab.x[:, [tab.names.index(n) for n in names]]


def choose(tab: Table, plots: np.ndarray, train: np.ndarray, candidates: Sequence[Sequence[str]],
           target: float, seed: int, l2s: Sequence[float] = (L2,), selection: str = "point",
           years: np.ndarray | None = None, wilson_z: float = 1.0) -> dict:
    """The feature set, L2 weight, gap limit and thresholds chosen on ``train`` (indices), and the
    model refitted on all of ``train``; ``selection``: ``precision_test``'s (``years``: per row of
    ``tab``, for "worst_year")."""
    holds = precision_test(target, selection, None if years is None else years[train], wilson_z)
    inner = kfold_groups(list(plots[train]), INNER_FOLDS, seed + 1)
    best: tuple | None = None
    y = tab.active[train]
    for k, names in enumerate(candidates):
        x = _columns(tab, names)[train]
        for l2 in l2s:
            oof = np.zeros(len(train))
            for ids in inner:
                held = np.isin(plots[train], ids)
                if held.all() or not held.any():
                    continue
                oof[held] = fit_logistic(x[~held], y[~held], names, l2).predict(x[held])
            for gap in GAPS_DAYS:
                red_p, green_p, decided = thresholds(oof, y, tab.has_event[train], tab.covered[gap][train],
                                                     tab.after_deadline[train], target, holds)
                val = (decided, -len(names), -gap, l2)  # ties: fewer features, stricter coverage, smoother
                if best is None or val > best[0]:
                    best = (val, k, l2, gap, red_p, green_p)
    val, k, l2, gap, red_p, green_p = best
    names = tuple(candidates[k])
    model = fit_logistic(_columns(tab, names)[train], y, names, l2)
    return {"features": list(names) if len(names) <= 12 else f"{len(names)} columns", "l2": l2,
            "max_s2_gap_days": gap, "red_probability": round(red_p, 4), "green_probability": round(green_p, 4),
            "inner_decided": int(val[0]), "model": model}


def calibrated_rule(rule: LandUseRule, chosen: dict) -> LandUseRule:
    gap = chosen["max_s2_gap_days"]
    return rule.model_copy(update={
        "decision": "calibrated", "max_s2_gap_days": gap, "max_s2_gap_with_s1_days": gap,
        "red_probability": chosen["red_probability"], "green_probability": chosen["green_probability"]})


def cross_validate_calibrated(
    cases: Sequence[Case],
    scheme: Scheme,
    *,
    variant: str = "calibrated",
    extra: np.ndarray | None = None,
    extra_names: Sequence[str] = (),
    candidates: Sequence[Sequence[str]] | None = None,
    l2s: Sequence[float] = (L2,),
    folds: int = 5,
    seed: int = 0,
    target: float = 0.92,
    selection: str = "point",
    wilson_z: float = 1.0,
    visibility: Sequence[tuple[float, float] | None] | Mapping[str, tuple[float, float] | None] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Plot-blocked k-fold and leave-one-year-out CV of a calibrated variant, per fold and pooled.
    ``selection``, ``wilson_z``: how the inner selection tests precision (``precision_test``).
    ``visibility``: (``s2_visibility_quantile``, ``s2_visibility_recovery``) options (None: no
    measured limit) chosen with the rest on the training part, by the same inner count of decided
    parcel-years (ties: the stricter limit), or one per fold label (a mapping: chosen elsewhere,
    ``cross_validate_s2_visibility_joint``); default: the rule's own. Either way the limit is
    measured on the training parcels (``alerts.visibility``) and applied to the held-out ones.

    ``scheme``: the rule-only scheme; its first grassland-like rule (the one naming "mowing") is
    judged calibrated, the others as they are. ``extra``: per case, additional feature columns
    (``[N, E]``, the encoder representation of ``alerts.heads``) named ``extra_names``.
    """
    rule = next(r for r in scheme.rules if "mowing" in r.events)
    mine = np.asarray([scheme.rule_for(c.land_use) is rule for c in cases])
    idx_all = np.arange(len(cases))
    members = idx_all[mine]
    sub = [cases[j] for j in members]
    extra_sub = None if extra is None else np.asarray(extra)[members]
    tab = table(sub, rule, extra_sub, extra_names)
    given = visibility if isinstance(visibility, Mapping) else None
    options = (list(visibility) if given is None else list(dict.fromkeys(given.values()))) if visibility is not None \
        else [None if rule.s2_visibility_quantile is None else (rule.s2_visibility_quantile, rule.s2_visibility_recovery)]
    traces = _traces(sub, rule, options)
    tables: dict[float | None, Table] = {rule.max_s2_gap_without_s1_days: tab}
    cand = candidates or CANDIDATES[variant]
    plots = np.asarray([c.parcel_id for c in sub])
    years = np.asarray([c.campaign for c in sub])
    base_lights = [assess(c.parcel_id, c.land_use, c.campaign, c.events, as_of=c.as_of, evidence=c.evidence,
                          scheme=scheme).light for c in cases]
    local = np.arange(len(sub))
    splits = _outer_splits(plots, years, folds, seed)
    out: dict = {"variant": variant, "candidates": [list(c) if len(c) <= 12 else f"{len(c)} columns" for c in cand], "gaps_days": list(GAPS_DAYS),
                 **({"s2_visibility_options": [None if o is None else list(o) for o in options]}
                    if visibility is not None else {}),
                 "target_precision": target, "inner_folds": INNER_FOLDS, "l2_choices": list(l2s),
                 "selection": selection, **({"wilson_z": wilson_z} if selection == "wilson" else {})}
    for name, parts in splits.items():
        pooled = list(base_lights)
        per_fold = []
        for label, test_mask in parts:
            train = local[~test_mask]
            best = None
            for opt in ([given[label]] if given is not None else options):
                rule_o = _measured(rule, opt, traces, train)
                lim = rule_o.max_s2_gap_without_s1_days
                if lim not in tables:
                    tables[lim] = table(sub, rule_o, extra_sub, extra_names)
                ch = choose(tables[lim], plots, train, cand, target, seed, l2s, selection, years, wilson_z)
                key = (ch["inner_decided"], -(lim if lim is not None else np.inf))
                if best is None or key > best[0]:
                    best = (key, opt, rule_o, ch)
            _, opt, rule_o, chosen = best
            held = _judge(sub, local[test_mask], rule_o, scheme, chosen, tables[rule_o.max_s2_gap_without_s1_days],
                          replaces=rule)
            if visibility is not None or opt is not None:
                chosen = {**chosen, "s2_visibility": None if opt is None else list(opt),
                          "max_s2_gap_without_s1_days": rule_o.max_s2_gap_without_s1_days}
            for j, lt in zip(local[test_mask], held, strict=True):
                pooled[members[j]] = lt
            test_cases = [sub[j] for j in local[test_mask]]
            per_fold.append({"fold": label, "chosen": {k: v for k, v in chosen.items() if k != "model"},
                             **score(test_cases, held)})
            if progress:
                progress(f"{variant} {name} {label}")
        out[name] = {"pooled": score(cases, pooled), "per_campaign": _per_campaign(cases, pooled),
                     "pooled_calibrated_rule": score(sub, [pooled[j] for j in members]),
                     "per_fold": per_fold, "spread": _spread(per_fold)}
    return out


def _traces(sub: Sequence[Case], rule: LandUseRule, options: Sequence[tuple[float, float] | None]) -> dict:
    """recovery -> per case, the visible days of its confident cuts (``alerts.visibility``)."""
    return {o[1]: [cut_traces(rule, c.campaign, c.evidence, c.events, o[1]) for c in sub]
            for o in options if o is not None}


def _measured(rule: LandUseRule, option: tuple[float, float] | None, traces: dict, train: np.ndarray) -> LandUseRule:
    """``rule`` with ``option``'s limit measured on the ``train`` cases' cuts (None: no measured limit)."""
    if option is None:
        return rule.model_copy(update={"s2_visibility_quantile": None})
    q, rec = option
    r = rule.model_copy(update={"s2_visibility_quantile": q, "s2_visibility_recovery": rec})
    return measured_rule(r, [d for j in train for d in traces[rec][j]])


def _judge(sub: Sequence[Case], where: np.ndarray, rule: LandUseRule, scheme: Scheme, chosen: dict,
           tab: Table, replaces: LandUseRule | None = None) -> list[Light]:
    """Held-out lights through ``assess`` (the code that ships); the representation head's model
    reads extra columns ``assess`` does not compute, so its lights come from ``lights_of``.
    ``replaces``: the scheme's rule that ``rule`` stands for (default: ``rule`` itself)."""
    model: LogisticModel = chosen["model"]
    cal = calibrated_rule(rule, chosen)
    old = replaces or rule
    if all(n in FEATURES for n in model.names):
        sc = scheme.model_copy(update={"rules": tuple(cal if r is old else r for r in scheme.rules)})
        return [assess(sub[j].parcel_id, sub[j].land_use, sub[j].campaign, sub[j].events, as_of=sub[j].as_of,
                       evidence=sub[j].evidence, scheme=sc, calibration=model).light for j in where]
    p = model.predict(_columns(tab, model.names)[where])
    codes = lights_of(p, tab.has_event[where], tab.covered[chosen["max_s2_gap_days"]][where],
                      tab.after_deadline[where], chosen["red_probability"], chosen["green_probability"])
    return [(Light.RED, Light.ORANGE, Light.GREEN)[int(k)] for k in codes]


def fit_shipped(cases: Sequence[Case], scheme: Scheme, variant: str = "calibrated", target: float = 0.92,
                seed: int = 0) -> dict:
    """The same choice on every case (the whole dev set): what ships, after the CV is recorded."""
    rule = next(r for r in scheme.rules if "mowing" in r.events)
    sub = [c for c in cases if scheme.rule_for(c.land_use) is rule]
    tab = table(sub, rule)
    plots = np.asarray([c.parcel_id for c in sub])
    return choose(tab, plots, np.arange(len(sub)), CANDIDATES[variant], target, seed)



def _outer_splits(plots: np.ndarray, years: np.ndarray, folds: int, seed: int) -> dict[str, list]:
    """Plot-blocked k-fold (and leave-one-year-out, with several campaigns): (label, held-out mask)."""
    splits = {"plot_kfold": [(f"fold{k + 1}", np.isin(plots, ids))
                             for k, ids in enumerate(kfold_groups(list(plots), folds, seed))]}
    if len(set(years)) > 1:
        splits["leave_one_year_out"] = [(str(y), years == y) for y in sorted(set(years))]
    return splits


def _summary(cases: Sequence[Case], pooled: list[Light], sub: Sequence[Case], mine: np.ndarray,
             per_fold: list[dict]) -> dict:
    return {"pooled": score(cases, pooled), "per_campaign": _per_campaign(cases, pooled),
            "pooled_calibrated_rule": score(sub, [pooled[j] for j in mine]),
            "per_fold": per_fold, "spread": _spread(per_fold)}


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


__all__ = ["CANDIDATES", "S1_Z_GRID", "S2_GAP_WITHOUT_S1_GRID", "S2_VISIBILITY_GRID", "SELECTIONS", "VARIANTS", "add_variants", "choose", "comparison", "cross_validate_calibrated",
           "cross_validate_constant", "cross_validate_s1_veto", "cross_validate_s2_gap", "cross_validate_s2_visibility", "cross_validate_s2_visibility_joint", "fit_shipped", "lights_of", "precision_test", "table",
           "thresholds", "wilson_lower"]
