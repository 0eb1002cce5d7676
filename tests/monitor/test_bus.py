"""The bus contract, run on every backend: the in-process bus (``:memory:`` and a shared SQLite
file) and a real Kafka 0.9 broker. Backend-specific behaviour: test_bus_memory.py, test_bus_kafka.py;
pure functions: test_bus_partitioning.py."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.bus import (
    Bus,
    BusError,
    CommitError,
    Consumer,
    InMemoryBus,
    KafkaBus,
    Message,
    dead_letter,
    partition_for,
)

PARTITIONS = 3  # the in-memory default and the test broker's num.partitions (scripts/services/kafka.sh)
# An upper bound on waiting for what must happen, not a timing check: on a loaded 2-core machine a
# Kafka group join once took over 30 s.
WAIT_S = 90.0
KEYS = ["33UXP", "31TCJ", "32ULU", "30TXM", "33UUP", "29SND"]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["memory", "file", "kafka"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def bus_config(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """``make_bus`` keywords of the backend (the kill test hands them to a child process)."""
    if backend == "memory":
        return {"backend": "memory", "partitions": PARTITIONS}
    if backend == "file":
        return {
            "backend": "memory",
            "path": str(tmp_path / "bus.sqlite"),
            "partitions": PARTITIONS,
            "session_timeout_s": 3.0,
        }
    bootstrap = request.getfixturevalue("kafka_bootstrap")
    return {
        "backend": "kafka",
        "bootstrap_servers": bootstrap,
        "api_version": "0.9",
        "session_timeout_s": 6.0,
    }


@pytest.fixture
def bus(bus_config: dict[str, Any]) -> Iterator[Bus]:
    from monitor.bus import make_bus

    b = make_bus(**bus_config)
    yield b
    b.close()


# ---- helpers (also used by test_bus_memory.py / test_bus_kafka.py) ------------------------------


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


def ids_of(values: list[dict]) -> set[tuple[str, int]]:
    return {(v["batch"], v["seq"]) for v in values}


def per_partition(values: list[dict]) -> Counter:
    return Counter(partition_for(v["key"], PARTITIONS) for v in values)


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}")


def poll_until_assigned(consumer: Consumer, partitions: int, timeout_s: float = WAIT_S) -> None:
    """Poll one consumer (nothing published meanwhile) until it holds ``partitions`` partitions."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert consumer.poll(timeout_s=0.2) == []
        if len(consumer.assignment()) == partitions:
            return
    pytest.fail(f"consumer never got {partitions} partitions: {consumer.assignment()}")


class Runner:
    """One consumer polling on its own thread (consumers are not thread-safe: every call to it,
    ``close`` included, runs on that thread through :meth:`call`)."""

    def __init__(self, consumer: Consumer, *, commit_each_batch: bool = True) -> None:
        self.consumer = consumer
        self.commit_each_batch = commit_each_batch
        self.received: list[Message] = []
        self.assignment: set[tuple[str, int]] = set()
        self.errors: list[BaseException] = []
        self._calls: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                while not self._calls.empty():
                    fn, box = self._calls.get()
                    try:
                        box.put((fn(self.consumer), None))
                    except BaseException as e:  # noqa: BLE001 - handed to the caller
                        box.put((None, e))
                if self._stop.is_set():
                    return
                batch = self.consumer.poll(timeout_s=0.2, max_records=50)
                self.received.extend(batch)
                if batch and self.commit_each_batch:
                    self.consumer.commit()
                self.assignment = self.consumer.assignment()
            except BaseException as e:  # noqa: BLE001 - reported by the test thread
                self.errors.append(e)
                return

    def call(self, fn: Callable[[Consumer], Any], timeout_s: float = WAIT_S) -> Any:
        box: queue.Queue = queue.Queue()
        self._calls.put((fn, box))
        value, error = box.get(timeout=timeout_s)
        if error is not None:
            raise error
        return value

    def close(self) -> None:
        """Close the consumer on its thread and stop."""

        def close(c: Consumer) -> None:
            self._stop.set()
            c.close()

        self.call(close)
        self._thread.join(timeout=WAIT_S)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=WAIT_S)

    def check(self) -> None:
        assert not self.errors, self.errors


