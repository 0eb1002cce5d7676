"""The item ledger: every item seen, with its status; and the search watermarks.

One interface, two backends: SQLite (embedded default) and PostgreSQL (production). Both keep the same
two tables; statements are written once with ``?`` placeholders and translated for psycopg.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ingest.errors import LedgerError
from ingest.types import ItemInfo, ItemStatus

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS ingest_items (
        collection TEXT NOT NULL,
        item_id TEXT NOT NULL,
        source TEXT NOT NULL,
        tile_id TEXT NOT NULL,
        sensor TEXT NOT NULL,
        slot_key TEXT NOT NULL,
        acq_time BIGINT NOT NULL,
        published BIGINT,
        baseline TEXT NOT NULL,
        status TEXT NOT NULL,
        reason TEXT NOT NULL,
        item_json TEXT NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (collection, item_id)
    )""",
    "CREATE INDEX IF NOT EXISTS ingest_items_slot ON ingest_items (tile_id, sensor, slot_key)",
    "CREATE INDEX IF NOT EXISTS ingest_items_status ON ingest_items (status)",
    """CREATE TABLE IF NOT EXISTS ingest_watermarks (
        source TEXT NOT NULL,
        collection TEXT NOT NULL,
        tile_id TEXT NOT NULL,
        watermark BIGINT NOT NULL,
        PRIMARY KEY (source, collection, tile_id)
    )""",
)

_COLUMNS = (
    "collection, item_id, source, tile_id, sensor, slot_key, acq_time, published, baseline, "
    "status, reason, item_json, updated_at"
)


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    collection: str
    item_id: str
    source: str
    tile_id: str
    sensor: str
    slot_key: str
    acq_time: int
    published: int | None
    baseline: str
    status: ItemStatus
    reason: str
    item_json: str
    updated_at: int

    def __post_init__(self) -> None:
        if not self.item_id:
            raise ValueError("ledger entry without item id")

    @property
    def item(self) -> dict[str, Any]:
        return json.loads(self.item_json)


class Ledger(Protocol):
    """What the poller needs from a ledger."""

    def get(self, collection: str, item_id: str) -> LedgerEntry | None: ...
    def record(self, source: str, info: ItemInfo, item: dict[str, Any], status: ItemStatus, reason: str = "") -> None: ...
    def quarantine_raw(self, source: str, collection: str, item_id: str, item: Any, reason: str) -> None: ...
    def set_status(self, collection: str, item_ids: Iterable[str], status: ItemStatus, reason: str = "") -> None: ...
    def entries(
        self, *, status: ItemStatus | None = None, tile_id: str | None = None, sensor: str | None = None,
        slot_key: str | None = None,
    ) -> list[LedgerEntry]: ...
    def watermark(self, source: str, collection: str, tile_id: str) -> int | None: ...
    def advance_watermark(self, source: str, collection: str, tile_id: str, value: int) -> None: ...
    def close(self) -> None: ...


