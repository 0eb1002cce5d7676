"""Ingesting one slot (tile, sensor, UTC day [, pass]) into the cube, the parcel series and the bus.

Order of effects, so that a crash anywhere leaves a consistent state that a restart completes:
ledger ``pending`` -> cube data -> cube time index (commit) -> parcel series file -> bus message ->
ledger ``ingested``/``superseded``. On restart, slots with ``pending`` items are ingested again; the
slot rewrite is idempotent.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from contracts import storage
from contracts.campaigns import CALENDAR_YEAR
from ingest.cube import CubeWriter, cube_path
from ingest.errors import AssetError, ItemAssetError, ItemError
from ingest.events import AcquisitionPublisher, NullPublisher, publish_acquisition
from ingest.items import baseline_key, parse_item
from ingest.ledger import Ledger
from ingest.load import LoadedItem, load_item, mosaic_s1, mosaic_s2, read_block, s1_values, s2_values
from ingest.parcels import ParcelRaster
from ingest.series import stats_table, write_slot
from ingest.types import AcquisitionEvent, ItemInfo, ItemStatus, Sensor, TileGrid
from ingest.zonal import zonal_sums

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Candidate:
    """An item that belongs to a slot, with the source it came from."""

    info: ItemInfo
    item: dict[str, Any]
    source: str


@dataclass(slots=True)
class SlotResult:
    tile_id: str
    sensor: Sensor
    slot: str
    committed: bool = False
    item_ids: tuple[str, ...] = ()
    quarantined: list[tuple[str, str]] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)


class TileIngestor:
    """Writes slots of one tile. Not thread-safe: one ingestor per tile, tiles may run in parallel."""

    def __init__(self, grid: TileGrid, cubes_root: str | Path, series_root: str | Path, ledger: Ledger,
                 parcels: ParcelRaster | None = None, publisher: AcquisitionPublisher | None = None,
                 asset_root: str | Path | None = None, chunk: int = 1024, dialects: dict[str, Any] | None = None,
                 signers: dict[str, Any] | None = None, fetchers: dict[str, Any] | None = None,
                 rasters: Callable[[int], tuple[int, ParcelRaster]] | None = None):
        self.grid = grid
        # acquisition time_s -> (campaign, parcel raster of that campaign's layer) (ingest.campaign_layers);
        # None: the one ``parcels`` raster for every acquisition, rows of their date's calendar year
        self.rasters = rasters
        self._stored_campaign: int | None = None
        # source name -> fetch(item, grid): the item with its pixels on this grid as local files (Sentinel Hub
        # Process API), called right before its assets are read; None for sources whose items point at files
        self.fetchers = dict(fetchers or {})
        self.dialects = dict(dialects or {})  # source name -> ingest.assets.Dialect (default: synthetic)
        self.signers = dict(signers or {})  # source name -> item signer (hrefs with tokens), or None
        self.cube = CubeWriter(cube_path(cubes_root, grid.tile_id), grid, chunk=chunk)
        self.series_root = storage.location(series_root)
        self.ledger = ledger
        self.parcels = parcels
        self.publisher = publisher or NullPublisher()
        self.asset_root = asset_root
        self.timings: dict[str, float] = {"read": 0.0, "mask": 0.0, "write": 0.0, "zonal": 0.0}  # seconds
        if parcels is not None:
            self._store_parcel_raster(parcels)

    def _parcels_at(self, time_s: int) -> tuple[int, ParcelRaster | None]:
        """The campaign of an acquisition at ``time_s`` and the raster it is reduced with; the cube's
        ``parcels`` group is rewritten when the campaign changes (it holds the last campaign's raster)."""
        if self.rasters is None:
            return CALENDAR_YEAR.campaign_of(time_s), self.parcels
        campaign, raster = self.rasters(time_s)
        if raster is not self.parcels:
            self.parcels = raster
            self._store_parcel_raster(raster, campaign)
        return campaign, raster

    def _store_parcel_raster(self, parcels: ParcelRaster, campaign: int | None = None) -> None:
        if parcels.labels.shape != self.grid.shape:
            raise ValueError(f"parcel raster {parcels.labels.shape} is not tile grid {self.grid.shape}")
        root = self.cube.root
        g = root.require_group("parcels")
        h, w = self.grid.shape
        for name in ("labels", "parcel_id"):
            if name in g:
                del g[name]
        labels = g.create_array("labels", shape=(h, w), dtype="int32", chunks=self.cube.chunk, fill_value=0,
                                dimension_names=["y", "x"])
        labels[:] = parcels.labels
        ids = g.create_array("parcel_id", shape=(len(parcels.parcel_ids),), dtype=str,
                             chunks=(max(1, len(parcels.parcel_ids)),), dimension_names=["parcel"])
        if parcels.parcel_ids:
            ids[:] = np.array(parcels.parcel_ids)
        g.attrs["description"] = "labels: 0 = no parcel, i = parcel_id[i-1]"
        g.attrs["campaign"] = campaign  # the campaign whose layer was rasterised last (None: a single layer)

    # ------------------------------------------------------------------ slots
    def ingest_slot(self, sensor: Sensor, slot: str, new: Iterable[Candidate]) -> SlotResult:
        """(Re)build one slot from the new candidates plus the slot's items already in the ledger."""
        new = list(new)
        result = SlotResult(self.grid.tile_id, sensor, slot)
        for c in new:
            self.ledger.record(c.source, c.info, c.item, ItemStatus.PENDING)
        candidates = {c.info.item_id: c for c in new}
        for e in self.ledger.entries(tile_id=self.grid.tile_id, sensor=sensor.value, slot_key=slot):
            if e.status in (ItemStatus.INGESTED, ItemStatus.PENDING) and e.item_id not in candidates:
                candidates[e.item_id] = Candidate(parse_item(e.item, self.dialects.get(e.source)), e.item, e.source)
        # Metadata and asset headers first: bad items out before anything is written.
        loaded: dict[str, LoadedItem] = {}
        for item_id, c in sorted(candidates.items()):
            try:
                sign, fetch = self.signers.get(c.source), self.fetchers.get(c.source)
                item = sign(c.item) if sign else c.item
                loaded[item_id] = load_item(c.info, fetch(item, self.grid) if fetch else item, self.grid,
                                            self.cube.chunk, self.asset_root, dialect=self.dialects.get(c.source))
            except (ItemError, AssetError) as e:
                self._quarantine(c, str(e), result)
        while True:
            active, superseded = _resolve_baselines([candidates[i] for i in loaded])
            if not active:  # every candidate was quarantined: nothing is committed
                logger.warning("slot %s %s %s: no item left to ingest", self.grid.tile_id, sensor, slot)
                return result
            try:
                empty = self._write(sensor, slot, [loaded[c.info.item_id] for c in active], result)
            except ItemAssetError as e:
                bad = candidates[e.item_id]
                self._quarantine(bad, str(e), result)
                loaded.pop(bad.info.item_id)
                continue
            if empty:  # all-nodata items were quarantined; rebuild without them
                for item_id in empty:
                    loaded.pop(item_id)
                continue
            break
        for c in superseded:
            newer = next(a for a in active if a.info.acquisition_key == c.info.acquisition_key)
            self.ledger.record(c.source, c.info, c.item, ItemStatus.SUPERSEDED,
                               f"superseded by {newer.info.item_id} (baseline {newer.info.baseline})")
            result.superseded.append(c.info.item_id)
        for c in active:
            self.ledger.record(c.source, c.info, c.item, ItemStatus.INGESTED)
        return result

    def _quarantine(self, c: Candidate, reason: str, result: SlotResult) -> None:
        logger.warning("quarantined %s: %s", c.info.item_id, reason,
                       extra={"tile_id": self.grid.tile_id, "item_id": c.info.item_id})
        self.ledger.record(c.source, c.info, c.item, ItemStatus.QUARANTINED, reason)
        result.quarantined.append((c.info.item_id, reason))

    # ------------------------------------------------------------------ one slot's write, step by step
    def _write(self, sensor: Sensor, slot: str, items: list[LoadedItem], result: SlotResult) -> list[str]:
        """Write the slot. Items without a valid pixel are quarantined and returned (nothing is
        committed then; the caller rebuilds without them); an empty list means the slot is committed.

        Steps: begin the cube step -> per block read, mosaic, write, zonal sums -> commit the cube
        step -> parcel series -> bus. A failing item raises :class:`ItemAssetError` naming it.
        """
        items = sorted(items, key=lambda it: (_cloud(it.info), it.info.item_id))
        # the campaign's layer first: an acquisition without one is refused before the cube is touched
        campaign, raster = self._parcels_at(min(it.info.datetime_s for it in items))
        index, is_new = self.cube.begin_slot(sensor, slot)
        try:
            sums = self._write_blocks(sensor, index, items, raster)
        except BaseException:
            self.cube.abort_slot(sensor, index, is_new)
            raise
        empty = [it for it, n in zip(items, sums.per_item, strict=True) if n == 0]
        if empty:
            self.cube.abort_slot(sensor, index, is_new)
            self._quarantine_empty(empty, result)
            return [it.info.item_id for it in empty]
        time_s, ids = self._commit(sensor, index, is_new, slot, items)
        self._write_series(sensor, slot, time_s, ids, items[0].info, sums, raster, campaign)
        self._publish(sensor, slot, time_s, ids)
        result.committed = True
        result.item_ids = ids
        return []

    @contextmanager
    def _timed(self, step: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[step] += time.perf_counter() - t0

    def _write_blocks(self, sensor: Sensor, index: int, items: list[LoadedItem],
                      parcels: ParcelRaster | None) -> _SlotSums:
        """Mosaic every spatial block into the cube step ``index`` and add up the zonal sums of ``parcels``."""
        n_lab = len(parcels.parcel_ids) if parcels is not None else 0
        sums = _SlotSums.zeros(n_lab, 10 if sensor is Sensor.S2 else 2, len(items))
        for window in self.cube.blocks():
            with self._timed("read"):
                raws = [_read_item_block(it, window) for it in items]
            with self._timed("mask"):
                values, clear, valid, counts = _mosaic(sensor, items, raws)
            with self._timed("write"):
                self.cube.write_block(sensor, index, window, values, clear)
            with self._timed("zonal"):
                sums.per_item += np.asarray(counts)
                if n_lab:
                    y0, y1, x0, x1 = window
                    sums.add(*zonal_sums(parcels.labels[y0:y1, x0:x1], values, valid, n_lab))
        return sums

    def _quarantine_empty(self, empty: list[LoadedItem], result: SlotResult) -> None:
        for it in empty:
            entry = self.ledger.get(it.info.collection, it.info.item_id)
            c = Candidate(it.info, entry.item if entry else it.item, entry.source if entry else "")
            self._quarantine(c, f"item {it.info.item_id}: all pixels are no data on tile {self.grid.tile_id}", result)

    def _commit(self, sensor: Sensor, index: int, is_new: bool, slot: str,
                items: list[LoadedItem]) -> tuple[int, tuple[str, ...]]:
        """Provenance and time index of the cube step: after this, readers see the slot."""
        time_s = min(it.info.datetime_s for it in items)
        ids = tuple(sorted(it.info.item_id for it in items))
        first = items[0].info
        meta: dict[str, Any] = (
            {"baseline": ",".join(sorted({it.info.baseline for it in items}))} if sensor is Sensor.S2
            else {"orbit": first.orbit, "pass": first.orbit_state}
        )
        self.cube.commit_slot(sensor, index, is_new, slot, time_s, ids, meta)
        return time_s, ids

    def _write_series(self, sensor: Sensor, slot: str, time_s: int, ids: tuple[str, ...], first: ItemInfo,
                      sums: _SlotSums, parcels: ParcelRaster | None, campaign: int) -> None:
        if parcels is None or not parcels.parcel_ids:
            return
        table = stats_table(parcels.parcel_ids, sensor, time_s, self.grid.tile_id, sums.sums, sums.valid_count,
                            sums.pixel_count, ids, orbit=first.orbit, pass_=first.orbit_state, slot=slot,
                            campaign=campaign)
        write_slot(self.series_root, self.grid.tile_id, sensor, slot, table)

    def _publish(self, sensor: Sensor, slot: str, time_s: int, ids: tuple[str, ...]) -> None:
        event = AcquisitionEvent(self.grid.tile_id, sensor, time_s, ids, str(self.cube.path),
                                 extra={"slot": slot, "series": str(storage.join(self.series_root, self.grid.tile_id))})
        publish_acquisition(self.publisher, event)


@dataclass(slots=True)
class _SlotSums:
    """Per-parcel sums of one slot, added block by block; ``per_item``: valid pixels each item gave."""

    sums: np.ndarray
    valid_count: np.ndarray
    pixel_count: np.ndarray
    per_item: np.ndarray

    @classmethod
    def zeros(cls, n_parcels: int, n_channels: int, n_items: int) -> _SlotSums:
        return cls(np.zeros((n_parcels, n_channels)), np.zeros(n_parcels, dtype=np.int64),
                   np.zeros(n_parcels, dtype=np.int64), np.zeros(n_items, dtype=np.int64))

    def add(self, sums: np.ndarray, valid_count: np.ndarray, pixel_count: np.ndarray) -> None:
        self.sums += sums
        self.valid_count += valid_count
        self.pixel_count += pixel_count


def _read_item_block(it: LoadedItem, window: tuple[int, int, int, int]) -> np.ndarray:
    """One item's raw window; a failure names the item (``ItemAssetError.item_id``)."""
    try:
        return read_block(it, window)
    except ItemAssetError:
        raise
    except AssetError as e:
        raise ItemAssetError(str(e), it.info.item_id) from e


def _mosaic(sensor: Sensor, items: list[LoadedItem], raws: list[np.ndarray]
            ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, list[int]]:
    """values (c, h, w), clear (h, w) for S2 else None, valid (h, w) and valid pixels per item."""
    if sensor is Sensor.S2:
        values, clear, counts = mosaic_s2([s2_values(r, it.scale, it.offset) for r, it in zip(raws, items, strict=True)])
        return values, clear, clear.astype(bool), counts
    values, counts = mosaic_s1([s1_values(r) for r in raws])
    return values, None, np.isfinite(values).all(axis=0), counts


def _cloud(info: ItemInfo) -> float:
    return info.cloud_cover if not math.isnan(info.cloud_cover) else 101.0


def _resolve_baselines(cands: list[Candidate]) -> tuple[list[Candidate], list[Candidate]]:
    """Per acquisition keep the newest processing baseline (then the latest published, then the id)."""
    best: dict[tuple, Candidate] = {}
    for c in cands:
        k = c.info.acquisition_key
        rank = (baseline_key(c.info.baseline), c.info.published_s or 0, c.info.item_id)
        if k not in best or rank > (baseline_key(best[k].info.baseline), best[k].info.published_s or 0,
                                    best[k].info.item_id):
            best[k] = c
    active = sorted(best.values(), key=lambda c: c.info.item_id)
    keep = {c.info.item_id for c in active}
    return active, [c for c in cands if c.info.item_id not in keep]


def read_stored_grid(cube: str | Path) -> TileGrid | None:
    """The grid recorded in an existing cube, or None."""
    p = storage.location(cube)
    if not storage.exists(storage.join(p, "zarr.json")):
        return None
    try:
        return TileGrid.from_dict(dict(zarr.open_group(storage.zarr_store(p, read_only=True), mode="r").attrs["grid"]))
    except (KeyError, ValueError, TypeError):
        return None  # a cube whose creation was interrupted: the writer rebuilds it from the items' grid
