"""The bus contract, run on both backends: the in-process bus and a real Kafka 0.9 broker."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from monitor.bus import (
    Bus,
    BusError,
    BusUnavailableError,
    Consumer,
    InMemoryBus,
    KafkaBus,
    Message,
    make_bus,
    murmur2,
    parse_api_version,
    partition_for,
)
from tests.services import free_port

PARTITIONS = 3  # the in-memory default and the test broker's num.partitions (scripts/services/kafka.sh)
WAIT_S = 30.0  # upper bound on waiting for records that must arrive (a generous bound, not a timing check)


@pytest.fixture(params=["memory", "kafka"])
def bus(request: pytest.FixtureRequest) -> Iterator[Bus]:
    if request.param == "memory":
        b: Bus = InMemoryBus(partitions=PARTITIONS)
    else:
        bootstrap = request.getfixturevalue("kafka_bootstrap")
        b = KafkaBus(bootstrap, api_version=(0, 9), session_timeout_s=6.0)
    yield b
    b.close()


@pytest.fixture
def topic() -> str:
    return f"test.bus.{uuid.uuid4().hex[:10]}"


@pytest.fixture
def group() -> str:
    return f"group-{uuid.uuid4().hex[:10]}"


def poll_until(consumer: Consumer, n: int, timeout_s: float = WAIT_S) -> list[Message]:
    """Poll until ``n`` records arrived (fails if more arrive or the bound passes)."""
    got: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < n and time.monotonic() < deadline:
        got.extend(consumer.poll(timeout_s=0.5, max_records=100))
    assert len(got) == n, f"expected {n} records, got {len(got)}: {[(m.key, m.value) for m in got]}"
    return got


def poll_nothing(consumer: Consumer, duration_s: float = 1.5) -> list[Message]:
    """Everything that arrives within ``duration_s`` (tests expect none)."""
    got: list[Message] = []
    deadline = time.monotonic() + duration_s
    while time.monotonic() < deadline:
        got.extend(consumer.poll(timeout_s=0.3, max_records=100))
    return got


def publish_batch(bus: Bus, topic: str, batch: str, keys: list[str]) -> list[dict]:
    values = [{"batch": batch, "seq": i, "key": k, "tile_id": k} for i, k in enumerate(keys)]
    for value in values:
        bus.publish(topic, value["key"], value)
    bus.flush()
    return values


def ids(messages: list[Message]) -> set[tuple[str, int]]:
    return {(m.value["batch"], m.value["seq"]) for m in messages}


KEYS = ["33UXP", "31TCJ", "32ULU", "30TXM", "33UUP", "29SND"]


def test_publish_and_consume_in_a_group(bus: Bus, topic: str, group: str) -> None:
    values = publish_batch(bus, topic, "a", KEYS * 3)
    with bus.consumer([topic], group) as consumer:
        got = poll_until(consumer, len(values))
        assert poll_nothing(consumer, 0.5) == []
    assert sorted((m.value["batch"], m.value["seq"]) for m in got) == [("a", i) for i in range(len(values))]
    for m in got:
        assert isinstance(m, Message) and m.topic == topic
        assert m.key == m.value["key"]
        # a key always lands in the partition of Kafka's default partitioner, on both backends
        assert m.partition == partition_for(m.key, PARTITIONS)
    by_partition: dict[int, list[Message]] = {}
    for m in got:
        by_partition.setdefault(m.partition, []).append(m)
    for records in by_partition.values():
        records.sort(key=lambda m: m.offset)
        assert [m.offset for m in records] == list(range(len(records)))  # contiguous from 0
        seqs_per_key: dict[str, list[int]] = {}
        for m in records:
            seqs_per_key.setdefault(m.key, []).append(m.value["seq"])
        assert all(s == sorted(s) for s in seqs_per_key.values())  # per-key order kept
    assert len(by_partition) > 1  # six keys spread over several partitions


def test_commit_close_and_resume_at_least_once(bus: Bus, topic: str, group: str) -> None:
    first = publish_batch(bus, topic, "first", KEYS)
    consumer = bus.consumer([topic], group)
    assert ids(poll_until(consumer, len(first))) == {("first", i) for i in range(len(first))}
    consumer.commit()
    second = publish_batch(bus, topic, "second", KEYS)
    assert ids(poll_until(consumer, len(second))) == {("second", i) for i in range(len(second))}
    consumer.close()  # "second" was polled but never committed

    with pytest.raises(BusError):
        consumer.poll(timeout_s=0.1)

    with bus.consumer([topic], group) as again:
        redelivered = poll_until(again, len(second))
        # committed records are not delivered again; uncommitted ones are (at least once)
        assert ids(redelivered) == {("second", i) for i in range(len(second))}
        assert poll_nothing(again, 0.5) == []
        again.commit()

    with bus.consumer([topic], group) as third:
        assert poll_nothing(third) == []


def test_groups_are_independent_and_offset_reset(bus: Bus, topic: str, group: str) -> None:
    old = publish_batch(bus, topic, "old", KEYS)
    with bus.consumer([topic], group) as consumer:
        poll_until(consumer, len(old))
        consumer.commit()
    with bus.consumer([topic], group + "-other") as other:  # a new group starts at the earliest record
        assert ids(poll_until(other, len(old))) == ids_of(old)
    with bus.consumer([topic], group + "-latest", auto_offset_reset="latest") as latest:
        wait_for_assignment([latest], PARTITIONS)
        assert poll_nothing(latest, 0.5) == []
        new = publish_batch(bus, topic, "new", KEYS)
        assert ids(poll_until(latest, len(new))) == ids_of(new)


def ids_of(values: list[dict]) -> set[tuple[str, int]]:
    return {(v["batch"], v["seq"]) for v in values}


def wait_for_assignment(consumers: list[Consumer], partitions: int, timeout_s: float = WAIT_S) -> None:
    """Poll every consumer (one thread each is not needed for one) until the partitions are split."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for c in consumers:
            assert c.poll(timeout_s=0.2) == []
        parts = [c.assignment() for c in consumers]
        if all(parts) and sum(len(p) for p in parts) == partitions and len(set().union(*parts)) == partitions:
            return
    pytest.fail(
        f"partitions never split across {len(consumers)} consumers: {[c.assignment() for c in consumers]}"
    )