class _SqlLedger:
    """Shared SQL for both backends; subclasses provide ``_execute`` (one transaction per call)."""

    placeholder = "?"

    def __init__(self) -> None:
        self._lock = threading.RLock()

    def _sql(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    def _execute(self, sql: str, params: Sequence[Any] = (), fetch: bool = False) -> list[tuple]:
        raise NotImplementedError

    def _init_schema(self) -> None:
        for stmt in SCHEMA:
            self._execute(stmt)

    def get(self, collection: str, item_id: str) -> LedgerEntry | None:
        rows = self._execute(
            f"SELECT {_COLUMNS} FROM ingest_items WHERE collection = ? AND item_id = ?", (collection, item_id), True
        )
        return _entry(rows[0]) if rows else None

    def record(self, source: str, info: ItemInfo, item: dict[str, Any], status: ItemStatus, reason: str = "") -> None:
        self._upsert(
            (info.collection, info.item_id, source, info.tile_id, info.sensor.value, info.slot_key, info.datetime_s,
             info.published_s, info.baseline, ItemStatus(status).value, reason, json.dumps(item), int(time.time()))
        )

    def quarantine_raw(self, source: str, collection: str, item_id: str, item: Any, reason: str) -> None:
        """Quarantine an item too malformed to parse: what is known is kept, with the raw JSON."""
        try:
            text = json.dumps(item)
        except (TypeError, ValueError):
            text = json.dumps(repr(item))
        tile = ""
        if isinstance(item, dict):
            from ingest.items import tile_of_item

            tile = tile_of_item(item) or ""
        self._upsert(
            (collection, item_id, source, tile, "", "", 0, None, "", ItemStatus.QUARANTINED.value, reason, text,
             int(time.time()))
        )

    def _upsert(self, row: tuple) -> None:
        sql = (
            f"INSERT INTO ingest_items ({_COLUMNS}) VALUES ({', '.join('?' * 13)}) "
            "ON CONFLICT (collection, item_id) DO UPDATE SET source = excluded.source, tile_id = excluded.tile_id, "
            "sensor = excluded.sensor, slot_key = excluded.slot_key, acq_time = excluded.acq_time, "
            "published = excluded.published, baseline = excluded.baseline, status = excluded.status, "
            "reason = excluded.reason, item_json = excluded.item_json, updated_at = excluded.updated_at"
        )
        self._execute(sql, row)

    def set_status(self, collection: str, item_ids: Iterable[str], status: ItemStatus, reason: str = "") -> None:
        now = int(time.time())
        for item_id in item_ids:
            self._execute(
                "UPDATE ingest_items SET status = ?, reason = ?, updated_at = ? WHERE collection = ? AND item_id = ?",
                (ItemStatus(status).value, reason, now, collection, item_id),
            )

    def entries(
        self, *, status: ItemStatus | None = None, tile_id: str | None = None, sensor: str | None = None,
        slot_key: str | None = None,
    ) -> list[LedgerEntry]:
        where, params = [], []
        for column, value in (("status", status), ("tile_id", tile_id), ("sensor", sensor), ("slot_key", slot_key)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(str(value))
        sql = f"SELECT {_COLUMNS} FROM ingest_items"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY acq_time, item_id"
        return [_entry(r) for r in self._execute(sql, params, True)]

    def watermark(self, source: str, collection: str, tile_id: str) -> int | None:
        rows = self._execute(
            "SELECT watermark FROM ingest_watermarks WHERE source = ? AND collection = ? AND tile_id = ?",
            (source, collection, tile_id), True,
        )
        return int(rows[0][0]) if rows else None

    def watermarks(self) -> list[tuple[str, str, str, int]]:
        """Every (source, collection, area, watermark seconds)."""
        rows = self._execute("SELECT source, collection, tile_id, watermark FROM ingest_watermarks "
                             "ORDER BY source, collection, tile_id", (), True)
        return [(str(a), str(b), str(c), int(d)) for a, b, c, d in rows]

    def counts(self) -> dict[str, int]:
        """Items per status."""
        rows = self._execute("SELECT status, COUNT(*) FROM ingest_items GROUP BY status", (), True)
        return {str(k): int(v) for k, v in rows}

    def advance_watermark(self, source: str, collection: str, tile_id: str, value: int) -> None:
        """Move the watermark forward to ``value`` (never backwards)."""
        self._execute(
            "INSERT INTO ingest_watermarks (source, collection, tile_id, watermark) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (source, collection, tile_id) DO UPDATE SET watermark = "
            "CASE WHEN excluded.watermark > ingest_watermarks.watermark THEN excluded.watermark "
            "ELSE ingest_watermarks.watermark END",
            (source, collection, tile_id, int(value)),
        )


def _entry(row: tuple) -> LedgerEntry:
    (collection, item_id, source, tile_id, sensor, slot_key, acq_time, published, baseline, status, reason,
     item_json, updated_at) = row
    return LedgerEntry(
        collection, item_id, source, tile_id, sensor, slot_key, int(acq_time),
        None if published is None else int(published), baseline, ItemStatus(status), reason, item_json,
        int(updated_at),
    )


class SqliteLedger(_SqlLedger):
    """SQLite ledger (WAL journal, one transaction per statement); safe to share between threads."""

    def __init__(self, path: str | Path):
        super().__init__()
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
        except (OSError, sqlite3.Error) as e:
            raise LedgerError(f"cannot open ledger {self.path}: {e}") from e
        self._init_schema()

    def _execute(self, sql: str, params: Sequence[Any] = (), fetch: bool = False) -> list[tuple]:
        with self._lock:
            try:
                cur = self._conn.execute(sql, tuple(params))
                return cur.fetchall() if fetch else []
            except sqlite3.Error as e:
                raise LedgerError(f"ledger {self.path}: {e}") from e

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class PostgresLedger(_SqlLedger):
    """PostgreSQL ledger through psycopg 3 (autocommit: each statement is its own transaction)."""

    placeholder = "%s"

    def __init__(self, dsn: str):
        super().__init__()
        import psycopg

        self._psycopg = psycopg
        self.dsn = dsn
        try:
            self._conn = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
        except psycopg.Error as e:
            raise LedgerError(f"cannot connect to ledger database: {e}") from e
        self._init_schema()

    def _execute(self, sql: str, params: Sequence[Any] = (), fetch: bool = False) -> list[tuple]:
        with self._lock:
            try:
                cur = self._conn.execute(self._sql(sql), tuple(params))
                return cur.fetchall() if fetch else []
            except self._psycopg.Error as e:
                raise LedgerError(f"ledger database: {e}") from e

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def open_ledger(url: str | Path) -> SqliteLedger | PostgresLedger:
    """``postgresql://…`` opens PostgreSQL; a path or ``sqlite:///path`` opens SQLite."""
    text = str(url)
    if not text:
        raise LedgerError("no ledger location given")
    if text.startswith(("postgresql://", "postgres://")):
        return PostgresLedger(text)
    if text.startswith("sqlite:///"):
        text = text[len("sqlite:///") :]
    return SqliteLedger(text)
