"""Rewind points are retained state generations, not copies: each names the generation the save at its
acquisition wrote, generations no one names are deleted, and points outside the window are dropped."""

from __future__ import annotations

import json
from pathlib import Path

from monitor.bus import make_bus
from monitor.config import MonitorConfig
from monitor.service import Monitor, Service
from tests.monitor.conftest import write_parcels
from tests.monitor.helpers import TILE, publish, write_slots

DAY_S = 86400


def test_rewind_points_are_the_saved_generations_and_old_ones_are_collected(tmp_path: Path, synthetic_obs,
                                                                            model) -> None:
    obs, parcels = synthetic_obs
    keep = parcels[parcels.parcel_id.isin(["G2"])]
    obs = obs[obs.parcel_id.isin(keep.parcel_id)]
    obs = obs[(obs.days >= obs.days.min() + 110) & (obs.days <= obs.days.min() + 170)]
    events = write_slots(tmp_path / "series", obs)
    bus = make_bus("memory", path=tmp_path / "bus.sqlite")
    publish(bus, events)
    config = MonitorConfig(data_dir=tmp_path, series_dir=tmp_path / "series", checkpoint_days=5,
                           retention_days=20, parcels=write_parcels(tmp_path / "parcels.csv", keep))
    service = Service(Monitor(config, model=model), bus)
    try:
        service.run_once()
        monitor = service.monitor
        store = monitor.tiles[TILE].store
        final = monitor.tiles[TILE].state
        points = store.checkpoints()
        assert len(points) >= 3
        current = json.loads((store.dir / "CURRENT").read_text())["state"]
        on_disk = {p.name for p in store.dir.glob("state-*.zarr")}
        # no copy: every rewind point is a generation of the tile folder; nothing else is kept
        assert {p.path.name for p in points} | {current} == on_disk
        assert not list((store.dir / "checkpoints").glob("*.zarr"))
        newest = final.last_key.time_s
        assert sum(p.key.time_s < newest - 20 * DAY_S for p in points) <= 1  # the window, plus one before it
        for point in points:  # each generation holds exactly the history up to its key
            state = store.load_checkpoint(point, monitor.versions, monitor.detectors)
            assert state.last_key == point.key
            assert state.folded == {k: v for k, v in final.folded.items() if k <= point.key}
        # a rewind past the newest points drops them, and their generations go
        base = points[-3]
        store.drop_checkpoint(points[-1])
        store.drop_checkpoint(points[-2])
        assert store.checkpoints()[-1] == base
        assert {p.name for p in store.dir.glob("state-*.zarr")} == {p.path.name for p in store.checkpoints()} | {
            current}
    finally:
        service.close()
        bus.close()