def test_two_consumers_in_one_group_split_partitions(bus: Bus, topic: str, group: str) -> None:
    keys = [f"tile-{i:03d}" for i in range(30)]
    c1 = bus.consumer([topic], group)
    c2 = bus.consumer([topic], group)
    received: dict[int, list[Message]] = {1: [], 2: []}
    assignments: dict[int, set[tuple[str, int]]] = {}
    stop = threading.Event()
    errors: list[BaseException] = []

    def run(n: int, consumer: Consumer) -> None:
        try:
            while not stop.is_set():
                received[n].extend(consumer.poll(timeout_s=0.2, max_records=50))
                assignments[n] = consumer.assignment()
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(n, c), daemon=True) for n, c in ((1, c1), (2, c2))]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline and not errors:
            a1, a2 = assignments.get(1, set()), assignments.get(2, set())
            if a1 and a2 and not a1 & a2 and len(a1 | a2) == PARTITIONS:
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"partitions never split: {assignments} {errors}")
        publish_batch(bus, topic, "split", keys)
        while time.monotonic() < deadline and len(received[1]) + len(received[2]) < len(keys) and not errors:
            time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    assert not errors, errors
    got1, got2 = received[1], received[2]
    assert got1 and got2  # both members did work
    assert ids(got1).isdisjoint(ids(got2))
    assert ids(got1) | ids(got2) == {("split", i) for i in range(len(keys))}
    assert {m.partition for m in got1}.isdisjoint({m.partition for m in got2})
    c1.close()
    c2.close()


