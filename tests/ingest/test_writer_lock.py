"""One writer per data dir: the lock itself (file and PostgreSQL advisory), and two `ingest poll` processes."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ingest.cube import open_cube
from ingest.errors import DataDirInUseError, IngestError
from ingest.ledger import open_ledger
from ingest.locks import PgAdvisoryLock, WriterLock, advisory_key
from ingest.types import ItemStatus
from tests.ingest.helpers import served_basic_archive

ROOT = Path(__file__).resolve().parents[2]
IN_USE = re.compile(r"data dir (?P<dir>\S+) is in use by PID (?P<pid>\d+) \((?P<cmd>[^)]*?) since \d\d:\d\d UTC")
HOLD = """
import sys, time
from ingest.locks import {cls}
lock = {cls}(*sys.argv[1:], command="sitsmon ingest poll").acquire()
print("held", flush=True)
time.sleep(600)
"""


def tree_digest(root: Path) -> str:
    """Checksum of every file under ``root`` but the lock files (their content changes with the holder)."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.name.endswith(".lock"):
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def holder_process(cls: str, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD.format(cls=cls), *args], cwd=ROOT, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == "held"
    return proc


# ---------------------------------------------------------------- the lock
def test_second_writer_is_refused_with_holder_named(tmp_path):
    with WriterLock(tmp_path, "ingest", command="sitsmon ingest poll"):
        with pytest.raises(DataDirInUseError) as e:
            WriterLock(tmp_path, "ingest").acquire()
        m = IN_USE.search(str(e.value))
        assert m and m["dir"] == str(tmp_path) and int(m["pid"]) == os.getpid() and m["cmd"] == "sitsmon ingest poll"
        assert e.value.holder_pid == os.getpid() and "\n" not in str(e.value)
        with WriterLock(tmp_path, "monitor"):  # another role runs side by side on the same data dir
            assert (tmp_path / ".sitsmon-monitor.lock").exists() and (tmp_path / ".sitsmon-ingest.lock").exists()
    with WriterLock(tmp_path, "ingest"):  # released on exit
        pass


def test_bounded_wait_gives_up_and_unbounded_wait_gets_it(tmp_path):
    first = WriterLock(tmp_path, "ingest", command="sitsmon ingest backfill").acquire()
    with pytest.raises(DataDirInUseError, match="sitsmon ingest backfill since"):
        WriterLock(tmp_path, "ingest", wait=0.3).acquire()
    got = threading.Event()

    def waiter() -> None:
        with WriterLock(tmp_path, "ingest", wait=True):
            got.set()

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.3)
    assert not got.is_set()  # still waiting while the first holds it
    first.release()
    t.join(10)
    assert got.is_set()


def test_killed_holder_does_not_block_the_next_writer(tmp_path):
    proc = holder_process("WriterLock", str(tmp_path), "ingest")
    with pytest.raises(DataDirInUseError) as e:
        WriterLock(tmp_path, "ingest").acquire()
    assert e.value.holder_pid == proc.pid
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    with WriterLock(tmp_path, "ingest", wait=5):  # the kernel dropped the flock with the process
        pass


def test_bad_role_and_unwritable_dir(tmp_path):
    with pytest.raises(ValueError, match="role"):
        WriterLock(tmp_path, "../x")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(IngestError, match=f"cannot create lock file {blocker}"):
        WriterLock(blocker, "ingest").acquire()


