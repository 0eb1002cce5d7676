"""The alert stores the store contract suites run on (tests of alerts and of the dashboard's queries)."""

from __future__ import annotations

from alerts.store.postgres import PostgresAlertStore


def emptied_postgres_store(dsn: str) -> PostgresAlertStore:
    """A PostgreSQL alert store on ``dsn`` with every alert removed: the module's database is shared by
    its tests, and each test starts from an empty table."""
    store = PostgresAlertStore(dsn)
    with store._tx() as cur:
        cur.execute("TRUNCATE alerts CASCADE")
    return store
