"""The streaming monitor: consume acquisition events, fold each into its tile's state, raise alerts live.

Per acquisition event, in this order, so that a kill at any point is harmless (docs/streaming.md):

1. parse and check the message (a bad one goes to the dead-letter topic with the reason);
2. bring the tile's state to "everything folded so far plus this acquisition" (``Monitor.converge``):
   a duplicate (same slot, same items) changes nothing; a new acquisition after the tile's last one is
   one ``step_tile``; an older one (a late arrival) or a re-processed slot rewinds to the newest
   checkpoint before it and folds the acquisitions since in time order; one older than every retained
   checkpoint is refused and recorded for ``monitor replay``;
3. upsert the alerts (deterministic ids: a re-run re-creates the same ids, never a duplicate);
4. send them to the sinks (``sits.alerts`` topic, the signed webhook): a sink may see a redelivery,
   always with the same alert id;
5. append the acquisition to the tile's applied log (fsync), and every ``save_every`` acquisitions
   write the whole state; a state is derived data: after a crash it is rebuilt from the last written
   state plus the applied log's acquisitions, re-read from the series store;
6. commit the bus offsets.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from alerts.types import Alert, Event
from monitor.bus import CommitError, dead_letter
from monitor.config import MonitorConfig
from monitor.crash import kill_point
from monitor.errors import BadEventError, LateArrivalError, MonitorError, StateStoreError, StateVersionError
from monitor.health import Health, for_worker
from monitor.inputs import SlotKey, prepare_rows, read_slot_rows
from monitor.state_store import TileStore, namespace_for, versions_of
from monitor.step import StepResult, TileState, new_tile_state, recent_s2_keys, step_tile

logger = logging.getLogger(__name__)

EVENT_SCHEMA = "sitsmon.acquisition/1"
DAY_S = 86400


@dataclass(frozen=True)
class Acquisition:
    """A checked acquisition event."""

    tile_id: str
    sensor: str
    time_s: int
    slot: str
    item_ids: str
    series: Path

    @property
    def key(self) -> SlotKey:
        return SlotKey.of(self.time_s, self.sensor, self.slot)


def parse_event(value: dict[str, Any], series_dir: Path) -> Acquisition:
    """An acquisition from a ``sits.acquisitions`` message value; BadEventError says what is wrong."""
    if not isinstance(value, dict) or not value:
        raise BadEventError("message is not a JSON object")
    if value.get("schema") != EVENT_SCHEMA:
        raise BadEventError(f"schema {value.get('schema')!r} is not {EVENT_SCHEMA!r}")
    missing = [k for k in ("tile_id", "sensor", "time", "item_ids", "slot") if k not in value]
    if missing:
        raise BadEventError(f"acquisition event without {', '.join(missing)}")
    sensor = value["sensor"]
    if sensor not in ("S1", "S2"):
        raise BadEventError(f"sensor must be S1 or S2, got {sensor!r}")
    try:
        time_s = int(pd.Timestamp(value["time"]).timestamp())
    except (ValueError, TypeError) as e:
        raise BadEventError(f"unparseable time {value['time']!r}") from e
    tile_id, slot = str(value["tile_id"]), str(value["slot"])
    if not tile_id or "/" in tile_id or not slot or "/" in slot:
        raise BadEventError(f"bad tile id {tile_id!r} or slot {slot!r}")
    ids = value["item_ids"]
    item_ids = ",".join(ids) if isinstance(ids, list) else str(ids)
    return Acquisition(tile_id, sensor, time_s, slot, item_ids, series_dir)


@dataclass
class _Tile:
    state: TileState
    store: TileStore
    lock: Any = None  # ingest.locks.WriterLock on the tile's state folder while this process owns it
    unsaved: int = 0
    last_checkpoint_s: int | None = None


@dataclass
class FoldReport:
    """What one acquisition event did."""

    acquisition: Acquisition
    status: str  # folded | duplicate | rewound | refused
    results: list[StepResult] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    new_alerts: int = 0
    reason: str = ""
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def parcels_updated(self) -> int:
        return sum(r.parcels_updated for r in self.results)


class Monitor:
    """Holds the model, the detectors, the stores and the tiles' states of one monitor process."""

    def __init__(self, config: MonitorConfig, *, model=None, detectors=None, store=None, sinks=(),
                 health: Health | None = None, scope: str | None = None) -> None:
        import sits
        from alerts.detectors.batch import make_batch_detectors
        from alerts.store import open_store

        self.config = config
        self.model = model if model is not None else sits.load_model(config.checkpoint, device=config.device)
        self.detectors = detectors if detectors is not None else make_batch_detectors(config.detectors)
        self.versions = versions_of(self.model, self.detectors)
        self.namespace = namespace_for(self.model, self.detectors)
        self.store = store if store is not None else open_store(config.alert_store_url)
        self.sinks = list(sinks)
        self.health = health or for_worker(config.state_root, config.metrics_port,
                                           stale_after_s=config.health_stale_s, prune_after_s=config.health_prune_s)
        # Alerts of the packaged default model keep the plain deterministic ids (equal to `sitsmon detect`);
        # a reprocessing with another checkpoint gets ids of its own, so the old alerts stay readable.
        self.scope = scope if scope is not None else ("" if config.checkpoint is None else self.namespace)
        self.alert_model_version = f"{Alert.model_fields['model_version'].default}+{self.model.version}"
        self.tiles: dict[str, _Tile] = {}
        self._parcels: dict[Path, pd.DataFrame] = {}  # parcel layers read, by path
        self._areas: dict[str, list] = {}

    # ---- tiles ------------------------------------------------------------------------------------
    def parcels_of(self, tile_id: str, campaign: int | None = None) -> pd.DataFrame:
        """The tile's parcels (``parcel_id, land_use[, geometry, pixel counts]``) of ``campaign``: the layer
        imported for it (``<parcels_root>/<YEAR>/parcels.parquet``) when there is one, else the configured
        layer (``[monitor] parcels``); ``campaign`` None: the configured layer, else the latest imported."""
        parcels = self._layer(campaign)
        if "tile_id" in parcels.columns and tile_id in set(parcels["tile_id"].astype(str)):
            parcels = parcels[parcels["tile_id"].astype(str) == tile_id]
        elif "tile_id" in parcels.columns and parcels["tile_id"].notna().any():
            raise BadEventError(f"unknown tile {tile_id!r}: no parcel of the parcel layer lies on it")
        return parcels.sort_values("parcel_id", kind="stable")

    def _layer_path(self, campaign: int | None) -> Path | None:
        from ingest.campaign_layers import imported_campaigns
        from ingest.parcel_campaign import campaign_dir

        root = self.config.parcels_root
        if campaign is not None and (campaign_dir(root, campaign) / "parcels.parquet").is_file():
            return campaign_dir(root, campaign) / "parcels.parquet"
        if self.config.parcels is not None:
            return self.config.parcels
        imported = imported_campaigns(root)
        if campaign is None and imported:
            return campaign_dir(root, imported[-1]) / "parcels.parquet"
        if campaign is not None:
            raise MonitorError(f"no parcel layer for campaign {campaign}: none imported at {campaign_dir(root, campaign)} "
                               f"(imported: {', '.join(map(str, imported)) or 'none'}) and no [monitor] parcels")
        raise MonitorError("no parcel layer configured ([ingest] parcels, --parcels, or a campaign layer imported "
                           "with `sitsmon ingest parcels import`)")

    def _layer(self, campaign: int | None) -> pd.DataFrame:
        from alerts.series import read_parcels

        path = self._layer_path(campaign)
        if path not in self._parcels:
            self._parcels[path] = read_parcels(path)
        return self._parcels[path]

    def enter_campaign(self, tile: _Tile, campaign: int) -> None:
        """Before the first acquisition of ``campaign`` is folded into ``tile``: its state moved onto that
        campaign's parcels, carried where the parcel is unchanged, new where redrawn (monitor/campaigns.py)."""
        state = tile.state
        if state.campaign == campaign:
            return
        if not state.folded:
            tile.state = self._new_state(state.tile_id, campaign)
            return
        from ingest.campaign_layers import unchanged_parcels
        from monitor.campaigns import rebase

        old = state.campaign if state.campaign is not None else self.config.calendar.campaign_of(state.last_key.time_s)
        old_path, new_path = self._layer_path(old), self._layer_path(campaign)
        if old_path == new_path:  # one layer for both campaigns: every parcel continues
            rows = self._state_rows(state.tile_id, campaign)
            if list(rows["parcel_id"].astype(str)) == list(state.parcel_ids) and \
                    list(rows["land_use"].astype(str).str.lower()) == list(state.land_uses):
                state.campaign = campaign
                tile.unsaved += 1
                return
            carried = set(rows["parcel_id"].astype(str))
        else:
            carried = unchanged_parcels(self._geo_layer(old_path), self._geo_layer(new_path))
        tile.state = rebase(state, self._state_rows(state.tile_id, campaign), carried, campaign, self.model,
                            self.detectors)
        tile.unsaved += 1

    @staticmethod
    def _geo_layer(path: Path):
        import geopandas as gpd

        return gpd.read_parquet(path) if path.suffix.lower() in (".parquet", ".geoparquet") else gpd.read_file(path)

    def areas_of(self, tile_id: str) -> list:
        """The watch areas on this tile (monitor/watch_areas.py; none without a cube or configured areas)."""
        if tile_id not in self._areas:
            from monitor.watch_areas import load_watch_areas

            self._areas[tile_id] = load_watch_areas(tuple(self.config.watch_areas), tile_id,
                                                    self.config.cube_of(tile_id))
        return self._areas[tile_id]

    def _state_rows(self, tile_id: str, campaign: int | None) -> pd.DataFrame:
        """A state's rows: the tile's parcels of ``campaign``, then the pixels of its watch areas."""
        from monitor.step import WATCH_AREA

        parcels = self.parcels_of(tile_id, campaign)[["parcel_id", "land_use"]]
        pixels = [pd.DataFrame({"parcel_id": a.pixel_ids(), "land_use": WATCH_AREA}) for a in self.areas_of(tile_id)]
        return pd.concat([parcels, *pixels], ignore_index=True)

    def _new_state(self, tile_id: str, campaign: int | None = None) -> TileState:
        """An empty state of ``campaign`` (None: not known yet; the first fold sets it)."""
        state = new_tile_state(tile_id, self._state_rows(tile_id, campaign), self.model, self.detectors)
        state.campaign = campaign
        return state

    def tile(self, tile_id: str) -> _Tile:
        """The tile's state, loaded (and brought up to its applied log) on first use."""
        if tile_id in self.tiles:
            return self.tiles[tile_id]
        from ingest.locks import WriterLock

        store = TileStore(self.config.states_root, self.namespace, tile_id)
        # One writer per tile state: a worker that just lost the tile's partition may still be writing it.
        # The lock is in the local state folder (store.dir there), also when the states are on object storage.
        lock = WriterLock(self.config.state_root / self.namespace / tile_id, "monitor", wait=60.0,
                          command=f"sitsmon monitor (tile {tile_id})").acquire()
        try:
            return self._load_tile(tile_id, store, lock)
        except BaseException:
            lock.release()
            raise

    def _load_tile(self, tile_id: str, store: TileStore, lock) -> _Tile:
        try:
            state = store.load(self.versions, self.detectors)
        except StateVersionError:
            raise
        except StateStoreError as e:  # corrupt: the last good checkpoint, then the series store
            logger.error("%s; rebuilding tile %s from its last good checkpoint and the series store", e, tile_id)
            self.health.error("corrupt_state", str(e))
            state = self._base_for(store, store.applied(), allow_empty=True, tile_id=tile_id)
        if state is None:
            state = self._new_state(tile_id)
        state.recent = store.read_expectations(recent_s2_keys(state.folded))
        tile = _Tile(state, store, lock)
        points = store.checkpoints()
        tile.last_checkpoint_s = points[-1].key.time_s if points else None
        self.tiles[tile_id] = tile
        applied = store.applied()
        if applied != state.folded:  # a crash after the applied log, before the state write: catch up
            logger.info("tile %s: %d acquisition(s) in the applied log are not in the saved state; refolding",
                        tile_id, len(set(applied) - set(state.folded)))
            self.converge(tile, applied, allow_empty=True)
            self._save(tile, force=True)
        return tile

    def _base_for(self, store: TileStore, desired: dict[SlotKey, str], allow_empty: bool,
                  tile_id: str) -> TileState | None:
        """The newest valid rewind point for ``desired`` (None: start from an empty state)."""
        newest = max(desired).time_s if desired else 0
        for point in reversed(store.checkpoints()):
            wanted = {k: v for k, v in desired.items() if k <= point.key}
            try:
                state = store.load_checkpoint(point, self.versions, self.detectors)
            except StateStoreError as e:
                logger.warning("tile %s: checkpoint %s unusable: %s", tile_id, point.path.name, e)
                continue
            if state.folded == wanted:
                return state
        oldest = min(desired).time_s if desired else 0
        if allow_empty or newest - oldest <= self.config.retention_days * DAY_S:
            return None
        raise LateArrivalError(
            f"tile {tile_id}: no retained checkpoint lies before this acquisition (rewind points are kept for "
            f"{self.config.retention_days:g} days); run `sitsmon monitor replay` for this period")

    def converge(self, tile: _Tile, desired: dict[SlotKey, str], allow_empty: bool = False) -> list[StepResult]:
        """Bring ``tile.state`` to the fold of ``desired`` (key → item ids), with the alert effects of each fold."""
        self.rewind_for(tile, desired, allow_empty)
        last = tile.state.last_key
        return [self._fold(tile, key, desired[key]) for key in sorted(k for k in desired if last is None or k > last)]

    def rewind_for(self, tile: _Tile, desired: dict[SlotKey, str], allow_empty: bool = False) -> None:
        """Unless ``desired`` extends what ``tile.state`` folded, rewind it to the newest valid rewind point
        (or an empty state); what is left to fold is then every key of ``desired`` after its last key."""
        state = tile.state
        last = state.last_key
        extends = all(desired.get(k) == v for k, v in state.folded.items()) and all(
            last is None or k > last for k in desired.keys() - state.folded.keys())
        if not extends:  # a late arrival, a re-processed slot, or a crash: rewind
            base = self._base_for(tile.store, desired, allow_empty, state.tile_id)
            if base is None:
                base = self._new_state(state.tile_id)
            else:
                base.recent = tile.store.read_expectations(recent_s2_keys(base.folded))
            for point in tile.store.checkpoints():  # rewind points after the base no longer match the history
                if base.last_key is None or point.key > base.last_key:
                    tile.store.drop_checkpoint(point)
            tile.state = base
            tile.last_checkpoint_s = base.last_key.time_s if base.last_key else None
            tile.unsaved += 1

    def _fold(self, tile: _Tile, key: SlotKey, item_ids: str) -> StepResult:
        from monitor.campaigns import campaign_of_rows

        t0 = time.perf_counter()
        rows = self.read_rows(tile, key)
        read_s = time.perf_counter() - t0
        self.enter_campaign(tile, campaign_of_rows(rows, key, self.config.calendar))
        result = step_tile(tile.state, key, item_ids, rows, self.model, self.detectors)
        tile.unsaved += 1  # counts steps: a rewind point's save is also the regular save
        result.seconds["read"] = read_s
        self.fold_effects(tile, key, result)
        t0 = time.perf_counter()
        self._maybe_checkpoint(tile, key)
        result.seconds["state"] = time.perf_counter() - t0  # a rewind point's save (fold adds the regular one)
        return result

    def read_rows(self, tile: _Tile, key: SlotKey) -> pd.DataFrame:
        """One acquisition's prepared rows: the slot's parcels, then the watch areas' pixels from the cube."""
        raw = read_slot_rows(self.config.series_dir, tile.state.tile_id, key.sensor, key.slot, self.config.calendar)
        rows = prepare_rows(raw, source=f"series {tile.state.tile_id}/{key.sensor}/{key.slot}")
        areas = self.areas_of(tile.state.tile_id)
        cube = self.config.cube_of(tile.state.tile_id)
        if areas:  # the areas' pixels from the cube, beside the parcels (no regional reference: not parcels)
            from alerts.series import normalise_observations
            from monitor.watch_areas import area_rows

            pixels = [area_rows(a, cube, key.sensor, key.slot) for a in areas]
            pixels = [normalise_observations(p, source=f"cube {cube}", strict=False) for p in pixels if len(p)]
            rows = pd.concat([rows, *pixels], ignore_index=True) if pixels else rows
        return rows

    def fold_effects(self, tile: _Tile, key: SlotKey, result: StepResult) -> None:
        """What one folded acquisition does besides the state: watch-area events, the expectations, the
        alerts in the store, the sinks (the rewind point is ``_maybe_checkpoint``'s)."""
        areas = self.areas_of(tile.state.tile_id)
        cube = self.config.cube_of(tile.state.tile_id)
        if areas:
            t0 = time.perf_counter()
            result.events.extend(self._area_events(tile.state, areas, cube, key))
            result.seconds["watch"] = time.perf_counter() - t0  # the pixel detector: its slice read and its step
        t_store = time.perf_counter()  # the store stage: the expectations file, then the alerts
        if result.expectations is not None:
            expectations = result.expectations
            if areas:
                parcels = self.parcels_of(tile.state.tile_id, tile.state.campaign)
                expectations = expectations[expectations["parcel_id"].isin(set(parcels["parcel_id"].astype(str)))]
            tile.store.write_expectations(key, expectations)
        kill_point("after_step")
        t0 = time.perf_counter()
        expectations_s = t0 - t_store
        alerts = [Alert.from_event(e, tile_id=tile.state.tile_id, model_version=self.alert_model_version,
                                   scope=self.scope) for e in result.events]
        if alerts:
            result.new_alerts = self.store.upsert_many(alerts)
        result.seconds["store"] = time.perf_counter() - t0 + expectations_s
        result.alerts = alerts
        kill_point("after_alerts")
        t0 = time.perf_counter()
        self._send(alerts)
        result.seconds["sinks"] = time.perf_counter() - t0
        kill_point("after_sinks")

    def _area_events(self, state: TileState, areas, cube: Path, key: SlotKey) -> list[Event]:
        """This acquisition folded into the watch areas' pixel solar states; the installations raised now."""
        from monitor.watch_areas import step_areas

        return step_areas(state, areas, cube, key)

    def _send(self, alerts: Iterable[Alert]) -> None:
        from alerts.sinks import dispatch

        for alert in alerts:
            outcome = dispatch(alert, self.sinks)
            for sink, status in outcome.items():
                if status != "ok":
                    self.health.error("sink", f"{sink}: alert {alert.alert_id}: {status}")
        for sink in self.sinks:
            flush = getattr(getattr(sink, "publisher", None), "flush", None)
            if callable(flush):
                flush()

    def _maybe_checkpoint(self, tile: _Tile, key: SlotKey) -> None:
        every = int(self.config.checkpoint_days * DAY_S)
        if tile.last_checkpoint_s is not None and key.time_s // every <= tile.last_checkpoint_s // every:
            return
        # the state is written now anyway (as CURRENT) and that generation kept: a rewind point costs no copy
        tile.store.write_checkpoint(tile.state, self.versions, self.detectors)
        tile.unsaved = 0
        tile.last_checkpoint_s = key.time_s
        tile.store.prune_checkpoints(key.time_s - int(self.config.retention_days * DAY_S))

    def _save(self, tile: _Tile, force: bool = False) -> None:
        if tile.unsaved and (force or tile.unsaved >= self.config.save_every):
            tile.store.save(tile.state, self.versions, self.detectors)
            tile.unsaved = 0

    def save_all(self, tiles: Iterable[str] | None = None) -> None:
        for tile_id in list(tiles if tiles is not None else self.tiles):
            if tile_id in self.tiles:
                self._save(self.tiles[tile_id], force=True)

    def drop_tiles(self) -> None:
        """Write every tile's state and let it go (its partition moved to another worker)."""
        self.save_all()
        for tile in self.tiles.values():
            tile.lock.release()
        self.tiles.clear()

    # ---- one event ------------------------------------------------------------------------------------
    def fold(self, acq: Acquisition) -> FoldReport:
        """Fold one acquisition event into its tile (steps 2-5 of the module docstring)."""
        started = time.perf_counter()
        tile = self.tile(acq.tile_id)
        folded = tile.state.folded
        key = acq.key
        if folded.get(key) == acq.item_ids:
            return FoldReport(acq, "duplicate")
        desired = {k: v for k, v in folded.items() if (k.sensor, k.slot) != (key.sensor, key.slot)}
        desired[key] = acq.item_ids
        late = tile.state.last_key is not None and key < tile.state.last_key or len(desired) <= len(folded)
        try:
            results = self.converge(tile, desired)
        except LateArrivalError as e:
            tile.store.record_refused(key, acq.item_ids, str(e))
            self.health.error("late_refused", str(e))
            return FoldReport(acq, "refused", reason=str(e))
        tile.store.append_applied(key, acq.item_ids)
        t0 = time.perf_counter()
        self._save(tile, force=late)
        state_s = time.perf_counter() - t0
        kill_point("after_state")
        alerts = [a for r in results for a in r.alerts]
        seconds = {"state": state_s}
        for r in results:
            for stage, s in r.seconds.items():
                seconds[stage] = seconds.get(stage, 0.0) + s
        seconds["total"] = time.perf_counter() - started
        report = FoldReport(acq, "rewound" if late else "folded", results, alerts,
                            new_alerts=sum(r.new_alerts for r in results), seconds=seconds)
        for r in results:
            self.health.folded(acq.tile_id, r.key.sensor, r.key.time_s, r.parcels_updated, tile.state.n,
                               {k: v for k, v in r.seconds.items()})
        for a in alerts:
            self.health.alerts.labels(a.type).inc()
        return report

    # ---- traffic lights -------------------------------------------------------------------------------
    def update_lights(self, tiles: Iterable[str]) -> pd.DataFrame | None:
        """Recompute the traffic lights of ``tiles`` per (parcel, campaign) (``monitor.lights``)."""
        from monitor.lights import update_lights

        return update_lights(self, tiles)

    def close(self) -> None:
        self.drop_tiles()
        self.store.close()
        self.health.stop()


