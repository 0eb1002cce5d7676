"""The message bus: one small interface, two backends.

- :class:`InMemoryBus` — the embedded default. Topics with N partitions (a key always lands in the
  partition Kafka's default partitioner would pick: ``murmur2(key) % N``), consumer groups whose
  committed offsets survive closing and reopening a consumer on the same bus object, and, given a
  ``path``, a SQLite file so that a restarted process resumes where its group committed.
- :class:`KafkaBus` — Apache Kafka through kafka-python (``acks=all``, JSON values, string keys,
  manual commit, consumer groups). ``api_version=(0, 9)`` for the local test broker
  (``scripts/services/kafka.sh``); ``None`` auto-detects in production.

Delivery is at least once: :meth:`Consumer.commit` commits what :meth:`Consumer.poll` returned so
far; whatever was polled but not committed is delivered again to the next consumer of the group
(after a close, a restart or a rebalance). Messages carry all their metadata in the JSON value:
no headers, no record timestamps (Kafka 0.9 has neither).

Usage::

    bus = make_bus("memory")                      # or make_bus("kafka", "127.0.0.1:29092", "0.9")
    bus.publish("sits.acquisitions", "33UXP", {"schema": "...", "tile_id": "33UXP"})
    bus.flush()
    with bus.consumer(["sits.acquisitions"], "sitsmon-monitor") as consumer:
        for message in consumer.poll(timeout_s=1.0, max_records=100):
            handle(message.value)
        consumer.commit()                          # only after the effects are durable
    bus.close()
"""

from __future__ import annotations

import json
import logging
import math
import re
import socket
import sqlite3
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

logger = logging.getLogger(__name__)

__all__ = [
    "Bus",
    "BusError",
    "BusUnavailableError",
    "Consumer",
    "InMemoryBus",
    "KafkaBus",
    "Message",
    "make_bus",
    "murmur2",
    "parse_api_version",
    "partition_for",
]

OffsetReset = Literal["earliest", "latest"]
_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_SQLITE_SCHEMA_VERSION = 1


class BusError(ValueError):
    """Base error of the bus: bad input (key, value, topic, group) or a failed bus operation."""


class BusUnavailableError(BusError, ConnectionError):
    """The broker cannot be reached (the message names the address)."""


@dataclass(frozen=True, slots=True)
class Message:
    """One consumed record: where it sits in the log, its string key and its JSON object value."""

    topic: str
    partition: int
    offset: int
    key: str
    value: dict[str, Any]

    def __post_init__(self) -> None:
        if self.partition < 0 or self.offset < 0:
            raise ValueError(
                f"partition and offset must be >= 0, got {self.partition}, {self.offset} ({self.topic})"
            )


# --------------------------------------------------------------------------------------------------
# validation and encoding, shared by both backends so that they refuse the same input


def _check_topic(topic: object) -> str:
    if not isinstance(topic, str) or not _TOPIC_RE.match(topic) or topic in (".", ".."):
        raise BusError(f"bad topic name {topic!r}: use 1-249 characters of [A-Za-z0-9._-]")
    return topic


def _check_topics(topics: str | Iterable[str]) -> list[str]:
    if isinstance(topics, str):
        topics = [topics]
    checked = sorted({_check_topic(t) for t in topics})
    if not checked:
        raise BusError("a consumer needs at least one topic")
    return checked


def _check_group(group_id: object) -> str:
    if not isinstance(group_id, str) or not group_id.strip():
        raise BusError(f"group_id must be a non-empty string, got {group_id!r}")
    return group_id


