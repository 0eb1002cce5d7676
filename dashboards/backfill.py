"""Backfill jobs: ``sitsmon monitor replay`` for some tiles and a period, started by an operator.

The dashboard never imports the monitor: a job is the CLI run as a subprocess
(``sys.executable -m sitsmon monitor replay --start --end --tiles ...``) in its own process group,
its stdout and stderr in one log file under ``<data_dir>/backfill/``, and a row in the
``backfill_jobs`` table of the dashboard's SQLite file. The table is the truth, shared by every
worker process: a job is claimed ``queued → running`` by one conditional UPDATE, and a finished,
failed or cancelled job is never moved again.

Jobs run side by side when their tiles differ, at most ``max_running`` at once; a job sharing a tile
with a running or an older queued job waits as ``queued`` (two replays of one tile would fold the same
slots twice over, and a tile's jobs run in the order they were asked for). Progress is the log's last
line and, as numbers, the tiles replayed of the job's tiles and the acquisitions folded so far (the
replay prints one line per tile it finished, then its JSON result). Cancel sends SIGTERM to the job's process group, then
SIGKILL after :attr:`BackfillJobs.term_grace_s`. A server that stops cancels the jobs it started;
a job whose process vanished without its server seeing it end (the server was killed) reads as
``failed``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from dashboards.errors import BadRequestError, ConflictError, NotFoundError
from ingest.locks import pid_alive

logger = logging.getLogger(__name__)

STATES = ("queued", "running", "done", "failed", "cancelled")
FINAL = frozenset({"done", "failed", "cancelled"})
MAX_TILES = 500
MAX_RUNNING = 2  # replays at once: each folds on its own core
_TILE_DONE = re.compile(r"^replay (\S+): (\d+) acquisitions folded, (\d+) alerts$")
TAIL_BYTES = 4096
LOST_AFTER_S = 10.0  # a running job whose pid is gone and whose log is this old was lost with its server

_DDL = """CREATE TABLE IF NOT EXISTS backfill_jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, who TEXT NOT NULL, tiles TEXT NOT NULL, start TEXT NOT NULL,
    end TEXT NOT NULL, args TEXT NOT NULL, pid INTEGER, state TEXT NOT NULL, created_at TEXT NOT NULL,
    started_at TEXT, ended_at TEXT, returncode INTEGER, log_path TEXT NOT NULL, error TEXT)"""
_COLUMNS = ("id", "who", "tiles", "start", "end", "args", "pid", "state", "created_at", "started_at", "ended_at",
            "returncode", "log_path", "error")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def tiles_done(path: Path) -> dict[str, int]:
    """``tile → acquisitions folded`` of the tiles the job's replay has finished (from its log)."""
    try:
        text = path.read_text("utf-8", "replace")
    except OSError:
        return {}
    return {m.group(1): int(m.group(2)) for m in map(_TILE_DONE.match, text.splitlines()) if m}


def last_line(path: Path) -> str | None:
    """The log's last non-empty line (read from its end: a long replay's log is never read whole)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - TAIL_BYTES))
            lines = [ln for ln in f.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError:
        return None
    return lines[-1][-500:] if lines else None


def _marker(args_json: str) -> str:
    """What the job's command line holds and another process's hardly does: its period and tiles."""
    args = json.loads(args_json)
    return " ".join(args[args.index("--start"):args.index("--tiles") + 2])


def _is_our_job(pid: int, marker: str) -> bool:
    """Whether ``pid`` is still the job's process (a pid can be reused once the job ended)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return pid_alive(pid)  # no /proc: trust the pid
    return marker in cmdline