def offsets_by_partition(messages: list[Message]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for m in messages:
        out.setdefault(m.partition, []).append(m.offset)
    return {p: sorted(o) for p, o in out.items()}


# ---- publish, consume, commit --------------------------------------------------------------------


def test_publish_and_consume_in_a_group(bus: Bus, topic: str, group: str) -> None:
    values = publish_batch(bus, topic, "a", KEYS * 3)
    with bus.consumer([topic], group) as consumer:
        got = poll_until(consumer, len(values))
        assert poll_nothing(consumer, 0.5) == []
    assert sorted((m.value["batch"], m.value["seq"]) for m in got) == [("a", i) for i in range(len(values))]
    for m in got:
        assert isinstance(m, Message) and m.topic == topic and m.error is None
        assert m.key == m.value["key"]
        # a key lands in the partition of Kafka's default partitioner: the broker's placement (kafka)
        # and the SQLite bus's own (memory) agree with partition_for
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
    ends = bus.end_offsets(topic)
    assert ends == {p: per_partition(values)[p] for p in range(PARTITIONS)}


def test_commit_close_and_resume_at_least_once(bus: Bus, topic: str, group: str) -> None:
    first = publish_batch(bus, topic, "first", KEYS)
    consumer = bus.consumer([topic], group)
    assert ids(poll_until(consumer, len(first))) == ids_of(first)
    consumer.commit()
    assert bus.committed(group, topic) == {p: n for p, n in per_partition(first).items()}
    second = publish_batch(bus, topic, "second", KEYS)
    assert ids(poll_until(consumer, len(second))) == ids_of(second)
    consumer.close()  # "second" was polled but never committed

    with pytest.raises(BusError):
        consumer.poll(timeout_s=0.1)

    with bus.consumer([topic], group) as again:
        redelivered = poll_until(again, len(second))
        # committed records are not delivered again; uncommitted ones are (at least once)
        assert ids(redelivered) == ids_of(second)
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
        poll_until_assigned(latest, PARTITIONS)
        assert latest.position() == {(topic, p): n for p, n in bus.end_offsets(topic).items()}
        new = publish_batch(bus, topic, "new", KEYS)
        assert ids(poll_until(latest, len(new))) == ids_of(new)
    assert bus.committed(group + "-other", topic) == {}  # polled, never committed


def test_explicit_commits(bus: Bus, topic: str, group: str) -> None:
    values = publish_batch(bus, topic, "x", [f"tile-{i:02d}" for i in range(24)])
    counts = per_partition(values)
    busy = max(counts, key=counts.__getitem__)  # the partition with most records
    with bus.consumer([topic], group) as consumer:
        got = poll_until(consumer, len(values))
        assert consumer.position() == {(topic, p): counts[p] for p in range(PARTITIONS)}
        # commit only the first two records of the busy partition (offsets: the NEXT one to read)
        consumer.commit({(topic, busy): 2})
        assert bus.committed(group, topic) == {busy: 2}
        consumer.commit({(topic, busy): 2})  # the same offset again: allowed
        with pytest.raises(CommitError, match="below the committed offset 2"):
            consumer.commit({(topic, busy): 1})
        with pytest.raises(CommitError, match="beyond the consumer's position"):
            consumer.commit({(topic, busy): counts[busy] + 1})
        with pytest.raises(CommitError, match="not assigned"):
            consumer.commit({(topic + "-other", 0): 1})
        for bad in ({(topic, busy): -1}, {(topic, busy): "3"}, {topic: 3}, [((topic, busy), 3)]):
            with pytest.raises(BusError):
                consumer.commit(bad)  # type: ignore[arg-type]
        assert bus.committed(group, topic) == {busy: 2}  # refused commits changed nothing
    with bus.consumer([topic], group) as again:
        rest = poll_until(again, len(values) - 2)
        assert {m.offset for m in rest if m.partition == busy} == set(range(2, counts[busy]))
        first_two = [m for m in got if m.partition == busy and m.offset < 2]
        assert ids(rest) == ids_of(values) - ids(first_two)
        again.commit()
        assert bus.committed(group, topic) == dict(counts)


def test_seek_position_and_lag(bus: Bus, topic: str, group: str) -> None:
    values = publish_batch(bus, topic, "s", [f"tile-{i:02d}" for i in range(18)])
    counts = per_partition(values)
    p = max(counts, key=counts.__getitem__)
    with bus.consumer([topic], group) as consumer:
        got = poll_until(consumer, len(values))
        ends = {(topic, q): counts[q] for q in range(PARTITIONS)}
        assert consumer.position() == ends
        assert consumer.lag() == dict.fromkeys(ends, 0)  # nothing committed: end - position
        consumer.commit({(topic, q): 1 for q in range(PARTITIONS) if counts[q]})
        assert consumer.lag() == {tp: n - 1 if n else 0 for tp, n in ends.items()}  # end - committed

        consumer.seek(topic, p, 1)  # rewind: re-read from offset 1
        assert consumer.position()[(topic, p)] == 1
        again = poll_until(consumer, counts[p] - 1)
        assert [m.offset for m in again] == list(range(1, counts[p]))
        assert [m.value for m in again] == [
            m.value for m in sorted(got, key=lambda m: m.offset) if m.partition == p
        ][1:]
        consumer.commit()
        assert consumer.lag() == dict.fromkeys(ends, 0)

        consumer.seek(topic, p, 0)
        consumer.commit()  # position 0 is below the committed offset: commit() leaves it alone
        assert bus.committed(group, topic)[p] == counts[p]
        with pytest.raises(BusError, match="not assigned"):
            consumer.seek(topic, PARTITIONS + 5, 0)
        with pytest.raises(BusError, match="offset"):
            consumer.seek(topic, p, -1)
        with pytest.raises(BusError, match="beyond the end offset"):
            consumer.seek(topic, p, counts[p] + 10)
        consumer.seek(topic, p, counts[p])  # forward again, to the end
        more = publish_batch(bus, topic, "more", [f"tile-{i:02d}" for i in range(6)])
        assert ids(poll_until(consumer, len(more))) == ids_of(more)
        new = per_partition(more)
        assert consumer.lag() == {(topic, q): new[q] for q in range(PARTITIONS)}  # end - committed


# ---- consumer groups: hooks, handover, nothing lost --------------------------------------------


def test_group_of_two_hooks_handover_and_nothing_lost(bus: Bus, topic: str, group: str) -> None:
    events: list[tuple[str, str, frozenset]] = []  # (member, "assign" | "revoke", partitions), in order

    def hooks(name: str, consumer_box: list[Consumer] | None = None) -> dict[str, Any]:
        def on_revoke(tps: set[tuple[str, int]]) -> None:
            events.append((name, "revoke", frozenset(tps)))
            if consumer_box:  # save state and commit what was processed, before the handover
                consumer_box[0].commit()

        return {
            "on_assign": lambda tps: events.append((name, "assign", frozenset(tps))),
            "on_revoke": on_revoke,
        }

    r1 = Runner(bus.consumer([topic], group, **hooks("a")))
    wait_until(lambda: len(r1.assignment) == PARTITIONS, "the first member to hold every partition")
    box: list[Consumer] = []
    c2 = bus.consumer([topic], group, **hooks("b", box))
    box.append(c2)
    r2 = Runner(c2, commit_each_batch=False)  # b commits only in on_revoke
    wait_until(
        lambda: (
            r1.assignment
            and r2.assignment
            and not r1.assignment & r2.assignment
            and len(r1.assignment | r2.assignment) == PARTITIONS
        ),
        "the two members to split the partitions",
    )
    first = publish_batch(bus, topic, "first", [f"tile-{i:03d}" for i in range(30)])
    wait_until(lambda: len(r1.received) + len(r2.received) >= len(first), "the first batch")
    r1.check()
    r2.check()
    held_b = set(r2.assignment)
    assert r1.received and r2.received  # both members did work
    assert {m.partition for m in r1.received}.isdisjoint({m.partition for m in r2.received})

    r2.close()  # b's on_revoke commits, then b leaves: its partitions go to a
    wait_until(lambda: len(r1.assignment) == PARTITIONS, "the partitions of the closed member to move")
    assert bus.committed(group, topic) == dict(per_partition(first))
    second = publish_batch(bus, topic, "second", [f"tile-{i:03d}" for i in range(30)])
    wait_until(lambda: len(ids(r1.received) & ids_of(second)) == len(second), "the second batch")
    time.sleep(0.5)  # anything delivered twice would arrive now
    r1.stop()
    r1.check()
    final_a = r1.consumer.assignment()
    r1.consumer.close()
    assert events[-1] == ("a", "revoke", frozenset(final_a))  # close runs on_revoke
    del events[-1]

    everything = r1.received + r2.received
    assert Counter((m.value["batch"], m.value["seq"]) for m in everything) == Counter(
        ids_of(first) | ids_of(second)
    )  # every record exactly once: nothing skipped, and b's commit in on_revoke prevented redelivery
    for p, offsets in offsets_by_partition(everything).items():
        assert offsets == list(range(len(offsets))), p

    # hooks: per member they alternate (assign p ... revoke p), mirror assignment(), and a
    # partition is revoked from its holder before the next holder's on_assign
    for name, final in (("a", final_a), ("b", set())):
        held: set = set()
        for who, kind, tps in events:
            if who != name:
                continue
            if kind == "assign":
                assert not held & tps, (name, events)
                held |= tps
            else:
                assert tps <= held, (name, events)
                held -= tps
        assert held == final, (name, events)
    for i, (who, kind, tps) in enumerate(events):
        for tp in tps if kind == "assign" else ():
            # the last event of ANOTHER member about tp, before this assign, is its revoke
            others = [k for w, k, t in events[:i] if w != who and tp in t]
            assert not others or others[-1] == "revoke", (tp, events)
    assert ("b", "revoke", frozenset(held_b)) in events  # on close
    last_of_a = [tps for who, kind, tps in events if who == "a"][-1]
    assert [e for e in events if e[0] == "a"][-1][1] == "assign" and held_b <= last_of_a


def test_on_assign_may_seek_and_commit(bus: Bus, topic: str, group: str) -> None:
    """The caller loads its state in on_assign and resumes from the offsets kept with it."""
    values = publish_batch(bus, topic, "z", [f"tile-{i:02d}" for i in range(18)])
    counts = per_partition(values)
    state_offsets = {(topic, p): min(2, counts[p]) for p in range(PARTITIONS)}  # "saved with the state"
    consumer_box: list[Consumer] = []

    def on_assign(tps: set[tuple[str, int]]) -> None:
        for t, p in sorted(tps):
            consumer_box[0].seek(t, p, state_offsets[(t, p)])
        consumer_box[0].commit({tp: state_offsets[tp] for tp in tps})

    consumer = bus.consumer([topic], group, on_assign=on_assign)
    consumer_box.append(consumer)
    got = poll_until(consumer, len(values) - sum(state_offsets.values()))
    assert all(m.offset >= state_offsets[m.tp] for m in got)
    assert bus.committed(group, topic) == {p: o for (_, p), o in state_offsets.items()}
    consumer.close()


def test_hook_errors_come_out_of_poll(bus: Bus, topic: str, group: str) -> None:
    def on_assign(tps: set[tuple[str, int]]) -> None:
        raise RuntimeError(f"cannot load the state of {sorted(tps)}")

    values = publish_batch(bus, topic, "h", KEYS)
    consumer = bus.consumer([topic], group, on_assign=on_assign)
    deadline = time.monotonic() + WAIT_S
    with pytest.raises(RuntimeError, match="cannot load the state"):
        while time.monotonic() < deadline:
            consumer.poll(timeout_s=0.5)
    assert len(consumer.assignment()) == PARTITIONS  # the rebalance step completed
    assert ids(poll_until(consumer, len(values))) == ids_of(values)  # and the stream goes on
    consumer.close()


_CHILD = textwrap.dedent(
    """
    import json, sys
    from monitor.bus import make_bus

    cfg = json.loads(sys.argv[1])
    bus = make_bus(**cfg["bus"])

    def say(**event):
        print(json.dumps(event), flush=True)

    consumer = bus.consumer([cfg["topic"]], cfg["group"],
                            on_assign=lambda tps: say(assign=sorted(tps)),
                            on_revoke=lambda tps: say(revoke=sorted(tps)))
    seen = {}
    while True:
        for m in consumer.poll(timeout_s=0.2, max_records=1):
            say(got=[m.partition, m.offset])
            seen[m.partition] = seen.get(m.partition, 0) + 1
            if seen[m.partition] == cfg["commit_after"]:  # commit the first few, then go on without
                consumer.commit({(m.topic, m.partition): m.offset + 1})
                say(committed=[m.partition, m.offset + 1])
    """
)


@pytest.mark.parametrize("backend", ["file", "kafka"])  # a :memory: bus lives in one process: no other to kill
def test_killed_consumer_process_hands_over_from_its_last_commit(
    backend: str, bus: Bus, bus_config: dict[str, Any], topic: str, group: str
) -> None:
    """SIGKILL a member's process: its partitions go to the other member from the last committed
    offset (redelivered, never skipped), after the session timeout (Kafka) or as soon as the
    process is seen gone (the SQLite bus)."""
    parent_assigned: list[frozenset] = []
    r1 = Runner(bus.consumer([topic], group, on_assign=lambda tps: parent_assigned.append(frozenset(tps))))
    wait_until(lambda: len(r1.assignment) == PARTITIONS, "the parent to hold every partition")
    child_config = {**bus_config, "session_timeout_s": 2.0}
    config = {"bus": child_config, "topic": topic, "group": group, "commit_after": 2}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, json.dumps(config)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(json.loads(x)) for x in child.stdout], daemon=True).start()
    child_events: list[dict] = []

    def drain() -> list[dict]:
        while not lines.empty():
            child_events.append(lines.get())
        return child_events

    def child_held() -> set[int]:
        held: set[int] = set()
        for e in drain():
            held |= {p for _, p in e.get("assign", [])}
            held -= {p for _, p in e.get("revoke", [])}
        return held

    try:
        wait_until(
            lambda: (
                child_held()
                and not {p for _, p in r1.assignment} & child_held()
                and len({p for _, p in r1.assignment} | child_held()) == PARTITIONS
            ),
            "the child process to take a share of the partitions",
        )
        mine = child_held()
        values = publish_batch(bus, topic, "k", [f"tile-{i:03d}" for i in range(40)])
        counts = per_partition(values)
        wait_until(
            lambda: sum(1 for e in drain() if "got" in e) == sum(counts[p] for p in mine),
            "the child to read its partitions",
        )
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=WAIT_S)
        child_commits = {p: 2 for p in mine if counts[p] >= 2}  # commit_after
        wait_until(
            lambda: len(r1.received) == len(values) - sum(child_commits.values()),
            "the parent to read the dead child's uncommitted records",
        )
        time.sleep(0.5)  # anything delivered twice would arrive now
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        r1.stop()
    r1.check()
    r1.consumer.close()
    committed_by_child = {e["committed"][0]: e["committed"][1] for e in child_events if "committed" in e}
    assert committed_by_child == child_commits
    got = offsets_by_partition(r1.received)
    for p in range(PARTITIONS):
        start = committed_by_child.get(p, 0) if p in mine else 0
        # the parent read exactly from the child's last commit on: redelivered, never skipped
        assert got.get(p, []) == list(range(start, counts[p])), (p, start, got)
    assert any(frozenset((topic, p) for p in mine) <= tps for tps in parent_assigned[1:])