@pytest.mark.parametrize(
    "key, value",
    [
        (42, {"a": 1}),
        (None, {"a": 1}),
        (b"bytes-key", {"a": 1}),
        ("k", {"when": object()}),
        ("k", {"x": float("nan")}),
        ("k", {"x": {1, 2}}),
        ("k", ["not", "an", "object"]),
        ("k", "text"),
    ],
    ids=["int-key", "none-key", "bytes-key", "object", "nan", "set", "list", "str"],
)
def test_bad_records_are_refused(bus: Bus, topic: str, group: str, key: object, value: object) -> None:
    with pytest.raises(BusError) as info:
        bus.publish(topic, key, value)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)
    assert topic in str(info.value)
    bus.publish(topic, "good", {"ok": True})
    bus.flush()
    with bus.consumer([topic], group) as consumer:
        [only] = poll_until(consumer, 1)
        assert (only.key, only.value) == ("good", {"ok": True})


def test_bad_names_and_arguments(bus: Bus, topic: str, group: str) -> None:
    for bad_topic in ["", "has space", "a/b", "x" * 250, ".."]:
        with pytest.raises(BusError, match="topic"):
            bus.publish(bad_topic, "k", {})
    with pytest.raises(BusError, match="group_id"):
        bus.consumer([topic], "")
    with pytest.raises(BusError, match="at least one topic"):
        bus.consumer([], group)
    with pytest.raises(BusError, match="auto_offset_reset"):
        bus.consumer([topic], group, auto_offset_reset="middle")  # type: ignore[arg-type]
    with bus.consumer([topic], group) as consumer:
        with pytest.raises(BusError, match="max_records"):
            consumer.poll(timeout_s=0.1, max_records=0)
        with pytest.raises(BusError, match="timeout_s"):
            consumer.poll(timeout_s=-1)


def test_closed_bus_refuses_work(bus: Bus, topic: str, group: str) -> None:
    consumer = bus.consumer([topic], group)
    bus.close()
    bus.close()  # idempotent
    with pytest.raises(BusError, match="closed"):
        bus.publish(topic, "k", {"a": 1})
    with pytest.raises(BusError, match="closed"):
        consumer.poll(timeout_s=0.1)


# ---- Kafka only -------------------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("api_version", [(0, 9), None])
def test_unreachable_broker_is_named(api_version: tuple[int, int] | None) -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(BusUnavailableError, match=address) as info:
        make_bus("kafka", address, api_version, connect_timeout_s=1.0)
    assert isinstance(info.value, BusError) and isinstance(info.value, ConnectionError)


@pytest.mark.timeout(30)
def test_kafka_version_probe_failure_is_bounded_and_explained(kafka_bootstrap: str, topic: str) -> None:
    """Auto-detecting the API version of a 0.9 broker fails: the error says so, after connect_timeout_s."""
    bus = KafkaBus(kafka_bootstrap, api_version=None, connect_timeout_s=2.0)
    with pytest.raises(BusUnavailableError, match="api_version='0.9'"):
        bus.publish(topic, "k", {"a": 1})
    bus.close()


def test_kafka_rejects_bad_bootstrap_and_version() -> None:
    with pytest.raises(BusError, match="HOST:PORT"):
        KafkaBus("localhost")
    with pytest.raises(BusError, match="api_version"):
        KafkaBus("127.0.0.1:1", api_version="zero.nine")


# ---- in-memory only ---------------------------------------------------------------------------


