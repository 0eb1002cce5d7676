"""One writer per data dir and role: a file lock on local paths, an advisory lock in PostgreSQL.

``<data dir>/.sitsmon-<role>.lock`` is held with ``fcntl.flock`` for as long as the writer runs and
records who holds it (PID, command, start time) so that a second writer can say whom it waits for.
The kernel drops the lock when its process dies (a SIGKILL included), so a stale file never blocks;
the file itself stays (removing it would race with a writer that just opened it). Each role has its
own file: ingest (``ingest poll``, ``backfill``, ``import``) and the monitor may run side by side on
one data dir, two writers of one role may not. Readers (status, series readers, dashboards) never
take a lock.

A PostgreSQL ledger is shared beyond one machine's file locks: :class:`PgAdvisoryLock` holds
``pg_try_advisory_lock`` on a key derived from the role and the data dir, in a session of its own
(dropped by the server when the writer dies), and names the holder in ``application_name``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import psutil

from ingest.errors import DataDirInUseError, IngestError

_ROLE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_POLL_S = 0.1  # how often a bounded wait tries again


def _command() -> str:
    """``sitsmon ingest poll`` from ``python -m sitsmon ingest poll --once ...`` (options left out)."""
    words = [w for w in sys.argv[1:3] if not w.startswith("-")]
    return " ".join(["sitsmon", *words]) if words else Path(sys.argv[0]).name


def _clock(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%H:%M UTC")


def _deadline(wait: bool | float) -> float | None:
    """Monotonic deadline of a bounded wait; None for 'wait as long as it takes'."""
    if wait is True:
        return None
    seconds = 0.0 if wait is False else float(wait)
    if seconds < 0:
        raise ValueError(f"lock wait must be >= 0 s, got {seconds}")
    return time.monotonic() + seconds


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID runs on this machine (a PID of another user counts; a zombie,
    dead but not yet reaped by its parent, does not)."""
    if pid <= 0:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:  # ZombieProcess included
        return False
    except psutil.AccessDenied:  # it exists; what it is doing is not ours to read
        return True


class _HeldLock:
    """What both locks share: ``with lock:`` acquires and releases it, and a release lets the held
    handle (a file descriptor, a database session) go once; a second release does nothing."""

    _held: Any = None  # the handle while the lock is held

    def acquire(self) -> Self:
        raise NotImplementedError

    def _let_go(self, handle: Any) -> None:
        raise NotImplementedError

    def release(self) -> None:
        if self._held is None:
            return
        handle, self._held = self._held, None
        self._let_go(handle)

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class WriterLock(_HeldLock):
    """``with WriterLock(data_dir, "ingest"):`` — the only writer of ``role`` on ``data_dir`` until exit.

    ``wait``: False raises :class:`DataDirInUseError` at once when another process holds the lock;
    True waits for it; a number waits at most that many seconds, then raises.
    """

    def __init__(self, path: Path | str, role: str, wait: bool | float = False, command: str | None = None):
        if not _ROLE.match(role):
            raise ValueError(f"lock role must match {_ROLE.pattern}, got {role!r}")
        self.path = Path(path)
        self.role = role
        self.wait = wait
        self.command = command or _command()
        self.lock_file = self.path / f".sitsmon-{role}.lock"
        self._held: int | None = None  # the lock file's descriptor

    def holder(self) -> dict[str, Any] | None:
        """What the lock file says about its last holder (None when unreadable or empty)."""
        try:
            data = json.loads(self.lock_file.read_text() or "null")
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _in_use(self, waited_s: float) -> DataDirInUseError:
        info = None
        for _ in range(10):  # the holder writes its record right after taking the lock
            info = self.holder()
            if info is not None:
                break
            time.sleep(0.02)
        waited = f"; waited {waited_s:.0f} s" if waited_s >= 1 else ""
        if info is None:
            return DataDirInUseError(f"data dir {self.path} is in use by another process ({self.role} lock "
                                     f"{self.lock_file}{waited})")
        pid = int(info.get("pid", 0))
        return DataDirInUseError(
            f"data dir {self.path} is in use by PID {pid} ({info.get('command', '?')} since "
            f"{_clock(float(info.get('since_s', 0)))}{waited})", holder_pid=pid)

    def acquire(self) -> WriterLock:
        if self._held is not None:
            raise RuntimeError(f"{self.lock_file} is already held by this lock object")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise IngestError(f"cannot create lock file {self.lock_file}: {e.strerror or e}") from e
        started = time.monotonic()
        deadline = _deadline(self.wait)
        try:
            if deadline is None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            else:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() >= deadline:
                            raise self._in_use(time.monotonic() - started) from None
                        time.sleep(_POLL_S)
            record = {"pid": os.getpid(), "command": self.command, "role": self.role, "since_s": time.time(),
                      "host": os.uname().nodename}
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._held = fd
        return self

    def _let_go(self, fd: int) -> None:
        try:
            os.ftruncate(fd, 0)  # nobody holds it: no stale name in the file
        finally:
            os.close(fd)  # closing drops the flock


