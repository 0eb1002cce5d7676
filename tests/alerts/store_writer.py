"""A writer process for the store concurrency tests: ``python -m tests.alerts.store_writer URL NAME
RUNS PER_RUN GO_FILE`` waits for GO_FILE to exist, then stores RUNS runs of PER_RUN distinct alerts,
each run one ``upsert_many`` (as one ``sitsmon detect --store`` run does). Exit 0 when all stored."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from alerts.series import to_days
from alerts.store import open_store
from alerts.types import Alert, Event


def run_alerts(name: str, run: int, per_run: int) -> list[Alert]:
    out = []
    for i in range(per_run):
        d = to_days("2024-04-01") + i
        ev = Event(parcel_id=f"{name}-{run}-{i}", event="mowing", date=d, window=(d - 2, d + 1), confidence=0.7,
                   evidence={"writer": name, "run": run})
        out.append(Alert.from_event(ev, tile_id="T", detected_at=datetime(2024, 6, 1, tzinfo=UTC)))
    return out


def main(argv: list[str]) -> int:
    url, name, runs, per_run, go = argv[0], argv[1], int(argv[2]), int(argv[3]), Path(argv[4])
    deadline = time.monotonic() + 60
    while not go.exists():
        if time.monotonic() > deadline:
            return 3
        time.sleep(0.005)
    with open_store(url) as store:
        for run in range(runs):
            assert store.upsert_many(run_alerts(name, run, per_run)) == per_run
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
