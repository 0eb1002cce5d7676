"""Pixel watch areas: a solar farm built outside every parcel raises an alert with its polygon while the
stream runs (the pixels are read from the real cube that ingest wrote, stepped like parcels)."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import pytest
import zarr
from shapely.geometry import shape

from monitor.bus import make_bus
from monitor.config import MonitorConfig
from monitor.service import Monitor, Service
from sitsmon.cli import main

# Five months are enough: the works of every solar site are placed inside the archive's own period.
SMALL = ["--tile-size", "256", "--parcels", "60", "--start", "2024-04-15", "--end", "2024-09-15", "--port", "0",
         "--no-serve"]


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("watch-demo")
    assert main(["demo", "--data-dir", str(root), *SMALL]) == 0
    return root


@pytest.mark.slow
def test_a_solar_farm_outside_the_parcels_is_raised_with_its_polygon(demo_dir: Path, tmp_path: Path, capsys) -> None:
    capsys.readouterr()
    sites = gpd.read_file(demo_dir / "archive" / "truth" / "solar_sites.geojson")
    outside = sites[sites["parcel_id"].isna() | (sites["parcel_id"].astype(str).isin(["", "None", "nan"]))]
    assert len(outside), "the synthetic archive puts solar sites on undeclared land"
    site = outside.iloc[[0]]
    utm = site.estimate_utm_crs()
    area = site.to_crs(utm).buffer(150).to_crs(4326)
    area_file = tmp_path / "watch.geojson"
    gpd.GeoDataFrame({"area_id": ["farm-watch"]}, geometry=list(area), crs=4326).to_file(area_file, driver="GeoJSON")

    config = MonitorConfig(data_dir=tmp_path / "monitor-data", series_dir=demo_dir / "series",
                           cubes_dir=demo_dir / "cubes", parcels=demo_dir / "archive" / "parcels" / "parcels.parquet",
                           watch_areas=(area_file,), group_id="watch-area-test", save_every=20)
    bus = make_bus("memory", path=demo_dir / "bus.sqlite")  # the demo's acquisition events, read by another group
    service = Service(Monitor(config), bus)
    try:
        report = service.run_once()
        tile = next(iter(service.monitor.tiles.values())).state
        alerts = [a for a in service.monitor.store.query(limit=10_000) if a.parcel_id.startswith("farm-watch:")]
    finally:
        service.close()
        bus.close()
    (cube_path,) = (demo_dir / "cubes").glob("*.zarr")
    cube = zarr.open_group(str(cube_path), mode="r")
    assert report.acquisitions == cube["s2"]["time"].shape[0] + cube["s1"]["time"].shape[0]  # every slot ingested
    assert sum(1 for p in tile.parcel_ids if str(p).startswith("farm-watch:")) > 0  # pixels are state rows
    assert len(alerts) == 1, [(a.parcel_id, a.window_start) for a in alerts]  # one site, raised once
    (alert,) = alerts
    assert alert.type == "solar_construction"
    polygon = shape(alert.evidence["polygon"])
    truth = site.to_crs(alert.evidence.get("crs", utm)).geometry.iloc[0]
    assert polygon.intersects(truth)
    assert json.loads(alert.to_json())["tile_id"] == tile.tile_id