def _encode(topic: str, key: object, value: object) -> tuple[str, str]:
    """Check a record and return ``(key, value as compact JSON text)``."""
    _check_topic(topic)
    if not isinstance(key, str):
        raise BusError(f"bus keys are strings, got {type(key).__name__} {key!r} (topic {topic})")
    if not isinstance(value, dict):
        raise BusError(
            f"bus values are JSON objects (dict), got {type(value).__name__} (topic {topic}, key {key})"
        )
    try:
        text = json.dumps(value, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as e:
        raise BusError(f"value for topic {topic}, key {key} is not JSON-serialisable: {e}") from e
    return key, text


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash (``org.apache.kafka.common.utils.Utils.murmur2``) as an unsigned 32-bit int.

    Java returns the same bits as a signed int; partitioning masks the sign bit either way.
    """
    length = len(data)
    m, r = 0x5BD1E995, 24
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(length // 4):
        k = int.from_bytes(data[4 * i : 4 * i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = data[length & ~3 :]
    if len(tail) >= 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if len(tail) >= 1:
        h ^= tail[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def partition_for(key: str, partitions: int) -> int:
    """The partition of ``key`` among ``partitions``: Kafka's default partitioner for a keyed record."""
    if partitions < 1:
        raise BusError(f"partitions must be >= 1, got {partitions}")
    return (murmur2(key.encode("utf-8")) & 0x7FFFFFFF) % partitions


def parse_api_version(api_version: str | Sequence[int] | None) -> tuple[int, ...] | None:
    """``"0.9"`` / ``(0, 9)`` -> ``(0, 9)``; ``None``, ``""`` or ``"auto"`` -> ``None`` (auto-detect)."""
    if api_version is None:
        return None
    if isinstance(api_version, str):
        text = api_version.strip()
        if text in ("", "auto"):
            return None
        try:
            parts = tuple(int(p) for p in text.split("."))
        except ValueError as e:
            raise BusError(f"bad Kafka api_version {api_version!r}: expected like '0.9' or '2.8.1'") from e
    else:
        parts = tuple(api_version)
        if not all(isinstance(p, int) for p in parts):
            raise BusError(f"bad Kafka api_version {api_version!r}: expected integers")
    if not 1 <= len(parts) <= 3 or any(p < 0 for p in parts):
        raise BusError(f"bad Kafka api_version {api_version!r}")
    return parts


# --------------------------------------------------------------------------------------------------
# the interface


class Consumer(ABC):
    """A member of a consumer group, subscribed to some topics.

    ``poll`` returns the next records of the partitions assigned to this member; ``commit`` makes
    everything polled so far the group's committed position; ``close`` leaves the group WITHOUT
    committing (uncommitted records go to the next member: at least once).
    """

    topics: tuple[str, ...]
    group_id: str

    @abstractmethod
    def poll(self, timeout_s: float = 1.0, max_records: int = 500) -> list[Message]:
        """Wait up to ``timeout_s`` for records; return at most ``max_records`` (maybe none)."""

    @abstractmethod
    def commit(self) -> None:
        """Commit the position after every record returned by ``poll`` so far."""

    @abstractmethod
    def assignment(self) -> set[tuple[str, int]]:
        """The ``(topic, partition)`` pairs this member currently reads."""

    @abstractmethod
    def close(self) -> None:
        """Leave the group without committing. Idempotent."""

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Bus(ABC):
    """Publish keyed JSON records to topics; hand out consumers of consumer groups."""

    @abstractmethod
    def publish(self, topic: str, key: str, value: dict[str, Any]) -> None:
        """Queue one record. Raises :class:`BusError` on a non-string key or a non-JSON value.

        On Kafka the send is asynchronous: a record is durable only once :meth:`flush` returns
        (call it before recording the record as published, e.g. in the ingest ledger).
        """

    @abstractmethod
    def flush(self, timeout_s: float | None = None) -> None:
        """Block until every queued record is acknowledged (Kafka: by all in-sync replicas)."""

    @abstractmethod
    def consumer(
        self, topics: str | Iterable[str], group_id: str, *, offset_reset: OffsetReset = "earliest"
    ) -> Consumer:
        """A new member of ``group_id`` reading ``topics``.

        ``offset_reset`` says where a partition without a committed offset starts.
        """

    @abstractmethod
    def close(self) -> None:
        """Flush and release everything (consumers handed out are closed too). Idempotent."""

    def __enter__(self) -> Bus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_poll_args(timeout_s: float, max_records: int) -> None:
    if not (isinstance(timeout_s, int | float) and math.isfinite(timeout_s) and timeout_s >= 0):
        raise BusError(f"timeout_s must be a finite number >= 0, got {timeout_s!r}")
    if not isinstance(max_records, int) or max_records < 1:
        raise BusError(f"max_records must be an int >= 1, got {max_records!r}")


# --------------------------------------------------------------------------------------------------
# in-process backend (SQLite in memory, or in a file so that a restarted process resumes)


class InMemoryBus(Bus):
    """The embedded bus: an in-process log with partitions, consumer groups and committed offsets.

    Storage is SQLite: ``:memory:`` by default, or the file ``path`` so that records and committed
    offsets outlive the process (another process can open the same file to read what this one
    publishes; group membership is per process, so give each process its own group).

    ``partitions`` is the partition count of topics this bus creates; a topic keeps the count it
    was created with. Every ``publish`` is committed at once (``flush`` has nothing to do).
    """

    _POLL_STEP_S = 0.05  # how often a waiting poll re-reads a file shared with other processes

    def __init__(self, path: str | Path | None = None, *, partitions: int = 3) -> None:
        if not isinstance(partitions, int) or partitions < 1:
            raise BusError(f"partitions must be an int >= 1, got {partitions!r}")
        self.partitions = partitions
        self.path = Path(path) if path is not None else None
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._closed = False
        self._members: dict[str, list[_MemoryConsumer]] = {}
        self._generation: dict[str, int] = {}
        try:
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                ":memory:" if self.path is None else str(self.path),
                check_same_thread=False,
                isolation_level=None,
                timeout=30.0,
            )
            self._init_schema()
        except sqlite3.Error as e:
            raise BusError(f"cannot open the bus store {self.path or ':memory:'}: {e}") from e

    def _init_schema(self) -> None:
        db = self._db
        if self.path is not None:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(
            """
            CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS topics (topic TEXT PRIMARY KEY, partitions INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS records (
                topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
                key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (topic, partition, offset));
            CREATE TABLE IF NOT EXISTS group_offsets (
                group_id TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
                offset INTEGER NOT NULL, PRIMARY KEY (group_id, topic, partition));
            """
        )
        db.execute(
            "INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (f"sitsmon-bus/{_SQLITE_SCHEMA_VERSION}",)
        )
        (schema,) = db.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
        if schema != f"sitsmon-bus/{_SQLITE_SCHEMA_VERSION}":
            raise BusError(f"bus store {self.path} has schema {schema!r}, expected sitsmon-bus/1")

    def __repr__(self) -> str:
        return f"InMemoryBus(path={self.path!r}, partitions={self.partitions})"

    # ---- helpers used by the consumers (all called with the lock held)

    def _check_open(self) -> None:
        if self._closed:
            raise BusError("the bus is closed")

    def _ensure_topic(self, topic: str) -> int:
        row = self._db.execute("SELECT partitions FROM topics WHERE topic = ?", (topic,)).fetchone()
        if row is not None:
            return int(row[0])
        self._db.execute("INSERT OR IGNORE INTO topics VALUES (?, ?)", (topic, self.partitions))
        (n,) = self._db.execute("SELECT partitions FROM topics WHERE topic = ?", (topic,)).fetchone()
        return int(n)

    def _end_offset(self, topic: str, partition: int) -> int:
        (end,) = self._db.execute(
            "SELECT COALESCE(MAX(offset) + 1, 0) FROM records WHERE topic = ? AND partition = ?",
            (topic, partition),
        ).fetchone()
        return int(end)

    def _committed(self, group_id: str, topic: str, partition: int) -> int | None:
        row = self._db.execute(
            "SELECT offset FROM group_offsets WHERE group_id = ? AND topic = ? AND partition = ?",
            (group_id, topic, partition),
        ).fetchone()
        return None if row is None else int(row[0])

    def _fetch(self, topic: str, partition: int, start: int, limit: int) -> list[Message]:
        rows = self._db.execute(
            "SELECT offset, key, value FROM records WHERE topic = ? AND partition = ? AND offset >= ?"
            " ORDER BY offset LIMIT ?",
            (topic, partition, start, limit),
        ).fetchall()
        return [Message(topic, partition, int(o), k, json.loads(v)) for o, k, v in rows]

    def _commit_offsets(self, group_id: str, offsets: dict[tuple[str, int], int]) -> None:
        with self._db:
            self._db.executemany(
                "INSERT INTO group_offsets VALUES (?, ?, ?, ?) ON CONFLICT (group_id, topic, partition)"
                " DO UPDATE SET offset = excluded.offset",
                [(group_id, t, p, o) for (t, p), o in offsets.items()],
            )

    def _join(self, member: _MemoryConsumer) -> None:
        self._members.setdefault(member.group_id, []).append(member)
        self._generation[member.group_id] = self._generation.get(member.group_id, 0) + 1

    def _leave(self, member: _MemoryConsumer) -> None:
        members = self._members.get(member.group_id, [])
        if member in members:
            members.remove(member)
            self._generation[member.group_id] += 1
            self._changed.notify_all()

    def _assign(self, member: _MemoryConsumer) -> set[tuple[str, int]]:
        """Round-robin: partition p of a topic goes to its (p mod n)-th subscriber, in join order."""
        assigned: set[tuple[str, int]] = set()
        members = self._members.get(member.group_id, [])
        for topic in member.topics:
            readers = [m for m in members if topic in m.topics]
            index = readers.index(member)
            n_partitions = self._ensure_topic(topic)
            assigned.update((topic, p) for p in range(n_partitions) if p % len(readers) == index)
        return assigned

    # ---- the interface

    def publish(self, topic: str, key: str, value: dict[str, Any]) -> None:
        key, text = _encode(topic, key, value)
        with self._lock:
            self._check_open()
            try:
                with self._db:
                    n = self._ensure_topic(topic)
                    partition = partition_for(key, n)
                    offset = self._end_offset(topic, partition)
                    self._db.execute(
                        "INSERT INTO records VALUES (?, ?, ?, ?, ?)", (topic, partition, offset, key, text)
                    )
            except sqlite3.Error as e:
                raise BusError(f"cannot append to topic {topic} in {self.path or ':memory:'}: {e}") from e
            self._changed.notify_all()

    def flush(self, timeout_s: float | None = None) -> None:
        with self._lock:
            self._check_open()

    def consumer(
        self, topics: str | Iterable[str], group_id: str, *, offset_reset: OffsetReset = "earliest"
    ) -> Consumer:
        checked = _check_topics(topics)
        _check_group(group_id)
        if offset_reset not in ("earliest", "latest"):
            raise BusError(f"offset_reset must be 'earliest' or 'latest', got {offset_reset!r}")
        with self._lock:
            self._check_open()
            member = _MemoryConsumer(self, tuple(checked), group_id, offset_reset)
            self._join(member)
            return member

    def end_offsets(self, topic: str) -> dict[int, int]:
        """``{partition: next offset}`` of a topic (creates the topic if it does not exist)."""
        _check_topic(topic)
        with self._lock:
            self._check_open()
            n = self._ensure_topic(topic)
            return {p: self._end_offset(topic, p) for p in range(n)}

    def committed(self, group_id: str, topic: str) -> dict[int, int]:
        """``{partition: committed offset}`` of a group on a topic (partitions never committed left out)."""
        _check_group(group_id)
        _check_topic(topic)
        with self._lock:
            self._check_open()
            rows = self._db.execute(
                "SELECT partition, offset FROM group_offsets WHERE group_id = ? AND topic = ?",
                (group_id, topic),
            ).fetchall()
        return {int(p): int(o) for p, o in rows}

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            for members in list(self._members.values()):
                for member in list(members):
                    member.close()
            self._closed = True
            self._db.close()
            self._changed.notify_all()


