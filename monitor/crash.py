"""Kill points for the crash tests: ``SITSMON_MONITOR_KILL_AT=point:n`` SIGKILLs this process the n-th
time it reaches ``point`` (one of ``POINTS``), as a real crash would. Unset (always, outside tests): no-op."""

from __future__ import annotations

import os
import signal

POINTS = ("after_step", "after_alerts", "after_sinks", "after_state", "before_commit")
_seen: dict[str, int] = {}


def kill_point(point: str) -> None:
    spec = os.environ.get("SITSMON_MONITOR_KILL_AT")
    if not spec:
        return
    name, _, count = spec.partition(":")
    if name != point:
        return
    _seen[point] = _seen.get(point, 0) + 1
    if _seen[point] >= int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
