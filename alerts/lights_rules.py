"""Traffic-light rules as configuration: per scheme and declared land use (docs/traffic-light.md).

A paying agency runs several scenarios per country: which events confirm a declared use, in which
window they count, from which date their absence may turn a light red, and how well the window must
have been observed before it may. These are data, validated by pydantic at the boundary (a TOML
file or a dict), never code. ``DEFAULT_RULES`` are the shipped defaults; the decision thresholds
(``min_green_confidence``, ``max_red_drop``, ``min_red_residual_z``, the coverage gaps) were chosen
by the cross-validated selection of ``sitsmon eval lights`` (see docs/traffic-light.md for the folds).

Dates are ``"MM-DD"`` strings in the campaign year.
"""

from __future__ import annotations

import tomllib
from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from alerts.errors import AlertsError


class RulesError(AlertsError, ValueError):
    """A traffic-light rules file or dict is malformed; the message names the file and the setting."""


def _month_day(value: str) -> tuple[int, int]:
    try:
        month, day = (int(x) for x in str(value).split("-"))
        date(2024, month, day)  # a leap year: 02-29 is allowed
    except (ValueError, TypeError) as e:
        raise ValueError(f"must be MM-DD, got {value!r}") from e
    return month, day


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LandUseRule(_Strict):
    """How one group of declared land uses is judged.

    ``events``: detected event types that confirm the declaration (any of them);
    ``window``: (start, end) in which they count — an event outside it or after ``as_of`` never counts;
    ``deadline``: from this date on, a missing activity may be red (default: the window's end);
    coverage (for red only, counted inside ``coverage_window``, default the event window: the part
    of the season where the activity is expected, so clouds in April or late September do not keep
    a light orange when the mowing season itself was well observed): at least ``min_clear_s2`` clear S2 views and
    no gap between them (window edges included) longer than ``max_s2_gap_days``, or, where S1 views
    come at most ``max_s1_gap_days`` apart, no S2 gap longer than ``max_s2_gap_with_s1_days``;
    decisions: a detected event is green from ``min_green_confidence`` on the detectors' word alone;
    where the encoder's residual at the event is known (the first clear view after it, observed vs
    expected NDVI in std) and ``max_green_residual_z`` is set, it is green instead when its
    confidence is at least ``encoder_green_confidence`` and the residual at most
    ``max_green_residual_z`` (weaker events: orange, "weak signal"); a red needs
    the largest NDVI drop in the window at most ``max_red_drop`` (``red_drop``: "persistent", held on
    the next view, or "any" single-view dip, the stricter) and, when the encoder's
    expectation is given, no residual below ``min_red_residual_z`` (both mean "nothing happened");
    and, where ``max_red_s1_drop_z`` is set, no S1 VH fall in the window larger than that many times
    the parcel's own VH noise (``alerts.decisions.s1_drop_z``: S1 may have seen a cut the clouds hid
    from S2; without S1 it vetoes nothing). Where S1 cannot veto (no veto set, or fewer than
    ``alerts.decisions.S1_MIN_VIEWS`` views of any one orbit: the S2-only path) and
    ``max_s2_gap_without_s1_days`` is set, a red also needs no S2 gap longer than that: a cut whose
    sward regrows within the gap would leave no trace in S2, and nothing else could have seen it.
    With ``s2_visibility_quantile`` set, that limit is measured instead of given
    (``alerts.visibility``): the ``s2_visibility_quantile`` quantile, over the detected cuts of the
    parcels being judged, of the days each stayed visible in S2 (from the cut until NDVI is back
    within ``s2_visibility_recovery`` of its drop); with fewer than ``min_visibility_cuts`` such cuts,
    ``max_s2_gap_without_s1_days`` as given.
    """

    land_uses: tuple[str, ...] = Field(min_length=1)
    events: tuple[str, ...] = Field(min_length=1)
    window: tuple[str, str]
    coverage_window: tuple[str, str] | None = None
    deadline: str | None = None
    min_clear_s2: int = Field(6, ge=0)
    max_s2_gap_days: float = Field(30.0, gt=0)
    max_s2_gap_with_s1_days: float = Field(45.0, gt=0)
    max_s1_gap_days: float = Field(13.0, gt=0)
    min_green_confidence: float = Field(0.0, ge=0.0, le=1.0)
    encoder_green_confidence: float = Field(0.0, ge=0.0, le=1.0)
    max_green_residual_z: float | None = None
    max_red_drop: float = Field(0.15, ge=0.0)
    min_red_residual_z: float | None = None
    red_drop: Literal["persistent", "any"] = "persistent"
    max_red_s1_drop_z: float | None = Field(None, gt=0)
    max_s2_gap_without_s1_days: float | None = Field(None, gt=0)
    s2_visibility_quantile: float | None = Field(None, gt=0.0, lt=1.0)
    s2_visibility_recovery: float = Field(0.5, gt=0.0, lt=1.0)
    min_visibility_cuts: int = Field(20, ge=1)
    # "calibrated": the green/red call is made on a calibrated probability of the activity
    # (alerts.confidence: a logistic model over the evidence above), green from
    # ``green_probability`` with a counted event, red up to ``red_probability`` on a covered window;
    # ``calibration``: the packaged model ("mowing-sk-dev") or a JSON file of one.
    decision: Literal["rule", "calibrated"] = "rule"
    calibration: str = "mowing-sk-dev"
    green_probability: float = Field(0.8, ge=0.0, le=1.0)
    red_probability: float = Field(0.15, ge=0.0, le=1.0)

    @field_validator("land_uses")
    @classmethod
    def _lower(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(x.strip().lower() for x in v)

    @field_validator("window", "coverage_window")
    @classmethod
    def _window(cls, v: tuple[str, str] | None) -> tuple[str, str] | None:
        if v is None:
            return v
        a, b = _month_day(v[0]), _month_day(v[1])
        if b < a:
            raise ValueError(f"window end {v[1]} before its start {v[0]}")
        return v

    @field_validator("deadline")
    @classmethod
    def _deadline(cls, v: str | None) -> str | None:
        if v is not None:
            _month_day(v)
        return v

    def window_dates(self, campaign: int) -> tuple[date, date]:
        return date(campaign, *_month_day(self.window[0])), date(campaign, *_month_day(self.window[1]))

    def coverage_dates(self, campaign: int) -> tuple[date, date]:
        """Where the coverage for a red is counted: ``coverage_window``, default the event window."""
        w = self.coverage_window or self.window
        return date(campaign, *_month_day(w[0])), date(campaign, *_month_day(w[1]))

    def deadline_date(self, campaign: int) -> date:
        return date(campaign, *_month_day(self.deadline or self.window[1]))


class Scheme(_Strict):
    """One scenario: rules per land use, contradicting events, when a parcel is not analysable.

    ``min_s2_pixels``: a parcel with fewer S2 pixels fully inside (the series' ``pixel_count``, when
    known) cannot be judged from S2; when it has no S1 pixel either it is ``not_analysable``.
    ``uncovered``: the light of a land use no rule names.
    """

    name: str = "default"
    rules: tuple[LandUseRule, ...] = Field(min_length=1)
    contradicting_events: tuple[str, ...] = ("solar_construction",)
    min_s2_pixels: int = Field(4, ge=0)
    uncovered: Literal["orange", "not_analysable"] = "orange"

    @model_validator(mode="after")
    def _unique_land_uses(self) -> Scheme:
        seen: set[str] = set()
        for rule in self.rules:
            dup = seen & set(rule.land_uses)
            if dup:
                raise ValueError(f"land use {sorted(dup)[0]!r} named by two rules")
            seen |= set(rule.land_uses)
        return self

    def rule_for(self, land_use: str) -> LandUseRule | None:
        lu = str(land_use).strip().lower()
        return next((r for r in self.rules if lu in r.land_uses), None)


class LightsConfig(_Strict):
    """Several schemes; ``default`` names the one used when none is asked for."""

    default: str = "default"
    schemes: dict[str, Scheme]

    @model_validator(mode="after")
    def _default_exists(self) -> LightsConfig:
        if self.default not in self.schemes:
            raise ValueError(f"default scheme {self.default!r} is not among {sorted(self.schemes)}")
        return self

    def scheme(self, name: str | None = None) -> Scheme:
        key = name or self.default
        if key not in self.schemes:
            raise RulesError(f"unknown traffic-light scheme {key!r}; choose from {', '.join(sorted(self.schemes))}")
        return self.schemes[key]


GRASSLAND = ("grassland", "meadow", "pasture", "permanent_grassland", "temporary_grassland")

# The shipped defaults (docs/traffic-light.md explains each value and where it comes from).
_CROP_DECISION: dict[str, Any] = {  # joint choice over grassland-sk-dev and the demo archive (rule only)
    "min_clear_s2": 4,
    "max_s2_gap_days": 15.0,
    "max_s2_gap_with_s1_days": 15.0,
    "max_s1_gap_days": 13.0,
    "min_green_confidence": 0.0,
    "max_red_drop": 0.04,
    "red_drop": "persistent",
}
DEFAULT_SCHEME: dict[str, Any] = {
    "name": "default",
    "contradicting_events": ["solar_construction"],
    "min_s2_pixels": 4,
    "uncovered": "orange",
    "rules": [
        {
            "land_uses": list(GRASSLAND),
            "events": ["mowing", "grazing"],
            "window": ["04-15", "09-30"],
            "min_clear_s2": 6,
            "max_s2_gap_days": 20.0,
            "max_s2_gap_with_s1_days": 20.0,
            "max_s1_gap_days": 13.0,
            "min_green_confidence": 0.9,
            "max_red_drop": 0.06,
            "red_drop": "persistent",
        },
        {"land_uses": ["cereal", "wheat", "barley"], "events": ["harvest"], "window": ["06-01", "09-15"],
         **_CROP_DECISION},
        {"land_uses": ["rapeseed"], "events": ["harvest"], "window": ["06-01", "08-31"], **_CROP_DECISION},
        {"land_uses": ["maize", "sunflower", "arable"], "events": ["harvest"], "window": ["08-01", "10-31"],
         **_CROP_DECISION},
    ],
}
# A scenario where grassland must be mown (grazing does not count): a grazed parcel is then
# non-compliant, so a small persistent drop no longer protects it, and red may come from a looser
# drop. Constants: the joint choice of `sitsmon eval lights --scheme mowing-required` over
# grassland-sk-dev and the demo archive's truth (docs/traffic-light.md, "mowing-required").
MOWING_REQUIRED_SCHEME: dict[str, Any] = {
    **DEFAULT_SCHEME,
    "name": "mowing-required",
    "rules": [
        {
            **DEFAULT_SCHEME["rules"][0],
            "events": ["mowing"],
            "coverage_window": ["05-01", "09-15"],
            "max_s2_gap_days": 30.0,
            "max_s2_gap_with_s1_days": 30.0,
            "max_red_drop": 0.15,
            "red_drop": "any",
        },
        *DEFAULT_SCHEME["rules"][1:],
    ],
}
# The same scenario decided on a calibrated probability of a mowing (alerts.confidence, a logistic
# model of the evidence fitted on the whole of grassland-sk-dev after its cross-validation; the
# thresholds and the coverage gap are that fit's choice, recorded in alerts/confidence_mowing.json).
# It decides far more of the real plots (docs/traffic-light.md, "calibrated"). The S1 veto
# (``max_red_s1_drop_z``) is chosen on the other dataset, the demo archive's truth: each constant is
# fitted on one dataset and scored out of sample on the other as well.
MOWING_CALIBRATED_SCHEME: dict[str, Any] = {
    **MOWING_REQUIRED_SCHEME,
    "name": "mowing-calibrated",
    "rules": [
        {
            **MOWING_REQUIRED_SCHEME["rules"][0],
            "decision": "calibrated",
            "calibration": "mowing-sk-dev",
            "green_probability": 0.7467,
            "red_probability": 0.1723,
            "max_s2_gap_days": 45.0,
            "max_s2_gap_with_s1_days": 45.0,
            # no red where S1 VH fell more than 4.5 times the parcel's own VH noise: chosen on the
            # demo archive's truth (`sitsmon eval lights --only synthetic --scheme mowing-calibrated`,
            # cv_s1_veto.chosen_on_all), whose cuts regrow within two weeks and hide in S2 gaps; on
            # grassland-sk-dev's speckled single-pixel S1 it vetoes 0 of the 156 reds (its largest value 4.9)
            "max_red_s1_drop_z": 4.5,
            # where no S1 can veto (the S2-only path), no red across an S2 gap longer than a cut stays
            # visible in the judged parcels' own S2 series: the median, over their detected cuts, of
            # the days until NDVI is back within 10 % of the drop (alerts.visibility; 17.5 days on the
            # demo archive, whose sward regrows in two weeks, 38.8 on grassland-sk-dev). The option is
            # the joint choice over both datasets (`sitsmon eval lights --sensors S2 --scheme
            # mowing-calibrated --variants s2_visibility`, joint_s2_visibility.chosen_on_all)
            "s2_visibility_quantile": 0.5,
            "s2_visibility_recovery": 0.1,
        },
        *MOWING_REQUIRED_SCHEME["rules"][1:],
    ],
}
DEFAULT_RULES: dict[str, Any] = {
    "default": "default",
    "schemes": {"default": DEFAULT_SCHEME, "mowing-required": MOWING_REQUIRED_SCHEME,
                "mowing-calibrated": MOWING_CALIBRATED_SCHEME},
}


def _errors(e: ValidationError) -> str:
    first = e.errors()[0]
    where = ".".join(str(x) for x in first["loc"])
    return f"{where}: {first['msg']}" + (f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else "")


def rules_from_dict(data: dict[str, Any], source: str = "rules") -> LightsConfig:
    """Validate a rules dict: either a whole config (``schemes``) or a single scheme (``rules``)."""
    if not isinstance(data, dict):
        raise RulesError(f"{source}: expected a table, got {type(data).__name__}")
    body = data if "schemes" in data else {"default": data.get("name", "default"),
                                            "schemes": {data.get("name", "default"): data}}
    try:
        return LightsConfig.model_validate(body)
    except ValidationError as e:
        raise RulesError(f"{source}: {_errors(e)}") from e


def load_rules(path: str | Path | None = None) -> LightsConfig:
    """The rules of a TOML file (one scheme, or ``[schemes.NAME]`` tables), or the shipped defaults."""
    if path is None:
        return rules_from_dict(DEFAULT_RULES, "default rules")
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as e:
        raise RulesError(f"traffic-light rules file not found: {path}") from e
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise RulesError(f"{path}: not valid TOML ({e})") from e
    return rules_from_dict(data, str(path))


def default_scheme() -> Scheme:
    return load_rules().scheme()
