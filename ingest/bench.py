"""The ingest benchmark: the pipeline (read, mask, write) against the raw floor on the same COGs and chunks.

Workload: one Sentinel-2 acquisition on a square tile of ``size`` pixels (10 980 = a full S2 tile;
smaller sizes scale it) as COGs (10 reflectance bands + SCL, DEFLATE, 512-pixel blocks, overviews).
- pipeline: :class:`ingest.pipeline.TileIngestor` ingests the item (stackstac read, scale/offset,
  SCL mask, Zarr write, commit), timed per phase;
- floor: the same COGs read with rasterio block by block (threads) and written to a Zarr array with
  the same chunks and codecs, no logic;
- zonal: the numba kernel and the numpy reference over a parcel raster of the same tile.
Throughput is in Mpix/s of tile pixels (each pixel carries 11 assets). Memory: the resident set size
sampled every 20 ms during each phase (peak, and increase over the phase's start); the lifetime
maximum also counts the workload generation.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ingest.types import S2_BANDS, TileGrid

TILE = "33UXP"


def _field(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random field plus noise (compresses like imagery, unlike white noise)."""
    coarse = rng.random((size // 64 + 2, size // 64 + 2))
    ys = np.linspace(0, coarse.shape[0] - 1.001, size)
    xs = np.linspace(0, coarse.shape[1] - 1.001, size)
    yi, xi = ys.astype(int), xs.astype(int)
    fy, fx = (ys - yi)[:, None], (xs - xi)[None, :]
    a = coarse[yi][:, xi] * (1 - fx) + coarse[yi][:, xi + 1] * fx
    b = coarse[yi + 1][:, xi] * (1 - fx) + coarse[yi + 1][:, xi + 1] * fx
    return (a * (1 - fy) + b * fy).astype(np.float32)


def make_workload(root: Path, size: int, seed: int = 0) -> tuple[TileGrid, dict[str, Any]]:
    import rasterio
    from affine import Affine

    grid = TileGrid(TILE, 32633, 10.0, (600000.0, 5300000.0 - size * 10.0 + 109800.0,
                                        600000.0 + size * 10.0, 5300000.0 + 109800.0))
    rng = np.random.default_rng(seed)
    base = root / "data" / "S2A_BENCH"
    base.mkdir(parents=True, exist_ok=True)
    profile = dict(driver="COG", height=size, width=size, count=1, crs=f"EPSG:{grid.epsg}",
                   transform=Affine(*grid.transform), compress="DEFLATE", blocksize=512, nodata=0)
    shape = rng.random((size, size), dtype=np.float32)
    assets = {}
    for k, band in enumerate(S2_BANDS):
        dn = (1000 + 3000 * _field(rng, size) + 200 * shape + 100 * k).astype(np.uint16)
        with rasterio.open(base / f"{band}.tif", "w", dtype="uint16", **profile) as dst:
            dst.write(dn, 1)
        assets[band] = {"href": str(base / f"{band}.tif"), "type": "image/tiff",
                        "raster:bands": [{"scale": 0.0001, "offset": -0.1}]}
    scl = np.where(_field(rng, size) > 0.7, 9, 4).astype(np.uint8)
    with rasterio.open(base / "SCL.tif", "w", dtype="uint8", **profile) as dst:
        dst.write(scl, 1)
    assets["SCL"] = {"href": str(base / "SCL.tif"), "type": "image/tiff"}
    from rasterio.warp import transform_bounds

    bbox = list(transform_bounds(f"EPSG:{grid.epsg}", "EPSG:4326", *grid.bounds))
    item = {"type": "Feature", "stac_version": "1.0.0", "id": "S2A_BENCH", "collection": "sentinel-2-l2a",
            "bbox": bbox, "geometry": None,
            "properties": {"datetime": "2024-06-01T10:00:00Z", "proj:epsg": grid.epsg, "grid:code": f"MGRS-{TILE}",
                           "s2:processing_baseline": "05.10", "eo:cloud_cover": 30.0, "platform": "sentinel-2a"},
            "assets": assets, "links": []}
    return grid, item


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):  # not Linux: fall back on the lifetime peak
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class PeakRSS:
    """Samples the resident set size every 20 ms while active: ``peak_mb`` and ``start_mb``."""

    def __init__(self) -> None:
        self.start_mb = self.peak_mb = 0.0
        self._stop = threading.Event()

    def __enter__(self) -> PeakRSS:
        self.start_mb = self.peak_mb = _rss_mb()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak_mb = max(self.peak_mb, _rss_mb())

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, _rss_mb())


