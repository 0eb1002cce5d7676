"""CAP traffic light per parcel and campaign, as of a date (France's ASP "3STR", the EU AMS).

- green: the declared use is confirmed by an activity detected up to ``as_of`` inside the
  campaign's window (grassland mown or grazed, a crop harvested);
- red: evidence against the declaration: the window was observed well enough (clear S2 views and S1
  views, their counts and longest gaps stated in the reasons) and neither the detectors, nor the
  largest NDVI drop in the window, nor the encoder's residuals show the required activity — or a
  contradicting event (solar works on declared farmland). "No event detected" alone is never red;
- orange: everything else, with the reason (deadline not reached, too few clear views, a weak or
  unconfirmed drop, an unexplained departure from what the encoder expected, a land use no rule
  names);
- not_analysable: the parcel cannot be judged at all (no series; too few S2 pixels inside and no S1
  pixel). "No evidence" never looks like "non-compliant".

Events after ``as_of`` (or known only after it: the end of their window) and events outside the
rule's window never count. Every light carries machine-readable ``reason_codes`` beside the text.
The rules are configuration (``alerts.lights_rules``: per scheme and declared land use). A rule
with ``decision = "calibrated"`` makes the green/red call on a calibrated probability of the
activity (``alerts.confidence``) instead of the detectors' confidence and the drop thresholds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date
from enum import StrEnum

import pandas as pd

from alerts.confidence import LogisticModel, features, load_calibration
from alerts.decisions import NO_SERIES, S1_MIN_VIEWS, Coverage, WindowEvidence, window_evidence
from alerts.lights_rules import LandUseRule, LightsConfig, Scheme, default_scheme, load_rules
from alerts.series import day_number, from_days
from alerts.types import Event, known_by
from alerts.visibility import measured_scheme

LIGHT_COLUMNS = (
    "parcel_id", "land_use", "campaign", "as_of", "scheme", "light", "reason_codes", "reasons", "markers",
    "window_start", "window_end", "deadline", "events", "n_clear_s2", "max_s2_gap_days", "n_s1",
    "max_s1_gap_days", "max_ndvi_drop", "min_residual_z",
)


class Light(StrEnum):
    GREEN = "green"
    ORANGE = "orange"
    RED = "red"
    NOT_ANALYSABLE = "not_analysable"


class Reason(StrEnum):
    """Machine-readable reason codes (docs/traffic-light.md lists what each means)."""

    ACTIVITY_DETECTED = "activity_detected"
    WEAK_ACTIVITY = "weak_activity"
    BEFORE_DEADLINE = "before_deadline"
    NO_ACTIVITY = "no_activity"
    COVERAGE_OK = "coverage_ok"
    TOO_FEW_CLEAR_S2 = "too_few_clear_s2"
    S2_GAP_TOO_LONG = "s2_gap_too_long"
    S1_GAP_TOO_LONG = "s1_gap_too_long"
    POSSIBLE_ACTIVITY = "possible_activity"
    ENCODER_DEPARTURE = "encoder_departure"
    LAND_USE_CHANGE = "land_use_change"
    LAND_USE_NOT_COVERED = "land_use_not_covered"
    NO_SERIES = "no_series"
    TOO_FEW_S2_PIXELS = "too_few_s2_pixels"
    NO_S1_PIXEL = "no_s1_pixel"
    EVENTS_AFTER_AS_OF_IGNORED = "events_after_as_of_ignored"
    EVENTS_OUTSIDE_WINDOW_IGNORED = "events_outside_window_ignored"
    LOW_ACTIVITY_PROBABILITY = "low_activity_probability"
    S1_DROP = "s1_drop"
    S2_GAP_WITHOUT_S1 = "s2_gap_too_long_without_s1"


@dataclass(frozen=True, slots=True)
class TrafficLight:
    parcel_id: str
    campaign: int
    light: Light
    reasons: tuple[str, ...]
    reason_codes: tuple[Reason, ...]
    events: tuple[str, ...] = ()

    @property
    def markers(self) -> tuple[str, ...]:
        """The alert markers of the light (``no_activity``, ``land_use_change``), for exports."""
        return tuple(c.value for c in self.reason_codes if c in (Reason.NO_ACTIVITY, Reason.LAND_USE_CHANGE))

    def as_dict(self) -> dict:
        return {
            "parcel_id": self.parcel_id,
            "campaign": self.campaign,
            "light": self.light.value,
            "reasons": list(self.reasons),
            "reason_codes": [c.value for c in self.reason_codes],
            "markers": list(self.markers),
            "events": list(self.events),
        }


def _iso(day: float) -> str:
    return from_days(day).date().isoformat()


def _coverage_text(ev: Coverage) -> str:
    s2 = f"{ev.n_clear_s2} clear S2 views (longest gap {ev.max_s2_gap_days:.0f} days)"
    s1 = f"{ev.n_s1} S1 views" + (f" (longest gap {ev.max_s1_gap_days:.0f} days)" if ev.n_s1 else "")
    return f"{s2}, {s1}"


def observed(rule: LandUseRule, ev: WindowEvidence, campaign: int) -> Coverage:
    """The coverage of the rule's coverage window (the event window's figures when the evidence
    carries no view days, e.g. hand-built evidence)."""
    if not ev.s2_days and not ev.s1_days:
        ws, we = rule.window_dates(campaign)
        return Coverage(day_number(ws), day_number(we), ev.n_clear_s2, ev.max_s2_gap_days, ev.n_s1, ev.max_s1_gap_days)
    cs, ce = rule.coverage_dates(campaign)
    return ev.coverage_in(day_number(cs), day_number(ce) + 1.0 - 1e-9)


def coverage(rule: LandUseRule, ev: Coverage, evidence: WindowEvidence | None = None) -> tuple[bool, list[Reason]]:
    """Whether the coverage window was observed well enough for a red, and what was missing.
    ``evidence``: the window's, for ``max_s2_gap_without_s1_days`` (None: that limit is not checked)."""
    missing: list[Reason] = []
    if (evidence is not None and rule.max_s2_gap_without_s1_days is not None and not s1_can_veto(rule, evidence)
            and ev.max_s2_gap_days > rule.max_s2_gap_without_s1_days):
        missing.append(Reason.S2_GAP_WITHOUT_S1)
    if ev.n_clear_s2 < rule.min_clear_s2:
        missing.append(Reason.TOO_FEW_CLEAR_S2)
    s1_dense = ev.n_s1 >= 2 and ev.max_s1_gap_days <= rule.max_s1_gap_days
    limit = rule.max_s2_gap_with_s1_days if s1_dense else rule.max_s2_gap_days
    if ev.max_s2_gap_days > limit:
        missing.append(Reason.S2_GAP_TOO_LONG)
        if not s1_dense:
            missing.append(Reason.S1_GAP_TOO_LONG)
    return not missing, missing


