"""``sitsmon bench monitor --watch-pixels N``: the figures of a pixel watch area.

Two parts, both on a square area of about N pixels with a solar farm built in its middle:

* ``detector``: the stepped pixel solar detector alone (``PixelSolarState``): seconds per S2 and S1 step,
  the evaluation at an S2 view (evidence, components, dating, polygons), bytes per pixel, and the batch
  detector re-run on the whole history at the last view (what the stream did before it was stepped);
* ``monitor``: the whole fold through the monitor on the in-process bus (``end_to_end``): a tile cube
  written as ingest writes it, one parcel, the area over the whole tile; per acquisition from the poll
  to the committed offset (read the slice and the area's pixels → encoder step of every pixel → the
  pixel detector → store → state → commit), as pixels per second.
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

from ingest.types import S2_BANDS

GREEN = np.array([0.028, 0.062, 0.032, 0.095, 0.290, 0.390, 0.430, 0.450, 0.205, 0.095])
PV = np.array([0.095, 0.085, 0.072, 0.070, 0.072, 0.075, 0.080, 0.080, 0.060, 0.045])
TILE = "BENCHPIX"


def scene(side: int, n_views: int, seed: int = 0):
    """Views of a ``side``² area every 5 days (S1 half a day before each): green, a farm in the middle
    from the middle of the season; 80 % clear. Yields (k, t_days, reflectance (band, y, x), clear, vv_db)."""
    rng = np.random.default_rng(seed)
    farm = (slice(side // 4, side // 2), slice(side // 4, side // 2))
    for k in range(n_views):
        view = np.broadcast_to(GREEN[:, None, None], (len(S2_BANDS), side, side)).copy()
        if k >= n_views // 2:
            view[:, farm[0], farm[1]] = PV[:, None, None]
        view += rng.normal(0, 0.004, view.shape)
        vv = -12.0 + rng.normal(0, 1.0, (side, side))
        if k >= n_views // 2:
            vv[farm] += 5.0
        yield k, 19800.0 + 5.0 * k, view, rng.random((side, side)) < 0.8, vv


def bench_detector(side: int, n_views: int, batch: bool) -> dict[str, Any]:
    from rasterio.transform import from_origin

    from alerts.detectors.solar_pixels import detect_solar_pixels
    from alerts.detectors.solar_pixels_stream import PixelSolarState

    state = PixelSolarState((side, side))
    transform = from_origin(500000, 5400000, 10, 10)
    s2_s, s1_s, eval_s, views, vvs = [], [], [], [], []
    found: list = []
    for _, t, view, clear, vv in scene(side, n_views):
        t0 = time.perf_counter()
        state.step_s1(vv)
        s1_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        state.step_s2(t, view, S2_BANDS, clear)
        s2_s.append(time.perf_counter() - t0)
        vvs.append(vv.astype(np.float32))
        t0 = time.perf_counter()
        found = state.installations(transform, s1_history=lambda: (np.stack(vvs), 19799.5 + 5.0 * np.arange(len(vvs))))
        eval_s.append(time.perf_counter() - t0)
        if batch:
            views.append((view.astype(np.float32), clear))
    n = side * side
    s2, s1, ev = (statistics.median(x[1:]) for x in (s2_s, s1_s, eval_s))
    out: dict[str, Any] = {
        "pixels": n, "views": n_views, "state_bytes_per_pixel": round(state.nbytes_per_pixel, 1),
        "step_s2_s": round(s2, 5), "step_s1_s": round(s1, 5), "evaluate_s": round(ev, 5),
        "step_s2_pixels_per_s": round(n / s2, 1), "step_s1_pixels_per_s": round(n / s1, 1),
        "stepped_per_view_s": round(s2 + s1 + ev, 5), "installations_found": len(found)}
    if batch:
        t0 = time.perf_counter()
        detect_solar_pixels(np.stack([v for v, _ in views]), 19800.0 + 5.0 * np.arange(n_views), S2_BANDS, transform,
                            clear=np.stack([c for _, c in views]), s1_vv=np.stack(vvs),
                            s1_times=19799.5 + 5.0 * np.arange(n_views))
        out["batch_rerun_at_last_view_s"] = round(time.perf_counter() - t0, 4)
    return out


def write_season(root: Path, side: int, n_views: int) -> tuple[Path, Path, Path, list[dict[str, Any]]]:
    """A tile cube of ``scene`` (written with ingest's ``CubeWriter``), one parcel's series for every acquisition
    (the events read it), a watch area over the whole tile; (cubes, parcels, area file, events)."""
    import geopandas as gpd
    from shapely.geometry import box

    from alerts.series import normalise_observations
    from ingest.cube import CubeWriter
    from ingest.types import REFLECTANCE_SCALE, S1_POLS, Sensor, TileGrid
    from monitor.bench import write_interchange_slots

    x0, y1 = 500000.0, 5400000.0
    grid = TileGrid(TILE, 32633, 10.0, (x0, y1 - 10.0 * side, x0 + 10.0 * side, y1))
    writer = CubeWriter(root / "cubes" / f"{TILE}.zarr", grid)
    day0 = pd.Timestamp("2024-03-18", tz="UTC")  # day 19800
    rows = []
    for _, t, view, clear, vv in scene(side, n_views):
        for sensor, when in (("S1", day0 + pd.Timedelta(days=t - 19800.5)), ("S2", day0 + pd.Timedelta(days=t - 19800))):
            slot = when.strftime("%Y%m%dT%H%M%S") + ("-s1" if sensor == "S1" else "")
            index, new = writer.begin_slot(Sensor(sensor), slot)
            if sensor == "S2":
                data = np.clip(np.round(view / REFLECTANCE_SCALE), 1, 65535).astype(np.uint16)
                writer.write_block(Sensor.S2, index, (0, side, 0, side), data, clear.astype(np.uint8))
                meta: dict[str, Any] = {"baseline": "05.10"}
                row = {**dict(zip(S2_BANDS, view[:, 0, 0], strict=True)), "clear": 1.0, "VV": np.nan, "VH": np.nan,
                       "orbit": np.nan}
            else:
                pols = {"VV": 10 ** (vv / 10), "VH": 10 ** ((vv - 6) / 10)}
                writer.write_block(Sensor.S1, index, (0, side, 0, side),
                                   np.stack([pols[p] for p in S1_POLS]).astype(np.float32))
                meta = {"orbit": 73, "pass": "ASCENDING"}
                row = {**dict.fromkeys(S2_BANDS, np.nan), "clear": np.nan, "VV": float(pols["VV"][0, 0]),
                       "VH": float(pols["VH"][0, 0]), "orbit": 73.0}
            writer.commit_slot(Sensor(sensor), index, new, slot, int(when.timestamp()), (f"item-{slot}",), meta)
            rows.append({"parcel_id": "P1", "time": when.isoformat(), "sensor": sensor, **row})
    events = write_interchange_slots(root / "series", normalise_observations(pd.DataFrame(rows)), TILE)
    parcels = root / "parcels.csv"
    pd.DataFrame({"parcel_id": ["P1"], "land_use": ["grassland"], "tile_id": [TILE]}).to_csv(parcels, index=False)
    area = root / "watch.geojson"
    outline = box(x0 + 1.0, y1 - 10.0 * side + 1.0, x0 + 10.0 * side - 1.0, y1 - 1.0)
    gpd.GeoDataFrame({"area_id": ["bench"]}, geometry=[outline], crs=32633).to_crs(4326).to_file(area, driver="GeoJSON")
    return root / "cubes", parcels, area, events


def bench_monitor(side: int, n_views: int, warmup: int = 2) -> dict[str, Any]:
    from ingest.events import ACQUISITIONS_TOPIC
    from monitor.bus import make_bus
    from monitor.config import MonitorConfig
    from monitor.service import Monitor, Service

    work = Path(tempfile.mkdtemp(prefix="sitsmon-bench-watch-"))
    try:
        cubes, parcels, area, events = write_season(work, side, n_views)
        bus = make_bus("memory", path=work / "bus.sqlite")
        for value in events:
            bus.publish(ACQUISITIONS_TOPIC, TILE, value)
        bus.flush()
        config = MonitorConfig(data_dir=work / "stream", series_dir=work / "series", cubes_dir=cubes, parcels=parcels,
                               watch_areas=(area,), max_records=1)
        service = Service(Monitor(config, sinks=[]), bus)
        reports: list = []
        service.on_fold = reports.append
        consumer = service._consumer()
        per_acq: list[tuple[str, float]] = []
        try:
            while batch := consumer.poll(timeout_s=0.2, max_records=1):
                t0 = time.perf_counter()
                service.process(batch)
                service.commit()
                per_acq.append((reports[-1].acquisition.sensor, time.perf_counter() - t0))
            alerts = [a for a in service.monitor.store.query(limit=10_000) if a.parcel_id.startswith("bench:")]
            rows = service.monitor.tiles[TILE].state.n
        finally:
            service.close()
            bus.close()
        timed = per_acq[2 * warmup:]
        s2 = statistics.median(s for sensor, s in timed if sensor == "S2")
        s1 = statistics.median(s for sensor, s in timed if sensor == "S1")
        stages = {k: round(statistics.median(r.seconds.get(k, 0.0) for r in reports[2 * warmup:]), 5)
                  for k in ("read", "encoder", "detectors", "watch", "store", "state")}
        return {"pixels": side * side, "tile_rows": rows, "acquisitions": len(events),
                "s2_end_to_end_s": round(s2, 4), "s1_end_to_end_s": round(s1, 4),
                "s2_pixels_per_s": round(side * side / s2, 1), "s1_pixels_per_s": round(side * side / s1, 1),
                "stages_s": stages, "alerts": len(alerts)}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def bench_watch_pixels(n_pixels: int, n_views: int = 24, batch: bool = True, monitor: bool = True,
                       monitor_views: int = 12) -> dict[str, Any]:
    """Both parts for a square area of about ``n_pixels`` (``batch``: also the batch re-run; ``monitor``: also
    the whole fold through the monitor, over ``monitor_views`` S2 and as many S1 acquisitions)."""
    side = max(8, int(np.ceil(np.sqrt(n_pixels))))
    out: dict[str, Any] = {"detector": bench_detector(side, n_views, batch)}
    if monitor:
        out["monitor"] = bench_monitor(side, monitor_views)
    return out
