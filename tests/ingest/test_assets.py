"""Asset resolution by meaning (``ingest.assets``) and its bad input through the poller.

Unit part: real catalogue shapes (Earth Search keys with ``eo:bands`` common names and ``-jp2``
twins, CDSE per-resolution keys with STAC 1.1 ``bands``, Planetary Computer without ``raster:bands``)
resolve to the same canonical bands, scales and offsets. Poller part: an item whose bands cannot be
resolved, an asset whose ``raster:bands`` contradicts its file and an S1 item of a collection of
unknown calibration are quarantined with the reason while the poll goes on and the earlier cube and
series stay as they were.
"""

from __future__ import annotations

import copy
from datetime import timedelta

import numpy as np
import pytest

from ingest.assets import dialect_named, resolve_assets, s1_calibration
from ingest.cube import open_cube
from ingest.errors import ConfigError, ItemError
from ingest.ledger import open_ledger
from ingest.poller import Poller, WatchConfig
from ingest.stac_server import running_stac_api
from ingest.types import S2_BANDS, ItemStatus, Sensor
from tests.ingest.helpers import (
    D0,
    ListSource,
    add_s1,
    add_s2,
    parcels_gdf,
    two_good_items,
)

ES = {"B02": "blue", "B03": "green", "B04": "red", "B05": "rededge1", "B06": "rededge2", "B07": "rededge3",
      "B08": "nir", "B8A": "nir08", "B11": "swir16", "B12": "swir22"}
COMMON = {"B02": "blue", "B03": "green", "B04": "red", "B05": "rededge", "B06": "rededge", "B07": "rededge",
          "B08": "nir", "B8A": "nir08", "B11": "swir16", "B12": "swir22"}
WL = {"B02": 0.49, "B03": 0.56, "B04": 0.665, "B05": 0.704, "B06": 0.74, "B07": 0.783, "B08": 0.842, "B8A": 0.865,
      "B11": 1.61, "B12": 2.19}


def _earth_search_item(boa_applied: bool) -> dict:
    assets = {}
    for band, key in reversed(list(ES.items())):  # order must not matter
        eo = [{"name": key, "common_name": COMMON[band], "center_wavelength": WL[band]}]
        rb = [{"nodata": 0, "data_type": "uint16", "scale": 0.0001, "offset": -0.1}]
        assets[f"{key}-jp2"] = {"href": f"s3://sentinel-s2-l2a/{band}.jp2", "type": "image/jp2", "roles": ["data"],
                                "eo:bands": eo, "raster:bands": rb, "gsd": 10}
        assets[key] = {"href": f"https://cogs/{band}.tif", "type": "image/tiff; application=geotiff",
                       "roles": ["data"], "eo:bands": eo, "raster:bands": rb, "gsd": 10}
    assets["scl"] = {"href": "https://cogs/SCL.tif", "type": "image/tiff", "roles": ["data"],
                     "raster:bands": [{"nodata": 0, "data_type": "uint8"}]}
    assets["visual"] = {"href": "https://cogs/TCI.tif", "roles": ["visual"],
                        "eo:bands": [{"name": "red", "common_name": "red"}, {"name": "green", "common_name": "green"},
                                     {"name": "blue", "common_name": "blue"}]}
    return {"id": "S2B_33UXP_20240505_0_L2A", "assets": assets,
            "properties": {"s2:processing_baseline": "05.10", "earthsearch:boa_offset_applied": boa_applied}}


def test_earth_search_bands_found_by_common_name_and_wavelength_cog_before_jp2():
    got = resolve_assets(_earth_search_item(boa_applied=False), Sensor.S2, "earth-search")
    assert {b: got[b].key for b in S2_BANDS} == ES
    assert got["B05"].href.endswith("/B05.tif") and got["B07"].href.endswith("/B07.tif")
    assert got["SCL"].key == "scl" and got["SCL"].data_type == "uint8"
    assert {(a.scale, a.offset) for b, a in got.items() if b in S2_BANDS} == {(1e-4, -0.1)}


def test_boa_offset_applied_by_the_provider_is_not_applied_again():
    got = resolve_assets(_earth_search_item(boa_applied=True), Sensor.S2, "earth-search")
    assert {a.offset for b, a in got.items() if b in S2_BANDS} == {0.0}


def test_cdse_per_resolution_keys_stac_1_1_finest_resolution_wins():
    assets = {}
    for band in S2_BANDS:
        for res in (10, 20, 60) if band in ("B02", "B03", "B04", "B08") else (20, 60):
            assets[f"{band}_{res}m"] = {"href": f"s3://eodata/R{res}m/{band}_{res}m.jp2", "type": "image/jp2",
                                        "roles": ["data"], "gsd": res, "raster:scale": 0.0001, "raster:offset": -0.1,
                                        "bands": [{"name": band, "eo:common_name": COMMON[band],
                                                   "eo:center_wavelength": WL[band]}]}
    assets["SCL_60m"] = {"href": "s3://x/SCL_60m.jp2", "roles": ["data"], "gsd": 60}
    assets["SCL_20m"] = {"href": "s3://x/SCL_20m.jp2", "roles": ["data"], "gsd": 20}
    got = resolve_assets({"id": "x", "assets": assets, "properties": {}}, Sensor.S2, "cdse")
    assert got["B02"].key == "B02_10m" and got["B05"].key == "B05_20m" and got["SCL"].key == "SCL_20m"
    assert (got["B8A"].scale, got["B8A"].offset) == (1e-4, -0.1)


