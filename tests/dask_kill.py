"""Kill the Dask worker that first takes a writer lock, and record who held it (the retry tests)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def kill_first_lock_holder(locks: Callable[[], Iterable[Path]], worker_pids: set[int]) -> Iterator[tuple[list, list]]:
    """While inside: watch the lock files ``locks()`` lists (their JSON names the holder's ``pid``);
    SIGKILL the first holder that is one of ``worker_pids``. Yields ``(seen, killed)``: the pids that held
    a lock, in order, and the one killed. A task holds its tile's lock while it writes, so the first holder
    dies mid-task and the next holder is the rerun the scheduler gave to another (or a new) worker."""
    seen: list[int] = []
    killed: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for lock in locks():
                try:
                    pid = json.loads(lock.read_text() or "null")["pid"]
                except (OSError, ValueError, TypeError):
                    continue
                if not seen or seen[-1] != pid:
                    seen.append(pid)
                if not killed and pid in worker_pids:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            time.sleep(0.002)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield seen, killed
    finally:
        stop.set()
        watcher.join()
    assert killed, "the watcher never saw the task take its tile's lock"
    assert len(seen) >= 2 and seen[0] == killed[0] and seen[-1] != killed[0], seen