def run_pipeline(work: Path, grid: TileGrid, item: dict[str, Any], chunk: int) -> dict[str, float]:
    from ingest.items import parse_item
    from ingest.ledger import open_ledger
    from ingest.pipeline import Candidate, TileIngestor

    ledger = open_ledger(work / "ledger.sqlite")
    ingestor = TileIngestor(grid, work / "cubes", work / "series", ledger, chunk=chunk)
    info = parse_item(item)
    t0 = time.perf_counter()
    result = ingestor.ingest_slot(info.sensor, info.slot_key, [Candidate(info, item, "bench")])
    total = time.perf_counter() - t0
    if not result.committed:
        raise RuntimeError(f"bench item was not ingested: {result.quarantined}")
    ledger.close()
    return {"total_s": total, **{f"{k}_s": v for k, v in ingestor.timings.items()}}


def run_floor(work: Path, grid: TileGrid, item: dict[str, Any], chunk: int, threads: int) -> dict[str, float]:
    """rasterio block reads -> zarr chunk writes, same chunks and codecs as the cube, no logic."""
    import rasterio
    import zarr
    from rasterio.windows import Window

    from ingest.load import GDAL_OPTIONS

    h, w = grid.shape
    root = zarr.open_group(str(work / "floor.zarr"), mode="w")
    refl = root.create_array("reflectance", shape=(1, len(S2_BANDS), h, w), dtype="uint16", chunks=(1, 1, chunk, chunk),
                             fill_value=0)
    scl_arr = root.create_array("scl", shape=(1, h, w), dtype="uint8", chunks=(1, chunk, chunk), fill_value=0)
    names = [*S2_BANDS, "SCL"]
    read_s = write_s = 0.0
    t0 = time.perf_counter()
    with rasterio.Env(**GDAL_OPTIONS):
        datasets = {n: rasterio.open(item["assets"][n]["href"]) for n in names}
        try:
            with ThreadPoolExecutor(threads) as pool:
                for y0 in range(0, h, chunk):
                    for x0 in range(0, w, chunk):
                        win = Window(x0, y0, min(chunk, w - x0), min(chunk, h - y0))
                        ta = time.perf_counter()
                        # one dataset handle per band: GDAL handles are not shared between threads here
                        blocks = list(pool.map(lambda n, w=win: datasets[n].read(1, window=w), names))
                        tb = time.perf_counter()
                        y1, x1 = y0 + win.height, x0 + win.width
                        refl[0, :, y0:y1, x0:x1] = np.stack(blocks[:-1])
                        scl_arr[0, y0:y1, x0:x1] = blocks[-1]
                        read_s += tb - ta
                        write_s += time.perf_counter() - tb
        finally:
            for ds in datasets.values():
                ds.close()
    return {"total_s": time.perf_counter() - t0, "read_s": read_s, "write_s": write_s}


