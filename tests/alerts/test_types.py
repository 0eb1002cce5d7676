from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from pydantic import ValidationError

from alerts.errors import TransitionError
from alerts.series import to_days
from alerts.types import Alert, Event, Status, check_transition, make_alert_id


def _event(**kw) -> Event:
    base = dict(
        parcel_id="P1",
        event="mowing",
        date=to_days("2024-06-10"),
        window=(to_days("2024-06-08"), to_days("2024-06-12")),
        confidence=0.8,
        evidence={"ndvi_drop": 0.3},
    )
    base.update(kw)
    return Event(**base)


def test_alert_id_is_deterministic_from_parcel_type_and_window():
    a = Alert.from_event(_event(), detected_at=datetime(2024, 6, 20, tzinfo=UTC))
    b = Alert.from_event(_event(confidence=0.9), detected_at=datetime(2024, 7, 1, tzinfo=UTC))
    assert a.alert_id == b.alert_id == make_alert_id("P1", "mowing", date(2024, 6, 8), date(2024, 6, 12))
    c = Alert.from_event(_event(parcel_id="P2"))
    d = Alert.from_event(_event(event="harvest"))
    assert len({a.alert_id, c.alert_id, d.alert_id}) == 3
    assert a.event_date == date(2024, 6, 10) and a.status is Status.NEW
    assert a.evidence["sensor"] == "S2"


def test_event_validation():
    with pytest.raises(ValueError, match="confidence"):
        _event(confidence=1.5)
    with pytest.raises(ValueError, match="outside its window"):
        _event(date=to_days("2024-07-01"))
    with pytest.raises(ValueError, match="event type"):
        _event(event="flood")


def test_alert_payload_validation_and_json_round_trip():
    a = Alert.from_event(_event())
    again = Alert.model_validate_json(a.to_json())
    assert again == a
    with pytest.raises(ValidationError):
        Alert.model_validate({**a.model_dump(by_alias=True), "confidence": 2.0})
    with pytest.raises(ValidationError):
        Alert.model_validate({**a.model_dump(by_alias=True), "window_end": "2020-01-01"})


def test_status_transitions_and_history():
    a = Alert.from_event(_event())
    b = a.with_status("acknowledged", who="ctrl-1", note="looking")
    c = b.with_status(Status.CONFIRMED, who="ctrl-2")
    assert [h.status for h in c.history] == [Status.ACKNOWLEDGED, Status.CONFIRMED]
    assert c.history[0].who == "ctrl-1" and c.history[0].note == "looking"
    with pytest.raises(TransitionError, match="cannot go from confirmed to acknowledged"):
        c.with_status("acknowledged", who="x")
    with pytest.raises(TransitionError, match="already new"):
        check_transition(Status.NEW, Status.NEW)
    # a closed alert can be reopened only by a field check
    assert c.with_status("field_check", who="x").status is Status.FIELD_CHECK
