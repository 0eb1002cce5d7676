"""One contract suite for every alert store: SQLite (embedded) and PostgreSQL (real server)."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime

import pytest

from alerts.errors import AlertNotFoundError, TransitionError
from alerts.series import to_days
from alerts.store import AlertQuery, AlertStore
from alerts.store.sqlite import SqliteAlertStore
from alerts.types import Alert, Event, Status


def make_alert(pid="P1", kind="mowing", day="2024-06-10", conf=0.8, tile="33UXP", region="SK01") -> Alert:
    d = to_days(day)
    ev = Event(
        parcel_id=pid,
        event=kind,
        date=d,
        window=(d - 2, d + 1),
        confidence=conf,
        evidence={"ndvi_drop": 0.3, "series_excerpt": [["2024-06-08", 0.8]]},
    )
    return Alert.from_event(ev, tile_id=tile, region=region, detected_at=datetime(2024, 6, 20, tzinfo=UTC))


class StoreContract:
    """Subclasses provide the ``store`` fixture (an empty store)."""

    def test_upsert_then_get_round_trip(self, store: AlertStore):
        a = make_alert()
        assert store.upsert(a) is True
        got = store.get(a.alert_id)
        assert got == a

    def test_replay_updates_without_duplicate(self, store: AlertStore):
        a = make_alert(conf=0.7)
        assert store.upsert(a)
        acked = store.set_status(a.alert_id, "acknowledged", who="ctrl", note="seen")
        replay = make_alert(conf=0.9)
        assert replay.alert_id == a.alert_id
        assert store.upsert(replay) is False
        assert store.count(parcel_id="P1") == 1
        got = store.get(a.alert_id)
        assert got.confidence == 0.9
        assert got.status is Status.ACKNOWLEDGED and got.history == acked.history  # kept over replays

    def test_status_transitions_validated_with_history(self, store: AlertStore):
        a = make_alert()
        store.upsert(a)
        store.set_status(a.alert_id, "field_check", who="ctrl-1", note="send an inspector")
        done = store.set_status(a.alert_id, Status.CONFIRMED, who="inspector", note="mown on 9 June")
        assert done.status is Status.CONFIRMED
        assert [(h.status.value, h.who, h.note) for h in done.history] == [
            ("field_check", "ctrl-1", "send an inspector"),
            ("confirmed", "inspector", "mown on 9 June"),
        ]
        with pytest.raises(TransitionError, match="cannot go from confirmed to acknowledged"):
            store.set_status(a.alert_id, "acknowledged", who="ctrl-1")
        assert store.get(a.alert_id).status is Status.CONFIRMED
        with pytest.raises(AlertNotFoundError):
            store.set_status("no-such-id", "confirmed", who="x")
        with pytest.raises(AlertNotFoundError):
            store.get("no-such-id")

    def test_queries(self, store: AlertStore):
        alerts = [
            make_alert("P1", "mowing", "2024-05-20", tile="33UXP", region="SK01"),
            make_alert("P1", "mowing", "2024-07-01", tile="33UXP", region="SK01"),
            make_alert("P2", "harvest", "2024-07-15", tile="33UXQ", region="SK02"),
            make_alert("P3", "solar_construction", "2024-08-01", tile="33UXQ", region="SK02"),
        ]
        assert store.upsert_many(alerts) == 4
        store.set_status(alerts[2].alert_id, "dismissed", who="ctrl")
        assert {a.parcel_id for a in store.query(parcel_id="P1")} == {"P1"}
        assert len(store.query(parcel_id="P1")) == 2
        assert [a.alert_id for a in store.query(status="dismissed")] == [alerts[2].alert_id]
        assert store.count(status=["new"]) == 3
        assert [a.type for a in store.query(type="harvest")] == ["harvest"]
        rng = store.query(date_from=date(2024, 6, 1), date_to=date(2024, 7, 31))
        assert sorted(a.event_date.isoformat() for a in rng) == ["2024-07-01", "2024-07-15"]
        assert {a.parcel_id for a in store.query(tile_id="33UXQ")} == {"P2", "P3"}
        assert store.count(region=["SK02"]) == 2 and store.count(region="SK01") == 2
        newest_first = store.query(AlertQuery(limit=2))
        assert [a.event_date.isoformat() for a in newest_first] == ["2024-08-01", "2024-07-15"]
        assert store.query(AlertQuery(limit=2, offset=3))[0].event_date == date(2024, 5, 20)
        with pytest.raises(ValueError, match="date_to"):
            AlertQuery(date_from=date(2024, 6, 1), date_to=date(2024, 5, 1))

    def test_a_filter_on_more_parcels_than_bound_parameters_allow(self, store: AlertStore):
        # A polygon region's parcel list can pass the bound-parameter limit (PostgreSQL 65 535, SQLite
        # 32 766 by default and 250 000 as Debian builds it): it goes as one array parameter.
        alerts = [make_alert(f"P{i}", day=f"2024-06-{1 + i % 28:02d}") for i in range(60)]
        store.upsert_many(alerts)
        region = [f"P{i}" for i in range(0, 60, 3)] + [f"absent-{i}" for i in range(260_000)]
        assert store.count(parcel_id=region) == 20
        assert {a.parcel_id for a in store.query(parcel_id=region)} == {f"P{i}" for i in range(0, 60, 3)}
        small = [f"P{i}" for i in range(0, 60, 3)]  # the inline IN list agrees with the array form
        assert {a.alert_id for a in store.query(parcel_id=small)} == {a.alert_id for a in store.query(parcel_id=region)}

    def test_concurrent_status_changes_only_one_wins(self, store: AlertStore):
        a = make_alert()
        store.upsert(a)
        results: list[str] = []

        def change(target: str) -> None:
            try:
                store.set_status(a.alert_id, target, who=target)
                results.append("ok")
            except TransitionError:
                results.append("refused")

        threads = [threading.Thread(target=change, args=("acknowledged",)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == ["ok", "refused", "refused", "refused"]
        assert len(store.get(a.alert_id).history) == 1


class TestStore(StoreContract):
    @pytest.fixture
    def store(self, any_store):
        return any_store


def test_a_reopened_sqlite_store_keeps_its_alerts(tmp_path):
    path = tmp_path / "a.sqlite"
    with SqliteAlertStore(path) as s:
        s.upsert(make_alert())
    with SqliteAlertStore(path) as s:
        assert s.count() == 1


def test_unreachable_postgres_and_unwritable_sqlite_are_clear_errors(tmp_path):
    from alerts.errors import StoreError
    from alerts.store import open_store

    with pytest.raises(StoreError, match="cannot connect to the PostgreSQL alert store"):
        open_store("postgresql://postgres@127.0.0.1:1/none?connect_timeout=1")
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="cannot open SQLite alert store"):
        SqliteAlertStore(tmp_path / "file" / "alerts.sqlite")
