"""Monitor states and rewind points on S3-compatible object storage (a moto server the tests start): the
same states, bit for bit, as on local disk, and a restarted monitor continues from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from contracts import storage
from monitor.bus import make_bus
from monitor.config import MonitorConfig
from monitor.service import Monitor, Service
from monitor.state_store import TileStore
from tests.monitor.conftest import write_parcels
from tests.monitor.helpers import TILE, publish, write_slots


def stream(config: MonitorConfig, events: list[dict], bus_path: Path, model) -> Monitor:
    bus = make_bus("memory", path=bus_path)
    publish(bus, events)
    service = Service(Monitor(config, model=model), bus)
    try:
        service.run_once()
    finally:
        service.close()
        bus.close()
    return service.monitor


def assert_states_equal(a, b, detectors) -> None:
    """Every array of two tile states equal bit for bit (NaN where NaN), and the same history."""
    assert a.folded == b.folded and a.area_sites == b.area_sites
    assert list(a.parcel_ids) == list(b.parcel_ids) and list(a.land_uses) == list(b.land_uses)
    for x, y in zip(a.encoder.tensors(), b.encoder.tensors(), strict=True):
        assert x.dtype == y.dtype and torch.equal(torch.nan_to_num(x, nan=-7.0), torch.nan_to_num(y, nan=-7.0))
        assert torch.equal(torch.isnan(x), torch.isnan(y))
    for det in detectors:
        da, db = det.dump(a.detectors[det.event_type]), det.dump(b.detectors[det.event_type])
        assert da.keys() == db.keys()
        for k in da:
            va, vb = np.asarray(da[k]), np.asarray(db[k])
            assert va.dtype == vb.dtype and va.tobytes() == vb.tobytes(), (det.event_type, k)


def test_states_and_rewind_points_on_s3_equal_the_local_ones(tmp_path: Path, s3_bucket: str, synthetic_obs,
                                                            model) -> None:
    obs, parcels = synthetic_obs
    keep = parcels[parcels.parcel_id.isin(["G2", "C1"])]
    obs = obs[obs.parcel_id.isin(keep.parcel_id) & (obs.days >= obs.days.min() + 110)
              & (obs.days <= obs.days.min() + 170)]
    layer = write_parcels(tmp_path / "parcels.csv", keep)
    events = write_slots(tmp_path / "series", obs)
    write_slots(f"{s3_bucket}/series", obs)  # the S3 run reads its series from the bucket too
    common = {"checkpoint_days": 5, "retention_days": 20, "save_every": 2, "parcels": layer}
    local_config = MonitorConfig(data_dir=tmp_path / "local", series_dir=tmp_path / "series", **common)
    local = stream(local_config, events, tmp_path / "bus-local.sqlite", model)
    s3_config = MonitorConfig(data_dir=tmp_path / "s3", series_dir=f"{s3_bucket}/series",
                              states_url=f"{s3_bucket}/states", **common)
    remote = stream(s3_config, events, tmp_path / "bus-s3.sqlite", model)

    ls = TileStore(local_config.states_root, local.namespace, TILE)
    rs = TileStore(s3_config.states_root, remote.namespace, TILE)
    assert storage.is_url(rs.dir) and not list((tmp_path / "s3" / "monitor").rglob("CURRENT"))  # nothing on disk
    versions, detectors = local.versions, local.detectors
    assert_states_equal(rs.load(versions, detectors), ls.load(versions, detectors), detectors)
    points_l, points_r = ls.checkpoints(), rs.checkpoints()
    assert len(points_l) >= 3 and [p.key for p in points_r] == [p.key for p in points_l]
    for pl, pr in zip(points_l, points_r, strict=True):
        assert_states_equal(rs.load_checkpoint(pr, versions, detectors), ls.load_checkpoint(pl, versions, detectors),
                            detectors)
    assert rs.applied() == ls.applied()
    keys = sorted(rs.applied())
    s2 = [k for k in keys if k.sensor == "S2"]
    got, want = rs.read_expectations(s2), ls.read_expectations(s2)
    assert len(got) == len(want) > 0 and all(g.equals(w) for g, w in zip(got, want, strict=True))
    # the same generations are kept (CURRENT and the rewind points), nothing else
    names = {storage.name(p) for p in storage.glob(rs.dir, "state-*.zarr")}
    assert names == {p.name for p in ls.dir.glob("state-*.zarr")}

    # a monitor started afresh on another data dir (another host) continues from the states on S3
    again = Monitor(MonitorConfig(data_dir=tmp_path / "elsewhere", series_dir=f"{s3_bucket}/series",
                                  states_url=f"{s3_bucket}/states", **common), model=model)
    try:
        assert_states_equal(again.tile(TILE).state, ls.load(versions, detectors), detectors)
    finally:
        again.close()
