"""Polling a real STAC API (rustac) with assets over HTTP Range requests, into cubes and parcel series."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from ingest.cube import open_cube
from ingest.events import RecordingPublisher
from ingest.ledger import open_ledger
from ingest.parcels import rasterize_parcels
from ingest.poller import Poller, WatchConfig
from ingest.series import read_series
from ingest.sources import StacApiSource
from ingest.stac_server import running_stac_api
from ingest.types import S2_BANDS, SCL_CLEAR, ItemStatus
from ingest.zonal import zonal_sums_reference
from tests.ingest.helpers import basic_archive, parcels_gdf

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("rustac") / "archive"
    archive = basic_archive(root)
    with running_stac_api(root) as endpoint:
        yield archive, endpoint


@pytest.fixture(scope="module")
def run(served, tmp_path_factory):
    archive, endpoint = served
    work = tmp_path_factory.mktemp("out")
    ledger = open_ledger(work / "ledger.sqlite")
    pub = RecordingPublisher()
    gdf = parcels_gdf(archive.grid)
    poller = Poller([StacApiSource(endpoint.url)], ledger, work / "cubes", work / "series",
                    WatchConfig(tiles=("33UXP",), start_s=int(datetime(2024, 4, 1, tzinfo=UTC).timestamp())),
                    grids={"33UXP": archive.grid}, parcels=gdf, publisher=pub, chunk=32)
    first = poller.poll_once()
    return archive, work, ledger, pub, poller, first, gdf


def expected_s2(archive, item_ids):
    """Stored values of a slot computed independently: per pixel the first clear item by cloud cover."""
    items = sorted((archive.item(i) for i in item_ids), key=lambda it: (it["properties"]["eo:cloud_cover"], it["id"]))
    h, w = archive.grid.shape
    out = np.zeros((len(S2_BANDS), h, w), np.uint16)
    clear = np.zeros((h, w), np.uint8)
    for it in items:
        arr = archive.arrays[it["id"]]
        off = it["assets"]["B02"]["raster:bands"][0]["offset"]
        dn = np.stack([arr[b] for b in S2_BANDS]).astype(np.int64)
        stored = np.where(dn == 0, 0, np.clip(np.rint((dn * 1e-4 + off) / 1e-4), 1, 65535)).astype(np.uint16)
        c = (np.isin(arr["SCL"], SCL_CLEAR) & (stored != 0).all(axis=0)).astype(np.uint8)
        has_out = (out != 0).any(axis=0)
        take = ((clear == 0) & (c == 1)) | (~has_out & (stored != 0).any(axis=0))
        out[:, take] = stored[:, take]
        clear[take] = c[take]
    return out, clear


def test_first_poll_ingests_everything(run):
    archive, work, ledger, pub, poller, first, _ = run
    assert first.errors == [] and first.quarantined == []
    assert first.ingested_items == 6 and first.ingested_slots == 5
    assert {e.status for e in ledger.entries()} == {ItemStatus.INGESTED}
    assert len(pub.messages) == 5
    topic, key, value = pub.messages[0]
    assert topic == "sits.acquisitions" and key == "33UXP"
    assert set(value) >= {"schema", "tile_id", "sensor", "time", "item_ids", "cube"}


def test_cube_values_equal_source_cogs(run):
    archive, work, *_ = run
    ds = open_cube(work / "cubes" / "33UXP.zarr", "S2")
    assert ds.sizes == {"time": 3, "band": 10, "y": 64, "x": 64}
    assert list(ds.time.values.astype("datetime64[D]").astype(str)) == ["2024-05-03", "2024-05-08", "2024-05-13"]
    rng = np.random.default_rng(0)
    ys, xs = rng.integers(0, 64, 40), rng.integers(0, 64, 40)
    for t in range(3):
        ids = str(ds.item_ids.values[t]).split(",")
        want, want_clear = expected_s2(archive, ids)
        got = ds.reflectance.values[t]
        np.testing.assert_array_equal(got[:, ys, xs], want[:, ys, xs])
        np.testing.assert_array_equal(ds.clear.values[t], want_clear)
        # reflectance = DN * scale + offset, to the 1e-4 of storage
        it = archive.item(ids[0])
        dn = archive.arrays[ids[0]]["B04"][5, 7]
        if len(ids) == 1:
            assert got[2, 5, 7] * 1e-4 == pytest.approx(dn * 1e-4 - 0.1, abs=1e-6)
        assert it["properties"]["s2:processing_baseline"] == ds.baseline.values[t]
    assert ds.item_ids.values[0] == "S2A_33UXP_20240503_0_L2A,S2B_33UXP_20240503_0_L2A"  # same day mosaicked
    s1 = open_cube(work / "cubes" / "33UXP.zarr", "S1")
    assert list(s1.orbit.values) == [73, 146] and list(s1["pass"].values) == ["ascending", "descending"]
    for t in range(2):
        src = archive.arrays[str(s1.item_ids.values[t])]
        np.testing.assert_array_equal(s1.backscatter.values[t, 0], src["vv"])
        np.testing.assert_array_equal(s1.backscatter.values[t, 1], src["vh"])


def test_parcel_statistics_equal_numpy_reference(run):
    archive, work, _, _, _, _, gdf = run
    raster = rasterize_parcels(gdf, archive.grid)
    ds = open_cube(work / "cubes" / "33UXP.zarr", "S2")
    table = read_series(work / "series", "33UXP", sensor="S2").to_pandas()
    assert len(table) == 3 * int((np.bincount(raster.labels.ravel(), minlength=13)[1:] > 0).sum())
    for t in range(3):
        values = ds.reflectance.values[t]
        clear = ds.clear.values[t].astype(bool)
        sums, valid, pix = zonal_sums_reference(raster.labels, values, clear, len(raster.parcel_ids))
        rows = table[table.time.dt.tz_localize(None) == ds.time.values[t]].set_index("parcel_id")
        assert len(rows) > 0
        for i, pid in enumerate(raster.parcel_ids):
            if pix[i] == 0:
                assert pid not in rows.index
                continue
            row = rows.loc[pid]
            assert row.pixel_count == pix[i] and row.valid_count == valid[i]
            assert row.clear_fraction == pytest.approx(valid[i] / pix[i])
            if valid[i]:
                assert row.B08 == pytest.approx(sums[i, 6] / valid[i] * 1e-4, rel=1e-6)
            else:
                assert np.isnan(row.B08)
    s1 = read_series(work / "series", "33UXP", parcel_id="P001", sensor="S1").to_pandas()
    assert len(s1) == 2 and s1.VV.notna().all() and s1.B02.isna().all()
    one = read_series(work / "series", parcel_id="P001").to_pandas()
    assert list(one.sensor) == ["S2", "S1", "S2", "S1", "S2"]  # time order, both sensors


def test_second_poll_adds_nothing(run):
    archive, work, ledger, pub, poller, *_ = run
    before = open_cube(work / "cubes" / "33UXP.zarr", "S2").reflectance.values.copy()
    n_msgs = len(pub.messages)
    poller.watch = WatchConfig(tiles=("33UXP",), start_s=0, lookback_s=10**9)  # search everything again
    again = poller.poll_once()
    assert again.ingested_slots == 0 and again.duplicates == 6 and again.errors == []
    assert len(pub.messages) == n_msgs
    after = open_cube(work / "cubes" / "33UXP.zarr", "S2")
    assert after.sizes["time"] == 3
    np.testing.assert_array_equal(after.reflectance.values, before)


def test_local_paths_are_read_too(served, tmp_path):
    archive, _ = served
    with running_stac_api(archive.root, local_hrefs=True) as endpoint:
        ledger = open_ledger(tmp_path / "l.sqlite")
        poller = Poller([StacApiSource(endpoint.url)], ledger, tmp_path / "cubes", tmp_path / "series",
                        WatchConfig(tiles=("33UXP",), collections=("sentinel-1-grd",), start_s=0), chunk=64)
        report = poller.poll_once()
    assert report.ingested_slots == 2
    s1 = open_cube(tmp_path / "cubes" / "33UXP.zarr", "S1")
    np.testing.assert_array_equal(s1.backscatter.values[0, 0], archive.arrays[str(s1.item_ids.values[0])]["vv"])
    # the grid came from the items' proj:transform/proj:shape (no manifest given)
    assert s1.attrs["grid"]["bounds"] == list(archive.grid.bounds)
