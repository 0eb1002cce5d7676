"""PostgreSQL alert store (production), psycopg 3. Proper DATE/TIMESTAMPTZ/JSONB columns."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from alerts.errors import StoreError
from alerts.store.base import INDEX_DDL, SqlAlertStore, register_backend

SCHEMA_LOCK_KEY = 0x5175_0A1E  # pg_advisory_xact_lock key of the alert schema's creation ("sits alerts")


@register_backend("postgresql", "postgres")
class PostgresAlertStore(SqlAlertStore):
    ph = "%s"

    def _in_array(self, col: str, vals: list[str]) -> tuple[str, Any]:
        return f"{col} = ANY({self.ph})", vals

    @classmethod
    def from_url(cls, url: str) -> PostgresAlertStore:
        return cls(url)

    def __init__(self, dsn: str, connect_timeout_s: int = 10) -> None:
        self.dsn = dsn
        self.connect_timeout_s = connect_timeout_s
        self._lock = threading.RLock()
        try:
            self._conn = self._connect()
        except Exception as e:
            raise StoreError(f"cannot connect to the PostgreSQL alert store: {e}") from e
        self.init_schema()

    def _connect(self) -> Any:
        import psycopg

        return psycopg.connect(self.dsn, autocommit=True, connect_timeout=self.connect_timeout_s)

    def _ddl(self) -> list[str]:
        return [
            """CREATE TABLE IF NOT EXISTS alerts (
                alert_id TEXT PRIMARY KEY, parcel_id TEXT NOT NULL, tile_id TEXT NOT NULL DEFAULT '',
                region TEXT NOT NULL DEFAULT '', type TEXT NOT NULL, event_date DATE NOT NULL,
                window_start DATE NOT NULL, window_end DATE NOT NULL, detected_at TIMESTAMPTZ NOT NULL,
                confidence DOUBLE PRECISION NOT NULL, evidence JSONB NOT NULL, model_version TEXT NOT NULL,
                status TEXT NOT NULL)""",
            """CREATE TABLE IF NOT EXISTS alert_history (
                alert_id TEXT NOT NULL REFERENCES alerts(alert_id) ON DELETE CASCADE, seq INTEGER NOT NULL,
                status TEXT NOT NULL, who TEXT NOT NULL, changed_at TIMESTAMPTZ NOT NULL,
                note TEXT NOT NULL DEFAULT '', PRIMARY KEY (alert_id, seq))""",
            *INDEX_DDL,
        ]

    def init_schema(self) -> None:
        # CREATE ... IF NOT EXISTS is not safe against a concurrent CREATE of the same name: two monitor
        # workers starting on a new database both pass the check, and one fails on pg_type's unique
        # index. A transaction-scoped advisory lock makes every process create the schema in turn.
        with self._tx(lock=True) as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
            for stmt in self._ddl():
                cur.execute(stmt)

    @contextmanager
    def _tx(self, lock: bool = False) -> Iterator[Any]:
        with self._lock:
            if self._conn.closed:
                raise StoreError("the PostgreSQL alert store is closed")
            try:
                with self._conn.transaction(), self._conn.cursor() as cur:
                    yield cur
            except StoreError:
                raise
            finally:
                pass

    def _for_update(self) -> str:
        return " FOR UPDATE"

    def _enc(self, col: str, value: Any) -> Any:
        if col == "evidence":
            from psycopg.types.json import Jsonb

            return Jsonb(value)
        return value

    def close(self) -> None:
        with self._lock:
            self._conn.close()
