"""Kafka through kafka-python: ``acks=all``, JSON values, UTF-8 string keys, manual commits.

Consumers subscribe with a rebalance listener (kafka-python's eager protocol on a 0.9 broker: every
rebalance revokes all partitions of every member, then assigns the new split). kafka-python runs
listeners on its IO thread, where blocking consumer calls are refused; the listener here runs the
caller's hooks there and turns a :meth:`Consumer.commit` made inside a hook into an awaited
``commit_async`` (with ``OffsetAndMetadata``), so that "commit in on_revoke" works as with the
Java client. Hooks block heartbeats while they run: keep them shorter than ``session_timeout_s``.

kafka-python heartbeats from its IO thread, between polls too, so the poll bound is one that the client
enforces on itself (its heartbeat loop sends LeaveGroup once a poll is overdue). Before KIP-62 (brokers
below 0.10.1) kafka-python requires ``max_poll_interval_ms == session_timeout_ms``, a rule from the Java
client of the time, which heartbeated only inside ``poll``. With it, every batch longer than the session
timeout (a process's first, or the first after a rebalance, which loads the tiles' states) made the
member leave the group by itself, rebalance the others and fail its commit. So on such brokers the
consumer is made with the two equal and its heartbeat's own bound is then set to ``max_poll_interval_s``
(:func:`_unclamp_poll_bound`). What a 0.9 broker still enforces: during a rebalance a member must rejoin
(call ``poll``) within its session timeout (JoinGroup v0 has no rebalance timeout), else it is dropped
and its next commit fails (the batch comes back as duplicates).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from kafka import AsyncConsumerRebalanceListener, KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KafkaTopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from monitor.bus.base import (
    Bus,
    BusError,
    BusUnavailableError,
    CommitError,
    Consumer,
    MemberSpec,
    Message,
    TopicPartition,
    check_commit,
    decode_record,
)

logger = logging.getLogger(__name__)

__all__ = ["KafkaBus", "check_timeouts", "parse_api_version", "split_servers"]


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


def split_servers(bootstrap_servers: str | Sequence[str]) -> list[tuple[str, int]]:
    """``"h1:9092,h2:9092"`` (or a list of ``HOST:PORT``) -> ``[(host, port), ...]``."""
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


def check_timeouts(session_timeout_s: float, max_poll_interval_s: float) -> None:
    """Refuse a session timeout under 1 s (kafka-python heartbeats every third of it, at least every
    0.1 s) and a poll bound that is not positive, with the values named."""
    if not session_timeout_s >= 1.0:
        raise BusError(f"Kafka session_timeout_s must be >= 1 s, got {session_timeout_s!r}")
    if not max_poll_interval_s > 0:
        raise BusError(f"Kafka max_poll_interval_s must be > 0, got {max_poll_interval_s!r}")


def _unclamp_poll_bound(raw: Any, poll_ms: int) -> None:
    """Give the heartbeat loop of ``raw`` (kafka-python 3.0's ``KafkaConsumer``) the poll bound
    ``poll_ms`` instead of the session timeout it was forced to on a pre-KIP-62 broker. Only
    ``Heartbeat.poll_timeout_expired`` reads that value; the JoinGroup (v0 there) and its request
    timeout keep the coordinator's own copy. Private attributes: where they are not found (another
    kafka-python), the consumer keeps the session timeout as its poll bound, with a warning."""
    heartbeat = getattr(getattr(raw, "_coordinator", None), "heartbeat", None)
    config = getattr(heartbeat, "config", None)
    if isinstance(config, dict) and "max_poll_interval_ms" in config:
        config["max_poll_interval_ms"] = poll_ms
    else:
        logger.warning("kafka-python without coordinator.heartbeat.config: on this broker (before 0.10.1) a "
                       "batch longer than session_timeout_s makes the consumer leave its group")


def _tp(tp: KafkaTopicPartition) -> TopicPartition:
    return (tp.topic, tp.partition)


class KafkaBus(Bus):
    """Kafka through kafka-python: ``acks=all``, JSON values, UTF-8 string keys, manual commits.

    ``api_version``: ``(0, 9)`` for the local 0.9 broker (required there: version probing of a 0.9
    broker otherwise fails), ``None`` to auto-detect. The broker must be reachable when the bus is
    made: otherwise :class:`BusUnavailableError` names the address after ``connect_timeout_s``.
    Topics are created by the broker on first use (``auto.create.topics.enable``) with its
    default partition count. ``session_timeout_s``: how long the group waits for a silent member
    (a killed process) before handing its partitions to the others (the broker accepts only values
    within its ``group.min.session.timeout.ms`` .. ``group.max.session.timeout.ms``, 6-30 s by
    default); on a 0.9 broker also how long a rebalance waits for a member busy between two polls.
    ``max_poll_interval_s``: a member that has not polled for this long leaves the group by itself.
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
        max_poll_interval_s: float = 300.0,
        linger_ms: int = 5,
    ) -> None:
        check_timeouts(session_timeout_s, max_poll_interval_s)
        self._servers = split_servers(bootstrap_servers)
        self.bootstrap_servers = ",".join(f"{h}:{p}" for h, p in self._servers)
        self.api_version = parse_api_version(api_version)
        self.client_id = client_id
        self.connect_timeout_s = float(connect_timeout_s)
        # a 0.9 JoinGroup waits up to the session timeout for the others: requests must outlast it
        self.session_timeout_s = float(session_timeout_s)
        self.request_timeout_s = max(float(request_timeout_s), self.session_timeout_s + 5.0)
        self.max_poll_interval_s = float(max_poll_interval_s)
        self.linger_ms = int(linger_ms)
        self._lock = threading.Lock()
        self._producer: Any = None
        self._meta: Any = None  # a group-less consumer for end offsets and metadata
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

    def unavailable(self, what: str, e: Exception) -> BusError:
        """A :class:`BusUnavailableError` naming the broker (and the 0.9 hint when auto-detecting)."""
        hint = ""
        if self.api_version is None:
            hint = " (API version auto-detection failed; a Kafka 0.9 broker needs api_version='0.9')"
        return BusUnavailableError(
            f"{what}: Kafka broker at {self.bootstrap_servers}: {type(e).__name__}: {e}{hint}"
        )

    def client_config(self) -> dict[str, Any]:
        """The kafka-python settings every client of this bus shares."""
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
            try:
                self._producer = KafkaProducer(
                    acks="all",
                    linger_ms=self.linger_ms,
                    max_block_ms=int(self.request_timeout_s * 1000),
                    retries=5,
                    max_in_flight_requests_per_connection=1,  # keep per-partition order on retries
                    **self.client_config(),
                )
            except KafkaError as e:
                raise self.unavailable("cannot start a producer", e) from e
        return self._producer

    def _send(self, topic: str, key_text: str, key: bytes | None, value: bytes | None) -> None:
        with self._lock:
            self._check_open()
            producer = self._get_producer()
            try:
                future = producer.send(topic, key=key, value=value)
            except KafkaError as e:
                raise self.unavailable(f"cannot publish to {topic} (key {key_text})", e) from e
            self._pending.append((topic, key_text, future))
            if len(self._pending) > 10_000:
                self._pending = [p for p in self._pending if not p[2].is_done or p[2].failed()]

    def _publish(self, topic: str, key: str, text: str) -> None:
        self._send(topic, key, key.encode("utf-8"), text.encode("utf-8"))

    def _publish_bytes(self, topic: str, key: bytes | str | None, value: bytes | None) -> None:
        raw_key = key.encode("utf-8") if isinstance(key, str) else key
        self._send(topic, repr(key), raw_key, value)

    def flush(self, timeout_s: float | None = None) -> None:
        with self._lock:
            self._check_open()
            if self._producer is None:
                return
            timeout = self.request_timeout_s * 2 if timeout_s is None else timeout_s
            try:
                self._producer.flush(timeout=timeout)
            except KafkaError as e:
                raise self.unavailable("flush failed", e) from e
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

    def _consumer(self, spec: MemberSpec) -> Consumer:
        with self._lock:
            self._check_open()
        self._check_reachable()
        session_ms = int(self.session_timeout_s * 1000)
        poll_ms = int(self.max_poll_interval_s * 1000)
        before_kip62 = self.api_version is not None and self.api_version < (0, 10, 1)
        try:
            raw = KafkaConsumer(
                group_id=spec.group_id,
                enable_auto_commit=False,
                auto_offset_reset=spec.reset,
                session_timeout_ms=session_ms,
                heartbeat_interval_ms=max(100, session_ms // 3),
                max_poll_interval_ms=session_ms if before_kip62 else poll_ms,
                **{**self.client_config(), "client_id": f"{self.client_id}-{uuid.uuid4().hex[:8]}"},
            )
        except KafkaError as e:
            raise self.unavailable(f"cannot join group {spec.group_id}", e) from e
        if before_kip62:
            _unclamp_poll_bound(raw, poll_ms)
        member = _KafkaConsumer(self, raw, spec)
        with self._lock:
            self._consumers.append(member)
        return member

    def _metadata_consumer(self) -> Any:
        with self._lock:
            self._check_open()
            if self._meta is None:
                try:
                    self._meta = KafkaConsumer(
                        group_id=None, enable_auto_commit=False, **self.client_config()
                    )
                except KafkaError as e:
                    raise self.unavailable("cannot read metadata", e) from e
            return self._meta

    def _partitions(self, meta: Any, topic: str) -> list[int]:
        try:
            return sorted(meta.partitions_for_topic(topic) or ())
        except KafkaError as e:
            raise self.unavailable(f"cannot read the partitions of {topic}", e) from e

    def _end_offsets(self, topic: str) -> dict[int, int]:
        meta = self._metadata_consumer()
        tps = [KafkaTopicPartition(topic, p) for p in self._partitions(meta, topic)]
        if not tps:
            return {}
        try:
            ends = meta.end_offsets(tps)
        except KafkaError as e:
            raise self.unavailable(f"cannot read the end offsets of {topic}", e) from e
        return {tp.partition: int(end) for tp, end in ends.items()}

    def _group_committed(self, group_id: str, topic: str) -> dict[int, int]:
        partitions = self._partitions(self._metadata_consumer(), topic)
        if not partitions:
            return {}
        try:  # a consumer of the group that never subscribes: it reads offsets without joining
            reader = KafkaConsumer(group_id=group_id, enable_auto_commit=False, **self.client_config())
        except KafkaError as e:
            raise self.unavailable(f"cannot read the offsets of group {group_id}", e) from e
        try:
            out = {}
            for p in partitions:
                offset = reader.committed(KafkaTopicPartition(topic, p))
                if offset is not None and offset >= 0:
                    out[p] = int(offset)
            return out
        except KafkaError as e:
            raise self.unavailable(f"cannot read the offsets of group {group_id}", e) from e
        finally:
            reader.close(autocommit=False)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            consumers, self._consumers = self._consumers, []
        self._close_members(consumers)
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
                meta, self._meta = self._meta, None
            if meta is not None:
                meta.close(autocommit=False)


class _Listener(AsyncConsumerRebalanceListener):
    """kafka-python's rebalance callbacks -> the consumer's bookkeeping and the caller's hooks."""

    def __init__(self, consumer: _KafkaConsumer) -> None:
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._consumer.handle_rebalance("revoke", {_tp(tp) for tp in revoked})

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self._consumer.handle_rebalance("assign", {_tp(tp) for tp in assigned})


class _KafkaConsumer(Consumer):
    _backend = "KafkaBus"
    _bus: KafkaBus

    def __init__(self, bus: KafkaBus, raw: Any, spec: MemberSpec) -> None:
        super().__init__(bus, spec)
        self._raw = raw
        # self._positions: known once read from, sought or asked
        self._committed: dict[TopicPartition, int] = {}
        self._unknown_committed: set[TopicPartition] = set()  # assigned since the last refresh
        self._in_hook = threading.local()
        self._deferred: dict[TopicPartition, int] = {}  # commits asked for inside a hook
        self._hook_error: BaseException | None = None
        raw.subscribe(topics=list(self.topics), listener=_Listener(self))

    def _inside_hook(self) -> bool:
        return getattr(self._in_hook, "active", False)

    def _failure(self, what: str, e: Exception) -> BusError:
        return BusError(f"{what} of group {self.group_id} on {self._bus.bootstrap_servers} failed: {e}")

    async def handle_rebalance(self, kind: str, tps: set[TopicPartition]) -> None:
        """On kafka-python's IO thread, inside ``poll`` / ``close``: book-keep, run the hook, commit."""
        if kind == "assign":
            self._held |= tps
            for tp in tps:
                self._positions.pop(tp, None)
                self._committed.pop(tp, None)
            self._unknown_committed |= tps
        hook = self._on_assign if kind == "assign" else self._on_revoke
        if hook is not None and tps:
            self._in_hook.active = True
            try:
                hook(set(tps))
            except Exception as e:  # re-raised by poll/close once kafka-python completed the step
                self._hook_error = self._hook_error or e
            finally:
                self._in_hook.active = False
        deferred, self._deferred = self._deferred, {}
        if deferred:  # committed before the partitions can move (a blocking commit is refused here)
            offsets = {
                KafkaTopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in deferred.items()
            }
            try:
                await self._raw.commit_async(offsets)
                self._committed.update(deferred)
            except Exception as e:
                self._hook_error = self._hook_error or self._failure("commit in a rebalance hook", e)
        if kind == "revoke":
            self._held -= tps
            for tp in tps:
                self._positions.pop(tp, None)
                self._committed.pop(tp, None)
                self._unknown_committed.discard(tp)

    def _raise_hook_error(self, cause: BaseException | None = None) -> None:
        error, self._hook_error = self._hook_error, None
        if error is not None:
            raise error from cause

    def _refresh_committed(self) -> None:
        """Read the group's committed offsets of newly assigned partitions (outside the IO thread)."""
        for tp in sorted(self._unknown_committed & self._held):
            try:
                offset = self._raw.committed(KafkaTopicPartition(*tp))
            except KafkaError as e:
                raise self._failure("reading committed offsets", e) from e
            if offset is not None and offset >= 0:
                self._committed[tp] = int(offset)
            self._unknown_committed.discard(tp)

    def _poll(self, timeout_s: float, max_records: int) -> list[Message]:
        try:
            batches = self._raw.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        except KafkaError as e:
            if self._hook_error is not None:
                self._rewind()
            self._raise_hook_error(e)
            raise self._failure("poll", e) from e
        if self._hook_error is not None:
            self._rewind()
            self._raise_hook_error()
        out = []
        for tp in sorted(batches, key=_tp):
            for record in batches[tp]:
                out.append(
                    decode_record(record.topic, record.partition, record.offset, record.key, record.value)
                )
            if batches[tp]:
                self._positions[_tp(tp)] = batches[tp][-1].offset + 1
        for m in out:
            if m.error is not None:
                logger.warning("undecodable record %s: %s", m.where, m.error, extra={"record": m.where})
        return out

    def _rewind(self) -> None:
        """After a hook failed, kafka-python may have fetched (and dropped) records of the poll
        that raised: put every held partition back where the caller is (never skip)."""
        self._refresh_committed()
        for tp in sorted(self._held):
            start = self._positions.get(tp, self._committed.get(tp))
            ktp = KafkaTopicPartition(*tp)
            if start is not None:
                self._raw.seek(ktp, start)
            elif self._reset == "earliest":
                self._raw.seek_to_beginning(ktp)
            else:
                self._raw.seek_to_end(ktp)

    def _position(self, tp: TopicPartition) -> int | None:
        if tp not in self._positions and not self._inside_hook():
            try:
                self._positions[tp] = int(self._raw.position(KafkaTopicPartition(*tp)))
            except KafkaError as e:
                raise self._failure("reading the position", e) from e
        return self._positions.get(tp)

    def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        self._check_open()
        if not self._inside_hook():
            self._refresh_committed()
        if offsets is None:
            todo = {
                tp: pos
                for tp in self._held
                if (pos := self._position(tp)) is not None and pos > self._committed.get(tp, -1)
            }
        else:
            positions = {tp: pos for tp in self._held if (pos := self._position(tp)) is not None}
            todo = check_commit(
                self.group_id, offsets, assigned=self._held, committed=self._committed, positions=positions
            )
        if not todo:
            return
        if self._inside_hook():
            self._deferred.update(todo)
            return
        kafka_offsets = {
            KafkaTopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in todo.items()
        }
        try:
            self._raw.commit(offsets=kafka_offsets, timeout_ms=int(self._bus.request_timeout_s * 1000))
        except KafkaError as e:
            raise CommitError(
                f"commit of group {self.group_id} failed (the records will be redelivered): "
                f"{type(e).__name__}: {e}"
            ) from e
        self._committed.update(todo)

    def _seek(self, tp: TopicPartition, offset: int) -> None:
        if not self._inside_hook():  # end offsets need the network, refused on kafka-python's IO thread
            self._check_seek_end(tp, offset, self._bus.end_offsets(tp[0]).get(tp[1], 0))
        self._raw.seek(KafkaTopicPartition(*tp), offset)
        self._positions[tp] = offset

    def position(self) -> dict[TopicPartition, int]:
        self._check_open()
        return {tp: pos for tp in sorted(self._held) if (pos := self._position(tp)) is not None}

    def lag(self) -> dict[TopicPartition, int]:
        self._check_open()
        self._refresh_committed()
        held = sorted(self._held)
        if not held:
            return {}
        try:
            ends = {
                _tp(tp): int(end)
                for tp, end in self._raw.end_offsets([KafkaTopicPartition(*tp) for tp in held]).items()
            }
        except KafkaError as e:
            raise self._failure("reading end offsets", e) from e
        out = {}
        for tp in held:
            base = self._committed.get(tp)
            if base is None:
                base = self._position(tp)
            out[tp] = ends[tp] - (base or 0)
        return out

    def close(self) -> None:
        if self._closed:
            return
        error: Exception | None = None
        try:  # kafka-python runs on_revoke (our listener) before leaving the group
            self._raw.close(autocommit=False, timeout_ms=int(self._bus.request_timeout_s * 1000))
        except Exception as e:
            error = e
        finally:
            self._closed = True
            self._bus.forget(self)
        if self._hook_error is not None:
            self._raise_hook_error(error)
        if error is not None:
            logger.warning("closing consumer of group %s: %s", self.group_id, error)