def assess(
    parcel_id: str,
    land_use: str,
    campaign: int,
    events: Iterable[Event],
    *,
    as_of: date,
    evidence: WindowEvidence | None,
    scheme: Scheme | None = None,
    calibration: LogisticModel | None = None,
) -> TrafficLight:
    """The light of one parcel for ``campaign`` as of ``as_of``.

    ``events``: the parcel's detected events (any date: only those inside the rule's window, dated
    and known by ``as_of``, count); ``evidence``: :func:`alerts.decisions.window_evidence` of the
    parcel's series for the rule's window (None: no series); ``calibration``: the model of a rule
    with ``decision = "calibrated"`` (default: the rule's ``calibration``; the CV passes its fold's).
    """
    sc = scheme or default_scheme()
    lu = str(land_use).strip().lower()
    as_of_day = day_number(as_of) + 1.0 - 1e-9  # the whole day of as_of
    evs = [e for e in events if e.parcel_id == parcel_id]
    ev = evidence or NO_SERIES

    def light(color: Light, codes: list[Reason], reasons: list[str], shown: list[Event] = ()) -> TrafficLight:
        return TrafficLight(
            parcel_id, campaign, color, tuple(reasons), tuple(codes),
            tuple(f"{e.event} {e.date_iso}" for e in shown),
        )

    year_start = day_number(date(campaign, 1, 1))
    contra = [
        e for e in evs
        if e.event in sc.contradicting_events and year_start <= e.date and known_by(e) <= as_of_day
    ]
    if contra:
        first = min(contra, key=lambda e: e.date)
        return light(
            Light.RED, [Reason.LAND_USE_CHANGE],
            [f"{first.event.replace('_', ' ')} detected from about {first.date_iso} (declared {lu})"], [first],
        )
    if ev.n_rows == 0:
        return light(Light.NOT_ANALYSABLE, [Reason.NO_SERIES], ["no observations of this parcel"])
    if 0 <= ev.s2_pixels < sc.min_s2_pixels and ev.s1_pixels <= 0:
        return light(
            Light.NOT_ANALYSABLE, [Reason.TOO_FEW_S2_PIXELS, Reason.NO_S1_PIXEL],
            [f"{ev.s2_pixels} S2 pixels inside (need {sc.min_s2_pixels}) and no S1 pixel: cannot be judged"],
        )
    rule = sc.rule_for(lu)
    if rule is None:
        color = Light.ORANGE if sc.uncovered == "orange" else Light.NOT_ANALYSABLE
        return light(color, [Reason.LAND_USE_NOT_COVERED], [f"land use {lu!r} is not covered by scheme {sc.name!r}"])
    ws, we = rule.window_dates(campaign)
    deadline = rule.deadline_date(campaign)
    w0, w1 = day_number(ws), day_number(we) + 1.0 - 1e-9
    kinds = " or ".join(rule.events)
    codes: list[Reason] = []
    notes: list[str] = []
    relevant = [e for e in evs if e.event in rule.events]
    inside = [e for e in relevant if w0 <= e.date <= w1]
    counted = [e for e in inside if e.date <= as_of_day and known_by(e) <= as_of_day]
    if len(inside) > len(counted):
        codes.append(Reason.EVENTS_AFTER_AS_OF_IGNORED)
        notes.append(f"{len(inside) - len(counted)} event(s) after {as_of.isoformat()} not counted")
    year_end = day_number(date(campaign + 1, 1, 1))
    outside = [e for e in relevant if not w0 <= e.date <= w1 and year_start <= e.date < min(year_end, as_of_day)]
    if outside:
        codes.append(Reason.EVENTS_OUTSIDE_WINDOW_IGNORED)
        notes.append(f"{len(outside)} event(s) outside {ws.isoformat()}..{we.isoformat()} not counted")
    zs = {id(e): ev.residual_after(e.date) for e in counted}

    def confirmed(e: Event) -> bool:
        z, limit = zs[id(e)], rule.max_green_residual_z
        if limit is None or not math.isfinite(z):  # the detectors' word alone
            return e.confidence >= rule.min_green_confidence
        return e.confidence >= rule.encoder_green_confidence and z <= limit

    def described(e: Event) -> str:
        z = zs[id(e)]
        return f"{e.event} {e.date_iso} (confidence {e.confidence:.3f}" + (
            f", {z:+.1f} std from the encoder's expectation)" if math.isfinite(z) else ")")

    if rule.decision == "calibrated":
        model = calibration or load_calibration(rule.calibration)
        return _calibrated(rule, model, ev, counted, campaign, as_of, lu, described, light, codes, notes)
    strong = [e for e in counted if confirmed(e)]
    if strong:
        dates = ", ".join(described(e) for e in strong)
        return light(
            Light.GREEN, [Reason.ACTIVITY_DETECTED, *codes],
            [f"{dates}: consistent with declared {lu}", *notes], strong,
        )
    if counted:
        best = max(counted, key=lambda e: e.confidence)
        z = zs[id(best)]
        if rule.max_green_residual_z is not None and math.isfinite(z):
            need = (f"green from confidence {rule.encoder_green_confidence:.2f} with a residual of "
                    f"{rule.max_green_residual_z:+.1f} std or below")
        else:
            need = f"green from confidence {rule.min_green_confidence:.2f}"
        return light(
            Light.ORANGE, [Reason.WEAK_ACTIVITY, *codes],
            [f"weak signal: {described(best)}; {need}", *notes], counted,
        )
    cov = observed(rule, ev, campaign)
    seen = _coverage_text(cov)
    cs, ce = rule.coverage_dates(campaign)
    window_text = f"between {cs.isoformat()} and {min(ce, as_of).isoformat()}"
    if as_of < deadline:
        return light(
            Light.ORANGE, [Reason.BEFORE_DEADLINE, *codes],
            [f"no {kinds} detected yet; deadline {deadline.isoformat()} ({seen} {window_text})", *notes],
        )
    covered, missing = coverage(rule, cov, ev)
    if not covered:
        return light(
            Light.ORANGE, [*missing, *codes],
            [f"not observed well enough to decide: {seen} {window_text} (need {rule.min_clear_s2} clear "
             f"S2 views and gaps of at most {rule.max_s2_gap_days:g} days, {rule.max_s2_gap_with_s1_days:g} "
             f"with S1 every {rule.max_s1_gap_days:g} days{_no_s1_text(rule, ev)})", *notes],
        )
    drop = ev.max_drop if rule.red_drop == "persistent" else max(ev.max_drop, ev.max_dip)
    if drop > rule.max_red_drop:
        when = f" around {_iso(ev.drop_day)}" if rule.red_drop == "persistent" and math.isfinite(ev.drop_day) else ""
        return light(
            Light.ORANGE, [Reason.POSSIBLE_ACTIVITY, Reason.COVERAGE_OK, *codes],
            [f"NDVI fell by {drop:.2f}{when} but no {kinds} was confirmed "
             f"(red only below {rule.max_red_drop:.2f})", *notes],
        )
    if s1_vetoes(rule, ev):
        return light(Light.ORANGE, [Reason.S1_DROP, Reason.COVERAGE_OK, *codes], [_s1_text(rule, ev, kinds), *notes])
    z_limit = rule.min_red_residual_z
    if z_limit is not None and math.isfinite(ev.min_residual_z) and ev.min_residual_z < z_limit:
        return light(
            Light.ORANGE, [Reason.ENCODER_DEPARTURE, Reason.COVERAGE_OK, *codes],
            [f"NDVI fell {-ev.min_residual_z:.1f} std below what the encoder expected, no {kinds} confirmed",
             *notes],
        )
    return light(
        Light.RED, [Reason.NO_ACTIVITY, Reason.COVERAGE_OK, *codes],
        [f"declared {lu}: no {kinds} between {ws.isoformat()} and {min(we, as_of).isoformat()} although "
         f"observed: {seen} {window_text}; largest NDVI drop {drop:.2f}", *notes],
    )


