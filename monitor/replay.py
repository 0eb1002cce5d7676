"""``monitor replay``: fold a period of the parcel-series store into the tiles' states, without the bus.

The acquisitions come from the series store itself (every slot ingest or ``ingest import`` wrote), in
the same canonical order the stream uses. By default (``form="chunk"``) they are folded block by block
with the chunkwise form of the encoder (``monitor.replay_block``: one encoder call per block of
acquisitions instead of one recurrent step per acquisition; the detectors still step per acquisition),
which gives the stream's states to fp32 tolerance and its alerts (tested); ``form="recurrent"`` folds
them through ``Monitor.converge``, the stream's own path, bit for bit. A replay after a model upgrade
(another checkpoint) writes a namespace of its own. Replay saves the state once per tile instead of
once per acquisition and commits nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from contracts import storage
from ingest.series import read_series, series_tiles
from monitor.inputs import SlotKey


def series_slots(series_dir: Path, tile_id: str) -> dict[SlotKey, str]:
    """Every acquisition slot of a tile in the series store: key → item ids."""
    table = read_series(series_dir, tile_id).select(["time", "sensor", "slot", "item_ids"])
    if table.num_rows == 0:
        return {}
    frame = table.to_pandas().drop_duplicates(["sensor", "slot"])
    times = (pd.to_datetime(frame["time"], utc=True) - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    out: dict[SlotKey, str] = {}
    for t, sensor, slot, ids in zip(times, frame["sensor"], frame["slot"], frame["item_ids"], strict=True):
        out[SlotKey.of(int(t), sensor, slot)] = str(ids)
    return out


def tiles_of(series_dir: Path | str) -> list[str]:
    """The tiles of the series store, a local folder or an s3:// prefix."""
    return sorted(storage.name(t) for t in series_tiles(series_dir))


FORMS = ("chunk", "parallel", "recurrent")


def replay_period(monitor, start: str, end: str, tiles: Sequence[str] | None = None,
                  progress: Callable[[str], None] | None = None, lights: bool = True, *, form: str = "chunk",
                  block_size: int | None = None, rewind_points: str = "blocks") -> dict[str, Any]:
    """Fold every slot up to ``end`` (inclusive, by day) into the tiles' states; slots before ``start`` come
    from the newest rewind point before it (or are folded again from the start of the store).

    ``form``: "chunk" or "parallel" (the encoder's block forms, ``block_size`` acquisitions per call,
    default :data:`monitor.replay_block.BLOCK_SIZE`) or "recurrent" (the stream's step). ``rewind_points``
    (block forms): "blocks" (at block ends, the default: one state write per block) or "stream" (the
    rewind points the stream would keep; see :func:`monitor.replay_block.fold_period`)."""
    from monitor.replay_block import BLOCK_SIZE, fold_period

    if form not in FORMS:
        raise ValueError(f"replay form {form!r} is not one of {', '.join(FORMS)}")
    block_size = BLOCK_SIZE if block_size is None else int(block_size)
    if block_size < 1:
        raise ValueError(f"replay block_size must be >= 1, got {block_size}")
    t_start = int(pd.Timestamp(start, tz="UTC").timestamp())
    t_end = int((pd.Timestamp(end, tz="UTC") + pd.Timedelta(days=1)).timestamp()) - 1
    if t_end < t_start:
        raise ValueError(f"--end {end} is before --start {start}")
    out: dict[str, Any] = {"tiles": {}, "acquisitions": 0, "alerts": 0}
    started = time.perf_counter()
    stages: dict[str, float] = {}
    for tile_id in tiles or tiles_of(monitor.config.series_dir):
        slots = {k: v for k, v in series_slots(monitor.config.series_dir, tile_id).items() if k.time_s <= t_end}
        if not slots:
            raise ValueError(f"tile {tile_id}: no acquisition in the series store up to {end}")
        tile = monitor.tile(tile_id)
        before = set(tile.state.folded)
        desired = {**{k: v for k, v in tile.state.folded.items() if k.time_s < t_start}, **slots}
        if form == "recurrent":
            results = monitor.converge(tile, desired, allow_empty=True)
        else:
            results = fold_period(monitor, tile, desired, block_size=block_size, mode=form,
                                  rewind_points=rewind_points)
        tile.store.append_applied_many([(key, slots[key]) for key in sorted(set(slots) - before)])
        t0 = time.perf_counter()
        monitor._save(tile, force=True)  # unless the last rewind point already wrote this state
        stages["state"] = stages.get("state", 0.0) + time.perf_counter() - t0
        for r in results:
            for stage, sec in r.seconds.items():
                stages[stage] = stages.get(stage, 0.0) + sec
        n_alerts = sum(len(r.alerts) for r in results)
        out["tiles"][tile_id] = {"acquisitions": len(results), "alerts": n_alerts}
        out["acquisitions"] += len(results)
        out["alerts"] += n_alerts
        if progress is not None:
            progress(f"replay {tile_id}: {len(results)} acquisitions folded, {n_alerts} alerts")
    if lights:
        monitor.update_lights(out["tiles"])
    out["seconds"] = round(time.perf_counter() - started, 3)
    out["namespace"] = monitor.namespace
    out["form"] = form
    out["block_size"] = None if form == "recurrent" else block_size
    out["stages_s"] = {k: round(v, 3) for k, v in sorted(stages.items())}
    return out