# ---- the consumer loop ------------------------------------------------------------------------------
@dataclass
class RunReport:
    acquisitions: int = 0
    parcels_updated: int = 0
    alerts: int = 0
    new_alerts: int = 0
    duplicates: int = 0
    rewound: int = 0
    refused: int = 0
    dead_lettered: int = 0
    tiles: set[str] = field(default_factory=set)
    alert_ids: set[str] = field(default_factory=set)  # a rewind re-raises the same ids: counted once

    def to_dict(self) -> dict[str, Any]:
        return {"acquisitions": self.acquisitions, "parcels_updated": self.parcels_updated, "alerts": self.alerts,
                "new_alerts": self.new_alerts,
                "duplicates": self.duplicates, "rewound": self.rewound, "refused": self.refused,
                "dead_lettered": self.dead_lettered}


class Service:
    """The consumer loop around a :class:`Monitor`: poll, fold, commit, report."""

    def __init__(self, monitor: Monitor, bus, *, on_fold: Callable[[FoldReport], None] | None = None) -> None:
        self.monitor = monitor
        self.bus = bus
        self.on_fold = on_fold
        self.consumer = None
        self.report = RunReport()
        self._health_written_s = -1e9

    def _consumer(self):
        if self.consumer is None:
            cfg = self.monitor.config
            self.consumer = self.bus.consumer([cfg.topic], group_id=cfg.group_id, on_revoke=self._on_revoke)
        return self.consumer

    def _on_revoke(self, partitions) -> None:
        """Partitions taken away: write their tiles' states and forget them (another worker continues)."""
        self.monitor.drop_tiles()

    def process(self, messages) -> int:
        """Fold a batch of messages; returns how many acquisitions were folded."""
        cfg = self.monitor.config
        folded = 0
        for message in messages:
            error = getattr(message, "error", None)
            try:
                if error:
                    raise BadEventError(error)
                acq = parse_event(message.value, cfg.series_dir)
                report = self.monitor.fold(acq)
            except (BadEventError, MonitorError, OSError, ValueError, KeyError) as e:
                reason = f"{type(e).__name__}: {e}" if not isinstance(e, MonitorError) else str(e)
                logger.error("acquisition event %s/%s@%s dead-lettered: %s", message.topic, message.partition,
                             message.offset, reason)
                self.monitor.health.error("bad_event", reason)
                dead_letter(self.bus, message, reason, topic=cfg.dead_letter_topic)
                self.report.dead_lettered += 1
                continue
            self.report.tiles.add(acq.tile_id)
            if report.status == "duplicate":
                self.report.duplicates += 1
            elif report.status == "refused":
                self.report.refused += 1
            else:
                folded += 1
                self.report.acquisitions += 1
                self.report.rewound += report.status == "rewound"
                self.report.parcels_updated += report.parcels_updated
                self.report.alert_ids.update(a.alert_id for a in report.alerts)
                self.report.alerts = len(self.report.alert_ids)
                self.report.new_alerts += report.new_alerts
            if self.on_fold is not None:
                self.on_fold(report)
        return folded

    def commit(self) -> None:
        t0 = time.perf_counter()
        self.bus.flush()
        kill_point("before_commit")
        try:
            self._consumer().commit()
        except CommitError as e:  # e.g. a batch outlasted a Kafka 0.9 session: the group moved on without us
            logger.warning("%s; the batch's events come back as duplicates and are skipped", e)
            self.monitor.health.error("commit", str(e))
        self.monitor.health.latency.labels("commit").observe(time.perf_counter() - t0)
        self._write_health()

    def _write_health(self) -> None:
        """This worker's health file, with the lag of the partitions it owns now."""
        self._health_written_s = time.monotonic()
        self.monitor.health.set_lag({f"{t}/{p}": int(n) for (t, p), n in self._consumer().lag().items()})
        self.monitor.health.write()

    def _undrained(self) -> bool:
        """Whether the group has uncommitted messages on the topic (read without joining the group)."""
        cfg = self.monitor.config
        done = self.bus.committed(cfg.group_id, cfg.topic)
        return any(end > done.get(p, 0) for p, end in self.bus.end_offsets(cfg.topic).items())

    def _idle_health(self, every_s: float = 5.0) -> None:
        """While idle, refresh this worker's health file now and then (its partitions and their lag):
        a worker that owns partitions without traffic still shows up, and a rebalance shows at once."""
        if time.monotonic() - self._health_written_s >= every_s:
            self._write_health()

    def run_once(self, timeout_s: float = 0.5, join_timeout_s: float = 60.0) -> RunReport:
        """Drain what is on the bus now, then return (``monitor run --once``).

        An empty poll ends the drain only once nothing is left uncommitted, or after ``join_timeout_s``:
        on Kafka the first polls come back empty while the group is (re)joined, which waits up to the
        session timeout for a member that was killed."""
        consumer = self._consumer()
        deadline = time.monotonic() + join_timeout_s
        while True:
            batch = consumer.poll(timeout_s=timeout_s, max_records=self.monitor.config.max_records)
            if batch:
                self.process(batch)
                self.commit()
            elif time.monotonic() >= deadline or not self._undrained():
                break
        self.monitor.save_all()
        return self.report

    def run_forever(self, stop: Callable[[], bool] = lambda: False, timeout_s: float = 1.0,
                    on_idle: Callable[[RunReport], None] | None = None) -> RunReport:
        consumer = self._consumer()
        pending_lights: set[str] = set()
        while not stop():
            batch = consumer.poll(timeout_s=timeout_s, max_records=self.monitor.config.max_records)
            if batch:
                before = set(self.report.tiles)
                self.process(batch)
                self.commit()
                pending_lights |= self.report.tiles | before
                continue
            self._idle_health()
            if pending_lights:  # caught up: the lights of the tiles that changed
                self.monitor.save_all()
                self.monitor.update_lights(pending_lights)
                pending_lights.clear()
                if on_idle is not None:
                    on_idle(self.report)
        self.monitor.save_all()
        return self.report

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close()
        self.monitor.close()


def format_fold(report: FoldReport, started: float | None = None) -> str:
    """One live line per acquisition: date, sensor, parcels updated, new alerts, latency."""
    acq = report.acquisition
    day = datetime.fromtimestamp(acq.time_s, UTC).date().isoformat()
    by_type: dict[str, int] = {}
    for a in report.alerts:
        by_type[a.type] = by_type.get(a.type, 0) + 1
    alerts = ", ".join(f"{n} {t}" for t, n in sorted(by_type.items())) or "no alert"
    latency = f"{report.seconds.get('total', 0.0) * 1000:.0f} ms"
    note = {"rewound": " (late: rewound and refolded)", "refused": f" (refused: {report.reason})",
            "duplicate": " (duplicate: skipped)"}.get(report.status, "")
    return (f"      {day} {acq.sensor} {acq.tile_id}: {report.parcels_updated} parcels updated, {alerts}, "
            f"{latency}{note}")


def json_line(report: RunReport) -> str:
    return json.dumps(report.to_dict())
