"""The message bus: one small interface, two backends that behave the same.

- :class:`InMemoryBus` (:mod:`monitor.bus.memory`) — the embedded default: topics with N
  partitions, consumer groups and committed offsets in SQLite, ``:memory:`` or a file under the data
  dir that several processes may share (group membership with heartbeats; see that module).
- :class:`KafkaBus` (:mod:`monitor.bus.kafka`) — Apache Kafka through kafka-python (``acks=all``,
  manual commits, consumer groups with a rebalance listener). ``api_version="0.9"`` for the local
  test broker; ``None`` auto-detects in production.
- :mod:`monitor.bus.partitioning` — a key lands in the partition Kafka's default partitioner picks
  (``murmur2(key) % N``, kafka-python's own murmur2), on both backends.
- :mod:`monitor.bus.base` — :class:`Message`, :class:`Consumer`, :class:`Bus`, the errors, validation.

API (both backends)::

    bus = make_bus(backend, path=..., bootstrap_servers=..., api_version=...,
                   session_timeout_s=10.0)
    bus.publish(topic, key: str, value: dict)   # keyed JSON object; Kafka: durable after flush()
    bus.flush(timeout_s=None)
    consumer = bus.consumer(topics, group_id, *, auto_offset_reset="earliest",
                            on_assign=None, on_revoke=None)   # hooks: Callable[[set[(topic, partition)]], None]
    consumer.poll(timeout_s=1.0, max_records=500) -> list[Message]
    consumer.commit(offsets=None)     # {(topic, partition): NEXT offset to read}; None: all polled so far
    consumer.seek(topic, partition, offset); consumer.position() -> {(t, p): next offset}
    consumer.lag() -> {(t, p): end offset - committed (- position if nothing committed)}
    consumer.assignment() -> set[(t, p)]
    consumer.close()                  # on_revoke, then leave the group (no commit)
    bus.end_offsets(topic) -> {partition: end offset};  bus.committed(group_id, topic) -> {partition: offset}
    dead_letter(bus, message, reason, topic="sits.acquisitions.dlq")

Semantics:

- ``Message(topic, partition, offset, key, value, error=None, raw_value=None)``. A record whose
  value is not a UTF-8 JSON object is delivered, never dropped and never raised: ``value == {}``,
  ``error`` says why, ``raw_value`` holds the text; pass it to :func:`dead_letter`, then commit past it.
- Delivery is at least once. ``commit()`` commits what ``poll`` returned so far; whatever was
  polled but not committed is delivered again to the next holder of the partition (after a close,
  a restart, a rebalance or a killed process). A commit below the committed offset, beyond the
  position, or of a partition not held is refused (:class:`CommitError`).
- Hooks run inside ``poll`` (and ``close``): ``on_revoke(partitions)`` BEFORE they are taken away
  (save state; ``commit`` still works there), ``on_assign(partitions)`` AFTER new ones are given
  and before any of their records is returned (load state; ``seek`` works there). No other member
  reads a partition before its previous holder's ``on_revoke`` returned. Kafka's eager protocol
  revokes and reassigns every partition at each rebalance; the in-process bus only the ones that
  move: rely on neither. A hook's exception comes out of ``poll`` / ``close``. On Kafka, hooks run
  on kafka-python's IO thread: keep them shorter than ``session_timeout_s``, and do not call
  ``position``/``lag`` there.
- A member that dies (SIGKILL) holds its partitions until ``session_timeout_s`` passes (Kafka, and
  the in-process bus across hosts), or — in-process bus, same host — until another member sees its
  process gone; then they go to the others, from the last committed offset.
- A consumer must poll again within ``max_poll_interval_s`` (default 300 s), or it is treated as
  stuck and its partitions move (on Kafka, kafka-python leaves the group by itself; it heartbeats
  between polls, on any broker version). On a Kafka 0.9 broker (no KIP-62) a member busy between two
  polls while the group rebalances has only ``session_timeout_s`` to rejoin, else it is dropped and its
  next commit fails (the batch comes back as duplicates): size ``max_records`` so that one batch is
  processed well within the session timeout.
- ``end_offsets`` / ``committed`` read a group's progress without joining it (``monitor status``).
- Messages carry all their metadata in the JSON value: no headers, no record timestamps (Kafka 0.9
  has neither).

Usage::

    bus = make_bus("memory", path=data_dir / "bus.sqlite")   # or make_bus("kafka", "127.0.0.1:29092", "0.9")
    bus.publish("sits.acquisitions", "33UXP", {"schema": "...", "tile_id": "33UXP"})
    bus.flush()
    with bus.consumer(["sits.acquisitions"], "sitsmon-monitor", on_revoke=save, on_assign=load) as consumer:
        for message in consumer.poll(timeout_s=1.0, max_records=100):
            if message.error:
                dead_letter(bus, message, message.error)
            else:
                handle(message.value)
        consumer.commit()                          # only after the effects are durable
    bus.close()
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from monitor.bus.base import (
    Bus,
    BusError,
    BusUnavailableError,
    CommitError,
    Consumer,
    Message,
    OffsetReset,
    PartitionsHook,
    TopicPartition,
)
from monitor.bus.dead_letter import DEAD_LETTER_SCHEMA, DEFAULT_DEAD_LETTER_TOPIC, dead_letter
from monitor.bus.kafka import KafkaBus, parse_api_version
from monitor.bus.memory import InMemoryBus
from monitor.bus.partitioning import assign_round_robin, murmur2, partition_for

__all__ = [
    "DEAD_LETTER_SCHEMA",
    "DEFAULT_DEAD_LETTER_TOPIC",
    "Bus",
    "BusError",
    "BusUnavailableError",
    "CommitError",
    "Consumer",
    "InMemoryBus",
    "KafkaBus",
    "Message",
    "OffsetReset",
    "PartitionsHook",
    "TopicPartition",
    "assign_round_robin",
    "dead_letter",
    "make_bus",
    "murmur2",
    "parse_api_version",
    "partition_for",
]


def make_bus(
    backend: Literal["memory", "kafka"] = "memory",
    bootstrap_servers: str | Sequence[str] = "127.0.0.1:29092",
    api_version: str | Sequence[int] | None = None,
    *,
    path: str | Path | None = None,
    partitions: int = 3,
    client_id: str = "sitsmon",
    connect_timeout_s: float = 5.0,
    session_timeout_s: float = 10.0,
    max_poll_interval_s: float = 300.0,
) -> Bus:
    """Build a bus from plain settings values.

    ``backend="memory"``: an :class:`InMemoryBus` (``path``: optional SQLite file, shared by the
    processes of one data dir; ``partitions``: per new topic). ``backend="kafka"``: a
    :class:`KafkaBus` on ``bootstrap_servers`` (``"host:port,host:port"``) with ``api_version``
    (``"0.9"``, ``(0, 9)``, or ``None``/``""`` to auto-detect). ``session_timeout_s``: how long a
    silent group member keeps its partitions; ``max_poll_interval_s``: how long a consumer may go
    without polling before it is treated as stuck.
    """
    if backend == "memory":
        return InMemoryBus(
            path,
            partitions=partitions,
            session_timeout_s=session_timeout_s,
            max_poll_interval_s=max_poll_interval_s,
        )
    if backend == "kafka":
        return KafkaBus(
            bootstrap_servers,
            api_version=api_version,
            client_id=client_id,
            connect_timeout_s=connect_timeout_s,
            session_timeout_s=session_timeout_s,
            max_poll_interval_s=max_poll_interval_s,
        )
    raise BusError(f"unknown bus backend {backend!r}: expected 'memory' or 'kafka'")