def advisory_key(role: str, data_dir: Path | str) -> int:
    """A signed 64-bit key for ``pg_advisory_lock`` from the role and the resolved data dir."""
    digest = hashlib.sha256(f"sitsmon:{role}:{Path(data_dir).resolve()}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PgAdvisoryLock(_HeldLock):
    """The same contract as :class:`WriterLock` for a writer whose ledger is PostgreSQL."""

    def __init__(self, dsn: str, data_dir: Path | str, role: str, wait: bool | float = False,
                 command: str | None = None):
        if not _ROLE.match(role):
            raise ValueError(f"lock role must match {_ROLE.pattern}, got {role!r}")
        self.dsn = dsn
        self.path = Path(data_dir)
        self.role = role
        self.wait = wait
        self.command = command or _command()
        self.key = advisory_key(role, data_dir)
        self._held: Any = None  # the session holding the advisory lock

    def _holder(self, conn: Any) -> tuple[int | None, str]:
        """PID and command of the session holding the key, from its application_name."""
        unsigned = self.key & 0xFFFFFFFFFFFFFFFF
        rows = conn.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s AND l.objsubid = 1",
            (unsigned >> 32, unsigned & 0xFFFFFFFF)).fetchall()
        name = str(rows[0][0]) if rows else ""
        m = re.match(r"^(.*) pid=(\d+) since (\d\d:\d\d)$", name)
        if not m:
            return None, "another session"
        return int(m.group(2)), f"{m.group(1)} since {m.group(3)} UTC"

    def acquire(self) -> PgAdvisoryLock:
        import psycopg

        since = datetime.now(UTC).strftime("%H:%M")
        app = f"{self.command[:40]} pid={os.getpid()} since {since}"
        try:
            conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=10, application_name=app)
        except psycopg.Error as e:
            raise IngestError(f"cannot connect to the ledger database for its writer lock: {e}") from e
        started = time.monotonic()
        deadline = _deadline(self.wait)
        try:
            if deadline is None:
                conn.execute("SELECT pg_advisory_lock(%s)", (self.key,))
            else:
                while not conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()[0]:
                    if time.monotonic() >= deadline:
                        pid, what = self._holder(conn)
                        waited = time.monotonic() - started
                        tail = f"; waited {waited:.0f} s" if waited >= 1 else ""
                        who = f"PID {pid} ({what}{tail})" if pid else f"{what} (advisory lock {self.key}{tail})"
                        raise DataDirInUseError(f"data dir {self.path} is in use by {who}", holder_pid=pid)
                    time.sleep(_POLL_S)
        except BaseException:
            conn.close()
            raise
        self._held = conn
        return self

    def _let_go(self, conn: Any) -> None:
        try:
            conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
        finally:
            conn.close()


@contextlib.contextmanager
def writer_locks(data_dirs: Iterable[Path | str], role: str, wait: bool | float = False, command: str | None = None,
                 ledger_url: str | Path | None = None) -> Iterator[None]:
    """Hold the ``role`` lock of every data dir (sorted, so two writers never deadlock), and the
    advisory lock of each in a PostgreSQL ledger."""
    dirs = sorted({Path(d).resolve() for d in data_dirs})
    url = str(ledger_url or "")
    with contextlib.ExitStack() as stack:
        for d in dirs:
            stack.enter_context(WriterLock(d, role, wait, command))
        if url.startswith(("postgresql://", "postgres://")):
            for d in dirs:
                stack.enter_context(PgAdvisoryLock(url, d, role, wait, command))
        yield


def tile_lock_dir(cubes_root: Path | str, tile_id: str) -> Path:
    """Where one tile's writer lock lives: ``<cubes>/.sitsmon-tiles/<tile>`` (no cube or series reader
    looks there)."""
    if not re.match(r"^[A-Za-z0-9_.-]{1,64}$", tile_id) or tile_id in (".", ".."):
        raise ValueError(f"tile id {tile_id!r} cannot name a lock folder")
    return Path(cubes_root) / ".sitsmon-tiles" / tile_id


@contextlib.contextmanager
def tile_lock(cubes_root: Path | str, tile_id: str, wait: bool | float = False, command: str | None = None,
              ledger_url: str | None = None) -> Iterator[None]:
    """The only ingest writer of one tile until exit: what a distributed backfill task holds while it
    writes its tile (tasks of other tiles run side by side; a rerun of a task whose worker was lost
    waits for, or is refused by, a first attempt still alive). The same file lock (and PostgreSQL
    advisory lock with a PostgreSQL ledger) as :func:`writer_locks`, on the tile's lock folder."""
    with writer_locks([tile_lock_dir(cubes_root, tile_id)], "ingest", wait, command, ledger_url):
        yield
