"""Pure parts of the bus: Kafka's partitioner, the in-process assignor, settings parsing."""

from __future__ import annotations

import ctypes
import random

import pytest

from monitor.bus import (
    BusError,
    InMemoryBus,
    assign_round_robin,
    make_bus,
    murmur2,
    parse_api_version,
    partition_for,
)

KEYS = ["33UXP", "31TCJ", "32ULU", "30TXM", "33UUP", "29SND"]

# Apache Kafka's own vectors for Utils.murmur2 (clients/src/test/java/org/apache/kafka/common/utils/
# UtilsTest.java, testMurmur2), as the Java ints it asserts
JAVA_MURMUR2 = {
    "21": -973932308,
    "foobar": -790332482,
    "a-little-bit-long-string": -985981536,
    "a-little-bit-longer-string": -1486304829,
    "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    "abc": 479470107,
}


def test_murmur2_matches_the_java_client() -> None:
    for text, java in JAVA_MURMUR2.items():
        assert ctypes.c_int32(murmur2(text.encode())).value == java, text


class _Cluster:
    """The few ClusterMetadata calls kafka-python's DefaultPartitioner makes."""

    def __init__(self, topic: str, partitions: int) -> None:
        self.topic, self.partitions = topic, set(range(partitions))

    def topics(self) -> set[str]:
        return {self.topic}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions


def test_partition_for_matches_kafka_pythons_producer_partitioner() -> None:
    """The producer's own partitioner (what KafkaBus sends with) and the in-process bus agree."""
    from kafka.partitioner.default import DefaultPartitioner

    rng = random.Random(7)
    keys = KEYS + ["parcel-é", ""] + [f"tile-{rng.randrange(10**6)}" for _ in range(300)]
    for n in (1, 2, 3, 7, 12):
        cluster = _Cluster("t", n)
        for key in keys:
            data = key.encode()
            assert partition_for(key, n) == DefaultPartitioner().partition(
                "t", key, data, None, None, cluster
            )


def test_partition_for_is_stable_and_in_range() -> None:
    assert [partition_for(k, 3) for k in KEYS] == [partition_for(k, 3) for k in KEYS]
    assert all(0 <= partition_for(f"k{i}", 7) < 7 for i in range(200))
    assert len({partition_for(f"k{i}", 7) for i in range(200)}) == 7
    for bad in (0, -1, 2.0, True):
        with pytest.raises(BusError, match="partitions"):
            partition_for("k", bad)  # type: ignore[arg-type]


def test_assign_round_robin_gives_every_partition_to_one_subscriber() -> None:
    members = [("m1", ["a", "b"]), ("m2", ["a"]), ("m3", ["b", "c"])]
    plan = assign_round_robin(members, {"a": 5, "b": 2, "c": 1})
    owners: dict[tuple[str, int], list[str]] = {}
    for member, tps in plan.items():
        for tp in tps:
            owners.setdefault(tp, []).append(member)
    assert sorted(owners) == [("a", p) for p in range(5)] + [("b", 0), ("b", 1), ("c", 0)]
    assert all(len(o) == 1 for o in owners.values())
    assert {p for t, p in plan["m2"] if t == "a"} == {1, 3} and plan["m1"] >= {("a", 0), ("a", 2), ("a", 4)}
    assert all(t in dict(members)[m] for m, tps in plan.items() for t, _ in tps)  # only subscribed topics
    assert plan == assign_round_robin(list(members), {"c": 1, "b": 2, "a": 5})  # deterministic
    assert assign_round_robin([], {"a": 3}) == {}
    assert assign_round_robin([("x", ["a"])], {}) == {"x": set()}


@pytest.mark.parametrize(
    "given, expected",
    [("0.9", (0, 9)), ((0, 9), (0, 9)), ("2.8.1", (2, 8, 1)), ("", None), ("auto", None), (None, None)],
)
def test_parse_api_version(given, expected) -> None:
    assert parse_api_version(given) == expected


def test_parse_api_version_refuses_junk() -> None:
    for junk in ["0.x", "1.2.3.4", (0, "9"), (-1,)]:
        with pytest.raises(BusError):
            parse_api_version(junk)  # type: ignore[arg-type]


def test_make_bus_backends() -> None:
    bus = make_bus("memory", partitions=5, session_timeout_s=4.0)
    assert isinstance(bus, InMemoryBus) and bus.partitions == 5 and bus.session_timeout_s == 4.0
    bus.close()
    with pytest.raises(BusError, match="backend"):
        make_bus("rabbit")  # type: ignore[arg-type]
    with pytest.raises(BusError, match="partitions"):
        InMemoryBus(partitions=0)
    with pytest.raises(BusError, match="session_timeout_s"):
        InMemoryBus(session_timeout_s=0)
