"""``sitsmon eval lights``: how far a controller can trust the lights, cross-validated.

Per parcel-year (campaign), the light as of the rule's deadline (or the last observation, if later)
is scored against the reference events: a red is right when the reference records none of the
rule's activities in that campaign (or when it records the contradicting event, for a land-use
change); a green is right when it records one. Reported per campaign: the share of each light, red
precision (right reds / reds) and green precision (right greens / greens).

The light's decision constants (``min_green_confidence``, ``max_red_drop``, ``max_s2_gap_days`` and,
with the encoder, ``min_red_residual_z``) are chosen inside the cross-validation: on the training
parcel-years only, the combination that decides the most parcel-years (fewest orange) while both
precisions stay at or above ``target`` (if none does: the one with the best lower precision); it is
then applied to the held-out ones. Plot-blocked k-fold (every year of a plot in one fold) and
leave-one-year-out; per-fold numbers and their spread are reported. The detectors run with their
shipped parameters (chosen by their own cross-validation, ``sitsmon eval mowing``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from alerts.decisions import WindowEvidence, window_evidence
from alerts.evaluation import kfold_groups
from alerts.lights_rules import Scheme
from alerts.series import to_days
from alerts.traffic_light import Light, assess
from alerts.types import Event
from alerts.visibility import measured_scheme

# Each axis lists partial settings; the grid is their product (merged dicts).
LIGHT_GRID: list[list[dict]] = [
    [{"min_green_confidence": c} for c in (0.0, 0.8, 0.85, 0.9)],
    [{"max_red_drop": d} for d in (0.04, 0.06, 0.08, 0.1, 0.12, 0.15)],
    [{"max_s2_gap_days": g, "max_s2_gap_with_s1_days": g + extra} for g, extra in
     ((15.0, 0.0), (20.0, 0.0), (20.0, 15.0), (25.0, 0.0), (25.0, 10.0), (30.0, 0.0), (30.0, 15.0))],
    [{"red_drop": r} for r in ("persistent", "any")],
    # where coverage is counted: the event window, or the core of the season (the activity's months)
    [{"coverage_window": w} for w in (None, ("05-01", "09-15"), ("05-15", "08-31"))],
]
NO_ENCODER: list[list[dict]] = [[{"max_green_residual_z": None, "min_red_residual_z": None}]]
ENCODER_GRID: list[list[dict]] = [
    [{"max_green_residual_z": None}]
    + [{"encoder_green_confidence": c, "max_green_residual_z": z} for c in (0.0, 0.7, 0.8) for z in (-2.0, -2.5, -3.0)],
    [{"min_red_residual_z": z} for z in (None, -3.0)],
]


@dataclass(frozen=True, slots=True)
class Case:
    """One parcel-year to judge: its inputs (evidence, events) and its reference."""

    parcel_id: str
    land_use: str
    campaign: int
    as_of: date
    evidence: WindowEvidence | None
    events: tuple[Event, ...]
    active: bool  # the reference records a confirming activity in the campaign
    contradicted: bool  # the reference records a contradicting event (e.g. solar works)


def build_cases(
    obs: pd.DataFrame,
    parcels: pd.DataFrame,
    detections: Sequence[Event],
    reference: pd.DataFrame,
    scheme: Scheme,
    campaigns: Sequence[int] | None = None,
) -> list[Case]:
    """Every parcel-year of ``obs`` with a rule (or a contradicting reference event)."""
    ref = reference.copy()
    ref["year"] = pd.to_datetime(ref["date"], utc=True).dt.year
    ref_kinds = {(str(p), int(y)): set(g["event"]) for (p, y), g in ref.groupby(["parcel_id", "year"])}
    by_parcel: dict[str, list[Event]] = {}
    for e in detections:
        by_parcel.setdefault(e.parcel_id, []).append(e)
    years = campaigns or sorted(obs["time"].dt.year.unique())
    land_use = dict(zip(parcels["parcel_id"].astype(str), parcels["land_use"].astype(str).str.lower(), strict=True))
    groups = dict(tuple(obs.groupby("parcel_id", sort=True)))
    last_day = float(obs["days"].max())
    cases = []
    for pid, g in groups.items():
        lu = land_use[pid]
        rule = scheme.rule_for(lu)
        for year in years:
            gy = g[g["time"].dt.year == year]
            if gy.empty:
                continue
            kinds = ref_kinds.get((pid, int(year)), set())
            contradicted = bool(kinds & set(scheme.contradicting_events))
            if rule is None and not contradicted:
                continue
            deadline = rule.deadline_date(int(year)) if rule else date(int(year), 12, 31)
            as_of = max(deadline, min(pd.Timestamp(gy["time"].max()).date(), date(int(year), 12, 31)))
            as_of_day = min(to_days(pd.Timestamp(as_of)) + 1.0 - 1e-9, last_day + 1.0)
            ws, we = rule.window_dates(int(year)) if rule else (date(int(year), 1, 1), deadline)
            ev = window_evidence(gy, to_days(pd.Timestamp(ws)), to_days(pd.Timestamp(we)) + 1.0 - 1e-9, as_of_day)
            active = bool(rule and kinds & set(rule.events))
            cases.append(Case(pid, lu, int(year), as_of, ev, tuple(by_parcel.get(pid, ())), active, contradicted))
    return cases


def with_params(scheme: Scheme, params: dict) -> Scheme:
    """The scheme with ``params`` set on every rule."""
    return scheme.model_copy(update={"rules": tuple(r.model_copy(update=params) for r in scheme.rules)})


def judge(cases: Sequence[Case], scheme: Scheme) -> list[Light]:
    return [
        assess(c.parcel_id, c.land_use, c.campaign, c.events, as_of=c.as_of, evidence=c.evidence, scheme=scheme).light
        for c in cases
    ]


def score(cases: Sequence[Case], lights: Sequence[Light]) -> dict:
    """Shares of each light, red and green precision (None where there is no red / no green)."""
    n = len(cases)
    counts = {lt.value: 0 for lt in Light}
    red_ok = green_ok = 0
    for c, lt in zip(cases, lights, strict=True):
        counts[lt.value] += 1
        if lt is Light.RED and (c.contradicted or not c.active):
            red_ok += 1
        if lt is Light.GREEN and c.active and not c.contradicted:
            green_ok += 1
    red, green = counts["red"], counts["green"]
    return {
        "parcel_years": n,
        "active": int(sum(c.active for c in cases)),
        "counts": counts,
        "share": {k: round(v / n, 4) if n else None for k, v in counts.items()},
        "red_precision": round(red_ok / red, 4) if red else None,
        "green_precision": round(green_ok / green, 4) if green else None,
        "red_right": red_ok,
        "green_right": green_ok,
    }


def objective(s: dict, target: float) -> tuple:
    """Higher is better: feasible (both precisions ≥ target) first, then fewest orange, then precision."""
    rp = 1.0 if s["red_precision"] is None else s["red_precision"]
    gp = 1.0 if s["green_precision"] is None else s["green_precision"]
    decided = s["counts"]["red"] + s["counts"]["green"]
    feasible = rp >= target and gp >= target
    return (feasible, decided if feasible else min(rp, gp), min(rp, gp))


def grid_of(grid: Sequence[Sequence[dict]]) -> list[dict]:
    """Every combination of one entry per axis, merged."""
    return [{k: v for part in parts for k, v in part.items()} for parts in itertools.product(*grid)]


def rule_label(scheme: Scheme, case: Case) -> str:
    """The rule group a case is judged by (its rule's first land use; "-" for no rule)."""
    rule = scheme.rule_for(case.land_use)
    return rule.land_uses[0] if rule else "-"


def select(lights_by_combo: dict[int, list[Light]], cases: Sequence[Case], target: float) -> int:
    """The combination (index) with the best objective on ``cases`` (lights precomputed per combination)."""
    best, best_val = 0, None
    for i, lights in lights_by_combo.items():
        val = objective(score(cases, lights), target)
        if best_val is None or val > best_val:
            best, best_val = i, val
    return best


def _groups(cases: Sequence[Case], scheme: Scheme) -> dict[str, np.ndarray]:
    labels = np.asarray([rule_label(scheme, c) for c in cases])
    return {lab: np.flatnonzero(labels == lab) for lab in sorted(set(labels))}


def cross_validate(
    cases: Sequence[Case],
    scheme: Scheme,
    grid: Sequence[Sequence[dict]],
    *,
    folds: int = 5,
    seed: int = 0,
    target: float = 0.92,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Plot-blocked k-fold and leave-one-year-out CV of the light constants; per fold and pooled.

    Constants are chosen per rule (land-use group) on the training cases of that group: a
    grassland's light never depends on a cereal constant.
    """
    combos = grid_of(grid)
    all_lights: dict[int, list[Light]] = {i: judge(cases, with_params(scheme, c)) for i, c in enumerate(combos)}
    groups = _groups(cases, scheme)
    idx = np.arange(len(cases))
    plots = [c.parcel_id for c in cases]
    years = sorted({c.campaign for c in cases})
    splits: dict[str, list[tuple[str, np.ndarray]]] = {
        "plot_kfold": [
            (f"fold{k + 1}", idx[np.isin(plots, ids)]) for k, ids in enumerate(kfold_groups(plots, folds, seed))
        ],
    }
    if len(years) > 1:
        splits["leave_one_year_out"] = [(str(y), idx[[c.campaign == y for c in cases]]) for y in years]

    def choose(train: np.ndarray) -> dict[str, int]:
        out = {}
        for lab, members in groups.items():
            tr = np.intersect1d(members, train)
            sub = {i: [lts[j] for j in tr] for i, lts in all_lights.items()}
            out[lab] = select(sub, [cases[j] for j in tr], target)
        return out

    def apply(chosen: dict[str, int], where: np.ndarray) -> list[Light]:
        label_of = {int(j): lab for lab, members in groups.items() for j in members}
        return [all_lights[chosen[label_of[int(j)]]][j] for j in where]

    out: dict = {"grid": [list(axis) for axis in grid], "combinations": len(combos), "target_precision": target}
    for name, parts in splits.items():
        pooled: list[Light | None] = [None] * len(cases)
        per_fold = []
        for label, test in parts:
            chosen = choose(np.setdiff1d(idx, test))
            held = apply(chosen, test)
            for j, lt in zip(test, held, strict=True):
                pooled[j] = lt
            per_fold.append({
                "fold": label,
                "chosen": {lab: combos[i] for lab, i in chosen.items() if lab != "-"},
                **score([cases[j] for j in test], held),
            })
            if progress:
                progress(f"{name} {label}")
        lights = [lt for lt in pooled if lt is not None]
        out[name] = {
            "pooled": score(cases, lights),
            "per_campaign": _per_campaign(cases, lights),
            "per_land_use": {lab: score([cases[j] for j in m], [lights[j] for j in m]) for lab, m in groups.items()},
            "per_fold": per_fold,
            "spread": _spread(per_fold),
        }
    chosen_all = choose(idx)
    out["chosen_on_all"] = {lab: combos[i] for lab, i in chosen_all.items() if lab != "-"}
    out["chosen_on_all_in_sample"] = score(cases, apply(chosen_all, idx))
    return out


def joint_choice(
    case_sets: dict[str, Sequence[Case]], scheme: Scheme, grid: Sequence[Sequence[dict]], target: float = 0.92
) -> dict:
    """Constants per rule that hold on every dataset at once: feasible (both precisions ≥ ``target``)
    on each dataset where the rule has cases, then the most decided share on the worst dataset.

    This is how the shipped defaults are picked: a light must be trustworthy on plots of a region it
    was not tuned on, so a constant that only one dataset likes is not shipped.
    """
    combos = grid_of(grid)
    per_set = {
        name: ({i: judge(cs, with_params(scheme, c)) for i, c in enumerate(combos)}, _groups(cs, scheme), cs)
        for name, cs in case_sets.items()
    }
    labels = sorted({lab for _, g, _ in per_set.values() for lab in g if lab != "-"})
    chosen: dict[str, dict] = {}
    for lab in labels:
        best, best_val = 0, None
        for i in range(len(combos)):
            vals = []
            for lights, groups, cs in per_set.values():
                if lab not in groups:
                    continue
                m = groups[lab]
                sc = score([cs[j] for j in m], [lights[i][j] for j in m])
                rp = 1.0 if sc["red_precision"] is None else sc["red_precision"]
                gp = 1.0 if sc["green_precision"] is None else sc["green_precision"]
                decided = (sc["counts"]["red"] + sc["counts"]["green"]) / max(sc["parcel_years"], 1)
                vals.append((rp >= target and gp >= target, decided, min(rp, gp)))
            val = (all(v[0] for v in vals), min(v[1] for v in vals), min(v[2] for v in vals))
            if best_val is None or val > best_val:
                best, best_val = i, val
        chosen[lab] = {"params": combos[best], "feasible_on_all": bool(best_val[0]),
                       "worst_decided_share": round(best_val[1], 4)}
    return chosen


def _per_campaign(cases: Sequence[Case], lights: Sequence[Light]) -> dict:
    years = sorted({c.campaign for c in cases})
    return {
        str(y): score([c for c in cases if c.campaign == y], [lt for c, lt in zip(cases, lights, strict=True) if c.campaign == y])
        for y in years
    }


def _spread(per_fold: list[dict]) -> dict:
    def rng(key: str) -> list[float | None]:
        vals = [f[key] for f in per_fold if f[key] is not None]
        return [min(vals), max(vals)] if vals else [None, None]

    oranges = [f["share"]["orange"] for f in per_fold]
    return {"red_precision": rng("red_precision"), "green_precision": rng("green_precision"),
            "orange_share": [min(oranges), max(oranges)] if oranges else [None, None]}


def judge_measured(cases: Sequence[Case], scheme: Scheme) -> list[Light]:
    """``judge`` as ``assess_frame`` runs: per campaign, with a measuring rule's S2-only limit
    measured on that campaign's cases (``alerts.visibility``; no reference is read)."""
    out: list[Light | None] = [None] * len(cases)
    for year in sorted({c.campaign for c in cases}):
        idx = [j for j, c in enumerate(cases) if c.campaign == year]
        mine = [cases[j] for j in idx]
        sc = measured_scheme(scheme, ((c.land_use, c.campaign, c.evidence, c.events) for c in mine))
        for j, lt in zip(idx, judge(mine, sc), strict=True):
            out[j] = lt
    return out


def shipped(cases: Sequence[Case], scheme: Scheme) -> dict:
    """The scheme as given (the shipped defaults), per campaign: in-sample figures."""
    lights = judge_measured(cases, scheme)
    groups = _groups(cases, scheme)
    return {
        "all": score(cases, lights),
        "per_campaign": _per_campaign(cases, lights),
        "per_land_use": {lab: score([cases[j] for j in m], [lights[j] for j in m]) for lab, m in groups.items()},
    }


def nan_none(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def evaluate_lights(
    obs: pd.DataFrame,
    parcels: pd.DataFrame,
    reference: pd.DataFrame,
    *,
    scheme: Scheme,
    detector_names: Sequence[str] = ("mowing", "harvest", "solar"),
    model: object | None = None,
    folds: int = 5,
    seed: int = 0,
    target: float = 0.92,
    grid: Sequence[Sequence[dict]] | None = None,
    progress: Callable[[str], None] | None = None,
    keep_cases: list | None = None,
    variants: Sequence[str] = ("rule", "rule_encoder"),
) -> dict:
    """The lights of one dataset: shipped defaults (in sample) and the CV of rule only vs rule + encoder.

    ``obs``: a normalised table; ``reference``: ``parcel_id, event, date``; ``model``: a
    ``sits.SitsEncoder`` for the encoder variant (None: rule only); ``variants``: which grid CVs run
    ("rule", "rule_encoder"; the calibrated ones are ``alerts.lights_cv.add_variants``).
    """
    from alerts.detectors import make_detectors, run_detectors

    grid = list(LIGHT_GRID if grid is None else grid)
    events, _ = run_detectors(obs, parcels, make_detectors(list(detector_names)))
    table = obs
    if model is not None:
        from alerts.expectation import add_model_expectations

        table = add_model_expectations(obs, model)
    cases = build_cases(table, parcels, events, reference, scheme)
    if keep_cases is not None:
        keep_cases.append(cases)
    rule_scheme = with_params(scheme, {"decision": "rule"})  # the rule-only variants, whatever ships
    kw = {"folds": folds, "seed": seed, "target": target, "progress": progress}
    out: dict = {
        "parcel_years": len(cases),
        "with_activity": int(sum(c.active for c in cases)),
        "detectors": list(detector_names),
        "shipped_defaults_in_sample": shipped(cases, scheme),
    }
    if "rule" in variants:
        out["cv_rule_only"] = cross_validate(cases, rule_scheme, [*grid, *NO_ENCODER], **kw)
    if model is not None:
        out["model_version"] = getattr(model, "version", "")
        if "rule_encoder" in variants:
            out["cv_rule_plus_encoder"] = cross_validate(cases, rule_scheme, [*grid, *ENCODER_GRID], **kw)
    return out
