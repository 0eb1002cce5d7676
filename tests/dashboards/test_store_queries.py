"""What the dashboard added to the alert store (additively): sort orders, a confidence floor, a tile
list, ``changes_since`` for the live stream, and the escalation ladder's statuses — on SQLite and
PostgreSQL alike (one contract, two engines)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alerts.errors import TransitionError
from alerts.store import AlertQuery, AlertStore, sort_key
from alerts.store.sqlite import SqliteAlertStore
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

    def test_keyset_pages_equal_offset_pages_and_a_python_sort(self, store: AlertStore):
        from datetime import date

        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        # few distinct confidences, dates and detection times: ties everywhere, broken by alert_id
        alerts = [Alert(alert_id=make_alert_id(f"P{i}", "mowing", date(2024, 6, 1 + i % 4), date(2024, 6, 1 + i % 4)),
                        parcel_id=f"P{i}", tile_id=("T1", "T2", "T3")[i % 3], type="mowing",
                        event_date=date(2024, 6, 1 + i % 4), window_start=date(2024, 6, 1), window_end=date(2024, 6, 9),
                        detected_at=t0 + timedelta(hours=i % 5), confidence=(0.5, 0.7, 0.9)[i % 7 % 3])
                  for i in range(61)]
        store.upsert_many(alerts)
        # the reference: Python's sort with the orders written out by hand (stable sorts, last key first)
        def ordered(rows, *keys):
            for k, desc in reversed(keys):
                rows = sorted(rows, key=k, reverse=desc)
            return rows
        conf, day, det, aid = (lambda a: a.confidence), (lambda a: a.event_date), (lambda a: a.detected_at), (lambda a: a.alert_id)
        want_by_sort = {"event_date_desc": ((day, True), (aid, False)), "event_date_asc": ((day, False), (aid, False)),
                        "confidence_desc": ((conf, True), (day, True), (aid, False)),
                        "confidence_asc": ((conf, False), (day, True), (aid, False)),
                        "detected_at_desc": ((det, True), (aid, False))}
        chosen = [a for a in alerts if a.tile_id in ("T1", "T2") and a.confidence >= 0.6]
        for sort, keys in want_by_sort.items():
            want = [a.alert_id for a in ordered(chosen, *keys)]
            base = dict(tile_id=["T1", "T2"], min_confidence=0.6, sort=sort, limit=4)
            walked, after = [], None
            while True:
                page = store.query(AlertQuery(**base, after=after))
                walked += [a.alert_id for a in page]
                if len(page) < 4:
                    break
                after = sort_key(page[-1], sort)
            by_offset = [a.alert_id for k in range(0, len(chosen) + 4, 4)
                         for a in store.query(AlertQuery(**base, offset=k))]
            assert walked == by_offset == want, sort
        with pytest.raises(ValueError, match="exclude each other"):
            AlertQuery(sort="event_date_desc", after=(date(2024, 6, 1), "x"), offset=4)
        with pytest.raises(ValueError, match="must hold 3 values"):
            AlertQuery(sort="confidence_desc", after=(0.5, "x"))


class TestQueries(QueryContract):
    @pytest.fixture
    def store(self, any_store):
        return any_store


def test_a_store_made_before_the_queue_indexes_gets_them_at_open(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite"
    SqliteAlertStore(path).close()
    con = sqlite3.connect(path)
    con.execute("DROP INDEX alerts_queue_conf")
    con.close()
    SqliteAlertStore(path).close()
    con = sqlite3.connect(path)
    names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    plan = " ".join(str(r) for r in con.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM alerts WHERE tile_id = 'T' AND status = 'new' "
        "ORDER BY confidence DESC, event_date DESC, alert_id LIMIT 5"))
    con.close()
    assert "alerts_queue_conf" in names
    assert "alerts_queue_conf" in plan and "TEMP B-TREE" not in plan  # walked in order, no sort
