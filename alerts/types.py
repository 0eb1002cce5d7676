"""Records the alerts stage produces: detector events (internal) and the alert payload (boundary).

``Event`` is what a detector emits (frozen dataclass, validated). ``Alert`` is the pydantic payload
stored, published on ``sits.alerts`` and shown to controllers (docs/data-contracts.md "Alert"). Its ``alert_id``
is a uuid5 of (parcel, type, event window), so a replay re-creates the same id, never a duplicate.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from alerts.errors import TransitionError
from alerts.series import from_days

EVENT_TYPES = ("mowing", "grazing", "harvest", "solar_construction", "no_activity")
ALERT_NAMESPACE = uuid.UUID("6f1c2a4e-5d0b-4c1e-9a53-3b7f1d2e8c90")
MODEL_VERSION = "alerts-rules/0.1"


@dataclass(frozen=True, slots=True)
class Event:
    """A detected event on one parcel (or watch-area polygon).

    Times are float days since 1970-01-01 UTC: ``date`` the best estimate, ``window`` (start, end)
    the interval it lies in (``start <= date <= end``). ``confidence`` in [0, 1]. ``evidence`` a
    JSON-serialisable dict (series excerpt, before/after values, sensor used, polygon…).
    """

    parcel_id: str
    event: str
    date: float
    window: tuple[float, float]
    confidence: float
    evidence: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    sensor: str = "S2"

    def __post_init__(self) -> None:
        if self.event not in EVENT_TYPES:
            raise ValueError(f"event type must be one of {EVENT_TYPES}, got {self.event!r}")
        if not (0.0 <= self.confidence <= 1.0) or math.isnan(self.confidence):
            raise ValueError(f"confidence must lie in [0, 1], got {self.confidence}")
        lo, hi = self.window
        if not (lo <= self.date <= hi):
            raise ValueError(f"date {self.date} outside its window {self.window} (parcel {self.parcel_id})")

    @property
    def date_iso(self) -> str:
        return from_days(self.date).date().isoformat()

    def key(self) -> tuple[str, str, str]:
        """Identity of the event: parcel, type and the day of its estimated date."""
        return (self.parcel_id, self.event, self.date_iso)


class Status(StrEnum):
    NEW = "new"
    ACKNOWLEDGED = "acknowledged"
    CONFIRMED = "confirmed"
    DISMISSED = "dismissed"
    FIELD_CHECK = "field_check"
    # The controllers' escalation ladder (automatic -> remote review -> photo request -> field visit):
    # ``new`` is the automatic alert, ``field_check`` the field visit; these two steps lie between.
    REMOTE_REVIEW = "remote_review"
    PHOTO_REQUEST = "photo_request"


# Allowed status changes. A closed alert (confirmed/dismissed) can only be reopened by a field check.
# The ladder only climbs: remote review -> photo request -> field visit, each may close the alert.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.NEW: frozenset({Status.ACKNOWLEDGED, Status.CONFIRMED, Status.DISMISSED, Status.FIELD_CHECK,
                           Status.REMOTE_REVIEW, Status.PHOTO_REQUEST}),
    Status.ACKNOWLEDGED: frozenset({Status.CONFIRMED, Status.DISMISSED, Status.FIELD_CHECK,
                                    Status.REMOTE_REVIEW, Status.PHOTO_REQUEST}),
    Status.REMOTE_REVIEW: frozenset({Status.CONFIRMED, Status.DISMISSED, Status.PHOTO_REQUEST, Status.FIELD_CHECK}),
    Status.PHOTO_REQUEST: frozenset({Status.CONFIRMED, Status.DISMISSED, Status.FIELD_CHECK}),
    Status.FIELD_CHECK: frozenset({Status.CONFIRMED, Status.DISMISSED}),
    Status.CONFIRMED: frozenset({Status.FIELD_CHECK}),
    Status.DISMISSED: frozenset({Status.FIELD_CHECK}),
}


def check_transition(current: Status, new: Status) -> None:
    """Raise ``TransitionError`` with the reason when ``current → new`` is not allowed."""
    if new == current:
        raise TransitionError(f"alert is already {current.value}")
    allowed = TRANSITIONS[current]
    if new not in allowed:
        names = ", ".join(sorted(s.value for s in allowed)) or "none"
        raise TransitionError(f"cannot go from {current.value} to {new.value} (allowed: {names})")


def make_alert_id(parcel_id: str, event_type: str, window_start: date, window_end: date, scope: str = "") -> str:
    """Deterministic id: uuid5 of parcel, type and event window (days).

    ``scope`` (empty by default) separates the alerts of a reprocessing with another model
    (``monitor replay --checkpoint``) from the current ones, so both stay readable."""
    name = f"{parcel_id}|{event_type}|{window_start.isoformat()}|{window_end.isoformat()}"
    if scope:
        name = f"{scope}|{name}"
    return str(uuid.uuid5(ALERT_NAMESPACE, name))


class StatusChange(BaseModel):
    model_config = ConfigDict(frozen=True)

    status: Status
    who: str = Field(min_length=1, max_length=200)
    when: datetime
    note: str = Field("", max_length=4000)


class Alert(BaseModel):
    """The alert payload (store rows, ``sits.alerts`` values, exports)."""

    model_config = ConfigDict(frozen=True)

    schema_: str = Field("sitsmon-alert/1", alias="schema")
    alert_id: str
    parcel_id: str = Field(min_length=1)
    tile_id: str = ""
    region: str = ""
    type: str
    event_date: date
    window_start: date
    window_end: date
    detected_at: datetime
    confidence: float = Field(ge=0.0, le=1.0)
    evidence: dict[str, Any] = Field(default_factory=dict)
    model_version: str = MODEL_VERSION
    status: Status = Status.NEW
    history: tuple[StatusChange, ...] = ()

    @field_validator("type")
    @classmethod
    def _known_type(cls, v: str) -> str:
        if v not in EVENT_TYPES:
            raise ValueError(f"type must be one of {EVENT_TYPES}")
        return v

    @field_validator("window_end")
    @classmethod
    def _window_order(cls, v: date, info: Any) -> date:
        start = info.data.get("window_start")
        if start is not None and v < start:
            raise ValueError("window_end before window_start")
        return v

    @classmethod
    def from_event(
        cls,
        event: Event,
        *,
        tile_id: str = "",
        region: str = "",
        detected_at: datetime | None = None,
        model_version: str = MODEL_VERSION,
        scope: str = "",
    ) -> Alert:
        ws = from_days(event.window[0]).date()
        we = from_days(event.window[1]).date()
        evidence = dict(event.evidence)
        evidence.setdefault("sensor", event.sensor)
        return cls(
            alert_id=make_alert_id(event.parcel_id, event.event, ws, we, scope),
            parcel_id=event.parcel_id,
            tile_id=tile_id,
            region=region,
            type=event.event,
            event_date=from_days(event.date).date(),
            window_start=ws,
            window_end=we,
            detected_at=detected_at or datetime.now(UTC),
            confidence=round(float(event.confidence), 4),
            evidence=evidence,
            model_version=model_version,
        )

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True)

    def with_status(self, new: Status | str, who: str, note: str = "", when: datetime | None = None) -> Alert:
        """A copy with the status changed and the change appended to the history (validated)."""
        new = Status(new)
        check_transition(self.status, new)
        change = StatusChange(status=new, who=who, when=when or datetime.now(UTC), note=note)
        return self.model_copy(update={"status": new, "history": (*self.history, change)})


def known_by(event: Event) -> float:
    """The day from which an event is known: its confirmation (evidence) or the end of its window."""
    confirmed = event.evidence.get("confirmed_day") if event.evidence else None
    return float(confirmed) if confirmed is not None else float(event.window[1])
