"""Run one poll over a mini archive in a subprocess that SIGKILLs itself at a chosen point.

    python -m tests.ingest.kill_runner WORK ARCHIVE [block:N | commit:N | publish:N] [STORES]

``block:N`` dies after the N-th spatial block written (mid data write), ``commit:N`` in the N-th
commit after the provenance and before the time index, ``publish:N`` at the N-th bus message
(slot and series committed, ledger not yet updated), ``create:N`` after the N-th array of a new
cube's layout (cube creation), ``compact-write:N`` in the N-th compaction with its temporary
written but not renamed, ``compact-unlink:N`` in the N-th compaction after the compacted file is in
place and before the folded slot files are removed, ``time:S`` S seconds after the poll starts
(whatever it is doing then), ``step:N`` just before the N-th write of any kind (see
:func:`count_steps`). Without a kill point the poll completes and prints its report with ``poll_s``,
the seconds the poll took (from the same start as ``time:S``), and ``steps``, the writes it made.

Every bus message is appended to ``WORK/events.jsonl`` as it is published (so the messages of a
killed run and of its restart can be compared with an uninterrupted run's). Parcel series are
compacted once a tile has 2 slot files, so that a poll of the mini archive compacts twice.
``STORES`` (an ``s3://bucket/prefix``): cubes and series go under ``STORES/cubes`` and ``STORES/series``
instead of ``WORK`` (the endpoint and credentials come from the environment).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import zarr

from ingest import cube as cube_mod
from ingest import poller as poller_mod
from ingest import series as series_mod
from ingest.events import RecordingPublisher
from ingest.ledger import SqliteLedger, open_ledger
from ingest.poller import Poller, WatchConfig
from ingest.types import TileGrid
from tests.ingest.helpers import ListSource, parcels_gdf


def main(argv: list[str]) -> int:
    work, archive = Path(argv[0]), Path(argv[1])
    kill = argv[2] if len(argv) > 2 else ""
    stores = argv[3] if len(argv) > 3 else ""
    steps = {"n": 0}
    if kill == "" or kill.startswith("step:"):
        count_steps(steps, int(kill.partition(":")[2] or 0))
        kill = ""
    t0 = time.perf_counter()
    report = poll(work, archive, kill, stores).to_dict()
    print(json.dumps({**report, "poll_s": time.perf_counter() - t0, "steps": steps["n"]}))
    return 0


def count_steps(steps: dict[str, int], kill_at: int) -> None:
    """Count every write the poll makes (cube layout arrays, block writes, commits, series files,
    compactions, ledger records, bus messages); SIGKILL just before write number ``kill_at`` (0: never)."""
    def step() -> None:
        steps["n"] += 1
        if steps["n"] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    def counted(owner: object, name: str, when=lambda *a, **k: True) -> None:
        original = getattr(owner, name)

        def wrapper(*a, **k):
            if when(*a, **k):
                step()
            return original(*a, **k)

        setattr(owner, name, wrapper)

    counted(zarr.Group, "create_array", lambda self, *a, **k: ".creating-" in str(self.store_path))
    for name in ("begin_slot", "write_block", "commit_slot"):
        counted(cube_mod.CubeWriter, name)
    counted(series_mod, "_atomic_write")  # slot files and compacted files
    counted(poller_mod, "compact_series")
    counted(SqliteLedger, "_upsert")  # every item status change
    counted(RecordingPublisher, "publish")


def poll(work: Path, archive: Path, kill: str = "", stores: str = ""):
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
    elif what == "create":
        original_a = zarr.Group.create_array

        def create_array(self, *a, **k):
            out = original_a(self, *a, **k)
            if ".creating-" in str(self.store_path):  # only the layout of a new cube, not its parcel raster
                tick()
            return out

        zarr.Group.create_array = create_array
    elif what in ("compact-write", "compact-unlink"):
        original_w = series_mod._atomic_write
        original_cs = series_mod.compact_series

        def atomic_write(table, path):
            if what == "compact-write" and path.name == series_mod.COMPACT:
                original_replace = series_mod.os.replace
                series_mod.os.replace = lambda *a: (tick(), original_replace(*a))
                try:
                    return original_w(table, path)
                finally:
                    series_mod.os.replace = original_replace
            return original_w(table, path)

        def compact_series(root, tile_id, min_files=1):
            if what == "compact-unlink" and len(series_mod._slot_files(Path(root) / tile_id)) >= max(1, min_files):
                original_unlink = Path.unlink

                def unlink(self, *a, **k):
                    tick()
                    return original_unlink(self, *a, **k)

                Path.unlink = unlink
                try:
                    return original_cs(root, tile_id, min_files)
                finally:
                    Path.unlink = original_unlink
            return original_cs(root, tile_id, min_files)

        series_mod._atomic_write = atomic_write
        poller_mod.compact_series = compact_series
    elif what == "time":
        timer = threading.Timer(float(n), lambda: os.kill(os.getpid(), signal.SIGKILL))
        timer.daemon = True
        timer.start()
    manifest = json.loads((archive / "archive.json").read_text())
    grid = TileGrid.from_dict(manifest["tiles"][0])
    items = [json.loads(line) for f in sorted((archive / "items").glob("*.ndjson")) for line in f.read_text().splitlines()]

    log = work / "events.jsonl"
    work.mkdir(parents=True, exist_ok=True)

    class Publisher(RecordingPublisher):
        def publish(self, topic, key, value):
            if what == "publish":
                tick()
            super().publish(topic, key, value)
            with open(log, "a") as f:
                f.write(json.dumps({"topic": topic, "key": key, "value": value}, sort_keys=True) + "\n")
                f.flush()
                os.fsync(f.fileno())

    cubes, series = (f"{stores}/cubes", f"{stores}/series") if stores else (work / "cubes", work / "series")
    poller = Poller([ListSource(items)], open_ledger(work / "ledger.sqlite"), cubes, series,
                    WatchConfig(tiles=(grid.tile_id,), start_s=0), grids={grid.tile_id: grid},
                    parcels=parcels_gdf(grid), publisher=Publisher(), asset_root=archive, chunk=32,
                    compact_after=2)
    return poller.poll_once()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
