"""How long a cut stays visible in S2, measured on the dataset's own detected cuts (no labels).

Without S1 a red rests on S2 alone, and S2 sees a cut only while the sward is still down: a cut that
falls into a gap between clear views longer than its visible trace leaves nothing to detect. How
long that trace lasts depends on the region (climate, sward, management): the demo archive's
simulated grass is back within about two weeks, the Slovak dev plots stay low for four to six. So
the longest S2 gap a red may span where no S1 can veto it (``max_s2_gap_without_s1_days``) is
measured on the series being judged instead of fixed:

- per detected cut (an event of the rule, inside its window, known by ``as_of``: the detector's
  own threshold makes it a detection; asking confidence ≥ 0.9 leaves 22 cuts on grassland-sk-dev and
  14 on the demo archive, too few to measure on): the days from the cut to its recovery, back within
  ``s2_visibility_recovery`` of its drop of the level before (``alerts.intervals.departure``), each
  taken at the middle of the two clear views it lies between (``visible_days``); a cut not yet back
  is left out (its trace is longer than seen);
- the limit: the ``s2_visibility_quantile`` quantile of those days. A cut can hide in a gap only if
  the gap is longer than its trace, so a low quantile would be the strict reading; the CV chose the
  median (0.5, with recovery 0.1) on both datasets: the lower ones turned most of the real set's
  S2-only plot-years orange (docs/traffic-light.md, "The S2-only path").

Measured on the parcels ``assess_frame`` judges (at run time) or on a CV fold's training parcels; it
reads no reference. Both constants are chosen inside the cross-validation (``alerts.lights_cv.
cross_validate_s2_visibility``, docs/traffic-light.md "The S2-only path").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from alerts.decisions import WindowEvidence
from alerts.intervals import departure
from alerts.lights_rules import LandUseRule, Scheme
from alerts.series import day_number
from alerts.types import Event, known_by

# A trace is measured to 0.1 day: limits that differ by less are one limit (and one cache entry).
ROUND_DAYS = 1


def visible_days(window_start: float, t: np.ndarray, v: np.ndarray, recovery: float) -> float | None:
    """Days the cut whose window starts on ``window_start`` stayed visible on clear views ``t``
    (sorted days) with NDVI ``v``: from the cut to the recovery (back within ``recovery`` of the drop
    of the level before). Each is known only between two views, the cut between the last view at the
    level and the first low one, the recovery between the last low view and the first one back, so
    each is taken at the middle of its interval. None: not back yet, no drop, or no view before."""
    d = departure(window_start, t, v, recovery=recovery)
    if d is None or not d.recovered or d.before < 0:
        return None
    return float(0.5 * (t[d.end - 1] + t[d.end]) - 0.5 * (t[d.before] + t[d.start]))


def cut_traces(rule: LandUseRule, campaign: int, evidence: WindowEvidence | None, events: Iterable[Event],
               recovery: float) -> list[float]:
    """The visible days of each detected cut of one parcel-year (see the module docstring)."""
    if evidence is None or len(evidence.s2_ndvi) != len(evidence.s2_days) or not evidence.s2_days:
        return []
    ws, we = rule.window_dates(campaign)
    w0, w1 = day_number(ws), day_number(we) + 1.0 - 1e-9
    t, v = np.asarray(evidence.s2_days, float), np.asarray(evidence.s2_ndvi, float)
    out = []
    for e in events:
        if (e.event in rule.events and w0 <= e.date <= w1 and e.date <= evidence.as_of_day
                and known_by(e) <= evidence.as_of_day):
            days = visible_days(e.window[0], t, v, recovery)
            if days is not None:
                out.append(days)
    return out


def limit_from(traces: Sequence[float], quantile: float, min_cuts: int) -> float | None:
    """The ``quantile`` of ``traces`` (days, to ``ROUND_DAYS`` decimals); None with fewer than ``min_cuts``."""
    if len(traces) < min_cuts:
        return None
    return round(float(np.quantile(np.asarray(traces, float), quantile)), ROUND_DAYS)


def measured_rule(rule: LandUseRule, traces: Sequence[float]) -> LandUseRule:
    """``rule`` with ``max_s2_gap_without_s1_days`` measured from ``traces`` (its visibility
    quantile); the rule unchanged when it measures nothing or too few cuts were seen."""
    if rule.s2_visibility_quantile is None:
        return rule
    days = limit_from(traces, rule.s2_visibility_quantile, rule.min_visibility_cuts)
    if days is None or days <= 0:
        return rule
    return rule.model_copy(update={"max_s2_gap_without_s1_days": days})


def measured_scheme(scheme: Scheme, judged: Iterable[tuple[str, int, WindowEvidence | None, Sequence[Event]]]) -> Scheme:
    """``scheme`` with each measuring rule's limit measured on ``judged``: (land use, campaign,
    evidence, events) of the parcel-years being judged."""
    if all(r.s2_visibility_quantile is None for r in scheme.rules):
        return scheme
    traces: dict[int, list[float]] = {}
    for land_use, campaign, evidence, events in judged:
        rule = scheme.rule_for(land_use)
        if rule is not None and rule.s2_visibility_quantile is not None:
            traces.setdefault(id(rule), []).extend(
                cut_traces(rule, campaign, evidence, events, rule.s2_visibility_recovery))
    return scheme.model_copy(update={"rules": tuple(
        measured_rule(r, traces.get(id(r), [])) for r in scheme.rules)})


__all__ = ["ROUND_DAYS", "cut_traces", "limit_from", "measured_rule", "measured_scheme", "visible_days"]