def test_memory_bus_file_survives_a_restart(tmp_path, topic: str, group: str) -> None:
    path = tmp_path / "bus.sqlite"
    first = InMemoryBus(path, partitions=4)
    sent = publish_batch(first, topic, "a", KEYS * 2)
    with first.consumer([topic], group) as consumer:
        got = poll_until(consumer, len(sent))
        consumer.commit()
    more = publish_batch(first, topic, "b", KEYS)
    first.close()

    second = InMemoryBus(path, partitions=2)  # a topic keeps the partition count it was made with
    assert set(second.end_offsets(topic)) == {0, 1, 2, 3}
    assert sum(second.committed(group, topic).values()) == len(got)
    with second.consumer([topic], group) as consumer:
        assert ids(poll_until(consumer, len(more))) == ids_of(more)
        assert poll_nothing(consumer, 0.3) == []
    second.close()


def test_memory_bus_file_is_shared_across_bus_objects(tmp_path, topic: str, group: str) -> None:
    """A second bus object on the same file (as another process would) sees what the first publishes."""
    path = tmp_path / "shared.sqlite"
    writer, reader = InMemoryBus(path), InMemoryBus(path)
    with reader.consumer([topic], group) as consumer:
        assert consumer.poll(timeout_s=0.1) == []
        values = publish_batch(writer, topic, "x", KEYS)
        assert ids(poll_until(consumer, len(values), timeout_s=5)) == ids_of(values)
    writer.close()
    reader.close()


def test_memory_poll_wakes_on_publish(topic: str, group: str) -> None:
    bus = InMemoryBus()
    consumer = bus.consumer([topic], group)
    timer = threading.Timer(0.2, lambda: bus.publish(topic, "k", {"late": True}))
    timer.start()
    got = consumer.poll(timeout_s=WAIT_S)
    timer.join()
    assert [m.value for m in got] == [{"late": True}]
    bus.close()


def test_memory_rebalance_on_leave_redelivers_uncommitted(topic: str, group: str) -> None:
    bus = InMemoryBus(partitions=PARTITIONS)
    c1, c2 = bus.consumer([topic], group), bus.consumer([topic], group)
    assert c1.assignment() == c2.assignment() == set()  # partitions are handed out inside poll
    assert c1.poll(timeout_s=0) == c2.poll(timeout_s=0) == []
    assert c1.assignment().isdisjoint(c2.assignment())
    assert len(c1.assignment() | c2.assignment()) == PARTITIONS
    values = publish_batch(bus, topic, "r", [f"k{i}" for i in range(20)])
    seen2 = poll_until(
        c2, sum(1 for v in values if (topic, partition_for(v["key"], PARTITIONS)) in c2.assignment())
    )
    c2.close()  # leaves without committing
    first = c1.poll(timeout_s=5, max_records=1)  # the rebalance happens inside poll
    assert len(c1.assignment()) == PARTITIONS and len(first) == 1
    got = first + poll_until(c1, len(values) - 1)
    assert ids(got) == ids_of(values)
    assert ids(seen2) <= ids(got)
    bus.close()


# ---- pure functions ---------------------------------------------------------------------------


def test_murmur2_matches_kafka_python() -> None:
    from kafka.partitioner.default import murmur2 as reference

    rng = random.Random(7)
    samples = [b"", b"a", b"ab", b"abc", b"abcd", b"33UXP", "parcel-é".encode()]
    samples += [rng.randbytes(rng.randint(0, 40)) for _ in range(300)]
    for data in samples:
        assert murmur2(data) == reference(data), data


def test_partition_for_is_stable_and_in_range() -> None:
    assert [partition_for(k, 3) for k in KEYS] == [partition_for(k, 3) for k in KEYS]
    assert all(0 <= partition_for(f"k{i}", 7) < 7 for i in range(200))
    assert len({partition_for(f"k{i}", 7) for i in range(200)}) == 7
    with pytest.raises(BusError):
        partition_for("k", 0)


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
    bus = make_bus("memory", partitions=5)
    assert isinstance(bus, InMemoryBus) and bus.partitions == 5
    bus.close()
    with pytest.raises(BusError, match="backend"):
        make_bus("rabbit")  # type: ignore[arg-type]
    with pytest.raises(BusError, match="partitions"):
        InMemoryBus(partitions=0)
