"""The bus contract shared by both backends: records, errors, the two interfaces, and validation.

Both backends refuse the same input with the same errors (the functions below), decode records the
same way (:func:`decode_record`: a value that is not a JSON object comes back with ``error`` set,
never dropped) and check commits the same way (:func:`check_commit`).
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Self

__all__ = [
    "Bus",
    "BusError",
    "BusUnavailableError",
    "CommitError",
    "Consumer",
    "MemberSpec",
    "Message",
    "OffsetReset",
    "PartitionsHook",
    "TopicPartition",
    "check_commit",
    "check_group",
    "check_offset_reset",
    "check_poll_args",
    "check_topic",
    "check_topics",
    "decode_record",
    "encode_record",
]

OffsetReset = Literal["earliest", "latest"]
TopicPartition = tuple[str, int]
"""``(topic, partition)``: how the bus names a partition on both backends."""
PartitionsHook = Callable[[set[TopicPartition]], None]
"""``on_assign`` / ``on_revoke``: called with the partitions that are given / taken away."""

logger = logging.getLogger(__name__)

_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


class BusError(ValueError):
    """Base error of the bus: bad input (key, value, topic, group, offset) or a failed bus operation."""


class BusUnavailableError(BusError, ConnectionError):
    """The broker cannot be reached (the message names the address)."""


class CommitError(BusError):
    """A commit was refused: below the committed offset, beyond what was read, or for a partition
    this consumer no longer holds (the group rebalanced: the records will be redelivered)."""


@dataclass(frozen=True, slots=True)
class Message:
    """One consumed record: where it sits in the log, its string key and its JSON object value.

    ``error`` is ``None`` for a good record. A record whose value is not a UTF-8 JSON object (or
    whose key is not UTF-8) is still delivered, with ``value == {}``, ``error`` saying why and
    ``raw_value`` holding the value as text (undecodable bytes backslash-escaped), so that the
    caller can dead-letter it (:func:`monitor.bus.dead_letter`) and commit past it.
    """

    topic: str
    partition: int
    offset: int
    key: str
    value: dict[str, Any]
    error: str | None = None
    raw_value: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.partition < 0 or self.offset < 0:
            raise ValueError(
                f"partition and offset must be >= 0, got {self.partition}, {self.offset} ({self.topic})"
            )
        if self.error is not None and not (isinstance(self.error, str) and self.error):
            raise ValueError(f"error must be None or a non-empty string, got {self.error!r}")

    @property
    def where(self) -> str:
        """``topic[partition]@offset``, for messages and logs."""
        return f"{self.topic}[{self.partition}]@{self.offset}"

    @property
    def tp(self) -> TopicPartition:
        return (self.topic, self.partition)


# --------------------------------------------------------------------------------------------------
# validation and encoding, shared by both backends so that they refuse the same input


def check_topic(topic: object) -> str:
    if not isinstance(topic, str) or not _TOPIC_RE.match(topic) or topic in (".", ".."):
        raise BusError(f"bad topic name {topic!r}: use 1-249 characters of [A-Za-z0-9._-]")
    return topic


def check_topics(topics: str | Iterable[str]) -> list[str]:
    if isinstance(topics, str):
        topics = [topics]
    checked = sorted({check_topic(t) for t in topics})
    if not checked:
        raise BusError("a consumer needs at least one topic")
    return checked


def check_group(group_id: object) -> str:
    if not isinstance(group_id, str) or not group_id.strip():
        raise BusError(f"group_id must be a non-empty string, got {group_id!r}")
    return group_id


def check_offset_reset(auto_offset_reset: object) -> OffsetReset:
    if auto_offset_reset not in ("earliest", "latest"):
        raise BusError(f"auto_offset_reset must be 'earliest' or 'latest', got {auto_offset_reset!r}")
    return auto_offset_reset  # type: ignore[return-value]


def check_hook(name: str, hook: object) -> PartitionsHook | None:
    if hook is not None and not callable(hook):
        raise BusError(f"{name} must be a callable taking a set of (topic, partition), got {hook!r}")
    return hook  # type: ignore[return-value]


def check_poll_args(timeout_s: float, max_records: int) -> None:
    if not (isinstance(timeout_s, int | float) and math.isfinite(timeout_s) and timeout_s >= 0):
        raise BusError(f"timeout_s must be a finite number >= 0, got {timeout_s!r}")
    if not isinstance(max_records, int) or max_records < 1:
        raise BusError(f"max_records must be an int >= 1, got {max_records!r}")


def check_offset(what: str, tp: object, offset: object) -> tuple[TopicPartition, int]:
    if not (isinstance(tp, tuple) and len(tp) == 2 and isinstance(tp[0], str) and isinstance(tp[1], int)):
        raise BusError(f"{what}: partitions are (topic, partition) tuples, got {tp!r}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise BusError(f"{what} {tp[0]}[{tp[1]}]: offset must be an int >= 0, got {offset!r}")
    return (tp[0], tp[1]), offset


def encode_record(topic: str, key: object, value: object) -> tuple[str, str]:
    """Check a record and return ``(key, value as compact JSON text)``."""
    check_topic(topic)
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


def _as_bytes(data: bytes | str | None) -> bytes | None:
    return data.encode("utf-8") if isinstance(data, str) else data


def decode_record(
    topic: str, partition: int, offset: int, key: bytes | str | None, value: bytes | str | None
) -> Message:
    """One stored record -> :class:`Message`; a bad value gives ``value={}`` and ``error`` (never raises)."""
    key_bytes, value_bytes = _as_bytes(key), _as_bytes(value)
    errors: list[str] = []
    key_text = ""
    if key_bytes is not None:
        try:
            key_text = key_bytes.decode("utf-8")
        except UnicodeDecodeError as e:
            key_text = key_bytes.decode("utf-8", errors="backslashreplace")
            errors.append(f"key is not UTF-8 ({e.reason} at byte {e.start})")
    raw = None if value_bytes is None else value_bytes.decode("utf-8", errors="backslashreplace")
    decoded: Any = None
    if value_bytes is None:
        errors.append("value is null (a tombstone), not a JSON object")
    else:
        try:
            decoded = json.loads(value_bytes.decode("utf-8"))
        except UnicodeDecodeError as e:
            errors.append(f"value is not UTF-8 ({e.reason} at byte {e.start})")
        except ValueError as e:
            errors.append(f"value is not JSON ({e})")
        else:
            if not isinstance(decoded, dict):
                errors.append(f"value is JSON {type(decoded).__name__}, not a JSON object")
    if errors or not isinstance(decoded, dict):
        return Message(topic, partition, offset, key_text, {}, "; ".join(errors), raw)
    return Message(topic, partition, offset, key_text, decoded)


def check_commit(
    group_id: str,
    offsets: Mapping[TopicPartition, int],
    *,
    assigned: set[TopicPartition],
    committed: Mapping[TopicPartition, int],
    positions: Mapping[TopicPartition, int],
) -> dict[TopicPartition, int]:
    """Check explicit commit offsets (Kafka's convention: the NEXT offset to read) of one consumer.

    Refused: a partition not assigned to it; an offset below the committed one (that would make the
    group re-read what it already processed, or hide a bug); an offset beyond its position (records
    it never read would be skipped). ``positions`` / ``committed`` may lack a partition when the
    backend does not know it yet: that bound is then not checked.
    """
    if not isinstance(offsets, Mapping):
        raise BusError(f"commit offsets must be a mapping (topic, partition) -> offset, got {offsets!r}")
    out: dict[TopicPartition, int] = {}
    for tp_given, offset_given in offsets.items():
        tp, offset = check_offset("commit of", tp_given, offset_given)
        where = f"{tp[0]}[{tp[1]}]"
        if tp not in assigned:
            raise CommitError(
                f"commit of group {group_id}: {where} is not assigned to this consumer "
                f"(assigned: {sorted(assigned)}); its records will be redelivered to its owner"
            )
        if tp in committed and offset < committed[tp]:
            raise CommitError(
                f"commit of group {group_id}: offset {offset} of {where} is below the committed "
                f"offset {committed[tp]}"
            )
        if tp in positions and offset > positions[tp]:
            raise CommitError(
                f"commit of group {group_id}: offset {offset} of {where} is beyond the consumer's "
                f"position {positions[tp]} (records never read would be skipped)"
            )
        out[tp] = offset
    return out


@dataclass(frozen=True, slots=True)
class MemberSpec:
    """A consumer's checked settings (``Bus.consumer`` checks them once for both backends)."""

    topics: tuple[str, ...]
    group_id: str
    reset: OffsetReset
    on_assign: PartitionsHook | None
    on_revoke: PartitionsHook | None


# --------------------------------------------------------------------------------------------------
# the interface


class _ClosedOnExit(ABC):
    """``with`` closes it."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Consumer(_ClosedOnExit):
    """A member of a consumer group, subscribed to some topics. Not thread-safe (one thread each).

    Hooks run inside :meth:`poll` (and :meth:`close`): ``on_revoke(partitions)`` BEFORE partitions
    are taken away (the caller saves its state, and may still :meth:`commit` them there),
    ``on_assign(partitions)`` AFTER new ones are given and before any of their records is
    returned (the caller loads its state, and may :meth:`seek`). An exception raised by a hook
    propagates out of ``poll`` / ``close`` once the rebalance step is complete.
    """

    topics: tuple[str, ...]
    group_id: str
    _backend: str  # the bus class's name, for repr

    def __init__(self, bus: Bus, spec: MemberSpec) -> None:
        self._bus = bus
        self.topics = spec.topics
        self.group_id = spec.group_id
        self._reset = spec.reset
        self._on_assign = spec.on_assign
        self._on_revoke = spec.on_revoke
        self._held: set[TopicPartition] = set()
        self._positions: dict[TopicPartition, int] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"<{self._backend} consumer group={self.group_id!r} topics={list(self.topics)}>"

    def _check_open(self) -> None:
        if self._closed:
            raise BusError(f"consumer of group {self.group_id} is closed")
        if self._bus.closed:
            raise BusError("the bus is closed")

    def _check_held(self, what: str, topic: str, partition: int) -> TopicPartition:
        tp = (topic, partition)
        if tp not in self._held:
            raise BusError(
                f"{what} {topic}[{partition}]: not assigned to this consumer of group {self.group_id} "
                f"(assigned: {sorted(self._held)})"
            )
        return tp

    def poll(self, timeout_s: float = 1.0, max_records: int = 500) -> list[Message]:
        """Wait up to ``timeout_s`` for records; return at most ``max_records`` (maybe none)."""
        check_poll_args(timeout_s, max_records)
        self._check_open()
        return self._poll(timeout_s, max_records)

    @abstractmethod
    def _poll(self, timeout_s: float, max_records: int) -> list[Message]:
        """``poll`` with checked arguments on an open consumer."""

    @abstractmethod
    def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        """Commit ``{(topic, partition): next offset to read}``; ``None``: everything polled so far.

        Raises :class:`CommitError` for a partition not held, an offset below the committed one or
        beyond the position (see :func:`check_commit`). ``None`` skips partitions whose position is
        not above the committed offset (after a :meth:`seek` back).
        """

    def seek(self, topic: str, partition: int, offset: int) -> None:
        """Read ``topic[partition]`` from ``offset`` on (rewind or skip); the partition must be held."""
        self._check_open()
        tp, offset = check_offset("seek", (topic, partition), offset)
        self._check_held("seek", *tp)
        self._seek(tp, offset)

    @abstractmethod
    def _seek(self, tp: TopicPartition, offset: int) -> None:
        """``seek`` of a held partition to a checked offset."""

    def _check_seek_end(self, tp: TopicPartition, offset: int, end: int) -> None:
        if offset > end:
            raise BusError(f"seek {tp[0]}[{tp[1]}]: offset {offset} is beyond the end offset {end}")

    @abstractmethod
    def position(self) -> dict[TopicPartition, int]:
        """``{(topic, partition): next offset poll returns}`` for every assigned partition."""

    @abstractmethod
    def lag(self) -> dict[TopicPartition, int]:
        """``{(topic, partition): end offset - committed}`` (``- position`` where nothing is committed)."""

    def assignment(self) -> set[TopicPartition]:
        """The ``(topic, partition)`` pairs this member currently reads (empty before the first poll)."""
        self._check_open()
        return set(self._held)

    @abstractmethod
    def close(self) -> None:
        """Run ``on_revoke`` for what is held, then leave the group WITHOUT committing. Idempotent."""


class Bus(_ClosedOnExit):
    """Publish keyed JSON records to topics; hand out consumers of consumer groups.

    The public methods check their arguments here, once for both backends (so that both refuse
    the same input with the same errors), and hand the checked values to the backend's ``_``
    method. A backend sets ``_closed``, ``_lock`` and ``_consumers`` in its ``__init__``.
    """

    _closed: bool
    _lock: threading.Lock
    _consumers: list[Any]

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise BusError("the bus is closed")

    @staticmethod
    def _close_members(members: Iterable[Consumer]) -> None:
        """Close the consumers handed out, each even when another's hook raises (logged)."""
        for member in members:
            try:
                member.close()
            except Exception as e:  # one consumer's hook must not keep the others in the group
                logger.warning("closing consumer of group %s: %s", member.group_id, e)

    def forget(self, member: Consumer) -> None:
        """Called by a consumer that closed."""
        with self._lock:
            if member in self._consumers:
                self._consumers.remove(member)

    def publish(self, topic: str, key: str, value: dict[str, Any]) -> None:
        """Queue one record. Raises :class:`BusError` on a non-string key or a non-JSON value.

        On Kafka the send is asynchronous: a record is durable only once :meth:`flush` returns
        (call it before recording the record as published, e.g. in the ingest ledger).
        """
        key, text = encode_record(topic, key, value)
        self._publish(topic, key, text)

    @abstractmethod
    def _publish(self, topic: str, key: str, text: str) -> None:
        """Queue one checked record (``text``: the value as compact JSON)."""

    def publish_bytes(self, topic: str, key: bytes | str | None, value: bytes | None) -> None:
        """Queue one record as raw bytes, unchecked: what a foreign producer may write (for tools
        and tests of bad input; the services publish with :meth:`publish`)."""
        check_topic(topic)
        self._publish_bytes(topic, key, value)

    @abstractmethod
    def _publish_bytes(self, topic: str, key: bytes | str | None, value: bytes | None) -> None:
        """``publish_bytes`` to a checked topic."""

    @abstractmethod
    def flush(self, timeout_s: float | None = None) -> None:
        """Block until every queued record is acknowledged (Kafka: by all in-sync replicas)."""

    def consumer(
        self,
        topics: str | Iterable[str],
        group_id: str,
        *,
        auto_offset_reset: OffsetReset = "earliest",
        on_assign: PartitionsHook | None = None,
        on_revoke: PartitionsHook | None = None,
    ) -> Consumer:
        """A new member of ``group_id`` reading ``topics``.

        ``auto_offset_reset`` says where a partition without a committed offset starts.
        """
        spec = MemberSpec(
            topics=tuple(check_topics(topics)),
            group_id=check_group(group_id),
            reset=check_offset_reset(auto_offset_reset),
            on_assign=check_hook("on_assign", on_assign),
            on_revoke=check_hook("on_revoke", on_revoke),
        )
        return self._consumer(spec)

    @abstractmethod
    def _consumer(self, spec: MemberSpec) -> Consumer:
        """``consumer`` with checked settings."""

    def end_offsets(self, topic: str) -> dict[int, int]:
        """``{partition: offset the next record will get}``; ``{}`` for a topic that does not exist."""
        return self._end_offsets(check_topic(topic))

    @abstractmethod
    def _end_offsets(self, topic: str) -> dict[int, int]:
        """``end_offsets`` of a checked topic."""

    def committed(self, group_id: str, topic: str) -> dict[int, int]:
        """``{partition: committed offset}`` of a group on a topic (partitions never committed left out)."""
        check_group(group_id)
        return self._group_committed(group_id, check_topic(topic))

    @abstractmethod
    def _group_committed(self, group_id: str, topic: str) -> dict[int, int]:
        """``committed`` of a checked group and topic."""

    @abstractmethod
    def close(self) -> None:
        """Flush and release everything (consumers handed out are closed too). Idempotent."""
