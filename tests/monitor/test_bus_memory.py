"""In-process bus only: the SQLite file (restart, sharing between bus objects and processes, schema),
group membership across processes (heartbeats, expiry), and its incremental rebalance."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from monitor.bus import BusError, CommitError, InMemoryBus, dead_letter, partition_for
from tests.monitor.test_bus import (
    KEYS,
    PARTITIONS,
    ROOT,
    WAIT_S,
    ids,
    ids_of,
    poll_nothing,
    poll_until,
    publish_batch,
)


def test_memory_bus_file_survives_a_restart(tmp_path: Path, topic: str, group: str) -> None:
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


def test_memory_bus_file_is_shared_across_bus_objects(tmp_path: Path, topic: str, group: str) -> None:
    """A second bus object on the same file (as another process would) sees what the first publishes."""
    path = tmp_path / "shared.sqlite"
    writer, reader = InMemoryBus(path), InMemoryBus(path)
    with reader.consumer([topic], group) as consumer:
        assert consumer.poll(timeout_s=0.1) == []
        values = publish_batch(writer, topic, "x", KEYS)
        assert ids(poll_until(consumer, len(values), timeout_s=5)) == ids_of(values)
    writer.close()
    reader.close()


_APPENDER = textwrap.dedent(
    """
    import sys
    from monitor.bus import InMemoryBus
    bus = InMemoryBus(sys.argv[1])
    for i in range(int(sys.argv[3])):
        bus.publish(sys.argv[2], f"tile-{i % 5}", {"writer": sys.argv[4], "seq": i})
    bus.close()
    """
)


def test_two_processes_append_to_one_file_without_taking_the_same_offset(tmp_path: Path, topic: str) -> None:
    path, n = tmp_path / "bus.sqlite", 150
    InMemoryBus(path).close()
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", _APPENDER, str(path), topic, str(n), name],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("w1", "w2")
    ]
    for w in writers:
        _, err = w.communicate(timeout=120)
        assert w.returncode == 0, err
    bus = InMemoryBus(path)
    with bus.consumer([topic], "reader") as consumer:
        got = poll_until(consumer, 2 * n)
    assert sorted((m.value["writer"], m.value["seq"]) for m in got) == sorted(
        (w, i) for w in ("w1", "w2") for i in range(n)
    )
    for p in {m.partition for m in got}:
        assert sorted(m.offset for m in got if m.partition == p) == list(range(bus.end_offsets(topic)[p]))
    bus.close()


def test_memory_poll_wakes_on_publish(topic: str, group: str) -> None:
    bus = InMemoryBus()
    consumer = bus.consumer(topic, group)
    timer = threading.Timer(0.2, lambda: bus.publish(topic, "k", {"late": True}))
    timer.start()
    got = consumer.poll(timeout_s=WAIT_S)
    timer.join()
    assert [m.value for m in got] == [{"late": True}]
    bus.close()


def test_memory_rebalance_moves_only_what_changes_hands(topic: str, group: str) -> None:
    """Unlike Kafka's eager protocol, a join revokes only the partitions that move; a leave
    redelivers what the leaver polled and did not commit."""
    bus = InMemoryBus(partitions=PARTITIONS)
    seen: list[tuple[str, str, set]] = []
    c1 = bus.consumer(
        topic,
        group,
        on_revoke=lambda t: seen.append(("c1", "revoke", t)),
        on_assign=lambda t: seen.append(("c1", "assign", t)),
    )
    assert c1.assignment() == set()  # partitions are handed out inside poll
    assert c1.poll(timeout_s=0) == [] and len(c1.assignment()) == PARTITIONS
    c2 = bus.consumer(topic, group, on_assign=lambda t: seen.append(("c2", "assign", t)))
    assert c2.poll(timeout_s=0) == [] and c2.assignment() == set()  # c1 has not handed over yet
    c1.poll(timeout_s=0)  # c1 revokes the partition the plan moves ...
    c2.poll(timeout_s=0)  # ... and c2 takes it
    moved = c2.assignment()
    assert len(moved) == 1 and c1.assignment() == {(topic, p) for p in range(PARTITIONS)} - moved
    assert seen[1:] == [("c1", "revoke", moved), ("c2", "assign", moved)]

    values = publish_batch(bus, topic, "r", [f"k{i}" for i in range(20)])
    seen2 = poll_until(c2, count_in(values, topic, moved))
    c2.close()  # leaves without committing
    first = c1.poll(timeout_s=5, max_records=1)
    assert len(c1.assignment()) == PARTITIONS and len(first) == 1
    got = first + poll_until(c1, len(values) - 1)
    assert ids(got) == ids_of(values)
    assert ids(seen2) <= ids(got)
    bus.close()


def test_a_member_that_stops_polling_is_expired_and_rejoins(tmp_path: Path, topic: str, group: str) -> None:
    """Two bus objects on one file (as two processes). A member that does not poll within
    ``max_poll_interval_s`` stops heartbeating; after ``session_timeout_s`` its partitions go to the
    other; its late commit is refused (its records are redelivered); its next poll reports the loss
    through on_revoke and rejoins the group."""
    path = tmp_path / "bus.sqlite"
    slow_bus = InMemoryBus(path, session_timeout_s=1.0, max_poll_interval_s=0.3)
    fast_bus = InMemoryBus(path, session_timeout_s=1.0)
    lost: list[set] = []
    slow = slow_bus.consumer(topic, group, on_revoke=lost.append)
    assert slow.poll(timeout_s=0) == [] and len(slow.assignment()) == PARTITIONS
    fast = fast_bus.consumer(topic, group)
    deadline = time.monotonic() + WAIT_S
    while not fast.assignment() and time.monotonic() < deadline:  # the two split the partitions
        slow.poll(timeout_s=0.05)
        fast.poll(timeout_s=0.05)
    values = publish_batch(fast_bus, topic, "e", [f"k{i}" for i in range(30)])
    held = slow.assignment()
    slow_got = poll_until(slow, count_in(values, topic, held))
    poll_until(fast, count_in(values, topic, fast.assignment()))
    fast.commit()
    assert held and slow_got
    # the slow member now stops polling: the fast one ends up with everything
    deadline = time.monotonic() + WAIT_S
    redelivered = []
    while len(fast.assignment()) < PARTITIONS and time.monotonic() < deadline:
        redelivered.extend(fast.poll(timeout_s=0.1))
    assert len(fast.assignment()) == PARTITIONS
    redelivered.extend(poll_until(fast, len(slow_got) - len(redelivered)))
    assert ids(redelivered) == ids(slow_got)  # nothing the slow member read was lost
    with pytest.raises(CommitError, match="no longer held"):
        slow.commit()
    assert slow_bus.committed(group, topic) == fast_bus.committed(group, topic)
    slow.poll(timeout_s=0)
    assert lost[-1] == held and len(lost) == 2  # the split, then the loss, reported through on_revoke
    deadline = time.monotonic() + WAIT_S
    while not slow.assignment() and time.monotonic() < deadline:  # rejoined: the group splits again
        slow.poll(timeout_s=0.05)
        fast.poll(timeout_s=0.05)
    assert slow.assignment() and len(slow.assignment() | fast.assignment()) == PARTITIONS
    slow_bus.close()
    fast_bus.close()


def count_in(values: list[dict], topic: str, partitions: set[tuple[str, int]]) -> int:
    """How many of the published ``values`` lie in ``partitions``."""
    return sum(1 for v in values if (topic, partition_for(v["key"], PARTITIONS)) in partitions)


_V1_SCHEMA = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE topics (topic TEXT PRIMARY KEY, partitions INTEGER NOT NULL);
CREATE TABLE records (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
    key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (topic, partition, offset));
CREATE TABLE group_offsets (
    group_id TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
    offset INTEGER NOT NULL, PRIMARY KEY (group_id, topic, partition));
INSERT INTO meta VALUES ('schema', 'sitsmon-bus/1');
INSERT INTO topics VALUES ('sits.acquisitions', 2);
INSERT INTO records VALUES ('sits.acquisitions', 0, 0, '33UXP', '{"n": 0}');
INSERT INTO records VALUES ('sits.acquisitions', 0, 1, '33UXP', '{"n": 1}');
INSERT INTO records VALUES ('sits.acquisitions', 1, 0, '31TCJ', '{"n": 2}');
INSERT INTO group_offsets VALUES ('sitsmon-monitor', 'sits.acquisitions', 0, 1);
"""


