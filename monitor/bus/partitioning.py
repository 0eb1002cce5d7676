"""Which partition a key lands in, and which member of a group reads which partition.

``partition_for`` is Kafka's default partitioner for a keyed record (the Java client's and
kafka-python's ``DefaultPartitioner``: ``(murmur2(key) & 0x7fffffff) % partitions``), using
kafka-python's own ``murmur2``, so that the in-process bus puts a tile in the partition Kafka would.
``assign_round_robin`` is the in-process bus's assignor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from kafka.partitioner.default import murmur2

from monitor.bus.base import BusError, TopicPartition

__all__ = ["assign_round_robin", "murmur2", "partition_for", "partition_for_bytes"]


def partition_for(key: str, partitions: int) -> int:
    """The partition of ``key`` among ``partitions``: Kafka's default partitioner for a keyed record."""
    return partition_for_bytes(key.encode("utf-8"), partitions)


def partition_for_bytes(key: bytes, partitions: int) -> int:
    """:func:`partition_for` of a key already serialised (what the producer hashes)."""
    if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
        raise BusError(f"partitions must be an int >= 1, got {partitions!r}")
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def assign_round_robin(
    members: Sequence[tuple[str, Sequence[str]]], partitions: Mapping[str, int]
) -> dict[str, set[TopicPartition]]:
    """``{member: partitions}``: partition p of a topic goes to its (p mod n)-th of n subscribers.

    ``members`` are ``(member_id, topics)`` in join order (the order decides, so that every process
    computes the same plan); ``partitions`` gives each topic's partition count.
    """
    plan: dict[str, set[TopicPartition]] = {member: set() for member, _ in members}
    for topic, count in partitions.items():
        readers = [member for member, topics in members if topic in topics]
        for p in range(count):
            if readers:
                plan[readers[p % len(readers)]].add((topic, p))
    return plan
