"""Run one poll over a mini archive in a subprocess that SIGKILLs itself at a chosen point.

    python -m tests.ingest.kill_runner WORK ARCHIVE [block:N | commit:N | publish:N]

``block:N`` dies after the N-th spatial block written (mid data write), ``commit:N`` in the N-th
commit after the provenance and before the time index, ``publish:N`` at the N-th bus message
(slot and series committed, ledger not yet updated). Without a kill point the poll completes.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from ingest import cube as cube_mod
from ingest.events import RecordingPublisher
from ingest.ledger import open_ledger
from ingest.poller import Poller, WatchConfig
from ingest.types import TileGrid
from tests.ingest.helpers import ListSource, parcels_gdf


def main(argv: list[str]) -> int:
    work, archive = Path(argv[0]), Path(argv[1])
    kill = argv[2] if len(argv) > 2 else ""
    print(json.dumps(poll(work, archive, kill).to_dict()))
    return 0


def poll(work: Path, archive: Path, kill: str = ""):
    """One poll; ``kill`` as in the module docstring (only meant for a subprocess)."""
    what, _, n = kill.partition(":")
    calls = {"n": 0}

    def tick() -> None:
        calls["n"] += 1
        if calls["n"] == int(n):
            os.kill(os.getpid(), signal.SIGKILL)

    if what == "block":
        original = cube_mod.CubeWriter.write_block

        def write_block(self, *a, **k):
            original(self, *a, **k)
            tick()

        cube_mod.CubeWriter.write_block = write_block
    elif what == "commit":
        original_c = cube_mod.CubeWriter.commit_slot

        def commit_slot(self, sensor, index, new, slot, time_s, item_ids, meta):
            g = self.group(sensor)
            g["item_ids"][index] = ",".join(item_ids)
            tick()
            original_c(self, sensor, index, new, slot, time_s, item_ids, meta)

        cube_mod.CubeWriter.commit_slot = commit_slot
    manifest = json.loads((archive / "archive.json").read_text())
    grid = TileGrid.from_dict(manifest["tiles"][0])
    items = [json.loads(line) for f in sorted((archive / "items").glob("*.ndjson")) for line in f.read_text().splitlines()]

    class Publisher(RecordingPublisher):
        def publish(self, topic, key, value):
            if what == "publish":
                tick()
            super().publish(topic, key, value)

    poller = Poller([ListSource(items)], open_ledger(work / "ledger.sqlite"), work / "cubes", work / "series",
                    WatchConfig(tiles=(grid.tile_id,), start_s=0), grids={grid.tile_id: grid},
                    parcels=parcels_gdf(grid), publisher=Publisher(), asset_root=archive, chunk=32)
    return poller.poll_once()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
