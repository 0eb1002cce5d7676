"""What the dashboard added to the alert store (additively): sort orders, a confidence floor, a tile
list, ``changes_since`` for the live stream, and the escalation ladder's statuses — on SQLite and
PostgreSQL alike (one contract, two engines)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alerts.errors import TransitionError
from alerts.store import AlertQuery, AlertStore
from alerts.types import Alert, Status, make_alert_id


def _alert(i: int, tile: str, conf: float, day: int, detected: datetime) -> Alert:
    from datetime import date

    d = date(2024, 6, day)
    return Alert(alert_id=make_alert_id(f"P{i}", "mowing", d, d), parcel_id=f"P{i}", tile_id=tile, type="mowing",
                 event_date=d, window_start=d, window_end=d, detected_at=detected, confidence=conf)


class QueryContract:
    def _fill(self, store: AlertStore) -> tuple[list[Alert], datetime]:
        t0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
        alerts = [_alert(i, ("T1", "T2", "T3")[i % 3], round(0.3 + 0.06 * i, 2), 1 + (i * 7) % 20,
                         t0 + timedelta(seconds=i)) for i in range(10)]
        store.upsert_many(alerts)
        return alerts, t0

    def test_sorts_floor_and_tile_list(self, store: AlertStore):
        alerts, _ = self._fill(store)
        got = store.query(AlertQuery(sort="confidence_desc", tile_id=["T1", "T3"], min_confidence=0.5))
        want = sorted((a for a in alerts if a.tile_id in ("T1", "T3") and a.confidence >= 0.5),
                      key=lambda a: -a.confidence)
        assert [a.alert_id for a in got] == [a.alert_id for a in want]
        assert store.count(AlertQuery(tile_id=["T1", "T3"], min_confidence=0.5)) == len(want)
        asc = store.query(AlertQuery(sort="event_date_asc"))
        assert [a.event_date for a in asc] == sorted(a.event_date for a in alerts)
        with pytest.raises(ValueError, match="sort must be one of"):
            AlertQuery(sort="drop table")

    def test_changes_since_sees_new_alerts_and_status_changes(self, store: AlertStore):
        alerts, t0 = self._fill(store)
        new = store.changes_since(t0 + timedelta(seconds=7))
        assert [(a, k) for a, k, _ in new] == [(x.alert_id, "new") for x in alerts[7:]]
        mark = datetime.now(UTC)
        store.set_status(alerts[0].alert_id, "remote_review", who="c", note="look")
        store.set_status(alerts[0].alert_id, "photo_request", who="c")
        changed = store.changes_since(mark)
        assert [(a, k) for a, k, _ in changed] == [(alerts[0].alert_id, "remote_review"),
                                                   (alerts[0].alert_id, "photo_request")]
        assert all(w >= mark for _, _, w in changed)

    def test_ladder_only_climbs(self, store: AlertStore):
        alerts, _ = self._fill(store)
        a = alerts[1].alert_id
        store.set_status(a, Status.PHOTO_REQUEST, who="c")
        with pytest.raises(TransitionError, match="cannot go from photo_request to remote_review"):
            store.set_status(a, Status.REMOTE_REVIEW, who="c")
        assert store.set_status(a, Status.FIELD_CHECK, who="c").status is Status.FIELD_CHECK
        assert [h.status for h in store.get(a).history] == [Status.PHOTO_REQUEST, Status.FIELD_CHECK]


class TestQueries(QueryContract):
    @pytest.fixture
    def store(self, any_store):
        return any_store
