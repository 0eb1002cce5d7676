"""Monitor states and rewind points on S3-compatible object storage (a moto server the tests start): the
same states, bit for bit, as on local disk, and a restarted monitor continues from them."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from contracts import storage
from monitor.bus import make_bus
from monitor.config import MonitorConfig
from monitor.service import Monitor, Service
from monitor.state_store import TileStore
from tests.monitor.conftest import write_parcels
from tests.monitor.helpers import (
    TILE,
    WORKER_SAVE_EVERY,
    comparable,
    kafka_worker_env,
    publish,
    start_worker,
    stop_workers,
    write_slots,
)
from tests.monitor.test_kafka_group import REPO, _publish, _tiles, kill_one_mid_season


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
    keep = parcels[parcels.parcel_id.isin(["G2"])]  # one parcel, five weeks: a few seconds on a quiet machine
    obs = obs[obs.parcel_id.isin(keep.parcel_id) & (obs.days >= obs.days.min() + 130)
              & (obs.days <= obs.days.min() + 165)]
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


def _applied_on_s3(states_url: str, tile: str) -> int:
    return sum(len(TileStore(states_url, ns, tile).applied()) for ns in storage.list_names(states_url))


@pytest.mark.integration
@pytest.mark.slow
def test_two_workers_on_kafka_hand_a_tile_over_through_the_states_on_s3(
        tmp_path: Path, kafka_bootstrap: str, make_database, s3_bucket: str, synthetic_obs, model) -> None:
    """Item 3 on the real broker: two ``monitor run`` processes in one group, each with its own data dir
    (nothing local is shared: two hosts), series and states on S3. One is SIGKILLed; the other takes its
    partitions over and continues from the states on S3: alerts and states equal an uninterrupted run."""
    obs, parcels = synthetic_obs
    keep = parcels[parcels.parcel_id.isin(["G2"])]  # one mown grassland, 45 days: one mowing alert per tile
    obs = obs[obs.parcel_id.isin(keep.parcel_id) & (obs.days >= obs.days.min() + 120)
              & (obs.days <= obs.days.min() + 165)]
    tiles = _tiles()
    series, states = f"{s3_bucket}/series", f"{s3_bucket}/states"
    events, layers = [], []
    for tile in tiles:
        o = obs.assign(parcel_id=tile + "-" + obs["parcel_id"])
        events.extend(write_slots(series, o, tile))
        write_slots(tmp_path / "series", o, tile)  # the uninterrupted reference reads a local copy
        layers.append(keep.assign(parcel_id=tile + "-" + keep["parcel_id"], tile_id=tile))
    layer = tmp_path / "parcels.csv"
    pd.concat(layers).to_csv(layer, index=False)
    events.sort(key=lambda e: (e["time"], e["sensor"] == "S2", e["tile_id"]))
    per_tile = {t: sum(e["tile_id"] == t for e in events) for t in tiles}

    dsn = make_database("monitor_s3_group")
    topic = f"test.acq.{uuid.uuid4().hex[:8]}"
    env = kafka_worker_env(kafka_bootstrap, dsn, topic,
                           SITSMON_STORAGE__SERIES_URL=series, SITSMON_STORAGE__STATES_URL=states)
    bus = make_bus("kafka", kafka_bootstrap, "0.9")
    half = len(events) // 2
    _publish(bus, topic, events[:half])
    logs = [tmp_path / f"worker-{i}.log" for i in range(2)]
    workers = [start_worker(["monitor", "run", "--data-dir", str(tmp_path / f"host-{i}"), "--parcels", str(layer)],
                            env, logs[i], REPO) for i in range(2)]
    try:
        kill_one_mid_season(workers, logs, lambda: _publish(bus, topic, events[half:]),
                            lambda t: _applied_on_s3(states, t), per_tile)
    finally:
        stop_workers(workers, timeout_s=120)  # the survivor's clean stop writes its last states
        bus.close()
    assert not list((tmp_path / "host-1").rglob("CURRENT"))  # the states went to S3 only
    from alerts.store import AlertQuery, open_store

    with open_store(dsn) as store:
        stored = store.query(AlertQuery(limit=100_000))
    assert len({a.alert_id for a in stored}) == len(stored)

    # the uninterrupted run: one in-process monitor over the same events, states on local disk
    reference = MonitorConfig(data_dir=tmp_path / "reference", series_dir=tmp_path / "series", parcels=layer,
                              save_every=WORKER_SAVE_EVERY, max_records=5)
    ref = stream(reference, events, tmp_path / "bus-reference.sqlite", model)
    from alerts.store import open_store as open_alerts

    with open_alerts(reference.alert_store_url) as store:
        expected = store.query(AlertQuery(limit=100_000))
    assert expected and comparable(stored) == comparable(expected)
    for tile in tiles:
        want = TileStore(reference.states_root, ref.namespace, tile).load(ref.versions, ref.detectors)
        got = TileStore(states, ref.namespace, tile).load(ref.versions, ref.detectors)
        assert_states_equal(got, want, ref.detectors)
