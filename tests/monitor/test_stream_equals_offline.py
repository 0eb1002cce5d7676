"""The monitor's streamed alerts (through the bus, one acquisition event at a time) equal the offline
detectors run on the same series (`run_detectors`, what `sitsmon detect` runs)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from alerts.detectors import make_detectors, run_detectors
from alerts.series import add_regional_reference
from alerts.types import Alert
from monitor.bus import make_bus
from monitor.config import MonitorConfig
from monitor.service import Monitor, Service
from tests.monitor.conftest import write_parcels
from tests.monitor.helpers import TILE, comparable, publish, write_slots


def _offline(obs: pd.DataFrame, parcels: pd.DataFrame):
    events, _ = run_detectors(add_regional_reference(obs), parcels, make_detectors(["mowing", "harvest", "solar"]))
    return events


def _stream(tmp: Path, obs: pd.DataFrame, parcels: pd.DataFrame, model, order=None, **config):
    series = tmp / "series"
    events = write_slots(series, obs)
    if order is not None:
        events = order(events)
    cfg = MonitorConfig(data_dir=tmp, series_dir=series, parcels=write_parcels(tmp / "parcels.csv", parcels),
                        **config)
    bus = make_bus("memory", path=tmp / "bus.sqlite")
    publish(bus, events)
    service = Service(Monitor(cfg, model=model), bus)
    try:
        report = service.run_once()
        events_seen = [a for a in service.monitor.store.query(limit=100_000)]
    finally:
        service.close()
        bus.close()
    return report, events_seen


def test_streamed_alerts_equal_offline_on_synthetic_series(tmp_path: Path, synthetic_obs, model) -> None:
    obs, parcels = synthetic_obs
    offline = [Alert.from_event(e, tile_id=TILE) for e in _offline(obs, parcels)]
    assert {a.type for a in offline} >= {"mowing", "harvest"}  # the comparison has something to compare
    report, streamed = _stream(tmp_path, obs, parcels, model, save_every=7)
    assert report.acquisitions == obs.groupby(["time", "sensor"]).ngroups
    assert comparable(streamed) == comparable(offline)
    assert any("model" in a.evidence for a in streamed)  # the encoder's expectation is in the evidence
    assert any("interval" in a.evidence for a in streamed)  # and the event's interval (alerts.intervals)
