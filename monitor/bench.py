"""``sitsmon bench monitor``: end-to-end seconds per acquisition for N parcels, with each stage's share.

The workload is one synthetic tile of ``parcels`` parcels (grassland, cereals, maize; some mown or
harvested) and a season of acquisitions written into a parcel-series store exactly as ingest writes
it, announced on the in-process bus. Streaming: one acquisition event per poll, timed from the poll to
the committed offset (read slice → encoder step → detectors → store → sinks → state → commit).
``end_to_end_s`` is the median after the warm-up; the mean and the maximum show what the acquisitions
that also write a rewind point or the whole state cost. Replay: the same period folded by ``monitor
replay`` into a fresh namespace (traffic lights left out, as in the streamed loop). The floor, measured in
the same run: copying the tile's encoder state once (the least any state update must move). The replay
runs the chunkwise block path by default (``replay_form``), and both report their seconds per stage
summed over the period (``replay.stages_s`` against ``replay.streaming_stages_s``) and each stage's share
of their own total. ``replay_speedup``: streaming seconds over replay seconds for the same period, the
replay with its default settings; ``replay.stream_rewind_points`` is the replay that keeps the stream's
rewind points. Before anything is timed, a 200-parcel tile is folded once (``warmup_s``) so that numba's
kernel compilation (tens of seconds on a fresh checkout) is charged to neither side.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from ingest.events import ACQUISITIONS_TOPIC
from ingest.series import SCHEMA, write_slot
from ingest.types import S1_POLS, S2_BANDS

TILE = "BENCH"



def write_interchange_slots(series_dir: Path, obs: pd.DataFrame, tile_id: str) -> list[dict[str, Any]]:
    """Write normalised interchange rows into the series store, one slot per (time, sensor), and return
    the acquisition events ingest would publish for them, in acquisition order (S1 before S2 at a time)."""
    events = []
    groups = sorted(obs.groupby(["time", "sensor"]), key=lambda kv: (kv[0][0], kv[0][1] == "S2"))
    for (when, sensor), rows in groups:
        slot = when.strftime("%Y%m%dT%H%M%S") + ("-s1" if sensor == "S1" else "")
        n = len(rows)
        data: dict[str, Any] = {
            "parcel_id": rows["parcel_id"].astype(str).to_numpy(),
            "time": np.full(n, when.tz_convert("UTC").tz_localize(None).to_datetime64().astype("datetime64[s]")),
            "sensor": [sensor] * n}
        for c in (*S2_BANDS, "clear", *S1_POLS):
            data[c] = rows[c].to_numpy(np.float32)
        data["orbit"] = rows["orbit"].fillna(-1).to_numpy(np.int16)
        data.update(tile_id=[tile_id] * n, clear_fraction=rows["clear"].to_numpy(np.float32),
                    pixel_count=np.ones(n, np.int32), valid_count=np.ones(n, np.int32), **{"pass": [""] * n},
                    item_ids=[f"item-{slot}"] * n, slot=[slot] * n)
        # the campaign of the rows when they carry one; else null, read as the campaign of their date
        data["campaign"] = pa.array(pd.to_numeric(rows["campaign"], errors="coerce").astype("Int16")
                                    if "campaign" in rows.columns else [None] * n, pa.int16())
        write_slot(series_dir, tile_id, sensor, slot, pa.table(data).cast(SCHEMA).sort_by("parcel_id"))
        events.append({"schema": "sitsmon.acquisition/1", "tile_id": tile_id, "sensor": sensor,
                       "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "item_ids": [f"item-{slot}"], "cube": "",
                       "slot": slot, "series": str(Path(series_dir) / tile_id)})
    return events


def make_workload(n_parcels: int, n_acquisitions: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Parcels and a season of observations: S2 every 5 days (60 % clear), S1 every 6 days, from 1 May."""
    from alerts.series import normalise_observations

    rng = np.random.default_rng(seed)
    ids = np.array([f"{TILE}-{i:07d}" for i in range(n_parcels)])
    uses = rng.choice(["grassland", "cereal", "maize", "grassland"], size=n_parcels)
    parcels = pd.DataFrame({"parcel_id": ids, "land_use": uses, "tile_id": TILE})
    t0 = pd.Timestamp("2024-05-01", tz="UTC")
    cut = rng.uniform(20, 20 + 3 * n_acquisitions, n_parcels)
    frames = []
    for k in range(n_acquisitions):
        sensor = "S2" if k % 2 == 0 else "S1"
        day = 5.0 * (k // 2) + (0 if sensor == "S2" else 2.0)
        after = day > cut
        base = pd.DataFrame({"parcel_id": ids, "time": (t0 + pd.Timedelta(days=day)).isoformat(), "sensor": sensor})
        if sensor == "S2":
            ndvi = np.where(after, 0.4, 0.8) + rng.normal(0, 0.02, n_parcels)
            red, nir = 0.25 * (1 - ndvi), 0.25 * (1 + ndvi)
            for b, v in zip(S2_BANDS, (0.04, 0.07, None, 0.12, 0.25, 0.3, None, 0.32, 0.2, 0.1), strict=True):
                base[b] = red if b == "B04" else nir if b == "B08" else np.full(n_parcels, v)
            base["clear"] = (rng.random(n_parcels) < 0.6).astype(float)
            base["VV"] = base["VH"] = base["orbit"] = np.nan
        else:
            for b in S2_BANDS:
                base[b] = np.nan
            base["clear"] = np.nan
            vh_db = np.where(after, -20.0, -16.0) + rng.normal(0, 0.5, n_parcels)
            base["VH"], base["VV"] = 10 ** (vh_db / 10), 10 ** ((vh_db + 5) / 10)
            base["orbit"] = 73.0
        frames.append(base)
    return normalise_observations(pd.concat(frames, ignore_index=True)), parcels


def _floor_s(state, repeats: int = 5) -> float:
    """Seconds to copy the tile's encoder state once (median of ``repeats``)."""
    arrays = [t.detach().cpu().numpy() for t in state.tensors()]
    spare = [np.empty_like(a) for a in arrays]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for a, b in zip(arrays, spare, strict=True):
            np.copyto(b, a)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _warm_up(root: Path) -> float:
    """Seconds to fold a 200-parcel tile once with the stream's step: compiles (or loads from numba's cache)
    the detector and encoder kernels, so neither the stream nor the replay timed after it pays for that."""
    from monitor.config import MonitorConfig
    from monitor.replay import replay_period
    from monitor.service import Monitor

    t0 = time.perf_counter()
    obs, parcels = make_workload(200, 6, seed=1)
    write_interchange_slots(root / "series", obs, TILE)
    parcels.to_parquet(root / "parcels.parquet", index=False)
    monitor = Monitor(MonitorConfig(data_dir=root, series_dir=root / "series", parcels=root / "parcels.parquet"),
                      sinks=[])
    try:
        replay_period(monitor, "2000-01-01", "2100-01-01", lights=False, form="recurrent")
    finally:
        monitor.close()
    return time.perf_counter() - t0


def _shares(stages: dict[str, float], total_s: float) -> dict[str, float]:
    """Each stage's share of ``total_s``; "other" is what no stage timed (the bus, the applied log, Python)."""
    out = {k: round(v / total_s, 3) for k, v in stages.items()} if total_s else {}
    out["other"] = round(max(0.0, total_s - sum(stages.values())) / total_s, 3) if total_s else 0.0
    return out


def _replay(root: Path, series: Path, parcels: Path, form: str, rewind_points: str) -> tuple[float, dict[str, Any]]:
    """Seconds to replay the whole period into a fresh namespace, and replay's report (no lights: the
    streamed loop computes none either)."""
    from monitor.config import MonitorConfig
    from monitor.replay import replay_period
    from monitor.service import Monitor

    monitor = Monitor(MonitorConfig(data_dir=root, series_dir=series, parcels=parcels), sinks=[])
    try:
        t0 = time.perf_counter()
        out = replay_period(monitor, "2000-01-01", "2100-01-01", lights=False, form=form, rewind_points=rewind_points)
        return time.perf_counter() - t0, out
    finally:
        monitor.close()


def run_benchmark(n_parcels: int = 100_000, n_acquisitions: int = 8, warmup: int = 2,
                  workdir: str | Path | None = None, keep: bool = False, replay_form: str = "chunk") -> dict[str, Any]:
    from ingest.bench import PeakRSS
    from monitor.bus import make_bus
    from monitor.config import MonitorConfig
    from monitor.service import Monitor, Service

    if n_acquisitions <= warmup:
        raise ValueError(f"--acquisitions must exceed the {warmup} warm-up acquisitions")
    work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="sitsmon-bench-monitor-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        obs, parcels = make_workload(n_parcels, n_acquisitions)
        series = work / "series"
        events = write_interchange_slots(series, obs, TILE)
        parcels.to_parquet(work / "parcels.parquet", index=False)
        setup_s = time.perf_counter() - t0
        warmup_s = _warm_up(work / "warm-up")
        stream_root = work / "stream"
        bus = make_bus("memory", path=stream_root / "bus.sqlite")
        for value in events:
            bus.publish(ACQUISITIONS_TOPIC, TILE, value)
        bus.flush()
        config = MonitorConfig(data_dir=stream_root, series_dir=series, parcels=work / "parcels.parquet",
                               max_records=1)
        from alerts.sinks.kafka import KafkaAlertSink

        monitor = Monitor(config, sinks=[KafkaAlertSink(bus, config.alerts_topic)])
        service = Service(monitor, bus)
        per_acq: list[float] = []
        stages: list[dict[str, float]] = []
        reports = []
        service.on_fold = reports.append
        consumer = service._consumer()
        with PeakRSS() as mem:
            while batch := consumer.poll(timeout_s=0.2, max_records=1):
                t_start = time.perf_counter()
                service.process(batch)
                t_commit = time.perf_counter()
                service.commit()
                done = time.perf_counter()
                per_acq.append(done - t_start)
                stage = dict(reports[-1].seconds)
                stage["commit"] = done - t_commit
                stages.append(stage)
        state = monitor.tiles[TILE].state
        floor = _floor_s(state.encoder)
        tile_store = monitor.tiles[TILE].store
        checkpoints = {"count": len(tile_store.checkpoints()),  # rewind points: retained state generations
                       "state_bytes_per_parcel_on_disk": round(tile_store.state_bytes() / n_parcels, 1),
                       "retained_bytes_per_parcel": round(tile_store.checkpoint_bytes() / n_parcels, 1)}
        det_bytes = sum(np.asarray(a).nbytes for d in monitor.detectors
                        for a in d.dump(state.detectors[d.event_type]).values()
                        if np.asarray(a).dtype != object)
        service.close()
        bus.close()
        timed = per_acq[warmup:]
        timed_stages = stages[warmup:]
        stream_total = sum(per_acq)
        names = ("read", "encoder", "detectors", "store", "sinks", "state", "commit")
        stage_median = {n: statistics.median(s.get(n, 0.0) for s in timed_stages) for n in names}
        known = sum(stage_median.values()) or 1.0

        encoder_bytes = state.encoder.nbytes_per_item
        del state  # the streamed state is no longer needed: the replays' peak is their own
        replay_s, replayed = _replay(work / "replay", series, work / "parcels.parquet", replay_form, "blocks")
        fine_s, fine = _replay(work / "replay-stream-points", series, work / "parcels.parquet", replay_form, "stream")
        stream_stages = {n: round(sum(s.get(n, 0.0) for s in stages), 3) for n in names}
        end_to_end = statistics.median(timed)
        return {
            "parcels": n_parcels,
            "acquisitions": n_acquisitions,
            "end_to_end_s": round(end_to_end, 4),
            "end_to_end_us_per_parcel": round(end_to_end / n_parcels * 1e6, 3),
            "end_to_end_mean_s": round(statistics.mean(timed), 4),  # rewind points and state writes included
            "end_to_end_max_s": round(max(timed), 4),
            # every acquisition, warm-up included, and those that wrote a state (a rewind point or the regular
            # save): the median moves with how many of the timed ones write one
            "per_acquisition_s": [round(x, 3) for x in per_acq],
            "state_written_at": [i for i, st in enumerate(stages) if st.get("state", 0.0) > 1e-3],
            "budget_s": 5.0 * n_parcels / 100_000,
            "stages_s": {n: round(v, 4) for n, v in stage_median.items()},
            "stage_share": {n: round(v / known, 3) for n, v in stage_median.items()},
            "floor": {"state_copy_s": round(floor, 5), "ratio": round(end_to_end / floor, 1) if floor else None},
            # replay with its default settings (chunkwise blocks, a rewind point per block) against streaming
            # the same period, both after the same kernel warm-up; shares of each one's own total seconds
            "replay_speedup": round(stream_total / replay_s, 2),
            "replay": {"form": replay_form, "block_size": replayed.get("block_size"), "rewind_points": "blocks",
                       "seconds": round(replay_s, 3), "streaming_seconds": round(stream_total, 3),
                       "stages_s": replayed["stages_s"], "streaming_stages_s": stream_stages,
                       "stage_share": _shares(replayed["stages_s"], replay_s),
                       "streaming_stage_share": _shares(stream_stages, stream_total),
                       "parcel_acquisitions_per_s": round(n_parcels * n_acquisitions / replay_s, 1),
                       "streaming_parcel_acquisitions_per_s": round(n_parcels * n_acquisitions / stream_total, 1),
                       "speedup": round(stream_total / replay_s, 2),
                       # the same replay keeping the stream's rewind points (blocks cut there, a state per point)
                       "stream_rewind_points": {
                           "seconds": round(fine_s, 3), "stages_s": fine["stages_s"],
                           "stage_share": _shares(fine["stages_s"], fine_s),
                           "parcel_acquisitions_per_s": round(n_parcels * n_acquisitions / fine_s, 1),
                           "speedup": round(stream_total / fine_s, 2)}},
            "state_bytes_per_parcel": {"encoder": encoder_bytes,
                                       "detectors": round(det_bytes / n_parcels, 1) if det_bytes else None},
            "peak_rss_mb": round(mem.peak_mb, 1),
            "checkpoints": checkpoints,
            "detectors": {d.event_type: d.state_version for d in monitor.detectors},
            "setup_s": round(setup_s, 2),
            "warmup_s": round(warmup_s, 2),
            "workdir": str(work) if keep else None,
        }
    finally:
        if not keep and not workdir:
            shutil.rmtree(work, ignore_errors=True)
