"""`read_slot` (one acquisition's rows) against `read_series` filtered by slot, before and after
compaction and after a rewrite; orphan temporaries of killed writers removed, live ones kept."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ingest.series import (
    COMPACT,
    compact_series,
    read_series,
    read_slot,
    remove_orphan_temporaries,
    stats_table,
    write_slot,
)
from ingest.types import Sensor

TILE = "33UXP"
PARCELS = [f"P{i:03d}" for i in range(40)]


def slot_table(sensor: Sensor, day: int, seed: int, slot: str) -> pa.Table:
    rng = np.random.default_rng(seed)
    n = len(PARCELS)
    pixels = rng.integers(0, 30, n)  # some parcels without a pixel: left out of the slot
    valid = np.minimum(pixels, rng.integers(0, 30, n))
    sums = rng.uniform(0, 3000, (n, 10 if sensor is Sensor.S2 else 2)) * valid[:, None]
    return stats_table(PARCELS, sensor, 1714730400 + day * 86400, TILE, sums, valid, pixels, (f"item-{seed}",),
                       orbit=73 if sensor is Sensor.S1 else -1, pass_="ascending" if sensor is Sensor.S1 else "",
                       slot=slot)


SLOTS = [(Sensor.S2, "20240503", 1), (Sensor.S1, "20240504-ascending", 2), (Sensor.S2, "20240508", 3),
         (Sensor.S1, "20240510-descending", 4), (Sensor.S2, "20240513", 5)]


def by_filter(root: Path, sensor: Sensor, slot: str) -> pa.Table:
    t = read_series(root, TILE, sensor=sensor)
    return t.filter(pc.equal(t["slot"], slot)).sort_by([("parcel_id", "ascending")])


def same(a: pa.Table, b: pa.Table) -> bool:
    """Equal schema and values, NaN equal to NaN (pyarrow's equals says NaN != NaN)."""
    return a.schema.equals(b.schema) and a.to_pandas().equals(b.to_pandas())


def assert_every_slot_agrees(root: Path) -> None:
    for sensor, slot, _ in SLOTS:
        got, want = read_slot(root, TILE, sensor, slot), by_filter(root, sensor, slot)
        assert got.num_rows > 0 and same(got, want), (sensor, slot)


def test_read_slot_before_and_after_compaction_and_after_a_rewrite(tmp_path):
    for sensor, slot, seed in SLOTS:
        write_slot(tmp_path, TILE, sensor, slot, slot_table(sensor, seed, seed, slot))
    assert_every_slot_agrees(tmp_path)  # slot files
    assert compact_series(tmp_path, TILE) == 5
    assert not list((tmp_path / TILE).glob("S[12]/*.parquet"))
    assert_every_slot_agrees(tmp_path)  # folded into compact.parquet
    # a slot rewritten after the compaction: its new slot file wins over the compacted rows
    sensor, slot, seed = SLOTS[2]
    new = slot_table(sensor, seed, 99, slot)
    write_slot(tmp_path, TILE, sensor, slot, new)
    got = read_slot(tmp_path, TILE, sensor, slot)
    assert same(got, by_filter(tmp_path, sensor, slot))
    assert got["item_ids"].to_pylist() == ["item-99"] * got.num_rows
    assert read_slot(tmp_path, TILE, Sensor.S2, "20990101").num_rows == 0
    assert read_slot(tmp_path, "T00XXX", Sensor.S2, "20240503").num_rows == 0


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def store(tmp_path):
    for sensor, slot, seed in SLOTS[:3]:
        write_slot(tmp_path, TILE, sensor, slot, slot_table(sensor, seed, seed, slot))
    compact_series(tmp_path, TILE)
    return tmp_path


def test_orphan_temporaries_of_dead_writers_are_removed_live_ones_kept(store):
    tile = store / TILE
    before = read_series(store).to_pandas()
    dead, live = dead_pid(), os.getppid()
    orphan = tile / f".{COMPACT}.{dead}-{'a' * 32}.tmp"  # a compaction killed before its rename
    orphan_slot = tile / "S2" / f".20240508.parquet.{dead}-{'b' * 32}.tmp"
    old_style = tile / f".{COMPACT}.{'c' * 32}.tmp"  # the earlier name, without a PID
    mine = tile / f".{COMPACT}.{os.getpid()}-{'d' * 32}.tmp"
    theirs = tile / "S1" / f".20240504-ascending.parquet.{live}-{'e' * 32}.tmp"
    for p in (orphan, orphan_slot, old_style, mine, theirs):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"PAR1 half written")
    hour_ago = time.time() - 3600
    os.utime(old_style, (hour_ago, hour_ago))
    removed = remove_orphan_temporaries(store)
    assert sorted(removed) == sorted([orphan, orphan_slot, old_style])
    assert mine.exists() and theirs.exists()  # writes in flight: this process, a live one
    assert read_series(store).to_pandas().equals(before)  # the store itself untouched
    assert remove_orphan_temporaries(store, TILE) == []


def test_a_fresh_pidless_temporary_is_kept(store):
    fresh = store / TILE / f".{COMPACT}.{'f' * 32}.tmp"  # newer than this process: maybe a running old writer
    fresh.write_bytes(b"x")
    assert remove_orphan_temporaries(store) == [] and fresh.exists()
