"""The alert store interface and the SQL implementation shared by SQLite and PostgreSQL.

- ``upsert`` by ``alert_id``: a replay re-creates the same id, so it updates the detection fields
  (confidence, evidence, model version) and never duplicates; status and history are kept.
- ``set_status``: validated transitions (``alerts.types.TRANSITIONS``); an illegal one raises
  ``TransitionError`` with the reason; every change is appended to the history (who, when, note).
- ``query``: by parcel, status, type, event-date range, tile and region, newest event first.
- ``upsert_many``: a whole run in ONE transaction: all of it is stored or none (a failure midway
  rolls back); writers are serialised by the backend (SQLite ``BEGIN IMMEDIATE`` with retries on a
  busy database, PostgreSQL row locks), so two concurrent runs both succeed and lose nothing.
- Backends register themselves for URL schemes (:func:`register_backend`); :func:`open_store`
  resolves a URL through that registry, so this module imports none of them.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from alerts.errors import AlertNotFoundError, StoreError
from alerts.types import Alert, Status, StatusChange, check_transition

logger = logging.getLogger(__name__)

ALERT_COLUMNS = (
    "alert_id",
    "parcel_id",
    "tile_id",
    "region",
    "type",
    "event_date",
    "window_start",
    "window_end",
    "detected_at",
    "confidence",
    "evidence",
    "model_version",
    "status",
)


@dataclass(frozen=True, slots=True)
class AlertQuery:
    """Filters of ``AlertStore.query``; ``None`` means any. Dates inclusive."""

    parcel_id: str | Sequence[str] | None = None  # several: the parcels of a polygon region
    status: Status | str | Sequence[Status | str] | None = None
    type: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    tile_id: str | Sequence[str] | None = None
    region: str | Sequence[str] | None = None
    limit: int = 1000
    offset: int = 0
    min_confidence: float | None = None
    sort: str = "event_date_desc"  # one of SORTS
    # keyset paging: the sort key (``sort_key``) of the last alert of the previous page; the page is
    # the alerts after it, found by an index seek however deep (``offset`` reads and drops rows)
    after: tuple[Any, ...] | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= 100_000:
            raise ValueError(f"limit must lie in 1..100000, got {self.limit}")
        if self.offset < 0:
            raise ValueError("offset must be >= 0")
        if self.date_from and self.date_to and self.date_to < self.date_from:
            raise ValueError(f"date_to {self.date_to} before date_from {self.date_from}")
        if self.sort not in SORTS:
            raise ValueError(f"sort must be one of {sorted(SORTS)}, got {self.sort!r}")
        if self.after is not None:
            if len(self.after) != len(SORT_KEYS[self.sort]):
                raise ValueError(f"after must hold {len(SORT_KEYS[self.sort])} values for sort {self.sort!r}")
            if self.offset:
                raise ValueError("after and offset exclude each other")


# Sort orders of ``AlertStore.query`` (the dashboard's queue) as (column, descending); the unique
# alert_id breaks ties, so pages are stable and a row's values are a cursor (``AlertQuery.after``).
SORT_KEYS: dict[str, tuple[tuple[str, bool], ...]] = {
    "event_date_desc": (("event_date", True), ("alert_id", False)),
    "event_date_asc": (("event_date", False), ("alert_id", False)),
    "confidence_desc": (("confidence", True), ("event_date", True), ("alert_id", False)),
    "confidence_asc": (("confidence", False), ("event_date", True), ("alert_id", False)),
    "detected_at_desc": (("detected_at", True), ("alert_id", False)),
}
SORTS = {name: ", ".join(f"{c} {'DESC' if desc else 'ASC'}" for c, desc in key) for name, key in SORT_KEYS.items()}


def sort_key(alert: Alert, sort: str) -> tuple[Any, ...]:
    """The values of ``alert`` that order it in ``sort``: the ``after`` of the next page."""
    return tuple(getattr(alert, col) for col, _ in SORT_KEYS[sort])


class AlertStore(ABC):
    """One interface, two backends (SQLite embedded, PostgreSQL production)."""

    @abstractmethod
    def upsert(self, alert: Alert) -> bool:
        """Insert or update by ``alert_id``; True when the alert is new."""

    def upsert_many(self, alerts: Iterable[Alert]) -> int:
        """Upsert every alert in one transaction; the number that were new. Subclasses must keep it
        all-or-nothing (this default, one call per alert, is for stores without transactions)."""
        return sum(1 for a in alerts if self.upsert(a))

    @abstractmethod
    def get(self, alert_id: str) -> Alert: ...

    @abstractmethod
    def set_status(
        self, alert_id: str, status: Status | str, who: str, note: str = "", when: datetime | None = None
    ) -> Alert: ...

    @abstractmethod
    def query(self, q: AlertQuery | None = None, **filters: Any) -> list[Alert]: ...

    @abstractmethod
    def count(self, q: AlertQuery | None = None, **filters: Any) -> int: ...

    @abstractmethod
    def close(self) -> None: ...

    def changes_since(self, after: datetime, limit: int = 1000) -> list[tuple[str, str, datetime]]:
        """``(alert_id, kind, when)`` of alerts detected (kind ``new``) or changed (kind the new status)
        at or after ``after``, oldest first (the dashboard's live stream polls this)."""
        raise NotImplementedError

    def __enter__(self) -> AlertStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# The same indexes serve both SQL engines: the dashboard's and the controllers' queries.
INDEX_DDL = (
    "CREATE INDEX IF NOT EXISTS alerts_parcel ON alerts (parcel_id, event_date)",
    "CREATE INDEX IF NOT EXISTS alerts_status ON alerts (status, event_date)",
    "CREATE INDEX IF NOT EXISTS alerts_tile ON alerts (tile_id, event_date)",
    "CREATE INDEX IF NOT EXISTS alerts_region ON alerts (region, event_date)",
    # the dashboard's queue (tiles of a region, status, type, dates, confidence floor): counts and
    # pages answer from the index alone (measured at 1 M alerts: count 200 ms -> 1-10 ms)
    "CREATE INDEX IF NOT EXISTS alerts_queue ON alerts (tile_id, status, type, event_date, confidence)",
    # the queue's two sorts walked in order (no sort of every match: the confidence sort at a deep
    # offset sorted all ~13 000 matches of a year at 1 M alerts); the filter columns follow, so rows
    # that fail type/date/confidence are skipped in the index without reading the table
    "CREATE INDEX IF NOT EXISTS alerts_queue_date ON alerts (tile_id, status, event_date DESC, alert_id, type, confidence)",
    "CREATE INDEX IF NOT EXISTS alerts_queue_conf ON alerts "
    "(tile_id, status, confidence DESC, event_date DESC, alert_id, type)",
)
INDEX_NAMES = tuple(stmt.split(" ON ")[0].rsplit(" ", 1)[1] for stmt in INDEX_DDL)


class SqlAlertStore(AlertStore):
    """SQL shared by both backends; subclasses give the connection, placeholders and DDL."""

    ph = "?"

    @abstractmethod
    def _connect(self) -> Any: ...

    @abstractmethod
    def _ddl(self) -> list[str]: ...

    @contextmanager
    @abstractmethod
    def _tx(self, lock: bool = False) -> Iterator[Any]:
        """A transaction; yields a cursor. ``lock``: serialise writers (status changes)."""

    def _enc(self, col: str, value: Any) -> Any:
        return value

    def _dec_evidence(self, value: Any) -> dict[str, Any]:
        return json.loads(value) if isinstance(value, str) else dict(value or {})

    def _dec_date(self, value: Any) -> date:
        return (
            value
            if isinstance(value, date) and not isinstance(value, datetime)
            else date.fromisoformat(str(value))
        )

    def _dec_dt(self, value: Any) -> datetime:
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        dt = datetime.fromisoformat(str(value))
        return dt if dt.tzinfo else dt.replace(tzinfo=UTC)

    def init_schema(self) -> None:
        with self._tx(lock=True) as cur:
            for stmt in self._ddl():
                cur.execute(stmt)

    # -- writes -----------------------------------------------------------------------------------

    def upsert(self, alert: Alert) -> bool:
        return self.upsert_many([alert]) == 1

    def upsert_many(self, alerts: Iterable[Alert]) -> int:
        """All alerts in one write transaction; a failure of any rolls back the whole run."""
        new = 0
        current: Alert | None = None
        try:
            # one lock order for every writer (by id): two concurrent runs never deadlock on PostgreSQL
            batch = sorted(alerts, key=lambda a: a.alert_id)
            with self._tx(lock=True) as cur:
                for current in batch:
                    new += self._upsert(cur, current)
        except StoreError:
            raise
        except Exception as e:
            which = f" (at alert {current.alert_id})" if current is not None else ""
            raise StoreError(f"storing the run failed{which}, nothing of it was stored: {e}") from e
        return new

    def _upsert(self, cur: Any, alert: Alert) -> bool:
        ph = self.ph
        values = [self._enc(c, self._field(alert, c)) for c in ALERT_COLUMNS]
        cols = ", ".join(ALERT_COLUMNS)
        marks = ", ".join([ph] * len(ALERT_COLUMNS))
        # a replay refreshes the detection, never the controller's status or the first detection time
        update = ", ".join(
            f"{c} = excluded.{c}" for c in ("confidence", "evidence", "model_version", "tile_id", "region")
        )
        cur.execute(f"SELECT 1 FROM alerts WHERE alert_id = {ph}" + self._for_update(), (alert.alert_id,))
        exists = cur.fetchone() is not None
        cur.execute(
            f"INSERT INTO alerts ({cols}) VALUES ({marks}) ON CONFLICT (alert_id) DO UPDATE SET {update}",
            values,
        )
        if not exists:
            for i, ch in enumerate(alert.history):
                # a concurrent writer may have created the same alert since our SELECT (PostgreSQL)
                self._insert_history(cur, alert.alert_id, i, ch, if_absent=True)
        return not exists

    def _insert_history(
        self, cur: Any, alert_id: str, seq: int, ch: StatusChange, if_absent: bool = False
    ) -> None:
        ph = self.ph
        tail = " ON CONFLICT (alert_id, seq) DO NOTHING" if if_absent else ""
        cur.execute(
            f"INSERT INTO alert_history (alert_id, seq, status, who, changed_at, note) VALUES ({ph}, {ph}, {ph}, {ph}, {ph}, {ph})"
            + tail,
            (alert_id, seq, ch.status.value, ch.who, self._enc("changed_at", ch.when), ch.note),
        )

    def set_status(
        self, alert_id: str, status: Status | str, who: str, note: str = "", when: datetime | None = None
    ) -> Alert:
        new = Status(status)
        change = StatusChange(status=new, who=who, when=when or datetime.now(UTC), note=note)
        ph = self.ph
        with self._tx(lock=True) as cur:
            cur.execute(f"SELECT status FROM alerts WHERE alert_id = {ph}" + self._for_update(), (alert_id,))
            row = cur.fetchone()
            if row is None:
                raise AlertNotFoundError(f"no alert {alert_id}")
            check_transition(Status(row[0]), new)
            cur.execute(f"SELECT COUNT(*) FROM alert_history WHERE alert_id = {ph}", (alert_id,))
            seq = int(cur.fetchone()[0])
            cur.execute(f"UPDATE alerts SET status = {ph} WHERE alert_id = {ph}", (new.value, alert_id))
            self._insert_history(cur, alert_id, seq, change)
        return self.get(alert_id)

    def _for_update(self) -> str:
        return ""

    # -- reads ------------------------------------------------------------------------------------

    @staticmethod
    def _field(alert: Alert, col: str) -> Any:
        v = getattr(alert, col)
        if col == "status":
            return v.value
        return v

    def _row_to_alert(self, row: Sequence[Any], history: list[StatusChange]) -> Alert:
        d = dict(zip(ALERT_COLUMNS, row, strict=True))
        return Alert(
            alert_id=d["alert_id"],
            parcel_id=d["parcel_id"],
            tile_id=d["tile_id"] or "",
            region=d["region"] or "",
            type=d["type"],
            event_date=self._dec_date(d["event_date"]),
            window_start=self._dec_date(d["window_start"]),
            window_end=self._dec_date(d["window_end"]),
            detected_at=self._dec_dt(d["detected_at"]),
            confidence=float(d["confidence"]),
            evidence=self._dec_evidence(d["evidence"]),
            model_version=d["model_version"],
            status=Status(d["status"]),
            history=tuple(history),
        )

    def _histories(self, cur: Any, ids: list[str]) -> dict[str, list[StatusChange]]:
        out: dict[str, list[StatusChange]] = {i: [] for i in ids}
        if not ids:
            return out
        marks = ", ".join([self.ph] * len(ids))
        cur.execute(
            f"SELECT alert_id, status, who, changed_at, note FROM alert_history WHERE alert_id IN ({marks}) ORDER BY alert_id, seq",
            ids,
        )
        for aid, st, who, when, note in cur.fetchall():
            out[aid].append(
                StatusChange(status=Status(st), who=who, when=self._dec_dt(when), note=note or "")
            )
        return out

    def get(self, alert_id: str) -> Alert:
        with self._tx() as cur:
            cur.execute(
                f"SELECT {', '.join(ALERT_COLUMNS)} FROM alerts WHERE alert_id = {self.ph}", (alert_id,)
            )
            row = cur.fetchone()
            if row is None:
                raise AlertNotFoundError(f"no alert {alert_id}")
            hist = self._histories(cur, [alert_id])
        return self._row_to_alert(row, hist[alert_id])

    # Past this many values a filter is sent as one array parameter (a polygon region may hold more
    # parcels than the bound parameters allow: PostgreSQL 65 535, SQLite 32 766 by default).
    MAX_INLINE_VALUES = 500

    def _in_array(self, col: str, vals: list[str]) -> tuple[str, Any]:
        """``col`` in ``vals`` with ``vals`` as one parameter (SQLite: a JSON array read by json_each)."""
        return f"{col} IN (SELECT value FROM json_each({self.ph}))", json.dumps(vals)

    def _where(self, q: AlertQuery) -> tuple[str, list[Any]]:
        ph = self.ph
        clauses, params = [], []

        def many(col: str, value: Any) -> None:
            vals = [value] if isinstance(value, str) else list(value)
            vals = [v.value if isinstance(v, Status) else str(v) for v in vals]
            if len(vals) > self.MAX_INLINE_VALUES:
                clause, param = self._in_array(col, vals)
                clauses.append(clause)
                params.append(param)
            else:
                clauses.append(f"{col} IN ({', '.join([ph] * len(vals))})")
                params.extend(vals)

        if q.parcel_id is not None:
            many("parcel_id", q.parcel_id)
        if q.status is not None:
            many(
                "status",
                [Status(s) for s in ([q.status] if isinstance(q.status, str | Status) else q.status)],
            )
        if q.type is not None:
            clauses.append(f"type = {ph}")
            params.append(q.type)
        if q.date_from is not None:
            clauses.append(f"event_date >= {ph}")
            params.append(self._enc("event_date", q.date_from))
        if q.date_to is not None:
            clauses.append(f"event_date <= {ph}")
            params.append(self._enc("event_date", q.date_to))
        if q.tile_id is not None:
            many("tile_id", q.tile_id)
        if q.region is not None:
            many("region", q.region)
        if q.min_confidence is not None:
            clauses.append(f"confidence >= {ph}")
            params.append(float(q.min_confidence))
        if q.after is not None:
            self._after(q, clauses, params)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def _after(self, q: AlertQuery, clauses: list[str], params: list[Any]) -> None:
        """Rows strictly after ``q.after`` in ``q.sort``: the tuple comparison spelled out (the sorts mix
        directions, so a row-value ``(a, b) < (?, ?)`` cannot say it), plus a bound on the first column
        alone that lets the engine seek the index instead of filtering from its start."""
        ph = self.ph
        key = SORT_KEYS[q.sort]
        vals = [self._enc(col, v) for (col, _), v in zip(key, q.after or (), strict=True)]
        first, desc = key[0]
        clauses.append(f"{first} {'<=' if desc else '>='} {ph}")
        params.append(vals[0])
        ors = []
        for i, (col, desc) in enumerate(key):
            ors.append("(" + " AND ".join([f"{c} = {ph}" for c, _ in key[:i]] + [f"{col} {'<' if desc else '>'} {ph}"]) + ")")
            params.extend(vals[: i + 1])
        clauses.append("(" + " OR ".join(ors) + ")")

    def query(self, q: AlertQuery | None = None, **filters: Any) -> list[Alert]:
        q = q or AlertQuery(**filters)
        where, params = self._where(q)
        sql = (
            f"SELECT {', '.join(ALERT_COLUMNS)} FROM alerts{where} "
            f"ORDER BY {SORTS[q.sort]} LIMIT {int(q.limit)} OFFSET {int(q.offset)}"
        )
        with self._tx() as cur:
            cur.execute(sql, params)
            rows = cur.fetchall()
            hist = self._histories(cur, [r[0] for r in rows])
        return [self._row_to_alert(r, hist[r[0]]) for r in rows]

    def changes_since(self, after: datetime, limit: int = 1000) -> list[tuple[str, str, datetime]]:
        ph = self.ph
        since = self._enc("detected_at", after)
        with self._tx() as cur:
            cur.execute(
                f"SELECT alert_id, detected_at FROM alerts WHERE detected_at >= {ph} ORDER BY detected_at LIMIT {int(limit)}",
                (since,),
            )
            new = [(a, "new", self._dec_dt(w)) for a, w in cur.fetchall()]
            cur.execute(
                f"SELECT alert_id, status, changed_at FROM alert_history WHERE changed_at >= {ph} "
                f"ORDER BY changed_at LIMIT {int(limit)}",
                (self._enc("changed_at", after),),
            )
            changed = [(a, s, self._dec_dt(w)) for a, s, w in cur.fetchall()]
        return sorted(new + changed, key=lambda c: c[2])

    def count(self, q: AlertQuery | None = None, **filters: Any) -> int:
        q = q or AlertQuery(**filters)
        where, params = self._where(q)
        with self._tx() as cur:
            cur.execute(f"SELECT COUNT(*) FROM alerts{where}", params)
            return int(cur.fetchone()[0])


S = TypeVar("S", bound=type[AlertStore])

# URL scheme → store class; filled by the backends' modules (alerts/store/__init__.py imports them).
_BACKENDS: dict[str, type[AlertStore]] = {}
DEFAULT_SCHEME = "sqlite"  # a bare path is a SQLite file


def register_backend(*schemes: str):
    """Class decorator: ``open_store`` resolves URLs of these schemes to the class, which must offer
    ``from_url(url)``."""

    def decorate(cls: S) -> S:
        for scheme in schemes:
            _BACKENDS[scheme] = cls
        return cls

    return decorate


def backends() -> dict[str, type[AlertStore]]:
    """The registered schemes and their classes."""
    return dict(_BACKENDS)


def open_store(url: str) -> AlertStore:
    """``postgresql://…`` → PostgreSQL; ``sqlite:///path`` or a bare path → SQLite (by the registry)."""
    scheme, sep, _ = url.partition("://")
    key = scheme.lower() if sep else DEFAULT_SCHEME
    cls = _BACKENDS.get(key)
    if cls is None:
        known = ", ".join(f"{k}://" for k in sorted(_BACKENDS))
        raise StoreError(f"unknown alert store scheme {scheme!r} in {url[:80]!r} (known: {known}, or a SQLite path)")
    return cls.from_url(url)  # type: ignore[attr-defined]
