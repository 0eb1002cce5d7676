"""``monitor replay``'s block path: fold blocks of acquisitions with the chunkwise form of the encoder.

The stream folds one acquisition at a time (``monitor.step.step_tile``: forecast, recurrent step,
detectors). A replay knows the whole period, so per tile and per block of up to ``block_size``
acquisitions (bounded memory: the block's tokens for every row of the tile, and the encoder's
intermediates for ``row_block`` rows at a time) it:

1. reads the block's slots from the series store (the stream's own reader, ``Monitor.read_rows``);
2. folds them into the encoder state in one call of the chunkwise form per row block
   (:func:`sits.models.block_fold.fold_block`), instead of one recurrent step per acquisition;
3. takes from the same call what the stream needs before each view: the state's row fields before each
   token (the intra-block outputs), and from them the S2 forecast (expectation and std) of every row
   of each S2 view, as the stream computes it before folding the view in;
4. steps the detectors per acquisition, in order, on those expectations (``monitor.step.detect_step``,
   the stream's own), then does each acquisition's effects as the stream does
   (``Monitor.fold_effects``: expectations, alerts, sinks).

The states equal the stream's to fp32 tolerance (the chunkwise form sums the same terms in another
order) and the alerts are the same (tested in ``tests/monitor/test_replay_parallel.py``). A block ends
where the stream would write a rewind point that outlives the replay (the last ``retention_days``), so
those rewind points hold the same folds as the stream's.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from monitor.inputs import SlotKey, encoder_observation
from monitor.step import StepResult, TileState, _t_last_seconds, detect_step, known_rows

DAY_S = 86400
BLOCK_SIZE = 32  # acquisitions per block: all of a tile's rows × 32 tokens stay a few hundred MB at 100 000 rows
ROW_BLOCK_BYTES = 256 * 2**20  # the encoder's intermediates per row block


def row_block_for(model, n_tokens: int) -> int:
    """Rows per encoder call: the intra-chunk decay and score matrices ``[R, H, L, L]`` and about a dozen
    ``[R, T, d_model]`` activations within :data:`ROW_BLOCK_BYTES`."""
    cfg = model.config
    chunk = min(n_tokens, cfg.chunk_size)
    per_row = 4 * (3 * cfg.n_heads * chunk * chunk + 12 * n_tokens * cfg.d_model)
    return int(max(256, min(16384, ROW_BLOCK_BYTES // max(per_row, 1))))


def _token_block(obs_list, model):
    """The ``[N, T]`` token batch of ``T`` acquisitions (one ``[N, 1]`` batch each, as the stream makes them)."""
    from sits.tokens import TokenBatch, batch_observation

    parts = [batch_observation(obs, model.normalization, model.device) for obs in obs_list]
    return TokenBatch(*(torch.cat([getattr(p, name) for p in parts], dim=1) for name in TokenBatch.__slots__))


def fold_encoder_block(state: TileState, keys: Sequence[SlotKey], rows: Sequence[pd.DataFrame], model,
                       mode: str = "chunk") -> list[tuple[np.ndarray, np.ndarray] | None]:
    """Fold the acquisitions ``rows`` (known rows only, none empty) into ``state.encoder`` in the ``mode``
    form; returns per acquisition the S2 forecast ``(expected, std)`` ``[N]`` made before it (NaN for rows
    without an observation; None for S1)."""
    from sits.models.block_fold import fold_block, forecast_before

    t_last_s = _t_last_seconds(state.encoder)
    obs_list = [encoder_observation(r, state.parcel_ids, model, t_last_s)[0] for r in rows]
    tb = _token_block(obs_list, model)
    n, n_tokens = tb.shape
    s2 = [j for j, k in enumerate(keys) if k.sensor == "S2"]
    present = np.zeros((n, n_tokens), bool)  # the stream forecasts every row of an S2 slot, observed or not
    for j in s2:
        present[state.parcel_ids.get_indexer(rows[j]["parcel_id"]), j] = True
    present_t = torch.from_numpy(present)
    out = {j: (np.full(n, np.nan, np.float32), np.full(n, np.nan, np.float32)) for j in s2}
    step = row_block_for(model, n_tokens)
    for a in range(0, n, step):
        sl = slice(a, min(n, a + step))
        old = state.encoder.select(sl)  # views into the tile's state
        new, _, before = fold_block(model, old, tb.rows(sl), mode=mode)
        if s2:
            r, j = torch.nonzero(present_t[sl], as_tuple=True)
            if len(r):
                pred = forecast_before(model, before, r, j, tb.t_days[sl][r, j], "S2")
                mean, std = pred.ndvi()
                rr, jj = r.numpy() + a, j.numpy()
                for col in np.unique(jj):
                    pick = jj == col
                    out[int(col)][0][rr[pick]] = mean[pick]
                    out[int(col)][1][rr[pick]] = std[pick]
        for dst, src in zip(old.tensors(), new.tensors(), strict=True):
            dst.copy_(src)
    return [out.get(j) for j in range(n_tokens)]


def step_block(state: TileState, keys: Sequence[SlotKey], item_ids: Sequence[str], rows: Sequence[pd.DataFrame],
               model, detectors, mode: str = "chunk", clock=time.perf_counter) -> list[StepResult]:
    """Fold a block of acquisitions (in key order; ``rows`` prepared as ``step_tile`` takes them): the
    encoder in one chunkwise call per row block, then the detectors per acquisition. The results of
    ``step_tile`` for each, to fp32 tolerance in the encoder's outputs."""
    cleaned = [known_rows(state, k, r) for k, r in zip(keys, rows, strict=True)]
    live = [j for j, (r, _) in enumerate(cleaned) if not r.empty]
    t0 = clock()
    forecasts = fold_encoder_block(state, [keys[j] for j in live], [cleaned[j][0] for j in live], model, mode) \
        if live else []
    encoder_s = (clock() - t0) / max(len(live), 1)
    by_key = dict(zip(live, forecasts, strict=True))
    results = []
    for j, key in enumerate(keys):
        r, unknown = cleaned[j]
        if r.empty:
            state.folded[key] = item_ids[j]
            results.append(StepResult(key, [], 0, unknown, None, {}))
            continue
        expected, expected_std = by_key[j] or (None, None)
        results.append(detect_step(state, key, item_ids[j], r, unknown, expected, expected_std, model, detectors,
                                   {"encoder": encoder_s}, clock))
    return results


