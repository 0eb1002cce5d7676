"""The alert stores the store contract suites run on (tests of alerts and of the dashboard's queries)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from alerts.store.base import AlertStore
from alerts.store.postgres import PostgresAlertStore
from alerts.store.sqlite import SqliteAlertStore


def emptied_postgres_store(dsn: str) -> PostgresAlertStore:
    """A PostgreSQL alert store on ``dsn`` with every alert removed: the module's database is shared by
    its tests, and each test starts from an empty table."""
    store = PostgresAlertStore(dsn)
    with store._tx() as cur:
        cur.execute("TRUNCATE alerts CASCADE")
    return store


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def any_store(request: pytest.FixtureRequest, tmp_path) -> Iterator[AlertStore]:
    """An empty alert store of each engine in turn: a new SQLite file, then the module's PostgreSQL
    database emptied (closed at the end of the test)."""
    if request.param == "sqlite":
        store: AlertStore = SqliteAlertStore(tmp_path / "alerts.sqlite")
    else:
        store = emptied_postgres_store(request.getfixturevalue("postgres_dsn"))
    with store:
        yield store