def test_a_version_1_file_is_upgraded_in_place(tmp_path: Path) -> None:
    """A bus file written before group membership moved into SQLite (schema 1) keeps its records
    and offsets."""
    path = tmp_path / "bus.sqlite"
    with sqlite3.connect(path) as db:  # the DDL of the version-1 module (monitor/bus.py)
        db.executescript(_V1_SCHEMA)
    bus = InMemoryBus(path)
    assert bus.end_offsets("sits.acquisitions") == {0: 2, 1: 1}
    assert bus.committed("sitsmon-monitor", "sits.acquisitions") == {0: 1}
    with bus.consumer("sits.acquisitions", "sitsmon-monitor") as consumer:
        assert sorted(m.value["n"] for m in poll_until(consumer, 2)) == [1, 2]
    bus.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone() == ("sitsmon-bus/2",)


def test_foreign_or_broken_files_are_refused_by_name(tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:
        db.executescript(
            "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);"
            "INSERT INTO meta VALUES ('schema', 'someone-else/7');"
        )
    with pytest.raises(BusError, match=r"other\.sqlite.*someone-else/7"):
        InMemoryBus(other)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(BusError, match=r"junk\.sqlite"):
        InMemoryBus(junk)
    assert junk.read_bytes() == b"this is not a database" * 100  # left as it was


_KILLS_ITSELF = textwrap.dedent(
    """
    import os, signal, sys
    from monitor.bus import InMemoryBus
    bus = InMemoryBus(sys.argv[1], session_timeout_s=60.0)
    consumer = bus.consumer(sys.argv[2], sys.argv[3])
    got = []
    while len(got) < int(sys.argv[4]):
        got += consumer.poll(timeout_s=0.5)
    consumer.commit({m.tp: m.offset + 1 for m in got if m.offset == 0})  # only the first of each
    os.kill(os.getpid(), signal.SIGKILL)  # kill -9 before closing anything
    """
)


def test_a_restart_after_kill_9_resumes_at_once_from_the_last_commit(
    tmp_path: Path, topic: str, group: str
) -> None:
    """The killed member's process is gone: the next member takes its partitions at its first poll
    (no session timeout to wait out, unlike Kafka), from the last committed offsets."""
    path = tmp_path / "bus.sqlite"
    bus = InMemoryBus(path, session_timeout_s=60.0)
    values = publish_batch(bus, topic, "k", [f"tile-{i:02d}" for i in range(12)])
    child = subprocess.run(
        [sys.executable, "-c", _KILLS_ITSELF, str(path), topic, group, str(len(values))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == -9, child.stderr
    committed = bus.committed(group, topic)
    assert committed == {p: 1 for p, n in bus.end_offsets(topic).items() if n}
    with bus.consumer(topic, group) as restarted:
        assert restarted.poll(timeout_s=0, max_records=1) and len(restarted.assignment()) == PARTITIONS
        restarted.seek(topic, 0, committed.get(0, 0))  # undo the record the first poll returned
        restarted.seek(topic, 1, committed.get(1, 0))
        restarted.seek(topic, 2, committed.get(2, 0))
        again = poll_until(restarted, len(values) - len(committed))
    assert all(m.offset >= 1 for m in again)
    bus.close()


def test_dead_letter_of_a_decoded_message_keeps_its_json(topic: str) -> None:
    """A record that decodes but is wrong (an unknown schema version) is dead-lettered as its JSON text."""
    bus = InMemoryBus()
    bus.publish(topic, "33UXP", {"schema": "sits.acquisition/99", "tile_id": "33UXP"})
    with bus.consumer(topic, "monitor") as consumer:
        [message] = poll_until(consumer, 1)
    sent = dead_letter(bus, message, "unknown schema sits.acquisition/99", topic=topic + ".dlq")
    with bus.consumer(topic + ".dlq", "reader") as reader:
        [letter] = poll_until(reader, 1)
    assert letter.value == sent and letter.key == "33UXP"
    assert json.loads(letter.value["value"]) == message.value and letter.value["error"] is None
    bus.close()
