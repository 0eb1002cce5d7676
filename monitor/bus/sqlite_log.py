"""The SQL of the in-process bus (:class:`SqliteLog`): records, topics, group members, partition
owners and committed offsets in one SQLite database, ``:memory:`` or a file shared by processes.
The protocol on top of these tables is described in :mod:`monitor.bus.memory`.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from ingest.locks import pid_alive
from monitor.bus.base import BusError, CommitError, Message, TopicPartition, decode_record
from monitor.bus.partitioning import assign_round_robin, partition_for_bytes

logger = logging.getLogger(__name__)

__all__ = ["HOST", "SCHEMA", "SqliteLog"]

SCHEMA = "sitsmon-bus/2"
_SCHEMA_V1 = "sitsmon-bus/1"  # records and offsets only: upgraded in place (tables added)
HOST = socket.gethostname()




class SqliteLog:
    """The SQL of the in-process bus: records, topics, group members, partition owners, offsets.

    Thread-safe (one lock per object); several objects, in several processes, may share a file.
    ``expire_members``: whether members may die apart from this object (a shared file).
    """

    def __init__(self, path: Path | None, *, partitions: int, session_timeout_s: float) -> None:
        self.path = path
        self.where = str(path) if path is not None else ":memory:"
        self.partitions = partitions
        self.session_timeout_s = session_timeout_s
        self.expire_members = path is not None
        self.lock = threading.RLock()
        self._changed = threading.Condition(self.lock)
        with self._guard("cannot open the bus store"):
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.where, check_same_thread=False, isolation_level=None, timeout=30.0
            )
            self._init_schema()

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as e:
            raise BusError(f"{what} ({self.where}): {type(e).__name__}: {e}") from e

    @contextmanager
    def _write(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken before reading (no lost updates between processes)."""
        with self.lock, self._guard(what):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self._changed.notify_all()

    def _read(self, what: str, sql: str, args: tuple = ()) -> list[tuple]:
        with self.lock, self._guard(what):
            return self._db.execute(sql, args).fetchall()

    def _init_schema(self) -> None:
        db = self._db
        if self.path is not None:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(
            """
            BEGIN IMMEDIATE;
            CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS topics (topic TEXT PRIMARY KEY, partitions INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS records (
                topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
                key TEXT, value TEXT, PRIMARY KEY (topic, partition, offset));
            CREATE TABLE IF NOT EXISTS group_offsets (
                group_id TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
                offset INTEGER NOT NULL, PRIMARY KEY (group_id, topic, partition));
            CREATE TABLE IF NOT EXISTS members (
                seq INTEGER PRIMARY KEY AUTOINCREMENT, member_id TEXT NOT NULL UNIQUE,
                group_id TEXT NOT NULL, topics TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL,
                heartbeat_s REAL NOT NULL);
            CREATE TABLE IF NOT EXISTS owners (
                group_id TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
                member_id TEXT NOT NULL, PRIMARY KEY (group_id, topic, partition));
            CREATE TABLE IF NOT EXISTS generations (group_id TEXT PRIMARY KEY, generation INTEGER NOT NULL);
            """
        )
        try:
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA,))
            (schema,) = db.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
            if schema == _SCHEMA_V1:
                db.execute("UPDATE meta SET value = ? WHERE name = 'schema'", (SCHEMA,))
            elif schema != SCHEMA:
                raise BusError(f"bus store {self.where} has schema {schema!r}, expected {SCHEMA}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        with self.lock:
            self._db.close()
            self._changed.notify_all()

    def wait(self, timeout_s: float) -> None:
        """Sleep until this object writes something (another process's writes: up to ``timeout_s``)."""
        with self._changed:
            self._changed.wait(timeout_s)

    # ---- topics and records

    def _topic_partitions(self, db: sqlite3.Connection, topic: str) -> int:
        db.execute("INSERT OR IGNORE INTO topics VALUES (?, ?)", (topic, self.partitions))
        (n,) = db.execute("SELECT partitions FROM topics WHERE topic = ?", (topic,)).fetchone()
        return int(n)

    def append(self, topic: str, key: bytes | str | None, value: bytes | str | None) -> TopicPartition:
        """Append one record (creating the topic) and return where it went."""
        with self._write(f"cannot append to topic {topic}") as db:
            n = self._topic_partitions(db, topic)
            if key is None:
                partition = random.randrange(n)  # as Kafka's default partitioner does for no key
            else:
                partition = partition_for_bytes(key.encode("utf-8") if isinstance(key, str) else key, n)
            (end,) = db.execute(
                "SELECT COALESCE(MAX(offset) + 1, 0) FROM records WHERE topic = ? AND partition = ?",
                (topic, partition),
            ).fetchone()
            db.execute("INSERT INTO records VALUES (?, ?, ?, ?, ?)", (topic, partition, end, key, value))
        return topic, partition

    def partitions_of(self, topics: Iterable[str]) -> dict[str, int]:
        """Partition counts, creating the topics that do not exist yet."""
        with self._write("cannot create topics") as db:
            return {topic: self._topic_partitions(db, topic) for topic in topics}

    def end_offsets(self, topic: str) -> dict[int, int]:
        rows = self._read("cannot read topics", "SELECT partitions FROM topics WHERE topic = ?", (topic,))
        if not rows:
            return {}
        ends = dict.fromkeys(range(int(rows[0][0])), 0)
        for p, end in self._read(
            f"cannot read topic {topic}",
            "SELECT partition, MAX(offset) + 1 FROM records WHERE topic = ? GROUP BY partition",
            (topic,),
        ):
            ends[int(p)] = int(end)
        return ends

    def fetch(self, tp: TopicPartition, start: int, limit: int) -> list[Message]:
        rows = self._read(
            f"cannot read {tp[0]}[{tp[1]}]",
            "SELECT offset, key, value FROM records WHERE topic = ? AND partition = ? AND offset >= ?"
            " ORDER BY offset LIMIT ?",
            (tp[0], tp[1], start, limit),
        )
        return [decode_record(tp[0], tp[1], int(o), k, v) for o, k, v in rows]

    # ---- offsets

    def committed(self, group_id: str, topic: str) -> dict[int, int]:
        rows = self._read(
            f"cannot read offsets of group {group_id}",
            "SELECT partition, offset FROM group_offsets WHERE group_id = ? AND topic = ?",
            (group_id, topic),
        )
        return {int(p): int(o) for p, o in rows}

    def committed_of(self, group_id: str, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        out: dict[TopicPartition, int] = {}
        for topic in {t for t, _ in tps}:
            out.update({(topic, p): o for p, o in self.committed(group_id, topic).items()})
        return {tp: out[tp] for tp in tps if tp in out}

    def commit(self, group_id: str, member_id: str, offsets: Mapping[TopicPartition, int]) -> None:
        """Write offsets, provided that ``member_id`` still holds every partition (else CommitError)."""
        with self._write(f"cannot commit offsets of group {group_id}") as db:
            for (topic, partition), offset in offsets.items():
                row = db.execute(
                    "SELECT member_id FROM owners WHERE group_id = ? AND topic = ? AND partition = ?",
                    (group_id, topic, partition),
                ).fetchone()
                if row is None or row[0] != member_id:
                    raise CommitError(
                        f"commit of group {group_id}: {topic}[{partition}] is no longer held by this "
                        "consumer (the group rebalanced; its records will be redelivered)"
                    )
                db.execute(
                    "INSERT INTO group_offsets VALUES (?, ?, ?, ?) ON CONFLICT (group_id, topic, partition)"
                    " DO UPDATE SET offset = excluded.offset",
                    (group_id, topic, partition, offset),
                )

    # ---- membership

    @staticmethod
    def _bump(db: sqlite3.Connection, group_id: str) -> None:
        db.execute(
            "INSERT INTO generations VALUES (?, 1) ON CONFLICT (group_id)"
            " DO UPDATE SET generation = generation + 1",
            (group_id,),
        )

    def generation(self, group_id: str) -> int:
        rows = self._read(
            "cannot read the group", "SELECT generation FROM generations WHERE group_id = ?", (group_id,)
        )
        return int(rows[0][0]) if rows else 0

    def join(self, group_id: str, member_id: str, topics: Iterable[str]) -> None:
        with self._write(f"cannot join group {group_id}") as db:
            for topic in topics:
                self._topic_partitions(db, topic)
            db.execute(
                "INSERT INTO members (member_id, group_id, topics, host, pid, heartbeat_s)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (member_id, group_id, json.dumps(sorted(topics)), HOST, os.getpid(), time.time()),
            )
            self._bump(db, group_id)

    def leave(self, group_id: str, member_id: str) -> None:
        with self._write(f"cannot leave group {group_id}") as db:
            db.execute("DELETE FROM members WHERE member_id = ?", (member_id,))
            db.execute("DELETE FROM owners WHERE member_id = ?", (member_id,))
            self._bump(db, group_id)

    def is_member(self, member_id: str) -> bool:
        return bool(
            self._read("cannot read the group", "SELECT 1 FROM members WHERE member_id = ?", (member_id,))
        )

    def heartbeat(self, member_ids: list[str]) -> None:
        if member_ids:
            with self._write("cannot record heartbeats") as db:
                now = time.time()
                db.executemany(
                    "UPDATE members SET heartbeat_s = ? WHERE member_id = ?", [(now, m) for m in member_ids]
                )

    def _expire(self, db: sqlite3.Connection, group_id: str) -> None:
        if not self.expire_members:
            return
        stale = time.time() - self.session_timeout_s
        dead = [
            member
            for member, host, pid, beat in db.execute(
                "SELECT member_id, host, pid, heartbeat_s FROM members WHERE group_id = ?", (group_id,)
            )
            if beat < stale or (host == HOST and not pid_alive(int(pid)))
        ]
        for member in dead:
            logger.warning("bus group %s: member %s expired (no heartbeat or process gone)", group_id, member)
            db.execute("DELETE FROM members WHERE member_id = ?", (member,))
            db.execute("DELETE FROM owners WHERE member_id = ?", (member,))
        if dead:
            self._bump(db, group_id)

    def expire(self, group_ids: Iterable[str]) -> None:
        """Drop the dead members of these groups (their partitions become free to claim)."""
        with self._write("cannot expire group members") as db:
            for group_id in group_ids:
                self._expire(db, group_id)

    def plan(self, group_id: str, member_id: str) -> set[TopicPartition] | None:
        """The partitions ``member_id`` should hold now (``None``: it is no longer a member)."""
        with self._write(f"cannot plan group {group_id}") as db:
            self._expire(db, group_id)
            members = [
                (m, json.loads(t))
                for m, t in db.execute(
                    "SELECT member_id, topics FROM members WHERE group_id = ? ORDER BY seq", (group_id,)
                )
            ]
            topics = sorted({t for _, ts in members for t in ts})
            counts = {t: self._topic_partitions(db, t) for t in topics}
        return assign_round_robin(members, counts).get(member_id)

    def release(self, group_id: str, member_id: str, tps: Iterable[TopicPartition]) -> None:
        with self._write(f"cannot release partitions of group {group_id}") as db:
            db.executemany(
                "DELETE FROM owners WHERE group_id = ? AND topic = ? AND partition = ? AND member_id = ?",
                [(group_id, t, p, member_id) for t, p in tps],
            )
            self._bump(db, group_id)

    def claim(self, group_id: str, member_id: str, tps: Iterable[TopicPartition]) -> set[TopicPartition]:
        """Take the partitions among ``tps`` that nobody holds; return those taken."""
        with self._write(f"cannot claim partitions of group {group_id}") as db:
            if db.execute("SELECT 1 FROM members WHERE member_id = ?", (member_id,)).fetchone() is None:
                return set()
            got = set()
            for topic, partition in tps:
                cursor = db.execute(
                    "INSERT OR IGNORE INTO owners VALUES (?, ?, ?, ?)",
                    (group_id, topic, partition, member_id),
                )
                if cursor.rowcount:
                    got.add((topic, partition))
            if got:
                self._bump(db, group_id)
        return got
