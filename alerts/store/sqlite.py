"""SQLite alert store (embedded default). WAL mode; one connection per store object, thread-safe.

Every write transaction starts with ``BEGIN IMMEDIATE``: it takes the write lock up front, so the busy
timeout applies while another process writes (a deferred transaction that reads first and then
writes would instead fail at once with "database is locked" on a stale WAL snapshot). Should the lock
stay taken past SQLite's own timeout, the BEGIN is retried with backoff until ``busy_timeout_s``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any

from alerts.errors import StoreError
from alerts.store.base import INDEX_DDL, INDEX_NAMES, SqlAlertStore, register_backend


def _busy(error: sqlite3.OperationalError) -> bool:
    text = str(error).lower()
    return "locked" in text or "busy" in text


@register_backend("sqlite")
class SqliteAlertStore(SqlAlertStore):
    ph = "?"

    @classmethod
    def from_url(cls, url: str) -> SqliteAlertStore:
        """``sqlite:///relative/or/absolute/path`` (the rest of the URL is the path) or a bare path."""
        return cls(url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url)

    def __init__(self, path: str | Path, busy_timeout_s: float = 30.0) -> None:
        self.path = str(path)
        self.busy_timeout_s = busy_timeout_s
        self._lock = threading.RLock()
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._conn = self._connect()
        except (sqlite3.Error, OSError) as e:
            raise StoreError(f"cannot open SQLite alert store {self.path}: {e}") from e
        self.init_schema()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=min(self.busy_timeout_s, 5.0)
        )
        # switching to WAL needs a moment of exclusive access: retried like a write
        self._retry_busy(lambda: conn.execute("PRAGMA journal_mode=WAL"))
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def _retry_busy(self, step):
        """Run ``step`` until it does not fail on a busy/locked database, within ``busy_timeout_s``."""
        deadline = time.monotonic() + self.busy_timeout_s
        wait_s = 0.01
        while True:
            try:
                return step()
            except sqlite3.OperationalError as e:
                if not _busy(e) or time.monotonic() + wait_s > deadline:
                    raise StoreError(
                        f"SQLite alert store {self.path} stayed busy for {self.busy_timeout_s:g} s: {e}"
                    ) from e
                time.sleep(wait_s)
                wait_s = min(wait_s * 2, 0.5)

    def init_schema(self) -> None:
        # Opening a store that has its schema takes no write lock: a reader never waits for a writer.
        # A store made before an index was added gets it here (once; seconds at 1 M alerts).
        with self._tx() as cur:
            cur.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'index')")
            have = {r[0] for r in cur.fetchall()}
            if {"alerts", "alert_history", *INDEX_NAMES} <= have:
                return
        super().init_schema()

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
                self._retry_busy(lambda: cur.execute("BEGIN IMMEDIATE" if lock else "BEGIN"))
            except BaseException:
                cur.close()
                raise
            try:
                yield cur
                cur.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
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
