"""A simulated clock over a catalogue: the demo's way of replaying an archive "as if live".

``PublishedBy`` wraps a source so that a search only returns the items already published at the
clock's current time (STAC ``published``, else ``created``, else the acquisition time): what a live
catalogue would have shown at that moment, including items published days after their acquisition.
The poller is given the same clock, so its watermarks and look-back windows behave as they would live.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ingest.items import parse_time


def published_s(item: dict[str, Any]) -> int:
    props = item.get("properties") or {}
    for name in ("published", "created", "datetime"):
        if props.get(name):
            return int(parse_time(props[name]))
    return 0


class SimulatedClock:
    """A clock that only moves when told to (seconds since 1970)."""

    def __init__(self, now_s: int) -> None:
        self.now_s = int(now_s)

    def __call__(self) -> float:
        return float(self.now_s)

    def advance_to(self, now_s: int) -> None:
        if now_s < self.now_s:
            raise ValueError("a simulated clock never goes back")
        self.now_s = int(now_s)


class PublishedBy:
    """``source`` as seen at ``clock()``: items published later are not there yet."""

    def __init__(self, source: Any, clock: Callable[[], float]) -> None:
        self.source = source
        self.clock = clock
        self.name = source.name

    def search(self, *args: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
        now = self.clock()
        for item in self.source.search(*args, **kwargs):
            if published_s(item) <= now:
                yield item

    def __getattr__(self, name: str) -> Any:
        return getattr(self.source, name)