class _MemoryConsumer(Consumer):
    def __init__(self, bus: InMemoryBus, topics: tuple[str, ...], group_id: str, reset: OffsetReset):
        self._bus = bus
        self.topics = topics
        self.group_id = group_id
        self._reset = reset
        self._generation = -1
        self._positions: dict[tuple[str, int], int] = {}
        self._rotate = 0
        self._closed = False

    def __repr__(self) -> str:
        return f"<InMemoryBus consumer group={self.group_id!r} topics={list(self.topics)}>"

    def _check_open(self) -> None:
        if self._closed:
            raise BusError(f"consumer of group {self.group_id} is closed")
        self._bus._check_open()

    def _rebalance(self) -> None:
        """Follow the group's membership: keep positions of kept partitions, start new ones."""
        bus = self._bus
        generation = bus._generation[self.group_id]
        if generation == self._generation:
            return
        assigned = bus._assign(self)
        positions = {tp: pos for tp, pos in self._positions.items() if tp in assigned}
        for topic, partition in assigned - positions.keys():
            committed = bus._committed(self.group_id, topic, partition)
            if committed is None:
                committed = 0 if self._reset == "earliest" else bus._end_offset(topic, partition)
            positions[(topic, partition)] = committed
        self._positions = positions
        self._generation = generation

    def assignment(self) -> set[tuple[str, int]]:
        with self._bus._lock:
            self._check_open()
            self._rebalance()
            return set(self._positions)

    def poll(self, timeout_s: float = 1.0, max_records: int = 500) -> list[Message]:
        _check_poll_args(timeout_s, max_records)
        bus = self._bus
        deadline = time.monotonic() + timeout_s
        with bus._lock:
            while True:
                self._check_open()
                self._rebalance()
                out: list[Message] = []
                order = sorted(self._positions)
                if order:
                    self._rotate = (self._rotate + 1) % len(order)
                    order = order[self._rotate :] + order[: self._rotate]
                try:
                    for tp in order:
                        if len(out) >= max_records:
                            break
                        got = bus._fetch(tp[0], tp[1], self._positions[tp], max_records - len(out))
                        if got:
                            self._positions[tp] = got[-1].offset + 1
                            out.extend(got)
                except sqlite3.Error as e:
                    raise BusError(f"cannot read the bus store {bus.path or ':memory:'}: {e}") from e
                remaining = deadline - time.monotonic()
                if out or remaining <= 0:
                    return out
                step = remaining if bus.path is None else min(remaining, bus._POLL_STEP_S)
                bus._changed.wait(step)

    def commit(self) -> None:
        bus = self._bus
        with bus._lock:
            self._check_open()
            self._rebalance()
            try:
                bus._commit_offsets(self.group_id, dict(self._positions))
            except sqlite3.Error as e:
                raise BusError(f"cannot commit offsets of group {self.group_id}: {e}") from e

    def close(self) -> None:
        with self._bus._lock:
            if self._closed:
                return
            self._closed = True
            self._bus._leave(self)


