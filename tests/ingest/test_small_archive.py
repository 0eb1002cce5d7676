"""Done-when checks on the synthetic season (``small_archive``): rustac and pgstac APIs, the real Kafka broker.

A small season ingests; cube values equal the source COGs after scale/offset; parcel statistics equal
the numpy reference; a second run adds nothing; the pgstac API gives the same cube as rustac.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import numpy as np
import pytest
import rasterio
import rasterio.transform

from ingest.cube import open_cube
from ingest.grid import grids_from_manifest
from ingest.ledger import open_ledger
from ingest.parcels import rasterize_parcels, read_parcels
from ingest.poller import Poller, WatchConfig
from ingest.series import read_series
from ingest.sources import StacApiSource
from ingest.stac_server import running_stac_api
from ingest.types import S2_BANDS, Sensor
from ingest.zonal import zonal_sums_reference

pytestmark = [pytest.mark.integration, pytest.mark.slow]
START = int(datetime(2024, 4, 1, tzinfo=UTC).timestamp())


@pytest.fixture(scope="module")
def season(small_archive, kafka_bootstrap, tmp_path_factory):
    from monitor.bus import make_bus

    work = tmp_path_factory.mktemp("season")
    bus = make_bus("kafka", kafka_bootstrap, "0.9")
    gdf, report = read_parcels(small_archive / "parcels" / "parcels.parquet")
    grids = grids_from_manifest(small_archive)
    with running_stac_api(small_archive) as endpoint:
        poller = Poller([StacApiSource(endpoint.url)], open_ledger(work / "ledger.sqlite"), work / "cubes",
                        work / "series", WatchConfig(tiles=tuple(grids), start_s=START, lookback_s=10**9),
                        grids=grids, parcels=gdf, publisher=bus, chunk=256)
        first = poller.poll_once()
        bus.flush()
        second = poller.poll_once()
        items = endpoint.archive.items(None)  # local paths, to read the COGs directly
        catalogue = (endpoint.archive.collections(), endpoint.archive.items(endpoint.assets_url))
        yield {"work": work, "first": first, "second": second, "bus": bus, "items": items, "gdf": gdf,
               "grid": grids["33UXP"], "catalogue": catalogue, "assets_url": endpoint.assets_url,
               "archive": small_archive}
    bus.close()


def test_season_ingests_and_second_run_adds_nothing(season):
    first, second = season["first"], season["second"]
    n_items = len(season["items"])
    assert first.errors == [] and first.quarantined == []
    assert first.ingested_items == n_items and first.ingested_slots > 0
    assert second.ingested_slots == 0 and second.duplicates == n_items
    s2 = open_cube(season["work"] / "cubes" / "33UXP.zarr", "S2")
    s1 = open_cube(season["work"] / "cubes" / "33UXP.zarr", "S1")
    assert s2.sizes["time"] + s1.sizes["time"] == first.ingested_slots
    assert np.all(np.diff(s2.time.values.astype("int64")) > 0)


def test_events_reach_kafka(season):
    bus = season["bus"]
    cube = str(season["work"] / "cubes" / "33UXP.zarr")
    got = []
    with bus.consumer(["sits.acquisitions"], f"ingest-test-{uuid.uuid4().hex[:8]}") as consumer:
        for _ in range(30):
            got += [m for m in consumer.poll(timeout_s=1.0) if m.value.get("cube") == cube]
            if len(got) >= season["first"].ingested_slots:
                break
    assert len(got) == season["first"].ingested_slots
    m = got[0]
    assert m.key == "33UXP" and m.value["schema"] == "sitsmon.acquisition/1"
    assert m.value["sensor"] in ("S2", "S1") and m.value["time"].endswith("Z") and m.value["item_ids"]
    json.dumps(m.value)


def test_cube_equals_source_cogs_at_sampled_pixels(season):
    ds = open_cube(season["work"] / "cubes" / "33UXP.zarr", "S2")
    by_id = {i["id"]: i for i in season["items"]}
    rng = np.random.default_rng(1)
    ys, xs = rng.integers(0, 256, 50), rng.integers(0, 256, 50)
    checked = 0
    for t in range(ds.sizes["time"]):
        ids = str(ds.item_ids.values[t]).split(",")
        if len(ids) != 1:
            continue
        item = by_id[ids[0]]
        got = ds.reflectance.values[t][:, ys, xs]
        for b, band in enumerate(S2_BANDS):
            asset = item["assets"][band]
            rb = asset["raster:bands"][0]
            with rasterio.open(asset["href"]) as src:  # 20 m bands: the 10 m pixel centre's 20 m pixel
                rows, cols = rasterio.transform.rowcol(src.transform, ds.x.values[xs], ds.y.values[ys])
                dn = src.read(1)[np.asarray(rows), np.asarray(cols)].astype(np.float64)
            want = np.where(dn == 0, 0, np.clip(np.rint((dn * rb["scale"] + rb["offset"]) / 1e-4), 1, None))
            np.testing.assert_array_equal(got[b], want)
        checked += 1
    assert checked >= 3
    s1 = open_cube(season["work"] / "cubes" / "33UXP.zarr", "S1")
    ids = str(s1.item_ids.values[0]).split(",")
    with rasterio.open(by_id[ids[0]]["assets"]["vv"]["href"]) as src:
        vv = src.read(1)
    np.testing.assert_array_equal(s1.backscatter.values[0, 0][ys, xs], vv[ys, xs])


def test_parcel_statistics_equal_numpy_reference(season):
    raster = rasterize_parcels(season["gdf"], season["grid"])
    ds = open_cube(season["work"] / "cubes" / "33UXP.zarr", "S2")
    table = read_series(season["work"] / "series", "33UXP", sensor="S2").to_pandas()
    for t in (0, ds.sizes["time"] // 2, ds.sizes["time"] - 1):
        sums, valid, pix = zonal_sums_reference(raster.labels, ds.reflectance.values[t],
                                                ds.clear.values[t].astype(bool), len(raster.parcel_ids))
        rows = table[table.time.dt.tz_localize(None) == ds.time.values[t]].set_index("parcel_id")
        assert len(rows) == int((pix > 0).sum())
        for i, pid in enumerate(raster.parcel_ids):
            if pix[i] == 0:
                continue
            row = rows.loc[pid]
            assert (row.pixel_count, row.valid_count) == (pix[i], valid[i])
            want = sums[i] / valid[i] * 1e-4 if valid[i] else np.full(10, np.nan)
            np.testing.assert_allclose(row[list(S2_BANDS)].to_numpy(float), want, rtol=1e-6)
    s1 = read_series(season["work"] / "series", "33UXP", sensor="S1").to_pandas()
    assert s1.VV.notna().mean() > 0.9


def test_pgstac_api_gives_the_same_cube(season, pgstac_api, tmp_path):
    collections, items = season["catalogue"]
    url = pgstac_api(collections, items)
    grids = {"33UXP": season["grid"]}
    poller = Poller([StacApiSource(url)], open_ledger(tmp_path / "l.sqlite"), tmp_path / "cubes", tmp_path / "series",
                    WatchConfig(tiles=("33UXP",), start_s=START, lookback_s=10**9), grids=grids, chunk=256)
    report = poller.poll_once()
    assert report.errors == [] and report.ingested_items == len(items)
    for sensor in Sensor:
        a = open_cube(tmp_path / "cubes" / "33UXP.zarr", sensor).drop_vars("ingested_at").load()
        b = open_cube(season["work"] / "cubes" / "33UXP.zarr", sensor).drop_vars("ingested_at").load()
        assert a.identical(b), sensor