def _calibrated(rule: LandUseRule, model: LogisticModel, ev: WindowEvidence, counted: list[Event], campaign: int,
                as_of: date, lu: str, described, light, codes: list[Reason], notes: list[str]) -> TrafficLight:
    """The light of a ``decision = "calibrated"`` rule: green on a counted event whose parcel-year
    probability of the activity reaches ``green_probability``; red, after the deadline on a covered
    window, up to ``red_probability`` (a weak detection the calibration finds unlikely included, and
    named); orange in between, with the probability."""
    cov = observed(rule, ev, campaign)
    p = model.probability(features(ev, counted, cov))
    kinds = " or ".join(rule.events)
    said = f"probability of {kinds} {p:.2f} (calibrated"
    best = max(counted, key=lambda e: e.confidence) if counted else None
    if best is not None and p >= rule.green_probability:
        return light(
            Light.GREEN, [Reason.ACTIVITY_DETECTED, *codes],
            [f"{described(best)}: {said}, green from {rule.green_probability:.2f}); consistent with declared {lu}",
             *notes], counted,
        )
    weak = [Reason.WEAK_ACTIVITY] if best is not None else []
    seen = _coverage_text(cov)
    cs, ce = rule.coverage_dates(campaign)
    window_text = f"between {cs.isoformat()} and {min(ce, as_of).isoformat()}"
    found = f"weak signal: {described(best)}; " if best is not None else f"no {kinds} detected; "
    deadline = rule.deadline_date(campaign)
    if as_of < deadline:
        return light(
            Light.ORANGE, [*(weak or [Reason.BEFORE_DEADLINE]), *codes],
            [f"{found}{said}); deadline {deadline.isoformat()} ({seen} {window_text})", *notes], counted,
        )
    covered, missing = coverage(rule, cov, ev)
    if not covered:
        return light(
            Light.ORANGE, [*weak, *missing, *codes],
            [f"{found}not observed well enough to decide: {seen} {window_text} (need {rule.min_clear_s2} clear "
             f"S2 views and gaps of at most {rule.max_s2_gap_days:g} days{_no_s1_text(rule, ev)})", *notes], counted,
        )
    if p <= rule.red_probability and s1_vetoes(rule, ev):
        return light(
            Light.ORANGE, [*weak, Reason.S1_DROP, Reason.COVERAGE_OK, *codes],
            [f"{found}{said}, red up to {rule.red_probability:.2f}); {_s1_text(rule, ev, kinds)}", *notes], counted,
        )
    if p <= rule.red_probability:
        judged = f"the detection {described(best)} judged unlikely; " if best is not None else ""
        return light(
            Light.RED, [Reason.NO_ACTIVITY, Reason.COVERAGE_OK, Reason.LOW_ACTIVITY_PROBABILITY, *codes],
            [f"declared {lu}: {judged}{said}, red up to {rule.red_probability:.2f}) although observed: {seen} "
             f"{window_text}; largest NDVI drop {max(ev.max_drop, ev.max_dip):.2f}", *notes],
        )
    return light(
        Light.ORANGE, [*(weak or [Reason.POSSIBLE_ACTIVITY]), Reason.COVERAGE_OK, *codes],
        [f"{found}{said}: green from {rule.green_probability:.2f}, red up to {rule.red_probability:.2f})", *notes],
        counted,
    )


