"""``ingest backfill`` on a Dask ``distributed`` cluster: tasks by tile and time block.

This process (the driver) holds the data dir's ingest lock for the whole run (as a single-process
backfill does), searches the sources, and groups the new items by tile and slot, exactly as
:meth:`ingest.poller.Poller.backfill`. Each tile's slots, in acquisition order, are cut into blocks of
``block_days``; one task per block ingests its slots with the per-tile code
(:meth:`~ingest.poller.Poller.ingest_tile`) in a worker process. A block's task takes the previous
block of its tile as a dependency, so a cube's steps are appended in time order, while the tiles run
side by side. Each task holds its tile's writer lock (:func:`ingest.locks.tile_lock`); the ledger is
written from several processes (SQLite in WAL mode with a busy timeout, one transaction per
statement; PostgreSQL as it is).

A task whose worker dies is run again by the scheduler (and a task that raised ``retries`` times):
``ingest_slot`` rebuilds a slot from the ledger, so a slot half written by the lost attempt is
written again whole, and slots the lost attempt finished are skipped (their items are no longer
``pending``). The result equals the single-process backfill (tests/ingest/test_backfill_dask.py).

``make_poller``: a picklable callable (a module function or a ``functools.partial``) that builds the
:class:`~ingest.poller.Poller` — in the driver and once per worker process and run.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from typing import Any

from contracts.dask import DaskOptions, banner, connect
from ingest.cube import remove_orphan_creations
from ingest.locks import tile_lock
from ingest.pipeline import Candidate
from ingest.poller import DAY, Poller, PollReport
from ingest.series import remove_orphan_temporaries
from ingest.types import ItemStatus, Sensor

Slots = dict[tuple[Sensor, str], list[Candidate]]
LOCK_WAIT_S = 300.0  # a rerun waits this long for a first attempt that is still alive (a lost, not dead, worker)

_POLLERS: dict[str, Poller] = {}  # per worker process: the poller of each run


def _poller(run_id: str, make_poller: Callable[[], Poller]) -> Poller:
    if run_id not in _POLLERS:
        _POLLERS[run_id] = make_poller()
    return _POLLERS[run_id]


def close_run(run_id: str) -> None:
    """Close this worker's poller of the run (ledger connection, bus)."""
    poller = _POLLERS.pop(run_id, None)
    if poller is None:
        return
    for closing in (getattr(poller.publisher, "close", None), poller.ledger.close):
        if closing is not None:
            closing()


def time_blocks(poller: Poller, slots: Slots, block_days: float) -> list[Slots]:
    """A tile's slots in acquisition order, cut into blocks of ``block_days`` from its first slot
    (``block_days`` <= 0: one block)."""
    order = poller.slot_order(slots)
    if not order:
        return []
    first_s = min(c.info.datetime_s for c in slots[order[0]])
    blocks: dict[int, Slots] = {}
    for key in order:
        t_s = min(c.info.datetime_s for c in slots[key])
        k = int((t_s - first_s) // (block_days * DAY)) if block_days > 0 else 0
        blocks.setdefault(k, {})[key] = slots[key]
    return [blocks[k] for k in sorted(blocks)]


def ingest_block(make_poller: Callable[[], Poller], run_id: str, tile_id: str, slots: Slots, last: bool,
                 after: Any = None) -> dict[str, Any]:
    """One task: a time block of one tile, under the tile's writer lock. ``after``: the previous block's
    result (only a dependency: it makes the blocks of a tile run in order)."""
    started = time.perf_counter()
    poller = _poller(run_id, make_poller)
    ledger_url = getattr(poller.ledger, "dsn", None)
    with tile_lock(poller.cubes_root, tile_id, wait=LOCK_WAIT_S, command=f"sitsmon ingest backfill task {tile_id}",
                   ledger_url=ledger_url):
        # What a killed attempt left behind (temporaries of dead PIDs only; live writers' are kept).
        remove_orphan_creations(poller.cubes_root)
        remove_orphan_temporaries(poller.series_root, tile_id)
        todo: Slots = {}
        for key, cands in slots.items():  # on a rerun: the slots the lost attempt finished are skipped
            left = [c for c in cands if (e := poller.ledger.get(c.info.collection, c.info.item_id)) is None
                    or e.status is ItemStatus.PENDING]
            if left:
                todo[key] = left
        results = poller.ingest_tile(tile_id, todo, compact=last) if todo else []
        if getattr(poller.publisher, "flush", None) is not None:
            poller.publisher.flush()
    return {"tile_id": tile_id, "slots": len(slots), "results": results, "pid": os.getpid(),
            "seconds": round(time.perf_counter() - started, 3)}


def backfill_distributed(make_poller: Callable[[], Poller], start_s: int, end_s: int, *,
                         options: DaskOptions = DaskOptions(), client: Any = None, block_days: float = 30.0,
                         progress: Any = None, say: Callable[[str], None] | None = None) -> PollReport:
    """``ingest backfill`` of [start_s, end_s] as Dask tasks by tile and time block; the report of
    :meth:`Poller.backfill`. ``client``: an open ``distributed.Client`` (else ``options``);
    ``progress``: a tqdm-like bar (``total``, ``update``, ``refresh``), one step per slot;
    ``say``: the progress lines."""
    if end_s < start_s:
        from ingest.errors import ConfigError

        raise ConfigError(f"backfill end {end_s} is before start {start_s}")
    if client is None:
        with connect(options) as own:
            return backfill_distributed(make_poller, start_s, end_s, options=options, client=own,
                                        block_days=block_days, progress=progress, say=say)
    from distributed import as_completed

    tell = say or (lambda _text: None)
    poller = make_poller()
    report = PollReport()
    try:
        poller.remove_orphans()
        # Items left pending by an interrupted run first, then the window: an item in both counts as a
        # duplicate, as in the single-process backfill (which ingests the pending ones before searching).
        by_tile = poller.group(poller.pending_candidates() + poller.search_window(start_s, end_s, report), report)
        poller.check_campaigns(by_tile)  # a missing campaign layer refuses the run before any task starts
        plan = {tile_id: time_blocks(poller, by_tile[tile_id], block_days) for tile_id in sorted(by_tile)}
    finally:
        poller.ledger.close()
    n_tasks = sum(len(blocks) for blocks in plan.values())
    if progress is not None:
        progress.total = (progress.total or 0) + sum(len(s) for s in by_tile.values())
        progress.refresh()
    line, _ = banner(client, "backfill", n_tasks, f"task(s) over {len(plan)} tile(s)")
    tell(line)
    if not n_tasks:
        return report
    run_id = uuid.uuid4().hex
    futures = []
    for tile_id, blocks in plan.items():
        previous = None
        for k, slots in enumerate(blocks):
            previous = client.submit(ingest_block, make_poller, run_id, tile_id, slots, k == len(blocks) - 1,
                                     previous, key=f"ingest-{tile_id}-{k:04d}-{run_id[:8]}",
                                     retries=options.retries, pure=False)
            futures.append(previous)
    try:
        for done, future in enumerate(as_completed(futures), start=1):
            result = future.result()
            for r in result["results"]:
                report.add(r)
            if progress is not None:
                progress.update(result["slots"])
            tell(f"backfill {result['tile_id']}: {result['slots']} slot(s) in {result['seconds']} s "
                 f"({done}/{n_tasks} tasks)")
    except BaseException:
        client.cancel(futures)
        raise
    finally:
        try:
            client.run(close_run, run_id)
        except Exception:  # noqa: BLE001 - a worker lost at the end leaves nothing to close
            pass
    return report