def kept_checkpoints(keys: Sequence[SlotKey], last_checkpoint_s: int | None, checkpoint_days: float,
                     retention_days: float) -> set[SlotKey]:
    """The keys after which the stream, folding ``keys`` one by one, writes a rewind point that is still
    kept at the end (``Monitor._maybe_checkpoint``: the first acquisition of each ``checkpoint_days``
    period; pruned when older than ``retention_days`` before the newest one, except the newest of those:
    ``TileStore.prune_checkpoints``)."""
    every = int(checkpoint_days * DAY_S)
    points, last = [], last_checkpoint_s
    for key in keys:
        if last is None or key.time_s // every > last // every:
            points.append(key)
            last = key.time_s
    if not points:
        return set()
    keep_after = points[-1].time_s - int(retention_days * DAY_S)
    older = [k for k in points if k.time_s < keep_after]
    return {k for k in points if k.time_s >= keep_after} | set(older[-1:])


def blocks(keys: Sequence[SlotKey], block_size: int, stops: set[SlotKey]) -> list[list[SlotKey]]:
    """``keys`` in order, cut into blocks of at most ``block_size``, each of ``stops`` ending one."""
    out: list[list[SlotKey]] = [[]]
    for key in keys:
        out[-1].append(key)
        if len(out[-1]) >= block_size or key in stops:
            out.append([])
    return [b for b in out if b]


REWIND_POINTS = ("stream", "blocks")


def _campaign_runs(block: list[SlotKey], rows: list[pd.DataFrame], calendar) -> list[tuple[int, list, list]]:
    """``block`` cut where the campaign changes: ``(campaign, keys, rows)`` in order."""
    from monitor.campaigns import campaign_of_rows

    runs: list[tuple[int, list, list]] = []
    for key, r in zip(block, rows, strict=True):
        c = campaign_of_rows(r, key, calendar)
        if not runs or runs[-1][0] != c:
            runs.append((c, [], []))
        runs[-1][1].append(key)
        runs[-1][2].append(r)
    return runs


def fold_period(monitor, tile, desired: dict[SlotKey, str], block_size: int = BLOCK_SIZE,
                mode: str = "chunk", rewind_points: str = "blocks") -> list[StepResult]:
    """``Monitor.converge`` for a replay: rewind if needed, then fold the rest of ``desired`` block by block.

    ``rewind_points``: "blocks" (the default) — a rewind point at a block's end when a new
    ``checkpoint_days`` period began in it: one state write per block of up to ``block_size``
    acquisitions (a later late arrival into the replayed period refolds up to a block more); "stream" —
    the rewind points the stream would keep (blocks end there, so in the last ``retention_days`` blocks
    are short and the replay writes as many states as the stream: about one per ``checkpoint_days``,
    which on a bench tile costs as much as folding four acquisitions)."""
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    if rewind_points not in REWIND_POINTS:
        raise ValueError(f"rewind_points {rewind_points!r} is not one of {', '.join(REWIND_POINTS)}")
    monitor.rewind_for(tile, desired, allow_empty=True)
    last = tile.state.last_key
    keys = sorted(k for k in desired if last is None or k > last)
    cfg = monitor.config
    stops = kept_checkpoints(keys, tile.last_checkpoint_s, cfg.checkpoint_days, cfg.retention_days) \
        if rewind_points == "stream" else set()
    results: list[StepResult] = []
    for block in blocks(keys, block_size, stops):
        t0 = time.perf_counter()
        rows = [monitor.read_rows(tile, key) for key in block]
        read_s = (time.perf_counter() - t0) / len(block)
        done = []
        for run in _campaign_runs(block, rows, monitor.config.calendar):  # the stream's rebase between campaigns
            monitor.enter_campaign(tile, run[0])
            done += step_block(tile.state, run[1], [desired[k] for k in run[1]], run[2], monitor.model,
                               monitor.detectors, mode=mode)
        for key, result in zip(block, done, strict=True):
            result.seconds["read"] = read_s
            monitor.fold_effects(tile, key, result)
        tile.unsaved += len(block)  # counted as Monitor._fold counts steps: a rewind point here is also the save
        if rewind_points == "blocks" or block[-1] in stops:
            t0 = time.perf_counter()
            monitor._maybe_checkpoint(tile, block[-1])
            done[-1].seconds["state"] = time.perf_counter() - t0
        results.extend(done)
    return results
