"""The in-process bus: a partitioned log with consumer groups, kept in SQLite.

Storage is SQLite: ``:memory:`` (one process) or a file, usually ``<data_dir>/bus.sqlite``, that
several processes may use at once (``sitsmon ingest poll`` publishing while ``sitsmon monitor run``
consumes). Everything a group needs lives in the file, so that membership is safe across processes:

- ``members``: one row per live consumer (join order, subscribed topics, host, pid, heartbeat time).
  A background thread of each bus object refreshes the heartbeats of its consumers that polled
  within ``max_poll_interval_s``. A member whose heartbeat is older than ``session_timeout_s``, or
  whose process is gone (same host, pid not running), is expired by the next member that looks.
- ``owners``: which member holds which partition. A partition moves in two steps, so that two
  members never read it at once: the plan (round robin in join order, recomputed on every change)
  takes it from its holder, which runs ``on_revoke`` at its next poll and only then releases it; the
  new member claims it once it is free, starts at the group's committed offset and runs
  ``on_assign``. Only the partitions that change hands are revoked and assigned (Kafka's eager
  protocol revokes and reassigns all of them on each rebalance; callers rely on neither).
- ``group_offsets``: committed offsets; a commit is refused unless the committer still holds the
  partition (checked in the same transaction).
- ``generations``: bumped on every change of members or owners, so that an idle consumer only
  re-plans when something changed.

Every write is one ``BEGIN IMMEDIATE`` transaction (WAL journal, 30 s busy timeout), so two
processes appending to one topic never take the same offset.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path

from monitor.bus.base import (
    Bus,
    BusError,
    Consumer,
    MemberSpec,
    Message,
    PartitionsHook,
    TopicPartition,
    check_commit,
)
from monitor.bus.sqlite_log import HOST, SqliteLog

logger = logging.getLogger(__name__)

__all__ = ["InMemoryBus", "SqliteLog"]


class InMemoryBus(Bus):
    """The embedded bus: partitioned topics, consumer groups and committed offsets in SQLite.

    ``path``: ``None`` for ``:memory:`` (this object only), or a SQLite file that records, offsets
    and group membership share between bus objects and processes (see the module docstring).
    ``partitions``: the partition count of topics this bus creates (a topic keeps the count it was
    created with). ``session_timeout_s``: how long a member of a shared file may go without a
    heartbeat before its partitions are handed over (a member whose process is gone is expired at
    once). ``max_poll_interval_s``: a consumer that does not poll for that long stops heartbeating.
    Every ``publish`` is committed at once (``flush`` has nothing to do).
    """

    _POLL_STEP_S = 0.05  # how often a waiting poll re-reads a file shared with other processes

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        partitions: int = 3,
        session_timeout_s: float = 10.0,
        max_poll_interval_s: float = 300.0,
    ) -> None:
        if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
            raise BusError(f"partitions must be an int >= 1, got {partitions!r}")
        if not session_timeout_s > 0 or not max_poll_interval_s > 0:
            raise BusError(
                f"session_timeout_s and max_poll_interval_s must be > 0, got {session_timeout_s}, "
                f"{max_poll_interval_s}"
            )
        self.partitions = partitions
        self.path = Path(path) if path is not None else None
        self.session_timeout_s = float(session_timeout_s)
        self.max_poll_interval_s = float(max_poll_interval_s)
        self.log = SqliteLog(self.path, partitions=partitions, session_timeout_s=self.session_timeout_s)
        self._lock = threading.Lock()
        self._consumers: list[_MemoryConsumer] = []
        self._closed = False
        self._stop = threading.Event()
        self._heartbeats: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"InMemoryBus(path={self.path!r}, partitions={self.partitions})"

    @property
    def poll_step_s(self) -> float:
        return self._POLL_STEP_S if self.path is not None else float("inf")

    def _publish(self, topic: str, key: str, text: str) -> None:
        self._check_open()
        self.log.append(topic, key, text)

    def _publish_bytes(self, topic: str, key: bytes | str | None, value: bytes | None) -> None:
        self._check_open()
        self.log.append(topic, key, value)

    def flush(self, timeout_s: float | None = None) -> None:
        self._check_open()

    def _consumer(self, spec: MemberSpec) -> Consumer:
        with self._lock:
            self._check_open()
            member = _MemoryConsumer(self, spec)
            self._consumers.append(member)
            if self.log.expire_members and self._heartbeats is None:
                self._heartbeats = threading.Thread(
                    target=self._beat, name=f"bus-heartbeat-{self.path}", daemon=True
                )
                self._heartbeats.start()
        return member

    def _beat(self) -> None:
        """Keep this object's live consumers in their groups (a dead process stops beating), and
        expire the dead members of their groups."""
        interval = min(1.0, self.session_timeout_s / 4)
        while not self._stop.wait(interval):
            now = time.monotonic()
            with self._lock:
                alive = [
                    c.member_id for c in self._consumers if now - c.last_poll_s < self.max_poll_interval_s
                ]
                groups = {c.group_id for c in self._consumers}
            try:
                self.log.heartbeat(alive)
                self.log.expire(groups)  # a dead member's partitions move without waiting for a change
            except BusError as e:  # a locked or closing file: the next beat retries
                logger.warning("bus heartbeat failed: %s", e)

    def _end_offsets(self, topic: str) -> dict[int, int]:
        self._check_open()
        return self.log.end_offsets(topic)

    def _group_committed(self, group_id: str, topic: str) -> dict[int, int]:
        self._check_open()
        return self.log.committed(group_id, topic)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            consumers = list(self._consumers)
        try:
            self._close_members(consumers)
        finally:
            with self._lock:
                self._closed = True
            self._stop.set()
            if self._heartbeats is not None:
                self._heartbeats.join(timeout=5)
            self.log.close()


class _MemoryConsumer(Consumer):
    _backend = "InMemoryBus"
    _bus: InMemoryBus

    def __init__(self, bus: InMemoryBus, spec: MemberSpec) -> None:
        super().__init__(bus, spec)
        self._log = bus.log
        self.member_id = f"{HOST}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._seen_generation = -1
        self._waiting = True  # the plan gives this member partitions that others still hold
        self._rotate = 0
        self.last_poll_s = time.monotonic()
        self._log.join(self.group_id, self.member_id, self.topics)

    @staticmethod
    def _call(hook: PartitionsHook | None, tps: set[TopicPartition]) -> BaseException | None:
        if hook is None or not tps:
            return None
        try:
            hook(set(tps))
        except Exception as e:  # raised once the rebalance step is complete, as Kafka does
            return e
        return None

    def _drop(self, tps: Iterable[TopicPartition]) -> None:
        for tp in tps:
            self._held.discard(tp)
            self._positions.pop(tp, None)

    def _sync_group(self) -> None:
        """One rebalance step: hand back what the plan takes away, take what it gives and is free."""
        errors: list[BaseException | None] = []
        if not self._log.is_member(self.member_id):  # expired: its partitions may be read elsewhere
            lost = set(self._held)
            self._drop(lost)
            logger.warning("bus group %s: this consumer was expired; rejoining", self.group_id)
            errors.append(self._call(self._on_revoke, lost))
            self._log.join(self.group_id, self.member_id, self.topics)
            self._waiting = True
        generation = self._log.generation(self.group_id)
        if generation != self._seen_generation or self._waiting:
            desired = self._log.plan(self.group_id, self.member_id) or set()
            revoke = self._held - desired
            if revoke:
                errors.append(self._call(self._on_revoke, revoke))  # still held: it may commit them
                self._log.release(self.group_id, self.member_id, revoke)
                self._drop(revoke)
            wanted = desired - self._held
            got = self._log.claim(self.group_id, self.member_id, wanted) if wanted else set()
            if got:
                committed = self._log.committed_of(self.group_id, got)
                ends = {t: self._log.end_offsets(t) for t in {t for t, _ in got}}
                for tp in got:
                    start = 0 if self._reset == "earliest" else ends[tp[0]].get(tp[1], 0)
                    self._positions[tp] = committed.get(tp, start)
                self._held |= got
            self._waiting = bool(wanted - got)
            self._seen_generation = generation
            errors.append(self._call(self._on_assign, got))
        error = next((e for e in errors if e is not None), None)
        if error is not None:
            raise error

    def _poll(self, timeout_s: float, max_records: int) -> list[Message]:
        self.last_poll_s = time.monotonic()
        deadline = self.last_poll_s + timeout_s
        while True:
            self._check_open()
            self._sync_group()
            out: list[Message] = []
            order = sorted(self._held)
            if order:  # start each poll at another partition, so that none starves
                self._rotate = (self._rotate + 1) % len(order)
                order = order[self._rotate :] + order[: self._rotate]
            for tp in order:
                if len(out) >= max_records:
                    break
                got = self._log.fetch(tp, self._positions[tp], max_records - len(out))
                if got:
                    self._positions[tp] = got[-1].offset + 1
                    out.extend(got)
            remaining = deadline - time.monotonic()
            if out or remaining <= 0:
                self.last_poll_s = time.monotonic()
                return out
            self._log.wait(min(remaining, self._bus.poll_step_s))

    def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        self._check_open()
        committed = self._log.committed_of(self.group_id, self._held)
        if offsets is None:
            todo = {tp: pos for tp, pos in self._positions.items() if pos > committed.get(tp, -1)}
        else:
            todo = check_commit(
                self.group_id, offsets, assigned=self._held, committed=committed, positions=self._positions
            )
        if todo:
            self._log.commit(self.group_id, self.member_id, todo)

    def _seek(self, tp: TopicPartition, offset: int) -> None:
        self._check_seek_end(tp, offset, self._log.end_offsets(tp[0]).get(tp[1], 0))
        self._positions[tp] = offset

    def position(self) -> dict[TopicPartition, int]:
        self._check_open()
        return dict(self._positions)

    def lag(self) -> dict[TopicPartition, int]:
        self._check_open()
        committed = self._log.committed_of(self.group_id, self._held)
        ends = {t: self._log.end_offsets(t) for t in {t for t, _ in self._held}}
        return {
            tp: ends[tp[0]].get(tp[1], 0) - committed.get(tp, self._positions[tp])
            for tp in sorted(self._held)
        }

    def close(self) -> None:
        if self._closed:
            return
        error = None
        try:
            if not self._bus.closed:
                error = self._call(self._on_revoke, set(self._held))  # it may still commit
                self._log.leave(self.group_id, self.member_id)
        finally:
            self._closed = True
            self._drop(list(self._held))
            self._bus.forget(self)
        if error is not None:
            raise error
