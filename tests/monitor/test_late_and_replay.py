"""Late and out-of-order acquisitions rewind to a checkpoint and end equal to the on-time run; an
acquisition older than every retained checkpoint is refused and recorded, and ``monitor replay``
folds it in; replay equals streaming; bad events are dead-lettered and the stream goes on."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from monitor.bus import make_bus
from monitor.config import MonitorConfig
from monitor.replay import replay_period
from monitor.service import Monitor, Service
from tests.monitor.conftest import synthetic_season, write_parcels
from tests.monitor.helpers import TILE, publish, write_slots


def _small():
    obs, parcels = synthetic_season()
    keep = parcels[parcels.parcel_id.isin(["G2", "C1"])]
    obs = obs[obs.parcel_id.isin(keep.parcel_id) & (obs.days >= obs.days.min() + 70)
              & (obs.days <= obs.days.min() + 190)]
    return obs.reset_index(drop=True), keep.reset_index(drop=True)


@pytest.fixture()
def small():
    """Two parcels (a twice-mown grassland and a cereal) over four months."""
    return _small()


def _monitor(root: Path, parcels, model, **cfg) -> Monitor:
    config = MonitorConfig(data_dir=root, series_dir=root / "series",
                           parcels=write_parcels(root / "parcels.csv", parcels), **cfg)
    return Monitor(config, model=model)


def _stream(root: Path, obs, parcels, model, reorder=None, **cfg):
    events = write_slots(root / "series", obs)
    if reorder is not None:
        events = reorder(events)
    bus = make_bus("memory", path=root / "bus.sqlite")
    publish(bus, events)
    service = Service(_monitor(root, parcels, model, **cfg), bus)
    try:
        report = service.run_once()
        state = service.monitor.tiles[TILE].state
        alerts = sorted((a.alert_id, a.type, a.event_date, a.confidence) for a in service.monitor.store.query())
        result = report, state, alerts, events
    finally:
        service.close()
        bus.close()
    return result


@pytest.fixture(scope="module")
def in_order(tmp_path_factory, model):
    """``(root, report, state, alerts, events)`` of ``small`` streamed in order with the default configuration:
    the run four tests compare with, streamed once for them (read it; copy ``root`` to change it)."""
    obs, parcels = _small()
    root = tmp_path_factory.mktemp("on-time")
    return root, *_stream(root, obs, parcels, model)


def _replay_as_streamed(monitor: Monitor, streamed, alerts) -> dict:
    """Replay 2024 with ``monitor`` (closed after): its tile state must be the streamed run's (to the
    encoder's tolerance) and its alerts ``alerts``; returns the replay's summary."""
    try:
        result = replay_period(monitor, "2024-01-01", "2024-12-31")
        _same_state(monitor.tiles[TILE].state, streamed, encoder_tolerance=True)
        assert sorted((a.alert_id, a.type, a.event_date, a.confidence) for a in monitor.store.query()) == alerts
        return result
    finally:
        monitor.close()


def _namespace(root: Path) -> Path:
    return next(p for p in (root / "monitor").iterdir() if p.is_dir())


def _same_state(a, b, encoder_tolerance: bool = False) -> None:
    """Equal states; ``encoder_tolerance``: a replay (the encoder's chunkwise form, not the stream's
    recurrent step) holds the encoder arrays to fp32 tolerance (tests/monitor/test_replay_parallel.py)."""
    assert a.folded == b.folded
    if encoder_tolerance:
        from tests.monitor.test_replay_parallel import assert_close_state

        assert_close_state(a.encoder, b.encoder)
    else:
        assert a.encoder.equals(b.encoder), "encoder states differ"
    for name in a.detectors:
        x, y = a.detectors[name], b.detectors[name]
        if isinstance(x, list):  # the per-parcel reference: frozen dataclasses
            assert x == y, name
        else:  # kernel state arrays, NaN equal to NaN
            for field in dataclasses.fields(x):
                np.testing.assert_equal(getattr(x, field.name), getattr(y, field.name), err_msg=f"{name}.{field.name}")


def _move(events, index: int, after: int):
    """The event at ``index`` delivered after ``after`` later events."""
    events = list(events)
    late = events.pop(index)
    events.insert(index + after, late)
    return events


def _first(events, sensor: str, start: int = 0) -> int:
    return next(i for i, e in enumerate(events) if e["sensor"] == sensor and i >= start)


def test_a_late_s1_after_three_s2_equals_the_on_time_run(tmp_path: Path, small, in_order, model) -> None:
    obs, parcels = small
    _, _, on_time, alerts, events = in_order
    i = _first(events, "S1", 10)
    after = [j for j in range(i + 1, len(events)) if events[j]["sensor"] == "S2"][2] - i
    report, late, late_alerts, _ = _stream(tmp_path / "late", obs, parcels, model, lambda ev: _move(ev, i, after))
    assert report.rewound == 1
    _same_state(late, on_time)
    assert late_alerts == alerts


def test_a_late_s2_across_a_checkpoint_equals_the_on_time_run(tmp_path: Path, small, model) -> None:
    obs, parcels = small
    _, on_time, alerts, events = _stream(tmp_path / "on-time", obs, parcels, model, checkpoint_days=5)
    i = _first(events, "S2", 15)
    report, late, late_alerts, _ = _stream(tmp_path / "late", obs, parcels, model, lambda ev: _move(ev, i, 12),
                                           checkpoint_days=5)
    assert report.rewound == 1
    _same_state(late, on_time)
    assert late_alerts == alerts


def test_an_acquisition_older_than_the_retained_window_is_refused_recorded_then_replayed(
        tmp_path: Path, small, in_order, model) -> None:
    obs, parcels = small
    _, _, on_time, alerts, events = in_order
    root = tmp_path / "late"
    report, late, _, _ = _stream(root, obs, parcels, model, lambda ev: _move(ev, 3, len(ev) - 4),
                                 retention_days=20, checkpoint_days=5)
    assert report.refused == 1
    missing = events[3]
    refused = [json.loads(line) for line in
               _namespace(root).joinpath(TILE, "refused.jsonl").read_text().splitlines()]
    assert [r["slot"] for r in refused] == [missing["slot"]]
    assert "monitor replay" in refused[0]["reason"]
    assert len(late.folded) == len(on_time.folded) - 1  # nothing silently folded, nothing lost: recorded
    _replay_as_streamed(_monitor(root, parcels, model, retention_days=20, checkpoint_days=5), on_time, alerts)


def test_replay_produces_the_states_and_alerts_of_the_stream(tmp_path: Path, small, in_order, model) -> None:
    obs, parcels = small
    _, _, streamed, alerts, _ = in_order
    root = tmp_path / "replay"
    write_slots(root / "series", obs)
    result = _replay_as_streamed(_monitor(root, parcels, model), streamed, alerts)  # the chunkwise block path
    assert result["acquisitions"] == len(streamed.folded)


def test_bad_events_are_dead_lettered_and_the_stream_goes_on(tmp_path: Path, small, model) -> None:
    obs, parcels = small
    root = tmp_path
    events = write_slots(root / "series", obs)
    bad = [
        ({**events[0], "schema": "sitsmon.acquisition/99"}, "schema"),
        ({**events[0], "tile_id": "99ZZZ"}, "unknown tile"),
        ({**events[0], "slot": "20990101T000000"}, "not in the series store"),
        ({k: v for k, v in events[0].items() if k != "time"}, "without time"),
    ]
    bus = make_bus("memory", path=root / "bus.sqlite")
    publish(bus, events[:5] + [b for b, _ in bad])
    bus.publish_bytes("sits.acquisitions", TILE, b"{not json")
    bad.append((None, "JSON"))
    publish(bus, events[5:])
    service = Service(_monitor(root, parcels, model), bus)
    try:
        report = service.run_once()
        assert report.dead_lettered == len(bad)
        assert report.acquisitions == len(events)  # the stream went on past every bad event
        reader = bus.consumer(["sits.acquisitions.dlq"], group_id="dlq-reader")
        letters = reader.poll(timeout_s=0.5, max_records=100)
        reader.close()
        assert len(letters) == len(bad)
        reasons = sorted(letter.value["reason"] for letter in letters)
        for _, why in bad:  # letters come back in partition order: match each bad event to its reason
            assert sum(why in r for r in reasons) == 1, (why, reasons)
    finally:
        service.close()
        bus.close()


def test_a_corrupt_state_chunk_is_detected_and_the_tile_rebuilt(tmp_path: Path, small, in_order, model) -> None:
    from tests.dashboards.conftest import copy_data_dir

    obs, parcels = small
    clean_root, _, clean, alerts, _ = in_order
    root = copy_data_dir(clean_root, tmp_path / "corrupt")  # a second run of the same stream, to corrupt
    tile_dir = _namespace(root) / TILE
    current = json.loads((tile_dir / "CURRENT").read_text())["state"]
    chunk = next(p for p in (tile_dir / current / "encoder" / "layer_0").rglob("*") if p.is_file()
                 and p.name != "zarr.json")
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    monitor = _monitor(root, parcels, model)
    try:
        tile = monitor.tile(TILE)
        _same_state(tile.state, clean)
        assert "corrupt_state" in (monitor.health.last_error or "")
        assert sorted((a.alert_id, a.type, a.event_date, a.confidence) for a in monitor.store.query()) == alerts
    finally:
        monitor.close()
