"""Writing the archive (``generate_archive``): rasters, items, truth files, manifest, swapped into place.

The worlds come from ``world``, geometry and truth tables from ``truth``, the interchange table of the
observations from ``observations`` (which also holds the fast parcel-level path, re-exported here).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from ingest.synth.clouds import draw_clouds, periodic_noise
from ingest.synth.cog import write_cog
from ingest.synth.config import ArchiveExistsError, SynthConfig, SynthError
from ingest.synth.dialects import DIALECTS, republish
from ingest.synth.grid import cloud_cover, rng_for, sun_angles
from ingest.synth.observations import (
    CLEAR_SHARE,
    OBSERVATION_COLUMNS,
    ObsBlock,
    observations_table,
    simulate_parcel_series,
)
from ingest.synth.phenology import BANDS, BANDS_10M, BANDS_20M, KINDS
from ingest.synth.quicklooks import ndvi_png, truecolor_png, vv_png
from ingest.synth.sentinel1 import render_s1
from ingest.synth.sentinel2 import SCL, downsample2, render_s2, to_dn
from ingest.synth.stac import S1_COLLECTION, S2_COLLECTION, collection, stac_item
from ingest.synth.truth import (
    footprint,
    interchange_parcels,
    parcels_4326,
    rasterize_units,
    round_geoms,
    solar_site_features,
)
from ingest.synth.world import TileWorld, build_world, tiles, unit_backscatter, unit_spectra

# build_world and the unit spectra stay importable from here, under their former names too (tests draw
# worlds through this module).
_unit_spectra = unit_spectra
__all__ = ["generate_archive", "simulate_parcel_series", "SCHEMA", "OBSERVATION_COLUMNS", "build_world", "unit_spectra"]

logger = logging.getLogger(__name__)

SCHEMA = "sitsmon-archive/1"
_BAND_INDEX = {b: i for i, b in enumerate(BANDS)}

def _version() -> str:
    try:
        from importlib.metadata import version

        return version("sitsmon")
    except Exception:  # noqa: BLE001 - a missing distribution only changes a label
        return "0+unknown"


def _prepare_out(out_dir: Path, overwrite: bool) -> Path:
    if out_dir.exists() and not out_dir.is_dir():
        raise ArchiveExistsError(f"--out {out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise ArchiveExistsError(
            f"output folder {out_dir} exists and is not empty (use --overwrite to replace it)"
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.parent / f".{out_dir.name}.synth-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    return staging


def _publish(staging: Path, out_dir: Path) -> None:
    """Swap the finished staging folder into place; an earlier archive is removed only now."""
    old = None
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
        out_dir.rename(old)
    staging.rename(out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def generate_archive(
    out_dir: Path, config: SynthConfig, progress: bool = False, overwrite: bool = False, dialect: str = "synthetic"
) -> dict:
    """Write the archive described in docs/archive-format.md under ``out_dir`` and return its manifest.

    The archive is built in a hidden sibling folder and moved into place at the end, so a failure never
    leaves a half-written archive nor damages an existing one. ``out_dir`` must be absent or empty
    unless ``overwrite``.
    """
    out_dir = Path(out_dir)
    if dialect not in DIALECTS:
        raise SynthError(f"unknown dialect {dialect!r}: expected one of {', '.join(DIALECTS)}")
    staging = _prepare_out(out_dir, overwrite)
    try:
        manifest = _generate(staging, config, progress)
        if dialect != "synthetic":
            republish(staging, dialect)
            manifest = json.loads((staging / "archive.json").read_text())
        _publish(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _generate(root: Path, config: SynthConfig, progress: bool) -> dict:
    from tqdm import tqdm

    tile_list = tiles(config)
    worlds = [build_world(config, t) for t in tile_list]
    total = sum(len(w.s2) + len(w.s1) for w in worlds)
    bar = tqdm(total=total, desc="synth", unit="acq", disable=not progress, leave=False)
    s2_items, s1_items, blocks, parcels, events, sites = [], [], [], [], [], []
    bboxes = []
    with ThreadPoolExecutor(max_workers=config.workers) as pool:
        pending: list[Future] = []
        for world in worlds:
            fp, bbox = footprint(world.tile)
            bboxes.append(bbox)
            a, b, c, fs = _render_tile(root, config, world, fp, bbox, pool, pending, bar)
            s2_items += a
            s1_items += b
            blocks.append(c)
            sites += fs
            parcels.append(parcels_4326(world))
            events.append(world.management.events)
            # Bound memory: wait for this tile's writes before the next tile.
            for f in pending:
                f.result()
            pending.clear()
            logger.info(
                "tile %s: %d parcels, %d S2 and %d S1 items written",
                world.tile.tile_id,
                len(world.layout.parcels),
                len(a),
                len(b),
                extra={"tile_id": world.tile.tile_id},
            )
    bar.close()

    parcels_all = pd.concat(parcels, ignore_index=True).sort_values("parcel_id", kind="stable")
    parcels_gdf = gpd.GeoDataFrame(parcels_all.reset_index(drop=True), geometry="geometry", crs=4326)
    parcels_gdf["geometry"] = round_geoms(parcels_gdf.geometry.values)
    (root / "parcels").mkdir()
    parcels_gdf.to_parquet(root / "parcels" / "parcels.parquet", index=False)
    truth = root / "truth"
    truth.mkdir()
    interchange_parcels(parcels_gdf).to_csv(truth / "parcels.csv", index=False)
    events_all = pd.concat(events, ignore_index=True).sort_values(
        ["parcel_id", "date", "event"], kind="stable"
    )
    events_all.to_csv(truth / "events.csv", index=False)
    obs = observations_table(blocks)
    obs.to_parquet(truth / "observations.parquet", index=False)
    (truth / "solar_sites.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": sites}))

    full_bbox = [
        min(b[0] for b in bboxes),
        min(b[1] for b in bboxes),
        max(b[2] for b in bboxes),
        max(b[3] for b in bboxes),
    ]
    (root / "collections").mkdir()
    (root / "items").mkdir()
    for cid, items in ((S2_COLLECTION, s2_items), (S1_COLLECTION, s1_items)):
        (root / "collections" / f"{cid}.json").write_text(
            json.dumps(collection(cid, full_bbox, config.start, config.end), indent=2)
        )
        items.sort(key=lambda it: (it["properties"]["published"], it["id"]))
        with open(root / "items" / f"{cid}.ndjson", "w") as fh:
            for it in items:
                fh.write(json.dumps(it, separators=(",", ":")) + "\n")
    manifest = {
        "schema": SCHEMA,
        "seed": config.seed,
        "start": config.start.isoformat(),
        "end": config.end.isoformat(),
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "generator": f"sitsmon {_version()}",
        "tiles": [
            {
                "tile_id": w.tile.tile_id,
                "epsg": w.tile.epsg,
                "resolution": w.tile.resolution,
                "bounds": list(w.tile.bounds),
                "shape": list(w.tile.shape),
            }
            for w in worlds
        ],
        "counts": {
            "parcels": int(len(parcels_gdf)),
            S2_COLLECTION: len(s2_items),
            S1_COLLECTION: len(s1_items),
            "events": int(sum(len(e) for e in events)),
            "solar_sites": len(sites),
        },
    }
    (root / "archive.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def _render_tile(root: Path, config: SynthConfig, world: TileWorld, fp: dict, bbox: list, pool, pending, bar):
    tile = world.tile
    mg = world.management
    n = len(world.layout.parcels)
    ids = world.layout.parcels["parcel_id"].to_numpy()
    units = rasterize_units(world)
    flat = units.ravel()
    counts = np.bincount(flat, minlength=mg.n_units).astype(np.float64)

    def zonal_mean(stack: np.ndarray) -> np.ndarray:
        """(B, H*W) pixel values -> (N, B) parcel means (float64)."""
        return np.stack(
            [
                np.bincount(flat, weights=row, minlength=mg.n_units)[1 : n + 1] / counts[1 : n + 1]
                for row in stack
            ],
            axis=1,
        )

    if (counts[1 : n + 1] == 0).any():
        missing = ids[np.flatnonzero(counts[1 : n + 1] == 0)[:3]]
        raise SynthError(f"tile {tile.tile_id}: parcels without a pixel: {list(missing)}")
    trng = rng_for(config.seed, tile.index, "texture")
    texture = (1.0 + 0.05 * periodic_noise(trng, tile.shape, 4.0, coarse=1)).astype(np.float32)
    texture_db = (0.6 * periodic_noise(trng, tile.shape, 3.0, coarse=1)).astype(np.float32)
    water_unit = mg.kind == KINDS.index("water")
    ql = root / "quicklooks" / tile.tile_id
    s2_items, s1_items = [], []
    obs_bands = np.zeros((n, len(world.s2), len(BANDS)), np.float32)
    obs_clear = np.zeros((n, len(world.s2)), np.int8)
    spectra = unit_spectra(world, world.s2)  # (U, T, 10)

    def submit(fn, *args, **kw):
        pending.append(pool.submit(fn, *args, **kw))
        if len(pending) > 4 * config.workers:
            pending.pop(0).result()

    for j, acq in enumerate(world.s2):
        az, el = sun_angles(tile, acq.datetime)
        rng = rng_for(config.seed, tile.index, "s2", j)
        clouds = draw_clouds(rng, tile.shape, cloud_cover(world.weather, acq), az, el, tile.resolution)
        toa, scl = render_s2(units, spectra[:, j, :], texture, water_unit, clouds, rng)
        clear_px = np.isin(scl, (SCL.VEGETATION, SCL.NOT_VEGETATED, SCL.WATER))
        stack = np.concatenate([toa.reshape(len(BANDS), -1), clear_px.reshape(1, -1).astype(np.float32)])
        means = zonal_mean(stack)  # (N, 11)
        obs_clear[:, j] = means[:, -1] >= CLEAR_SHARE
        obs_bands[:, j, :] = means[:, :-1]
        item = stac_item(tile, acq, fp, bbox, *world.published[("S2", j)], cloud_cover=0.0, sun=(az, el))
        scl20 = np.ascontiguousarray(scl[::2, ::2])
        item["properties"]["eo:cloud_cover"] = round(
            100.0 * float(np.isin(scl20, (SCL.CLOUD_MEDIUM, SCL.CLOUD_HIGH, SCL.THIN_CIRRUS)).mean()), 2
        )
        folder = root / "data" / S2_COLLECTION / tile.tile_id / item["id"]
        for band in BANDS_10M:
            submit(
                write_cog,
                folder / f"{band}.tif",
                to_dn(toa[_BAND_INDEX[band]]),
                tile.transform(1),
                tile.epsg,
                0,
                config.cog_blocksize,
            )
        low = downsample2(toa[[_BAND_INDEX[b] for b in BANDS_20M]])
        for k, band in enumerate(BANDS_20M):
            submit(
                write_cog,
                folder / f"{band}.tif",
                to_dn(low[k]),
                tile.transform(2),
                tile.epsg,
                0,
                config.cog_blocksize,
            )
        submit(
            write_cog,
            folder / "SCL.tif",
            scl20,
            tile.transform(2),
            tile.epsg,
            0,
            config.cog_blocksize,
            "nearest",
        )
        if config.quicklooks:
            day = f"{acq.datetime:%Y-%m-%d}"
            submit(truecolor_png, toa[2], toa[1], toa[0], ql / f"{day}_truecolor.png")
            submit(ndvi_png, toa[6], toa[2], ql / f"{day}_ndvi.png")
        s2_items.append(item)
        bar.update(1)
    vv_db, vh_db = unit_backscatter(world, world.s1)
    obs_vv = np.zeros((n, len(world.s1)), np.float32)
    obs_vh = np.zeros_like(obs_vv)
    for j, acq in enumerate(world.s1):
        rng = rng_for(config.seed, tile.index, "s1", j)
        vv, vh = render_s1(units, vv_db[:, j], vh_db[:, j], texture_db, rng)
        means = zonal_mean(np.stack([vv.reshape(-1), vh.reshape(-1)]))
        obs_vv[:, j], obs_vh[:, j] = means[:, 0], means[:, 1]
        item = stac_item(tile, acq, fp, bbox, *world.published[("S1", j)])
        folder = root / "data" / S1_COLLECTION / tile.tile_id / item["id"]
        submit(
            write_cog, folder / "vv.tif", vv, tile.transform(1), tile.epsg, float("nan"), config.cog_blocksize
        )
        submit(
            write_cog, folder / "vh.tif", vh, tile.transform(1), tile.epsg, float("nan"), config.cog_blocksize
        )
        if config.quicklooks:
            submit(vv_png, vv, ql / f"{acq.datetime:%Y-%m-%d}_vv.png")
        s1_items.append(item)
        bar.update(1)
    block = ObsBlock.on_world(world, ids, np.round(obs_bands, 4), obs_clear, obs_vv, obs_vh)

    site_features = solar_site_features(config, world)
    return s2_items, s1_items, block, site_features