def run_zonal(size: int, n_parcels: int, seed: int = 0) -> dict[str, float]:
    from ingest.zonal import zonal_sums, zonal_sums_reference

    rng = np.random.default_rng(seed)
    side = max(1, int(np.sqrt(size * size / max(n_parcels, 1))))
    yy, xx = np.mgrid[0:size, 0:size]
    per_row = (size + side - 1) // side
    labels = ((yy // side) * per_row + (xx // side) + 1).astype(np.int32)
    labels[labels > n_parcels] = 0
    values = rng.integers(1, 10000, (len(S2_BANDS), size, size), dtype=np.uint16)
    valid = rng.random((size, size)) > 0.3
    zonal_sums(labels[:8, :8], values[:, :8, :8], valid[:8, :8], n_parcels)  # compile outside the timing
    t0 = time.perf_counter()
    fast = zonal_sums(labels, values, valid, n_parcels)
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = zonal_sums_reference(labels, values, valid, n_parcels)
    t_ref = time.perf_counter() - t0
    same = all(np.allclose(a, b) for a, b in zip(fast, ref, strict=True))
    mpix = size * size / 1e6
    return {"parcels": n_parcels, "bands": len(S2_BANDS), "kernel_s": t_fast, "reference_s": t_ref,
            "kernel_mpix_s": mpix / t_fast, "reference_mpix_s": mpix / t_ref, "equal_to_reference": bool(same)}


def run_benchmark(size: int = 4096, chunk: int = 1024, threads: int | None = None, workdir: str | Path | None = None,
                  n_parcels: int | None = None, keep: bool = False) -> dict[str, Any]:
    """Everything above in one run; returns the JSON-able result."""
    threads = threads or os.cpu_count() or 2
    work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="sitsmon-bench-ingest-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        grid, item = make_workload(work / "cogs", size)
        setup_s = time.perf_counter() - t0
        import gc

        gc.collect()
        with PeakRSS() as pipe_mem:
            pipe = run_pipeline(work / "pipeline", grid, item, chunk)
        gc.collect()
        with PeakRSS() as floor_mem:
            floor = run_floor(work / "floor", grid, item, chunk, threads)
        zonal = run_zonal(min(size, 4096), n_parcels or max(1, (min(size, 4096) ** 2) // 2000))
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    mpix = size * size / 1e6
    full = 10980 * 10980 / 1e6
    pipe_rate, floor_rate = mpix / pipe["total_s"], mpix / floor["total_s"]
    return {
        "benchmark": "ingest",
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "workload": {"tile_px": size, "tile_mpix": round(mpix, 3), "assets": len(S2_BANDS) + 1, "chunk": chunk,
                     "scale_of_full_s2_tile": round(mpix / full, 4), "cpu_count": os.cpu_count(),
                     "threads_floor": threads, "setup_s": round(setup_s, 2)},
        "pipeline": {
            "total_s": round(pipe["total_s"], 3), "mpix_s": round(pipe_rate, 2),
            "read_mpix_s": round(mpix / pipe["read_s"], 2) if pipe["read_s"] else None,
            "mask_mpix_s": round(mpix / pipe["mask_s"], 2) if pipe["mask_s"] else None,
            "write_mpix_s": round(mpix / pipe["write_s"], 2) if pipe["write_s"] else None,
            "phases_s": {k: round(pipe[f"{k}_s"], 3) for k in ("read", "mask", "write", "zonal")},
            "full_tile_estimate_s": round(full / pipe_rate, 1),
        },
        "floor": {"total_s": round(floor["total_s"], 3), "mpix_s": round(floor_rate, 2),
                  "read_mpix_s": round(mpix / floor["read_s"], 2), "write_mpix_s": round(mpix / floor["write_s"], 2)},
        "ratio_to_floor": round(pipe_rate / floor_rate, 3),
        "budget_ratio": 0.5,
        "within_budget": pipe_rate / floor_rate >= 0.5,
        "memory_mb": {"pipeline_peak_rss": round(pipe_mem.peak_mb, 1),
                      "pipeline_rss_increase": round(pipe_mem.peak_mb - pipe_mem.start_mb, 1),
                      "floor_peak_rss": round(floor_mem.peak_mb, 1),
                      "floor_rss_increase": round(floor_mem.peak_mb - floor_mem.start_mb, 1),
                      "process_lifetime_max_rss": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)},
        "zonal": {k: (round(v, 3) if isinstance(v, float) else v) for k, v in zonal.items()},
    }


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(run_benchmark(), indent=2))
