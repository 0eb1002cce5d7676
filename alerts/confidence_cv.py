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

The coverage constants' CV (S1 veto, S2-only limit) and ``add_variants``, which runs every variant
for ``sitsmon eval lights``, are in ``alerts.lights_cv``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from alerts.confidence import FEATURES, SHAPE_FEATURES, LogisticModel, features, fit_logistic
from alerts.evaluation import kfold_groups
from alerts.evaluation_lights import Case, _per_campaign, _spread, score
from alerts.lights_rules import LandUseRule, Scheme
from alerts.series import day_number
from alerts.traffic_light import Light, assess, coverage, observed, s1_vetoes
from alerts.types import known_by
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


__all__ = ["CANDIDATES", "SELECTIONS", "choose", "cross_validate_calibrated", "fit_shipped", "lights_of",
           "precision_test", "table", "thresholds", "wilson_lower"]