class BackfillJobs:
    """Start, list, watch and cancel replay jobs of one data dir (thread-safe; one per app)."""

    def __init__(self, db_path: Path, data_dir: Path, parcels: Path | None = None, *,
                 command: Sequence[str] | None = None, term_grace_s: float = 5.0,
                 max_running: int = MAX_RUNNING) -> None:
        self.db_path = Path(db_path)
        self.data_dir = Path(data_dir)
        self.log_dir = self.data_dir / "backfill"
        self.parcels = parcels
        # tests swap the program (never the replay's arguments) to try a process that ignores SIGTERM
        self.command = list(command) if command else [sys.executable, "-m", "sitsmon", "monitor", "replay"]
        self.term_grace_s = term_grace_s
        if max_running < 1:
            raise ValueError(f"max_running must be >= 1, got {max_running}")
        self.max_running = max_running
        self._lock = threading.Lock()
        self._procs: dict[int, subprocess.Popen] = {}
        self._conn = sqlite3.connect(str(self.db_path), check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(_DDL)

    # -- reading ----------------------------------------------------------------------------------

    def _row(self, job_id: int) -> dict[str, Any]:
        with self._lock:
            row = self._conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM backfill_jobs WHERE id = ?",
                                     (job_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no backfill job {job_id}")
        return dict(zip(_COLUMNS, row, strict=True))

    def _public(self, job: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in job.items() if k not in ("args", "log_path")}
        out["tiles"] = json.loads(job["tiles"])
        out["args"] = json.loads(job["args"])
        out["progress"] = last_line(Path(job["log_path"]))
        done = tiles_done(Path(job["log_path"])) if job["state"] != "queued" else {}
        out["tiles_done"] = sum(t in done for t in out["tiles"])
        out["tiles_total"] = len(out["tiles"])
        out["acquisitions_done"] = sum(done.values())
        return out

    def get(self, job_id: int) -> dict[str, Any]:
        self._reap_lost()
        return self._public(self._row(job_id))

    def list(self, tiles: set[str] | None, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        """Jobs newest first; ``tiles``: only jobs whose every tile is among them (None: all)."""
        self._reap_lost()
        with self._lock:
            rows = self._conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM backfill_jobs ORDER BY id DESC").fetchall()
        jobs = [dict(zip(_COLUMNS, r, strict=True)) for r in rows]
        if tiles is not None:
            jobs = [j for j in jobs if set(json.loads(j["tiles"])) <= tiles]
        return [self._public(j) for j in jobs[offset:offset + limit]], len(jobs)

    # -- starting ---------------------------------------------------------------------------------

    def start(self, who: str, tiles: Sequence[str], start: date, end: date) -> dict[str, Any]:
        """Queue a replay of ``tiles`` over ``start..end`` and start it when no other job runs."""
        tiles = sorted(set(tiles))
        if not tiles:
            raise BadRequestError("a backfill needs at least one tile")
        if len(tiles) > MAX_TILES:
            raise BadRequestError(f"a backfill may cover at most {MAX_TILES} tiles, got {len(tiles)}")
        if end < start:
            raise BadRequestError(f"end {end} is before start {start}")
        args = ["--data-dir", str(self.data_dir), "--start", start.isoformat(), "--end", end.isoformat(),
                "--tiles", ",".join(tiles)]
        if self.parcels is not None:
            args += ["--parcels", str(self.parcels)]
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self._lock:
            cur = self._conn.execute(
                "INSERT INTO backfill_jobs (who, tiles, start, end, args, state, created_at, log_path) "
                "VALUES (?, ?, ?, ?, ?, 'queued', ?, '')",
                (who, json.dumps(tiles), start.isoformat(), end.isoformat(), json.dumps(args), _now()))
            job_id = int(cur.lastrowid)
            self._conn.execute("UPDATE backfill_jobs SET log_path = ? WHERE id = ?",
                               (str(self.log_dir / f"job-{job_id}.log"), job_id))
        self._start_next()
        return self.get(job_id)

    def _claim_next(self) -> dict[str, Any] | None:
        """The oldest queued job that shares no tile with a running job or an older queued one, moved
        to running, while fewer than ``max_running`` run (one transaction: one claimer)."""
        cols = ", ".join(_COLUMNS)
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                running = self._conn.execute("SELECT tiles FROM backfill_jobs WHERE state = 'running'").fetchall()
                row = None
                if len(running) < self.max_running:
                    busy = {t for (tiles,) in running for t in json.loads(tiles)}
                    for cand in self._conn.execute(
                            f"SELECT {cols} FROM backfill_jobs WHERE state = 'queued' ORDER BY id").fetchall():
                        tiles = set(json.loads(cand[2]))
                        if not tiles & busy:
                            row = cand
                            break
                        busy |= tiles  # a younger job of these tiles waits behind this one
                if row is not None:
                    self._conn.execute("UPDATE backfill_jobs SET state = 'running', started_at = ? WHERE id = ?",
                                       (_now(), row[0]))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return None if row is None else dict(zip(_COLUMNS, row, strict=True))

    def _start_next(self) -> None:
        """Start every queued job that may run now."""
        while self._start_one():
            pass

    def _start_one(self) -> bool:
        job = self._claim_next()
        if job is None:
            return False
        argv = [*self.command, *json.loads(job["args"])]
        try:
            with open(job["log_path"], "ab") as log:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)  # its own group: cancel reaches its children
        except OSError as e:
            self._finish(job["id"], "failed", None, f"cannot start {argv[0]}: {e}")
            return True
        with self._lock:
            self._procs[job["id"]] = proc
            self._conn.execute("UPDATE backfill_jobs SET pid = ? WHERE id = ?", (proc.pid, job["id"]))
        logger.info("backfill job %s started (pid %s): %s", job["id"], proc.pid, " ".join(argv))
        threading.Thread(target=self._watch, args=(job["id"], proc), name=f"backfill-{job['id']}", daemon=True).start()
        return True

    def _watch(self, job_id: int, proc: subprocess.Popen) -> None:
        code = proc.wait()
        with self._lock:
            self._procs.pop(job_id, None)
        self._finish(job_id, "done" if code == 0 else "failed", code,
                     None if code == 0 else f"replay exited with status {code}")
        self._start_next()

    def _finish(self, job_id: int, state: str, code: int | None, error: str | None) -> bool:
        """Move a running job to a final state; False when it had one already (e.g. cancelled)."""
        with self._lock:
            cur = self._conn.execute(
                "UPDATE backfill_jobs SET state = ?, ended_at = ?, returncode = ?, error = ? "
                "WHERE id = ? AND state IN ('queued', 'running')", (state, _now(), code, error, job_id))
        return cur.rowcount == 1

    def _reap_lost(self) -> None:
        """Running jobs whose process is gone and that no watcher of this process follows: failed."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, pid, log_path, args, started_at FROM backfill_jobs WHERE state = 'running'").fetchall()
            watched = set(self._procs)
        for job_id, pid, log_path, args, started_at in rows:
            if job_id in watched or (pid is not None and _is_our_job(pid, _marker(args))):
                continue
            try:  # quiet for a while: not a process another worker is starting or has just reaped
                last_s = Path(log_path).stat().st_mtime
            except OSError:
                last_s = datetime.fromisoformat(started_at).timestamp()
            if time.time() - last_s >= LOST_AFTER_S:
                self._finish(job_id, "failed", None, "the replay process vanished (its server stopped before it ended)")
        self._start_next()  # a job left queued by a stopped server

    # -- cancelling -------------------------------------------------------------------------------

    def cancel(self, job_id: int) -> dict[str, Any]:
        """Cancel a queued or running job: SIGTERM to its process group, SIGKILL after the grace."""
        job = self._row(job_id)
        if job["state"] in FINAL:
            raise ConflictError(f"backfill job {job_id} is {job['state']} already")
        if not self._finish(job_id, "cancelled", None, "cancelled"):
            return self.get(job_id)  # it ended meanwhile
        pid = job["pid"]
        with self._lock:
            proc = self._procs.get(job_id)
        if pid is None and job["state"] == "running":
            # claimed but its pid not written yet: wait for it (another thread is inside _start_next)
            for _ in range(50):
                time.sleep(0.02)
                pid = self._row(job_id)["pid"]
                if pid is not None:
                    break
        if pid is not None:
            self._terminate(int(pid), proc, _marker(job["args"]))
        self._start_next()
        return self.get(job_id)

    def _terminate(self, pid: int, proc: subprocess.Popen | None, marker: str) -> None:
        def gone() -> bool:
            if proc is not None:
                return proc.poll() is not None
            return not _is_our_job(pid, marker)  # started by another worker process

        for sig in (signal.SIGTERM, signal.SIGKILL):
            if gone():
                return
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                return
            except PermissionError as e:
                logger.warning("cannot signal backfill process group %s: %s", pid, e)
                return
            deadline = time.monotonic() + self.term_grace_s
            while time.monotonic() < deadline and not gone():
                time.sleep(0.05)
        if proc is not None:
            proc.wait(5)

    def close(self) -> None:
        """Stop the jobs this process started (a job never outlives its server unwatched; queued
        ones stay queued for the next start) and close the table."""
        with self._lock:
            procs = dict(self._procs)
        for job_id, proc in procs.items():
            if self._finish(job_id, "cancelled", None, "the server stopped"):
                self._terminate(proc.pid, proc, "")
        with self._lock:
            self._conn.close()