# ---- bad input ------------------------------------------------------------------------------------


def test_undecodable_values_are_delivered_with_error_and_dead_lettered(
    bus: Bus, topic: str, group: str
) -> None:
    key = "33UXP"  # one key: one partition, so that the order is the publication order
    bad = [b"not json", b"\xff\xfe{}", b"[1, 2]", b'"text"', b'{"cut": ']
    bus.publish(topic, key, {"seq": 0})
    for raw in bad:
        bus.publish_bytes(topic, key, raw)
    bus.publish(topic, key, {"seq": 1})
    bus.flush()
    dlq = topic + ".dlq"
    with bus.consumer([topic], group) as consumer:
        got = poll_until(consumer, len(bad) + 2)
        assert [m.offset for m in got] == list(range(len(bad) + 2))
        assert got[0].value == {"seq": 0} and got[-1].value == {"seq": 1}
        assert got[0].error is None and got[-1].error is None
        for m, raw in zip(got[1:-1], bad, strict=True):
            assert m.value == {} and m.error and m.key == key
            assert m.raw_value == raw.decode("utf-8", errors="backslashreplace")
            dead_letter(bus, m, f"bad acquisition event: {m.error}", topic=dlq)
        assert "not UTF-8" in got[2].error and "not a JSON object" in got[3].error
        consumer.commit()  # the stream goes on past them
    with bus.consumer([dlq], group) as reader:
        letters = poll_until(reader, len(bad))
    letters.sort(key=lambda m: m.value["source"]["offset"])
    for letter, raw, original in zip(letters, bad, got[1:-1], strict=True):
        assert letter.key == key and letter.error is None
        assert letter.value["value"] == raw.decode("utf-8", errors="backslashreplace")
        assert letter.value["reason"].startswith("bad acquisition event: ")
        assert letter.value["error"] == original.error
        assert letter.value["source"] == {
            "topic": topic,
            "partition": original.partition,
            "offset": original.offset,
        }


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
    with pytest.raises(BusError, match="on_assign"):
        bus.consumer([topic], group, on_assign="load")  # type: ignore[arg-type]
    with pytest.raises(BusError, match="reason"):
        dead_letter(bus, Message(topic, 0, 0, "k", {}), "  ")
    with bus.consumer([topic], group) as consumer:
        with pytest.raises(BusError, match="max_records"):
            consumer.poll(timeout_s=0.1, max_records=0)
        with pytest.raises(BusError, match="timeout_s"):
            consumer.poll(timeout_s=-1)
    assert bus.end_offsets(f"test.bus.never-{uuid.uuid4().hex[:6]}") in (
        {},
        dict.fromkeys(range(PARTITIONS), 0),
    )


def test_closed_bus_refuses_work(bus: Bus, topic: str, group: str) -> None:
    consumer = bus.consumer([topic], group)
    bus.close()
    bus.close()  # idempotent
    with pytest.raises(BusError, match="closed"):
        bus.publish(topic, "k", {"a": 1})
    with pytest.raises(BusError, match="closed"):
        consumer.poll(timeout_s=0.1)


def test_backends_are_the_documented_classes(bus: Bus, backend: str) -> None:
    assert isinstance(bus, KafkaBus if backend == "kafka" else InMemoryBus)