def _no_s1_text(rule: LandUseRule, ev: WindowEvidence) -> str:
    if rule.max_s2_gap_without_s1_days is None or s1_can_veto(rule, ev):
        return ""
    measured = (" (how long the detected cuts of these parcels stayed visible in S2)"
                if rule.s2_visibility_quantile is not None else "")
    return (f"; {rule.max_s2_gap_without_s1_days:g} days{measured} where no S1 series could veto a red: a cut "
            "that regrows inside a longer gap leaves no trace in S2")


def s1_can_veto(rule: LandUseRule, ev: WindowEvidence) -> bool:
    """Whether the rule has an S1 veto and S1 came often enough on one orbit to apply it."""
    return rule.max_red_s1_drop_z is not None and ev.s1_orbit_views >= S1_MIN_VIEWS


def s1_vetoes(rule: LandUseRule, ev: WindowEvidence) -> bool:
    """Whether S1 saw a VH fall too large for a red (``max_red_s1_drop_z``; unset: never)."""
    return rule.max_red_s1_drop_z is not None and ev.s1_drop_z > rule.max_red_s1_drop_z


def _s1_text(rule: LandUseRule, ev: WindowEvidence, kinds: str) -> str:
    when = f" around {_iso(ev.s1_drop_day)}" if math.isfinite(ev.s1_drop_day) else ""
    return (f"S1 VH fell {ev.s1_drop_z:.1f} times its own noise{when}, a {kinds} the clouds may have hidden "
            f"(red only up to {rule.max_red_s1_drop_z:g})")