# --------------------------------------------------------------------------------------------------
# Kafka backend


def _split_servers(bootstrap_servers: str | Sequence[str]) -> list[tuple[str, int]]:
    items = bootstrap_servers.split(",") if isinstance(bootstrap_servers, str) else list(bootstrap_servers)
    out = []
    for item in items:
        item = item.strip()
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise BusError(f"bad Kafka bootstrap server {item!r}: expected HOST:PORT")
        out.append((host.strip("[]"), int(port)))
    if not out:
        raise BusError("no Kafka bootstrap servers given")
    return out


class KafkaBus(Bus):
    """Kafka through kafka-python: ``acks=all``, JSON values, UTF-8 string keys, manual commits.

    ``api_version``: ``(0, 9)`` for the local 0.9 broker (required there: version probing of a 0.9
    broker otherwise fails), ``None`` to auto-detect. The broker must be reachable when the bus is
    made: otherwise :class:`BusUnavailableError` names the address after ``connect_timeout_s``.
    Topics are created by the broker on first use (``auto.create.topics.enable``) with its
    default partition count.
    """

    def __init__(
        self,
        bootstrap_servers: str | Sequence[str],
        *,
        api_version: str | Sequence[int] | None = None,
        client_id: str = "sitsmon",
        connect_timeout_s: float = 5.0,
        request_timeout_s: float = 15.0,
        session_timeout_s: float = 10.0,
        linger_ms: int = 5,
    ) -> None:
        self._servers = _split_servers(bootstrap_servers)
        self.bootstrap_servers = ",".join(f"{h}:{p}" for h, p in self._servers)
        self.api_version = parse_api_version(api_version)
        self.client_id = client_id
        self.connect_timeout_s = float(connect_timeout_s)
        self.request_timeout_s = float(request_timeout_s)
        self.session_timeout_s = float(session_timeout_s)
        self.linger_ms = int(linger_ms)
        self._lock = threading.Lock()
        self._producer: Any = None
        self._pending: list[tuple[str, str, Any]] = []
        self._consumers: list[_KafkaConsumer] = []
        self._closed = False
        self._check_reachable()

    def __repr__(self) -> str:
        return f"KafkaBus({self.bootstrap_servers!r}, api_version={self.api_version})"

    def _check_reachable(self) -> None:
        """Fail fast (within ``connect_timeout_s``) when no bootstrap server accepts a connection."""
        errors = []
        deadline = time.monotonic() + self.connect_timeout_s
        for host, port in self._servers:
            try:
                timeout = max(0.1, deadline - time.monotonic())
                with socket.create_connection((host, port), timeout=timeout):
                    return
            except OSError as e:
                errors.append(f"{host}:{port} ({e.strerror or e})")
        raise BusUnavailableError(f"Kafka broker unreachable at {', '.join(errors)}")

    def _unavailable(self, what: str, e: Exception) -> BusError:
        hint = ""
        if self.api_version is None:
            hint = " (API version auto-detection failed; a Kafka 0.9 broker needs api_version='0.9')"
        return BusUnavailableError(
            f"{what}: Kafka broker at {self.bootstrap_servers}: {type(e).__name__}: {e}{hint}"
        )

    def _common(self) -> dict[str, Any]:
        return {
            "bootstrap_servers": [f"{h}:{p}" for h, p in self._servers],
            "api_version": self.api_version,
            "client_id": self.client_id,
            "request_timeout_ms": int(self.request_timeout_s * 1000),
            "bootstrap_timeout_ms": int(self.connect_timeout_s * 1000),
            "reconnect_backoff_max_ms": 1000,
        }

    def _get_producer(self) -> Any:
        if self._producer is None:
            from kafka import KafkaProducer
            from kafka.errors import KafkaError

            try:
                self._producer = KafkaProducer(
                    acks="all",
                    linger_ms=self.linger_ms,
                    max_block_ms=int(self.request_timeout_s * 1000),
                    retries=5,
                    max_in_flight_requests_per_connection=1,  # keep per-partition order on retries
                    **self._common(),
                )
            except KafkaError as e:
                raise self._unavailable("cannot start a producer", e) from e
        return self._producer

    def publish(self, topic: str, key: str, value: dict[str, Any]) -> None:
        key, text = _encode(topic, key, value)
        from kafka.errors import KafkaError

        with self._lock:
            if self._closed:
                raise BusError("the bus is closed")
            producer = self._get_producer()
            try:
                future = producer.send(topic, key=key.encode("utf-8"), value=text.encode("utf-8"))
            except KafkaError as e:
                raise self._unavailable(f"cannot publish to {topic} (key {key})", e) from e
            self._pending.append((topic, key, future))
            if len(self._pending) > 10_000:
                self._pending = [p for p in self._pending if not p[2].is_done or p[2].failed()]

    def flush(self, timeout_s: float | None = None) -> None:
        from kafka.errors import KafkaError

        with self._lock:
            if self._closed:
                raise BusError("the bus is closed")
            if self._producer is None:
                return
            timeout = self.request_timeout_s * 2 if timeout_s is None else timeout_s
            try:
                self._producer.flush(timeout=timeout)
            except KafkaError as e:
                raise self._unavailable("flush failed", e) from e
            pending, self._pending = self._pending, []
        failed = [(t, k, f.exception) for t, k, f in pending if f.is_done and f.failed()]
        unsent = [(t, k) for t, k, f in pending if not f.is_done]
        if failed:
            topic, key, err = failed[0]
            raise BusError(
                f"{len(failed)} record(s) not acknowledged by {self.bootstrap_servers}; first: "
                f"topic {topic}, key {key}: {type(err).__name__}: {err}"
            )
        if unsent:
            raise BusUnavailableError(
                f"{len(unsent)} record(s) not acknowledged by {self.bootstrap_servers} within {timeout} s"
            )

    def consumer(
        self, topics: str | Iterable[str], group_id: str, *, offset_reset: OffsetReset = "earliest"
    ) -> Consumer:
        checked = _check_topics(topics)
        _check_group(group_id)
        if offset_reset not in ("earliest", "latest"):
            raise BusError(f"offset_reset must be 'earliest' or 'latest', got {offset_reset!r}")
        with self._lock:
            if self._closed:
                raise BusError("the bus is closed")
        self._check_reachable()
        from kafka import KafkaConsumer
        from kafka.errors import KafkaError

        session_ms = int(self.session_timeout_s * 1000)
        try:
            raw = KafkaConsumer(
                *checked,
                group_id=group_id,
                enable_auto_commit=False,
                auto_offset_reset=offset_reset,
                session_timeout_ms=session_ms,
                heartbeat_interval_ms=max(100, session_ms // 3),
                **{**self._common(), "client_id": f"{self.client_id}-{uuid.uuid4().hex[:8]}"},
            )
        except KafkaError as e:
            raise self._unavailable(f"cannot join group {group_id}", e) from e
        member = _KafkaConsumer(self, raw, tuple(checked), group_id)
        with self._lock:
            self._consumers.append(member)
        return member

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            consumers, self._consumers = self._consumers, []
        for member in consumers:
            member.close()
        try:
            if self._producer is not None:
                try:
                    self.flush()
                finally:
                    self._producer.close(timeout=self.request_timeout_s)
        finally:
            with self._lock:
                self._closed = True
                self._producer = None


class _KafkaConsumer(Consumer):
    def __init__(self, bus: KafkaBus, raw: Any, topics: tuple[str, ...], group_id: str) -> None:
        self._bus = bus
        self._raw = raw
        self.topics = topics
        self.group_id = group_id
        self._closed = False

    def __repr__(self) -> str:
        return f"<KafkaBus consumer group={self.group_id!r} topics={list(self.topics)}>"

    def _check_open(self) -> None:
        if self._closed:
            raise BusError(f"consumer of group {self.group_id} is closed")

    def poll(self, timeout_s: float = 1.0, max_records: int = 500) -> list[Message]:
        _check_poll_args(timeout_s, max_records)
        self._check_open()
        from kafka.errors import KafkaError

        try:
            batches = self._raw.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        except KafkaError as e:
            raise BusError(
                f"poll of group {self.group_id} on {self._bus.bootstrap_servers} failed: {e}"
            ) from e
        out = []
        for tp in sorted(batches, key=lambda tp: (tp.topic, tp.partition)):
            for record in batches[tp]:
                where = f"{record.topic}[{record.partition}]@{record.offset}"
                try:
                    key = record.key.decode("utf-8") if record.key is not None else ""
                    value = json.loads(record.value) if record.value is not None else None
                    if not isinstance(value, dict):
                        raise ValueError(f"not a JSON object: {type(value).__name__}")
                except (UnicodeDecodeError, ValueError) as e:
                    # a foreign record: skip it (its offset still advances) rather than block the group
                    logger.error("skipping undecodable record %s: %s", where, e, extra={"record": where})
                    continue
                out.append(Message(record.topic, record.partition, record.offset, key, value))
        return out

    def commit(self) -> None:
        self._check_open()
        from kafka.errors import KafkaError

        try:
            self._raw.commit(timeout_ms=int(self._bus.request_timeout_s * 1000))
        except KafkaError as e:
            raise BusError(
                f"commit of group {self.group_id} failed (records will be redelivered): {e}"
            ) from e

    def assignment(self) -> set[tuple[str, int]]:
        self._check_open()
        return {(tp.topic, tp.partition) for tp in self._raw.assignment()}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._raw.close(autocommit=False, timeout_ms=int(self._bus.request_timeout_s * 1000))
        except Exception as e:  # closing must not mask the caller's own error
            logger.warning("closing consumer of group %s: %s", self.group_id, e)


# --------------------------------------------------------------------------------------------------


def make_bus(
    backend: Literal["memory", "kafka"] = "memory",
    bootstrap_servers: str | Sequence[str] = "127.0.0.1:29092",
    api_version: str | Sequence[int] | None = None,
    *,
    path: str | Path | None = None,
    partitions: int = 3,
    client_id: str = "sitsmon",
    connect_timeout_s: float = 5.0,
) -> Bus:
    """Build a bus from plain settings values.

    ``backend="memory"``: an :class:`InMemoryBus` (``path``: optional SQLite file to resume from;
    ``partitions``: per new topic). ``backend="kafka"``: a :class:`KafkaBus` on
    ``bootstrap_servers`` (``"host:port,host:port"``) with ``api_version`` (``"0.9"``, ``(0, 9)``,
    or ``None``/``""`` to auto-detect).
    """
    if backend == "memory":
        return InMemoryBus(path, partitions=partitions)
    if backend == "kafka":
        return KafkaBus(
            bootstrap_servers,
            api_version=api_version,
            client_id=client_id,
            connect_timeout_s=connect_timeout_s,
        )
    raise BusError(f"unknown bus backend {backend!r}: expected 'memory' or 'kafka'")
