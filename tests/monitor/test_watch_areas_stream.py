"""Watch areas in the stream: the stepped pixel solar detector, folded per acquisition through the bus, raises
the alerts that the batch detector re-run on the cube's history at each S2 view raises (same ids, dates,
polygons); a late S2 rewinds the pixel states with the tile and ends equal to the on-time run; a replay
of the season steps them alike."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import box, shape

from alerts.series import normalise_observations
from alerts.types import Alert
from ingest.cube import CubeWriter
from ingest.types import REFLECTANCE_SCALE, S1_POLS, S2_BANDS, Sensor, TileGrid
from monitor.bus import make_bus
from monitor.config import MonitorConfig
from monitor.replay import replay_period
from monitor.service import Monitor, Service
from monitor.watch_areas import load_watch_areas, offline_area_events
from tests.alerts.test_solar_pixels import make_scene
from tests.monitor.conftest import write_parcels
from tests.monitor.helpers import TILE, publish, write_slots

DAY0 = pd.Timestamp("2024-03-18", tz="UTC")  # day 19800 of make_scene
GRID = TileGrid(TILE, 32633, 10.0, (500000.0, 5399680.0, 500320.0, 5400000.0))  # 32 x 32 px, make_scene's grid
FARM = box(500030.0, 5399860.0, 500150.0, 5399960.0)  # make_scene's site: rows 4-13, cols 3-14


def _slot(when: pd.Timestamp, sensor: str) -> str:
    return when.strftime("%Y%m%dT%H%M%S") + ("-s1" if sensor == "S1" else "")


def _season(root: Path) -> tuple[Path, Path, Path, list[dict]]:
    """A cube of make_scene's season (S2 every 10 days, S1 every 12, to day 200), one parcel's series for every
    acquisition (the events read it), a watch area around the farm (and part of the harvested field); the acquisition events."""
    cube, t2, clear, vv, t1, _ = make_scene()
    keep2, keep1 = np.flatnonzero((t2 - 19800 <= 200) & ((t2 - 19800) % 10 == 0)), np.flatnonzero(t1 - 19800 <= 200)[::4]
    writer = CubeWriter(root / "cubes" / f"{TILE}.zarr", GRID)
    rows = []
    for i in keep2:
        when = DAY0 + pd.Timedelta(days=float(t2[i] - 19800), hours=10)
        index, new = writer.begin_slot(Sensor.S2, _slot(when, "S2"))
        data = np.clip(np.round(cube[i] / REFLECTANCE_SCALE), 1, 65535).astype(np.uint16)
        writer.write_block(Sensor.S2, index, (0, 32, 0, 32), data, clear[i].astype(np.uint8))
        writer.commit_slot(Sensor.S2, index, new, _slot(when, "S2"), int(when.timestamp()), (f"item-{_slot(when, 'S2')}",),
                           {"baseline": "05.10"})
        rows.append({"time": when, "sensor": "S2", **dict(zip(S2_BANDS, cube[i][:, 20, 20], strict=True)),
                     "clear": 1.0, "VV": np.nan, "VH": np.nan, "orbit": np.nan})
    for i in keep1:
        when = DAY0 + pd.Timedelta(days=float(t1[i] - 19800), hours=5)
        index, new = writer.begin_slot(Sensor.S1, _slot(when, "S1"))
        linear = np.stack([10 ** (vv[i] / 10), 10 ** ((vv[i] - 6) / 10)])[[S1_POLS.index("VV"), S1_POLS.index("VH")]]
        writer.write_block(Sensor.S1, index, (0, 32, 0, 32), linear.astype(np.float32))
        writer.commit_slot(Sensor.S1, index, new, _slot(when, "S1"), int(when.timestamp()), (f"item-{_slot(when, 'S1')}",),
                           {"orbit": 73, "pass": "ASCENDING"})
        rows.append({"time": when, "sensor": "S1", **dict.fromkeys(S2_BANDS, np.nan), "clear": np.nan,
                     "VV": float(10 ** (vv[i][20, 20] / 10)), "VH": float(10 ** ((vv[i][20, 20] - 6) / 10)),
                     "orbit": 73.0})
    obs = normalise_observations(pd.DataFrame(rows).assign(parcel_id="P1", time=lambda d: d["time"].map(
        lambda t: t.isoformat())))
    events = write_slots(root / "series", obs)
    parcels = write_parcels(root / "parcels.csv", pd.DataFrame({"parcel_id": ["P1"], "land_use": ["grassland"],
                                                                "tile_id": [TILE]}))
    area = gpd.GeoDataFrame({"area_id": ["farm"]}, geometry=[box(500010.0, 5399750.0, 500200.0, 5399990.0)],
                            crs=32633).to_crs(4326)
    area.to_file(root / "watch.geojson", driver="GeoJSON")
    return root / "cubes", parcels, root / "watch.geojson", events


@pytest.fixture(scope="module")
def season(tmp_path_factory):
    return _season(tmp_path_factory.mktemp("watch-season"))


def _stream(root: Path, season, model, events: list[dict]):
    cubes, parcels, watch, _ = season
    config = MonitorConfig(data_dir=root, series_dir=cubes.parent / "series", cubes_dir=cubes, parcels=parcels,
                           watch_areas=(watch,), save_every=5)
    bus = make_bus("memory", path=root / "bus.sqlite")
    publish(bus, events)
    service = Service(Monitor(config, model=model), bus)
    try:
        report = service.run_once()
        state = service.monitor.tiles[TILE].state
        alerts = sorted((a for a in service.monitor.store.query(limit=10_000) if a.parcel_id.startswith("farm:")),
                        key=lambda a: a.alert_id)
    finally:
        service.close()
        bus.close()
    return report, state, alerts


def _comparable(alerts) -> list[dict]:
    out = []
    for a in alerts:
        d = json.loads(a.to_json())
        for k in ("detected_at", "model_version"):
            d.pop(k)
        d["evidence"].pop("interval", None)  # the parcels' view intervals: not the pixel detector's
        d["evidence"].pop("model", None)
        out.append(d)
    return out


@pytest.mark.slow
def test_streamed_watch_area_alerts_equal_the_batch_detector_and_a_late_s2_rewinds(tmp_path: Path, season,
                                                                                   model) -> None:
    cubes, _, watch, events = season
    report, state, alerts = _stream(tmp_path / "on-time", season, model, events)
    assert report.acquisitions == len(events) and not report.dead_lettered

    # the reference: the batch detector re-run on the cube's history at each S2 view, confirmed likewise
    (area,) = load_watch_areas((watch,), TILE, cubes / f"{TILE}.zarr")
    offline = [Alert.from_event(e, tile_id=TILE) for e in offline_area_events(area, cubes / f"{TILE}.zarr")]
    assert len(offline) >= 1 and [a.parcel_id for a in offline] == [f"farm:{n + 1}" for n in range(len(offline))]
    assert [a.alert_id for a in alerts] == sorted(a.alert_id for a in offline)
    assert _comparable(alerts) == _comparable(sorted(offline, key=lambda a: a.alert_id))
    polygon = shape(alerts[0].evidence["polygon"])
    assert polygon.intersection(FARM).area > 0.8 * FARM.area and alerts[0].evidence["crs"] == "EPSG:32633"
    pixels = state.watch["farm"]
    assert pixels.shape == area.shape and pixels.meta["n_s2"] == sum(e["sensor"] == "S2" for e in events)

    # a late S2 (an early, quiet view, delivered after four later events): rewound with the tile, equal at the end
    s2 = [i for i, e in enumerate(events) if e["sensor"] == "S2"]
    late_at = s2[3]
    reordered = list(events)
    reordered.insert(late_at + 4, reordered.pop(late_at))
    late_report, late_state, late_alerts = _stream(tmp_path / "late", season, model, reordered)
    assert late_report.rewound >= 1
    assert [a.alert_id for a in late_alerts] == [a.alert_id for a in alerts]
    assert _comparable(late_alerts) == _comparable(alerts)
    assert late_state.area_sites == state.area_sites
    for name, arr in state.watch["farm"].arrays.items():
        np.testing.assert_array_equal(late_state.watch["farm"].arrays[name], arr, err_msg=name)
    assert late_state.watch["farm"].meta == pixels.meta

    # `monitor replay` (the encoder's chunkwise blocks, the detectors per acquisition) steps the pixel states alike
    cubes, parcels, watch, _ = season
    monitor = Monitor(MonitorConfig(data_dir=tmp_path / "replay", series_dir=cubes.parent / "series", cubes_dir=cubes,
                                    parcels=parcels, watch_areas=(watch,)), model=model)
    try:
        replay_period(monitor, "2000-01-01", "2100-01-01", lights=False, form="chunk")
        replayed = monitor.tiles[TILE].state
        replay_alerts = sorted((a for a in monitor.store.query(limit=10_000) if a.parcel_id.startswith("farm:")),
                               key=lambda a: a.alert_id)
    finally:
        monitor.close()
    assert _comparable(replay_alerts) == _comparable(alerts)
    for name, arr in pixels.arrays.items():
        np.testing.assert_array_equal(replayed.watch["farm"].arrays[name], arr, err_msg=name)