def _scheme(rules: LightsConfig | Scheme | str | None, scheme: str | None) -> Scheme:
    if isinstance(rules, Scheme):
        return rules
    if isinstance(rules, LightsConfig):
        return rules.scheme(scheme)
    return load_rules(rules).scheme(scheme)


def _pixels_inside(parcels: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """parcel_id -> (S2 10 m, S1) pixels fully inside, when the parcels table is a campaign import's
    (``ingest.parcel_campaign``: columns ``s2_10m_pixels``, ``s1_pixels``); else empty."""
    if not {"s2_10m_pixels", "s1_pixels"} <= set(parcels.columns):
        return {}
    return {str(p): (int(a), int(b)) for p, a, b in
            zip(parcels["parcel_id"], parcels["s2_10m_pixels"], parcels["s1_pixels"], strict=True)}


def assess_frame(
    obs: pd.DataFrame,
    parcels: pd.DataFrame,
    events: Iterable[Event],
    *,
    campaign: int,
    as_of: date,
    rules: LightsConfig | Scheme | str | None = None,
    scheme: str | None = None,
) -> pd.DataFrame:
    """Lights of every parcel of ``parcels`` for ``campaign`` as of ``as_of`` (one row each).

    ``obs``: a normalised observation table (``alerts.series``); rows after ``as_of`` are ignored.
    With the encoder's ``expected_ndvi``/``expected_ndvi_std`` columns
    (``alerts.expectation.add_model_expectations``) its residuals enter the red/orange call where the
    rule sets ``min_red_residual_z``. ``rules``: a config, a scheme, a TOML path, or None (defaults).
    When ``parcels`` is a campaign's imported layer (``sitsmon ingest parcels import``: columns
    ``s2_10m_pixels``, ``s1_pixels``), "not analysable" is judged on its pixels fully inside the parcel.
    Columns: ``LIGHT_COLUMNS`` (``reasons`` joined by "; ", ``reason_codes`` and ``markers`` by ",").
    Where ``obs`` carries a ``campaign`` column (rows of the parcel-series store), only the rows of
    ``campaign`` count: a parcel id redrawn in another campaign is another series.
    """
    sc = _scheme(rules, scheme)
    if "days" not in obs.columns and len(obs):
        from alerts.series import normalise_observations

        obs = normalise_observations(obs)
    if "campaign" in obs.columns and len(obs):
        tagged = pd.to_numeric(obs["campaign"], errors="coerce")
        obs = obs[tagged.isna() | (tagged == int(campaign))]
    by_parcel: dict[str, list[Event]] = {}
    for e in events:
        by_parcel.setdefault(e.parcel_id, []).append(e)
    as_of_day = day_number(as_of) + 1.0 - 1e-9
    groups = dict(tuple(obs[obs["days"] <= as_of_day].groupby("parcel_id", sort=False))) if len(obs) else {}
    inside = _pixels_inside(parcels)
    judged = []
    for pid, lu in zip(parcels["parcel_id"].astype(str), parcels["land_use"].astype(str), strict=True):
        rule = sc.rule_for(lu)
        g = groups.get(pid)
        win: tuple[date, date] | None = rule.window_dates(campaign) if rule else None
        if g is None or g.empty:
            ev = None
        else:
            ws, we = win or (date(campaign, 1, 1), date(campaign, 12, 31))
            ev = window_evidence(g, day_number(ws), day_number(we) + 1.0 - 1e-9, as_of_day)
            if pid in inside:  # the campaign import's pixels fully inside, not the series' pixel centres
                ev = replace(ev, s2_pixels=inside[pid][0], s1_pixels=inside[pid][1])
        judged.append((pid, lu, win, ev))
    # a rule that measures how long a cut stays visible in S2 measures it on the parcels judged here
    sc = measured_scheme(sc, ((lu, campaign, ev, by_parcel.get(pid, [])) for pid, lu, _, ev in judged))
    rows = []
    for pid, lu, win, ev in judged:
        rule = sc.rule_for(lu)
        tl = assess(pid, lu, campaign, by_parcel.get(pid, []), as_of=as_of, evidence=ev, scheme=sc)
        e = ev or NO_SERIES
        cov = observed(rule, e, campaign) if rule and ev else e
        rows.append({
            "parcel_id": pid,
            "land_use": lu.lower(),
            "campaign": campaign,
            "as_of": as_of.isoformat(),
            "scheme": sc.name,
            "light": tl.light.value,
            "reason_codes": ",".join(c.value for c in tl.reason_codes),
            "reasons": "; ".join(tl.reasons),
            "markers": ",".join(tl.markers),
            "window_start": win[0].isoformat() if win else "",
            "window_end": win[1].isoformat() if win else "",
            "deadline": rule.deadline_date(campaign).isoformat() if rule else "",
            "events": ",".join(tl.events),
            "n_clear_s2": cov.n_clear_s2,
            "max_s2_gap_days": round(cov.max_s2_gap_days, 1) if math.isfinite(cov.max_s2_gap_days) else None,
            "n_s1": cov.n_s1,
            "max_s1_gap_days": round(cov.max_s1_gap_days, 1) if math.isfinite(cov.max_s1_gap_days) else None,
            "max_ndvi_drop": round(e.max_drop, 4),
            "min_residual_z": round(e.min_residual_z, 2) if math.isfinite(e.min_residual_z) else None,
        })
    return pd.DataFrame(rows, columns=list(LIGHT_COLUMNS))