def test_planetary_computer_offset_from_the_processing_baseline():
    assets = {b: {"href": f"https://blob/{b}.tif", "roles": ["data"],
                  "eo:bands": [{"name": b, "common_name": COMMON[b], "center_wavelength": WL[b]}]} for b in S2_BANDS}
    assets["SCL"] = {"href": "https://blob/SCL.tif", "roles": ["data"]}
    item = {"id": "x", "assets": assets, "properties": {"s2:processing_baseline": "04.00"}}
    assert resolve_assets(item, Sensor.S2, "planetary-computer")["B04"].offset == -0.1
    item["properties"]["s2:processing_baseline"] = "03.01"
    assert resolve_assets(item, Sensor.S2, "planetary-computer")["B04"].offset == 0.0


def test_unresolvable_band_names_what_is_missing():
    item = _earth_search_item(False)
    for key in ("rededge2", "rededge2-jp2"):
        del item["assets"][key]
    with pytest.raises(ItemError, match=r"missing asset\(s\) B06: .* earth-search asset keys"):
        resolve_assets(item, Sensor.S2, "earth-search")


def test_s1_calibration_per_dialect():
    assert s1_calibration("sentinel-1-rtc", "planetary-computer") == "gamma0"
    with pytest.raises(ItemError, match="uncalibrated GRD"):
        s1_calibration("sentinel-1-grd", "planetary-computer")
    with pytest.raises(ItemError, match="calibration unknown"):
        s1_calibration("sentinel-1-slc", "synthetic")
    with pytest.raises(ConfigError, match="must be one of gamma0, sigma0"):
        dialect_named("cdse").with_calibration({"sentinel-1-grd": "dn"})
    with pytest.raises(ConfigError, match="unknown catalogue dialect 'usgs'"):
        dialect_named("usgs")


# ------------------------------------------------------------------------------- bad input, poller


@pytest.fixture(scope="module")
def polled(tmp_path_factory):
    a = two_good_items(tmp_path_factory, "assets")
    root = a.root
    add_s2(a, D0 + timedelta(days=6), seed=3, item_id="NO_NIR")
    add_s2(a, D0 + timedelta(days=7), seed=4, item_id="CONTRADICTS")
    s1 = add_s1(a, D0 + timedelta(days=8), seed=5)
    del a.item("NO_NIR")["assets"]["B08"]
    a.item("CONTRADICTS")["assets"]["B11"]["raster:bands"][0]["data_type"] = "float32"
    a.write_catalog()
    work = tmp_path_factory.mktemp("assets_out")
    ledger = open_ledger(work / "ledger.sqlite")
    with running_stac_api(root) as endpoint:
        items = {i["id"]: i for i in endpoint.archive.items(endpoint.assets_url)}
        unknown = copy.deepcopy(items[s1["id"]])
        unknown["id"], unknown["collection"] = "S1_UNKNOWN", "sentinel-1-slc"

        def poll(raw, collections=("sentinel-2-l2a",)):
            p = Poller([ListSource(raw)], ledger, work / "cubes", work / "series",
                       WatchConfig(tiles=("33UXP",), collections=collections, start_s=0, lookback_s=10**9),
                       grids={"33UXP": a.grid}, parcels=parcels_gdf(a.grid), chunk=32)
            return p.poll_once()

        first = poll([items["GOOD1"]])
        before = open_cube(work / "cubes" / "33UXP.zarr", "S2").load()
        series_before = (work / "series" / "33UXP" / "S2" / "20240503.parquet").read_bytes()
        second = poll([items["NO_NIR"], items["CONTRADICTS"], items["GOOD2"]])
        third = poll([unknown], collections=("sentinel-1-slc",))
        yield {"first": first, "second": second, "third": third, "ledger": ledger, "work": work,
               "before": before, "series_before": series_before}


def _reason(ledger, collection, item_id):
    e = ledger.get(collection, item_id)
    assert e is not None and e.status is ItemStatus.QUARANTINED, (item_id, e and e.status)
    return e.reason


def test_bad_assets_quarantined_with_reason_and_the_poll_goes_on(polled):
    assert polled["first"].ingested_items == 1
    second = polled["second"]
    assert second.ingested_items == 1 and second.errors == []  # GOOD2, after the two bad ones
    assert "missing asset(s) B08" in _reason(polled["ledger"], "sentinel-2-l2a", "NO_NIR")
    assert "asset B11 raster:bands says data_type float32, the file holds uint16" in _reason(
        polled["ledger"], "sentinel-2-l2a", "CONTRADICTS")


def test_s1_item_of_unknown_calibration_is_quarantined(polled):
    third = polled["third"]
    assert third.ingested_items == 0 and [q[0] for q in third.quarantined] == ["S1_UNKNOWN"]
    assert "calibration unknown to the synthetic dialect" in _reason(polled["ledger"], "sentinel-1-slc", "S1_UNKNOWN")


def test_earlier_cube_and_series_unchanged(polled):
    work = polled["work"]
    after = open_cube(work / "cubes" / "33UXP.zarr", "S2").load()
    assert list(after.item_ids.values) == ["GOOD1", "GOOD2"]
    np.testing.assert_array_equal(after.reflectance.values[0], polled["before"].reflectance.values[0])
    assert (work / "series" / "33UXP" / "S2" / "20240503.parquet").read_bytes() == polled["series_before"]
