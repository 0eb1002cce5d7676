"""The poller: search each source for each watched area and collection, ingest what is new.

Search window per (source, collection, area): from the watermark minus the look-back (so items
published days after their acquisition are still found) to now. Every item seen goes to the ledger;
already ingested, quarantined or superseded items are skipped (duplicates, replays). Items are
ingested slot by slot in acquisition order. A source that fails (unreachable, 429/5xx after the
retries, malformed answers) is reported and the run goes on with the others; its watermark stays.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts import storage
from ingest.assets import Dialect, check_collections, dialect_named
from ingest.campaign_layers import ParcelLayers
from ingest.cube import cube_path, remove_orphan_creations
from ingest.errors import ConfigError, IngestError, ItemError, SourceError
from ingest.events import AcquisitionPublisher
from ingest.grid import grid_bbox_4326, grid_from_item, item_on_tile, mgrs_coarse_bbox, tiles_of_footprint
from ingest.items import parse_item, tile_of_item
from ingest.ledger import Ledger
from ingest.parcels import ParcelRaster, rasterize_parcels
from ingest.pipeline import Candidate, SlotResult, TileIngestor, read_stored_grid
from ingest.series import compact_series, remove_orphan_temporaries
from ingest.sources import Source
from ingest.types import ItemStatus, Sensor, TileGrid, sensor_of_collection

logger = logging.getLogger(__name__)

DAY = 86400
ALL_TILES = "*"


@dataclass(frozen=True, slots=True)
class WatchConfig:
    """What to watch: MGRS tiles and/or AOI geometries (GeoJSON, EPSG:4326), collections, timing.

    With neither tiles nor AOIs, every tile the sources return is ingested (searches without a bbox).
    An AOI is mapped onto the tile grids of the items found over it.
    """

    tiles: tuple[str, ...] = ()
    aois: tuple[dict[str, Any], ...] = ()
    collections: tuple[str, ...] = ("sentinel-2-l2a", "sentinel-1-grd")
    lookback_s: int = 10 * DAY
    interval_s: float = 600.0
    start_s: int | None = None  # first search start where no watermark exists (default: now - lookback)

    def __post_init__(self) -> None:
        if not self.collections:
            raise ValueError("watch at least one collection")
        for c in self.collections:
            sensor_of_collection(c)  # ValueError for a collection that is neither S1 nor S2
        if self.lookback_s < 0:
            raise ValueError(f"look-back must be >= 0 s, got {self.lookback_s}")
        if self.interval_s <= 0:
            raise ValueError(f"polling interval must be > 0 s, got {self.interval_s}")
        for aoi in self.aois:
            if not isinstance(aoi, dict) or "type" not in aoi:
                raise ValueError(f"AOI must be a GeoJSON geometry, got {str(aoi)[:80]}")


@dataclass(slots=True)
class PollReport:
    """Counts of one poll (or backfill) run; ``errors`` has one line per failed search."""

    seen: int = 0
    duplicates: int = 0
    ingested_slots: int = 0
    ingested_items: int = 0
    quarantined: list[tuple[str, str]] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def add(self, r: SlotResult) -> None:
        if r.committed:
            self.ingested_slots += 1
            self.ingested_items += len(r.item_ids)
        self.quarantined += r.quarantined
        self.superseded += r.superseded

    def to_dict(self) -> dict[str, Any]:
        return {"seen": self.seen, "duplicates": self.duplicates, "ingested_slots": self.ingested_slots,
                "ingested_items": self.ingested_items, "quarantined": [list(q) for q in self.quarantined],
                "superseded": self.superseded, "errors": self.errors}


class Poller:
    """Ties sources, ledger, cubes, parcel series and the bus together. Plain values in, no settings."""

    def __init__(self, sources: Sequence[Source], ledger: Ledger, cubes_root: str | Path, series_root: str | Path,
                 watch: WatchConfig, grids: dict[str, TileGrid] | None = None, parcels: Any = None,
                 publisher: AcquisitionPublisher | None = None, asset_root: str | Path | None = None,
                 chunk: int = 1024, workers: int = 1, clock: Callable[[], float] = time.time,
                 compact_after: int = 64):
        if not sources:
            raise ConfigError("no catalogue source configured")
        self.sources = list(sources)
        # Each source's dialect (how its items name bands, which S1 collections are calibrated); refused
        # here, before anything is searched, when a watched S1 collection is not backscatter.
        self.dialects: dict[str, Dialect] = {s.name: dialect_named(getattr(s, "dialect", None)) for s in self.sources}
        self.ledger = ledger
        self.cubes_root = storage.location(cubes_root)
        self.series_root = storage.location(series_root)
        self.watch = watch
        self.signers = {s.name: getattr(s, "sign_item", None) for s in self.sources}
        self.fetchers = {s.name: getattr(s, "fetch_item", None) for s in self.sources}  # pixels on a tile grid
        for source in self.sources:
            check_collections(self.dialects[source.name], self._collections(source), f"source {source.name}")
        self.grids = dict(grids or {})
        # the parcel layer of each acquisition (ingest.campaign_layers): a GeoDataFrame is one layer for
        # every acquisition (rows of their date's campaign); None: cubes only, no parcel series
        self.layers = parcels if parcels is None or isinstance(parcels, ParcelLayers) else ParcelLayers(fixed=parcels)
        self.publisher = publisher
        self.asset_root = asset_root
        self.chunk = chunk
        self.workers = max(1, workers)
        self.clock = clock
        self.compact_after = compact_after  # fold parcel-series slot files once a tile has this many
        self._ingestors: dict[str, TileIngestor] = {}
        self._rasters: dict[str, tuple[int, ParcelRaster]] = {}  # per tile: the raster of the campaign last used
        for tile in watch.tiles:
            if tile not in self.grids:
                stored = read_stored_grid(cube_path(self.cubes_root, tile))
                if stored is not None:
                    self.grids[tile] = stored

    # ------------------------------------------------------------------ tiles
    def ingestor(self, grid: TileGrid) -> TileIngestor:
        if grid.tile_id not in self._ingestors:
            rasters = None if self.layers is None else functools.partial(self._raster_at, grid)
            self._ingestors[grid.tile_id] = TileIngestor(
                grid, self.cubes_root, self.series_root, self.ledger, None, self.publisher, self.asset_root,
                self.chunk, self.dialects, self.signers, self.fetchers, rasters=rasters,
            )
        return self._ingestors[grid.tile_id]

    def _raster_at(self, grid: TileGrid, time_s: int) -> tuple[int, ParcelRaster]:
        """The campaign of an acquisition at ``time_s`` on ``grid`` and its parcel raster. One raster per
        tile is kept (a 10980² tile's is 480 MB): a backfill in time order switches once per campaign."""
        campaign = self.layers.campaign_of(time_s)
        hit = self._rasters.get(grid.tile_id)  # each tile is ingested by one thread at a time
        if hit is None or hit[0] != campaign:
            hit = (campaign, rasterize_parcels(self.layers.layer(campaign), grid))
            self._rasters[grid.tile_id] = hit
        return hit

    def check_campaigns(self, by_tile: dict[str, dict[tuple[Sensor, str], list[Candidate]]]) -> None:
        """Refuse the run before anything is written when an acquisition lies in no configured campaign
        or its campaign has no parcel layer (``ingest.errors.CampaignLayerError``)."""
        if self.layers is None:
            return
        self.layers.check(min(c.info.datetime_s for c in group) for slots in by_tile.values()
                          for group in slots.values())

    def _grid_for(self, tile_id: str, item: dict[str, Any]) -> TileGrid:
        if tile_id not in self.grids:
            stored = read_stored_grid(cube_path(self.cubes_root, tile_id))
            self.grids[tile_id] = stored if stored is not None else grid_from_item(item)
        return self.grids[tile_id]

    # ------------------------------------------------------------------ search
    def _collections(self, source: Source) -> tuple[str, ...]:
        """The source's own collections (``[[ingest.sources]] collections``), else the watched ones."""
        return tuple(getattr(source, "collections", ()) or ()) or self.watch.collections

    def _areas(self) -> list[tuple[str, tuple[float, float, float, float] | None, dict | None]]:
        """(watermark key, bbox, intersects) per watched area."""
        areas: list[tuple[str, tuple | None, dict | None]] = []
        for tile in self.watch.tiles:
            grid = self.grids.get(tile)
            if grid is not None:
                bbox = grid_bbox_4326(grid)
            else:
                try:
                    bbox = mgrs_coarse_bbox(tile)
                except ConfigError:
                    bbox = None  # not an MGRS id (e.g. a synthetic tile name): search all, keep this tile's items
            areas.append((tile, bbox, None))
        for aoi in self.watch.aois:
            key = "aoi-" + hashlib.sha1(json.dumps(aoi, sort_keys=True).encode()).hexdigest()[:12]
            areas.append((key, None, aoi))
        if not areas:
            areas.append((ALL_TILES, None, None))
        return areas

    def _collect(self, source: Source, collection: str, start_s: int, end_s: int, area_key: str,
                 bbox: tuple | None, intersects: dict | None, report: PollReport) -> list[Candidate]:
        """Search one area; malformed items are quarantined, duplicates skipped, other tiles ignored."""
        out: list[Candidate] = []
        for found in source.search(collection, bbox, start_s, end_s, intersects):
            report.seen += 1
            for raw in self._on_tiles(found, collection):
                cand = self._candidate(source, collection, area_key, raw, report)
                if cand is not None:
                    out.append(cand)
        return out

    def _on_tiles(self, raw: Any, collection: str) -> list[Any]:
        """The item, or for an S1 item without an MGRS tile one copy per known tile grid its footprint covers."""
        try:
            untiled = isinstance(raw, dict) and tile_of_item(raw) is None and \
                sensor_of_collection(str(raw.get("collection") or collection)) is Sensor.S1
            if not untiled:
                return [raw]
            tiles = tiles_of_footprint(raw, self.grids)
            if not tiles:  # found again by the look-back once a grid over it is known
                logger.debug("S1 item %s covers no known tile grid (%s): skipped", raw.get("id"), ", ".join(self.grids))
            return [item_on_tile(raw, t) for t in tiles]
        except (ItemError, ValueError):
            return [raw]  # parse_item names what is wrong with it

    def _candidate(self, source: Source, collection: str, area_key: str, raw: Any,
                   report: PollReport) -> Candidate | None:
        """One found item: quarantined when malformed, None when a duplicate or of another tile."""
        try:
            info = parse_item(raw, self.dialects.get(source.name))
        except ItemError as e:
            item_id = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) and raw.get("id") \
                else "malformed-" + hashlib.sha1(repr(raw).encode()).hexdigest()[:16]
            coll = raw.get("collection") if isinstance(raw, dict) and isinstance(raw.get("collection"), str) \
                else collection
            known = self.ledger.get(coll, item_id)
            if known is not None and known.status is ItemStatus.QUARANTINED:
                report.duplicates += 1
                return None
            self.ledger.quarantine_raw(source.name, coll, item_id, raw, str(e))
            report.quarantined.append((item_id, str(e)))
            logger.warning("quarantined %s: %s", item_id, e, extra={"item_id": item_id})
            return None
        if self.watch.tiles and info.tile_id not in self.watch.tiles:
            return None
        if area_key not in (ALL_TILES,) and not area_key.startswith("aoi-") and info.tile_id != area_key:
            return None
        known = self.ledger.get(info.collection, info.item_id)
        if known is not None and known.status is not ItemStatus.PENDING:
            report.duplicates += 1
            return None
        return Candidate(info, raw, source.name)

    def group(self, candidates: Iterable[Candidate], report: PollReport
              ) -> dict[str, dict[tuple[Sensor, str], list[Candidate]]]:
        """The candidates by tile and slot (an item found twice counted once, as a duplicate)."""
        by_tile: dict[str, dict[tuple[Sensor, str], list[Candidate]]] = defaultdict(lambda: defaultdict(list))
        seen: set[tuple[str, str]] = set()
        for c in candidates:
            key = (c.info.collection, c.info.item_id)
            if key in seen:  # the same item from two sources or twice in one answer
                report.duplicates += 1
                continue
            seen.add(key)
            by_tile[c.info.tile_id][(c.info.sensor, c.info.slot_key)].append(c)
        return by_tile

    @staticmethod
    def slot_order(slots: dict[tuple[Sensor, str], list[Candidate]]) -> list[tuple[Sensor, str]]:
        """A tile's slots in acquisition order (a cube's steps are appended in time order)."""
        return sorted(slots, key=lambda k: (min(c.info.datetime_s for c in slots[k]), k[0].value, k[1]))

    def ingest_tile(self, tile_id: str, slots: dict[tuple[Sensor, str], list[Candidate]], progress: Any = None,
                    compact: bool = True) -> list[SlotResult]:
        """One tile's slots in acquisition order; ``compact``: fold its series slot files afterwards."""
        first = next(iter(slots.values()))[0]
        try:
            grid = self._grid_for(tile_id, first.item)
        except ItemError as e:
            results = []
            for group in slots.values():
                r = SlotResult(tile_id, group[0].info.sensor, group[0].info.slot_key)
                for c in group:
                    self.ledger.record(c.source, c.info, c.item, ItemStatus.QUARANTINED, str(e))
                    r.quarantined.append((c.info.item_id, str(e)))
                results.append(r)
            return results
        ingestor = self.ingestor(grid)
        results = []
        for sensor, slot in self.slot_order(slots):
            results.append(ingestor.ingest_slot(sensor, slot, slots[(sensor, slot)]))
            if progress is not None:
                progress.update(1)
        if compact:
            compact_series(self.series_root, tile_id, min_files=self.compact_after)
        return results

    def _ingest(self, candidates: Iterable[Candidate], report: PollReport, progress: Any = None) -> None:
        """Group by tile and slot, then ingest each tile's slots in acquisition order (tiles in parallel)."""
        by_tile = self.group(candidates, report)
        self.check_campaigns(by_tile)
        tiles = sorted(by_tile)
        if progress is not None:
            progress.total = (progress.total or 0) + sum(len(v) for v in by_tile.values())
            progress.refresh()
        if self.workers > 1 and len(tiles) > 1:
            with ThreadPoolExecutor(self.workers) as pool:
                for results in pool.map(lambda t: self.ingest_tile(t, by_tile[t], progress), tiles):
                    for r in results:
                        report.add(r)
        else:
            for tile in tiles:
                for r in self.ingest_tile(tile, by_tile[tile], progress):
                    report.add(r)

    def remove_orphans(self) -> None:
        """Temporaries left by a killed run (a cube being created, a series file being written)."""
        if storage.is_url(self.cubes_root) or self.cubes_root.is_dir():
            remove_orphan_creations(self.cubes_root)
        if storage.is_url(self.series_root) or self.series_root.is_dir():
            remove_orphan_temporaries(self.series_root)

    def pending_candidates(self) -> list[Candidate]:
        """The items left ``pending`` by an interrupted run (one that no longer parses is quarantined)."""
        cands = []
        for e in self.ledger.entries(status=ItemStatus.PENDING):
            try:
                cands.append(Candidate(parse_item(e.item, self.dialects.get(e.source)), e.item, e.source))
            except ItemError as err:
                self.ledger.set_status(e.collection, [e.item_id], ItemStatus.QUARANTINED, str(err))
        return cands

    def resume_pending(self, report: PollReport) -> None:
        """Ingest again the slots of items left ``pending`` by an interrupted run (orphans removed first)."""
        self.remove_orphans()
        cands = self.pending_candidates()
        if cands:
            logger.warning("resuming %d item(s) left pending by an interrupted run", len(cands))
            self._ingest(cands, report)

    # ------------------------------------------------------------------ runs
    def poll_once(self) -> PollReport:
        """One pass over every source, collection and area."""
        report = PollReport()
        self.resume_pending(report)
        now = int(self.clock())
        for source in self.sources:
            for collection in self._collections(source):
                for area_key, bbox, intersects in self._areas():
                    mark = self.ledger.watermark(source.name, collection, area_key)
                    if mark is None:
                        start = self.watch.start_s if self.watch.start_s is not None else now - self.watch.lookback_s
                    else:
                        start = mark - self.watch.lookback_s
                    try:
                        cands = self._collect(source, collection, start, now, area_key, bbox, intersects, report)
                    except (SourceError, IngestError) as e:
                        msg = f"{source.name} {collection} {area_key}: {e}"
                        logger.error(msg)
                        report.errors.append(msg)
                        continue
                    self._ingest(cands, report)
                    self.ledger.advance_watermark(source.name, collection, area_key, now)
        return report

    def run_forever(self, stop: Callable[[], bool] = lambda: False, sleep: Callable[[float], None] = time.sleep,
                    on_report: Callable[[PollReport], None] | None = None) -> None:
        """Poll every ``interval_s`` until ``stop()`` is true."""
        while not stop():
            started = time.monotonic()
            report = self.poll_once()
            if on_report is not None:
                on_report(report)
            if stop():
                break
            sleep(max(0.0, self.watch.interval_s - (time.monotonic() - started)))

    def backfill(self, start_s: int, end_s: int, progress: Any = None) -> PollReport:
        """Replay [start_s, end_s] in acquisition order per tile (tiles in parallel); resumable through the ledger.

        Watermarks are not moved: a backfill never hides items from the live poller.
        """
        if end_s < start_s:
            raise ConfigError(f"backfill end {end_s} is before start {start_s}")
        report = PollReport()
        self.resume_pending(report)
        self._ingest(self.search_window(start_s, end_s, report), report, progress)
        return report

    def search_window(self, start_s: int, end_s: int, report: PollReport) -> list[Candidate]:
        """The new items acquired in [start_s, end_s] from every source, collection and area (a failed
        search is one line of ``report.errors``)."""
        cands: list[Candidate] = []
        for source in self.sources:
            for collection in self._collections(source):
                for area_key, bbox, intersects in self._areas():
                    try:
                        cands += self._collect(source, collection, start_s, end_s, area_key, bbox, intersects, report)
                    except (SourceError, IngestError) as e:
                        msg = f"{source.name} {collection} {area_key}: {e}"
                        logger.error(msg)
                        report.errors.append(msg)
        return cands
