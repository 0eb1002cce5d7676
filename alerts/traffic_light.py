"""CAP traffic light per parcel and campaign (as France's ASP "3STR" and the EU Area Monitoring System).

- green: the declared use is consistent with the observed activity (grassland mown or grazed,
  a declared crop harvested);
- orange: undecided: the deadline has not come yet, or there is not enough clear data to decide,
  or the land use is not covered by a marker;
- red: declared grassland with no mowing or grazing signal by the (configurable) deadline, a
  declared crop never harvested by its deadline, or a parcel turned into a solar farm.

Every light carries reasons a controller can read, and red "no activity" cases carry the
``no_activity`` marker.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

import pandas as pd

from alerts.series import from_days
from alerts.types import Event

GRASSLAND = frozenset({"grassland", "meadow", "pasture", "permanent_grassland", "temporary_grassland"})
ARABLE = frozenset({"cereal", "maize", "rapeseed", "arable", "wheat", "barley", "sunflower"})


class Light(StrEnum):
    GREEN = "green"
    ORANGE = "orange"
    RED = "red"


@dataclass(frozen=True, slots=True)
class TrafficLightRules:
    """Deadlines as (month, day) in the campaign year; data sufficiency thresholds (season so far)."""

    grassland_deadline: tuple[int, int] = (8, 31)
    harvest_deadlines: Mapping[str, tuple[int, int]] = field(
        default_factory=lambda: {"cereal": (9, 15), "rapeseed": (8, 31), "maize": (11, 30)}
    )
    default_harvest_deadline: tuple[int, int] = (10, 31)
    season_start: tuple[int, int] = (3, 1)
    min_clear_s2: int = 6
    min_s1: int = 10

    def __post_init__(self) -> None:
        for name, (m, d) in [
            ("grassland_deadline", self.grassland_deadline),
            ("season_start", self.season_start),
            ("default_harvest_deadline", self.default_harvest_deadline),
            *self.harvest_deadlines.items(),
        ]:
            try:
                date(2024, m, d)
            except ValueError as e:
                raise ValueError(f"TrafficLightRules.{name}: invalid month/day {(m, d)}") from e
        if self.min_clear_s2 < 0 or self.min_s1 < 0:
            raise ValueError("TrafficLightRules: thresholds must be >= 0")


@dataclass(frozen=True, slots=True)
class TrafficLight:
    parcel_id: str
    campaign: int
    light: Light
    reasons: tuple[str, ...]
    markers: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return {
            "parcel_id": self.parcel_id,
            "campaign": self.campaign,
            "light": self.light.value,
            "reasons": list(self.reasons),
            "markers": list(self.markers),
        }


def assess(
    parcel_id: str,
    land_use: str,
    campaign: int,
    events: Iterable[Event],
    *,
    as_of: date,
    n_clear_s2: int,
    n_s1: int,
    rules: TrafficLightRules | None = None,
) -> TrafficLight:
    """The light of one parcel for ``campaign`` as of ``as_of``.

    ``events``: the parcel's detected events (any year; only the campaign year counts);
    ``n_clear_s2``/``n_s1``: clear S2 views and S1 views of the parcel in the campaign so far.
    """
    r = rules or TrafficLightRules()
    lu = str(land_use).lower()
    evs = [e for e in events if from_days(e.date).year == campaign and e.parcel_id == parcel_id]
    when = {e.event: [from_days(x.date).date().isoformat() for x in evs if x.event == e.event] for e in evs}
    enough = n_clear_s2 >= r.min_clear_s2 or n_s1 >= r.min_s1
    data_note = f"{n_clear_s2} clear S2 views, {n_s1} S1 views so far"

    def light(color: Light, *reasons: str, markers: tuple[str, ...] = ()) -> TrafficLight:
        return TrafficLight(parcel_id, campaign, color, tuple(reasons), markers)

    if "solar_construction" in when:
        return light(
            Light.RED,
            f"parcel turned into a solar farm: works started about {when['solar_construction'][0]}"
            f" (declared {lu})",
            markers=("land_use_change",),
        )
    if lu in GRASSLAND:
        deadline = date(campaign, *r.grassland_deadline)
        acts = sorted(when.get("mowing", []) + when.get("grazing", []))
        if acts:
            kinds = " and ".join(k for k in ("mowing", "grazing") if k in when)
            return light(
                Light.GREEN, f"{kinds} detected on {', '.join(acts)}: consistent with declared grassland"
            )
        if as_of < deadline:
            return light(
                Light.ORANGE,
                f"no mowing or grazing detected yet; deadline {deadline.isoformat()} ({data_note})",
            )
        if not enough:
            return light(
                Light.ORANGE,
                f"not enough clear data to decide ({data_note}; need {r.min_clear_s2} clear S2 "
                f"or {r.min_s1} S1)",
            )
        return light(
            Light.RED,
            f"declared grassland with no mowing or grazing signal by {deadline.isoformat()} ({data_note})",
            markers=("no_activity",),
        )
    if lu in ARABLE:
        deadline = date(campaign, *r.harvest_deadlines.get(lu, r.default_harvest_deadline))
        if "harvest" in when:
            return light(
                Light.GREEN, f"harvest detected on {when['harvest'][0]}: consistent with declared {lu}"
            )
        if as_of < deadline:
            return light(Light.ORANGE, f"not harvested yet; deadline {deadline.isoformat()} ({data_note})")
        if not enough:
            return light(Light.ORANGE, f"not enough data to decide ({data_note})")
        return light(
            Light.RED,
            f"declared {lu} never harvested by {deadline.isoformat()} ({data_note})",
            markers=("no_activity",),
        )
    return light(Light.ORANGE, f"land use {lu!r} is not covered by a marker: undecided")


def assess_frame(
    obs: pd.DataFrame,
    parcels: pd.DataFrame,
    events: Iterable[Event],
    *,
    campaign: int,
    as_of: date,
    rules: TrafficLightRules | None = None,
) -> pd.DataFrame:
    """Lights of every parcel of ``parcels`` (normalised ``obs`` counted up to ``as_of``)."""
    by_parcel: dict[str, list[Event]] = {}
    for e in events:
        by_parcel.setdefault(e.parcel_id, []).append(e)
    r = rules or TrafficLightRules()
    start = pd.Timestamp(date(campaign, *r.season_start), tz="UTC")
    end = pd.Timestamp(as_of, tz="UTC") + pd.Timedelta(days=1)
    sel = obs[(obs["time"] >= start) & (obs["time"] < end)]
    clear = sel[(sel["sensor"] == "S2") & (sel["clear"] >= 0.5)].groupby("parcel_id").size()
    s1 = sel[sel["sensor"] == "S1"].groupby("parcel_id").size()
    rows = []
    for pid, lu in zip(parcels["parcel_id"], parcels["land_use"], strict=True):
        tl = assess(
            pid,
            lu,
            campaign,
            by_parcel.get(pid, []),
            as_of=as_of,
            n_clear_s2=int(clear.get(pid, 0)),
            n_s1=int(s1.get(pid, 0)),
            rules=r,
        )
        d = tl.as_dict()
        d["reasons"] = "; ".join(d["reasons"])
        d["markers"] = ",".join(d["markers"])
        rows.append(d)
    return pd.DataFrame(rows, columns=["parcel_id", "campaign", "light", "reasons", "markers"])