def test_postgres_advisory_lock(postgres_dsn, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert advisory_key("ingest", a) != advisory_key("ingest", b) != advisory_key("monitor", b)
    with PgAdvisoryLock(postgres_dsn, a, "ingest", command="sitsmon ingest poll"):
        with pytest.raises(DataDirInUseError) as e:
            PgAdvisoryLock(postgres_dsn, a, "ingest", wait=0.3).acquire()
        m = IN_USE.search(str(e.value))
        assert m and int(m["pid"]) == os.getpid() and m["cmd"] == "sitsmon ingest poll", str(e.value)
        with PgAdvisoryLock(postgres_dsn, b, "ingest"), PgAdvisoryLock(postgres_dsn, a, "monitor"):
            pass  # another data dir, another role: free
    proc = holder_process("PgAdvisoryLock", postgres_dsn, str(a), "ingest")
    with pytest.raises(DataDirInUseError) as e:
        PgAdvisoryLock(postgres_dsn, a, "ingest").acquire()
    assert e.value.holder_pid == proc.pid
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    with PgAdvisoryLock(postgres_dsn, a, "ingest", wait=10):  # the server ends the dead client's session
        pass


# ---------------------------------------------------------------- two `ingest poll` processes
@pytest.fixture(scope="module")
def served(tmp_path_factory):
    yield from served_basic_archive(tmp_path_factory, "lockpoll")


def poll_argv(served, *extra: str) -> list[str]:
    archive, endpoint, parcels = served
    return ["ingest", "poll", "--once", "--stac-url", endpoint.url, "--tiles", "33UXP", "--since", "2024-04-01",
            "--grids", str(archive.root), "--parcels", str(parcels), "--bus", "memory", "--chunk", "32", *extra]


def start_poll(served, work: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SITSMON_PATHS__DATA_DIR": str(work)}
    return subprocess.Popen([sys.executable, "-m", "sitsmon.cli", *poll_argv(served, *extra)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def poll_here(served, work: Path, monkeypatch, capsys, *extra: str) -> tuple[int, str, str]:
    """The same poll through ``main`` in this process (cheaper; this process's own locks still refuse it:
    a flock belongs to one open file, not to the process)."""
    from sitsmon.cli import main
    from sitsmon.settings import get_settings

    monkeypatch.setenv("SITSMON_PATHS__DATA_DIR", str(work))
    get_settings.cache_clear()  # settings are read once per process: read them with this data dir
    capsys.readouterr()
    try:
        rc = main(poll_argv(served, *extra))
    finally:
        get_settings.cache_clear()  # and not kept for later tests
    out = capsys.readouterr()
    return rc, out.out, out.err


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def events(work: Path) -> list[tuple]:
    from monitor.bus import InMemoryBus

    bus = InMemoryBus(work / "bus.sqlite")
    try:
        with bus.consumer("sits.acquisitions", "test-lock") as c:
            got = []
            while batch := c.poll(0.2):
                got += batch
    finally:
        bus.close()
    return [(m.value["sensor"], m.value["slot"], tuple(m.value["item_ids"])) for m in got]


def assert_whole(work: Path) -> None:
    """5 slots once each in the cube, 5 events once each on the bus, every item ingested."""
    for sensor, n in (("S2", 3), ("S1", 2)):
        slots = list(open_cube(work / "cubes" / "33UXP.zarr", sensor).slot.values)
        assert len(slots) == n == len(set(slots)), (sensor, slots)
    got = events(work)
    assert len(got) == 5 == len(set(got)), got
    ledger = open_ledger(work / "ingest-ledger.sqlite")
    assert ledger.counts() == {ItemStatus.INGESTED.value: 6}
    ledger.close()


@pytest.mark.integration
def test_second_poll_exits_with_the_holder_and_leaves_data_intact(served, tmp_path, monkeypatch, capsys):
    rc, _, err = poll_here(served, tmp_path, monkeypatch, capsys)
    assert rc == 0, err
    before = tree_digest(tmp_path)
    with WriterLock(tmp_path, "ingest", command="sitsmon ingest poll"):
        rc, out, err = poll_here(served, tmp_path, monkeypatch, capsys)
    assert rc == 1 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    m = IN_USE.search(lines[0])
    assert m and m["dir"] == str(tmp_path) and int(m["pid"]) == os.getpid(), lines[0]
    assert tree_digest(tmp_path) == before  # nothing read, nothing written
    assert_whole(tmp_path)


def wait_for_holder(work: Path, pid: int) -> None:
    lock = WriterLock(work, "ingest")
    deadline = time.monotonic() + 90
    while (lock.holder() or {}).get("pid") != pid:
        assert time.monotonic() < deadline, "the first poll never took the lock"
        time.sleep(0.05)


@pytest.mark.integration
def test_second_poll_while_the_first_runs_is_refused(served, tmp_path):
    first = start_poll(served, tmp_path)
    try:
        wait_for_holder(tmp_path, first.pid)
        first.send_signal(signal.SIGSTOP)  # hold the first mid-run, lock taken: the overlap is certain
        rc, out, err = finish(start_poll(served, tmp_path))
    finally:
        first.send_signal(signal.SIGCONT)
    assert rc == 1 and out == "", err
    m = IN_USE.search(err)
    assert m and int(m["pid"]) == first.pid and m["cmd"] == "sitsmon ingest poll" and m["dir"] == str(tmp_path), err
    assert finish(first)[0] == 0
    assert_whole(tmp_path)


@pytest.mark.integration
def test_two_polls_with_wait_started_together(served, tmp_path):
    procs = [start_poll(served, tmp_path, "--wait"), start_poll(served, tmp_path, "--wait", "100")]
    results = [finish(p) for p in procs]
    assert [r[0] for r in results] == [0, 0], results
    reports = sorted((json.loads(r[1].splitlines()[-1]) for r in results), key=lambda r: r["ingested_slots"])
    assert [r["ingested_slots"] for r in reports] == [0, 5]  # the second, after the first, ingests nothing again
    assert_whole(tmp_path)


@pytest.mark.integration
def test_backfill_and_import_take_the_lock_too(served, tmp_path, capsys):
    from sitsmon.cli import main

    archive, endpoint, _ = served
    rows = tmp_path / "rows.csv"
    rows.write_text("parcel_id,time,sensor,B02,B03,B04,B05,B06,B07,B08,B8A,B11,B12,clear,VV,VH,orbit\n"
                    "P1,2024-05-03T10:00:00Z,S2,0.1,0.1,0.1,0.1,0.2,0.2,0.3,0.3,0.2,0.1,1,,,\n")
    backfill = ["ingest", "backfill", "--start", "2024-05-01", "--end", "2024-05-08", "--stac-url", endpoint.url,
                "--tiles", "33UXP", "--cubes", str(tmp_path / "cubes"), "--series", str(tmp_path / "series"),
                "--ledger", str(tmp_path / "l.sqlite"), "--bus", "none"]
    imp = ["ingest", "import", str(rows), "--series", str(tmp_path / "series"), "--bus", "none"]  # not the default bus
    with WriterLock(tmp_path, "ingest", command="sitsmon ingest poll"):
        for argv in (backfill, imp):
            assert main(argv) == 1
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and IN_USE.search(err[0]) and f"PID {os.getpid()} " in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == [".sitsmon-ingest.lock", "rows.csv"]  # nothing written
    assert main(imp) == 0  # free again


@pytest.mark.integration
def test_poll_with_postgres_ledger_takes_the_advisory_lock(served, tmp_path, postgres_dsn, monkeypatch, capsys):
    with PgAdvisoryLock(postgres_dsn, tmp_path, "ingest", command="sitsmon ingest backfill"):
        rc, out, err = poll_here(served, tmp_path, monkeypatch, capsys, "--ledger", postgres_dsn)
    assert rc == 1, err
    m = IN_USE.search(err)
    assert m and int(m["pid"]) == os.getpid() and m["cmd"] == "sitsmon ingest backfill", err
    assert not (tmp_path / "cubes").exists() and not (tmp_path / "series").exists()
    rc, _, err = poll_here(served, tmp_path, monkeypatch, capsys, "--ledger", postgres_dsn)  # free again
    assert rc == 0, err
    assert np.unique(open_cube(tmp_path / "cubes" / "33UXP.zarr", "S2").slot.values).size == 3


def test_negative_wait_is_refused_by_name(tmp_path, capsys):
    from sitsmon.cli import main

    with pytest.raises(SystemExit) as e:
        main(["ingest", "poll", "--once", "--wait", "-1", "--cubes", str(tmp_path / "c")])
    assert e.value.code == 2
    assert "--wait needs seconds >= 0, got -1" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
