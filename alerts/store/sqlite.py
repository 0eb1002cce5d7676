"""SQLite alert store (embedded default). WAL mode; one connection per store object, thread-safe."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any

from alerts.errors import StoreError
from alerts.store.base import INDEX_DDL, SqlAlertStore


class SqliteAlertStore(SqlAlertStore):
    ph = "?"

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._lock = threading.RLock()
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._conn = self._connect()
        except (sqlite3.Error, OSError) as e:
            raise StoreError(f"cannot open SQLite alert store {self.path}: {e}") from e
        self.init_schema()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def _ddl(self) -> list[str]:
        return [
            """CREATE TABLE IF NOT EXISTS alerts (
                alert_id TEXT PRIMARY KEY, parcel_id TEXT NOT NULL, tile_id TEXT NOT NULL DEFAULT '',
                region TEXT NOT NULL DEFAULT '', type TEXT NOT NULL, event_date TEXT NOT NULL,
                window_start TEXT NOT NULL, window_end TEXT NOT NULL, detected_at TEXT NOT NULL,
                confidence REAL NOT NULL, evidence TEXT NOT NULL, model_version TEXT NOT NULL,
                status TEXT NOT NULL)""",
            """CREATE TABLE IF NOT EXISTS alert_history (
                alert_id TEXT NOT NULL REFERENCES alerts(alert_id) ON DELETE CASCADE, seq INTEGER NOT NULL,
                status TEXT NOT NULL, who TEXT NOT NULL, changed_at TEXT NOT NULL, note TEXT NOT NULL DEFAULT '',
                PRIMARY KEY (alert_id, seq))""",
            *INDEX_DDL,
        ]

    @contextmanager
    def _tx(self, lock: bool = False) -> Iterator[Any]:
        with self._lock:
            cur = self._conn.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE" if lock else "BEGIN")
                yield cur
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            finally:
                cur.close()

    def _enc(self, col: str, value: Any) -> Any:
        if col == "evidence":
            return json.dumps(value, separators=(",", ":"), sort_keys=True)
        if isinstance(value, datetime | date):
            return value.isoformat()
        return value

    def close(self) -> None:
        with self._lock:
            self._conn.close()
