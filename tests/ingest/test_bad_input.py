"""Bad input: each bad item is quarantined with its reason, the run goes on, earlier cube content is untouched.

Assets are served over HTTP (Range requests) by the local asset server; the catalogue answers are
given item by item (ListSource) so that each poll sees exactly the case under test.
"""

from __future__ import annotations

import copy
import json
import os
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from ingest.cube import open_cube
from ingest.events import RecordingPublisher
from ingest.ledger import open_ledger
from ingest.poller import Poller, WatchConfig
from ingest.sources import StacApiSource
from ingest.stac_server import running_stac_api
from ingest.types import ItemStatus
from tests.ingest.helpers import D0, ListSource, add_s2, parcels_gdf, two_good_items
from tests.ingest.scripted_http import ScriptedServer, landing

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    a = two_good_items(tmp_path_factory, "bad")
    root = a.root
    add_s2(a, D0 + timedelta(days=5, minutes=1), seed=3, item_id="TRUNCATED_SAME_DAY", cloud=1.0)
    add_s2(a, D0 + timedelta(days=6), seed=4, item_id="MISSING_ASSET")
    add_s2(a, D0 + timedelta(days=7), seed=5, item_id="ASSET_404")
    add_s2(a, D0 + timedelta(days=8), seed=6, item_id="CORRUPT")
    add_s2(a, D0 + timedelta(days=9), seed=7, item_id="WRONG_CRS", epsg=32634)
    add_s2(a, D0 + timedelta(days=10), seed=8, item_id="OUTSIDE")
    add_s2(a, D0 + timedelta(days=11), seed=9, item_id="ALL_NODATA", all_nodata=True)
    # damage on disk and in the JSON
    band = root / a.item("TRUNCATED_SAME_DAY")["assets"]["B08"]["href"]
    band.write_bytes(band.read_bytes()[: int(os.path.getsize(band) * 0.6)])
    (root / a.item("CORRUPT")["assets"]["B03"]["href"]).write_bytes(np.random.default_rng(0).bytes(3000))
    del a.item("MISSING_ASSET")["assets"]["B05"]
    a.item("ASSET_404")["assets"]["B11"]["href"] = "data/nowhere/B11.tif"
    out = a.item("OUTSIDE")
    out["bbox"] = [100.0, -10.0, 100.5, -9.5]
    a.write_catalog()
    with running_stac_api(root) as endpoint:
        items = {i["id"]: i for i in endpoint.archive.items(endpoint.assets_url)}
        yield a, endpoint, items


@pytest.fixture(scope="module")
def state(served, tmp_path_factory):
    a, endpoint, items = served
    work = tmp_path_factory.mktemp("bad_out")
    ledger = open_ledger(work / "ledger.sqlite")
    pub = RecordingPublisher()

    def poll(raw_items):
        p = Poller([ListSource(raw_items, name="list")], ledger, work / "cubes", work / "series",
                   WatchConfig(tiles=("33UXP",), collections=("sentinel-2-l2a",), start_s=0, lookback_s=10**9),
                   grids={"33UXP": a.grid}, parcels=parcels_gdf(a.grid), publisher=pub, chunk=32)
        return p.poll_once()

    first = poll([items["GOOD1"]])
    assert first.ingested_slots == 1 and not first.quarantined
    before = open_cube(work / "cubes" / "33UXP.zarr", "S2").load()
    series_before = (work / "series" / "33UXP" / "S2" / "20240503.parquet").read_bytes()
    malformed = [
        {"id": "NO_PROPS", "collection": "sentinel-2-l2a", "type": "Feature"},
        "not an object",
        {**copy.deepcopy(items["GOOD1"]), "id": "BAD_DATE",
         "properties": {**items["GOOD1"]["properties"], "datetime": "yesterday"}},
        {**copy.deepcopy(items["GOOD1"]), "id": "NO_TILE",
         "properties": {k: v for k, v in items["GOOD1"]["properties"].items()
                        if not k.startswith(("grid:", "mgrs:", "s2:mgrs"))}},
    ]
    bad_ids = ["TRUNCATED_SAME_DAY", "MISSING_ASSET", "ASSET_404", "CORRUPT", "WRONG_CRS", "OUTSIDE", "ALL_NODATA"]
    second = poll([items["GOOD1"], items["GOOD2"], items["GOOD2"], *[items[i] for i in bad_ids], *malformed])
    return a, work, ledger, pub, before, series_before, second, poll, items


def reason(ledger, item_id):
    e = ledger.get("sentinel-2-l2a", item_id)
    assert e is not None, item_id
    assert e.status is ItemStatus.QUARANTINED, (item_id, e.status)
    return e.reason


def test_good_items_ingest_and_duplicates_are_skipped(state):
    a, work, ledger, pub, before, _, second, *_ = state
    assert second.ingested_items == 1 and second.ingested_slots == 1  # GOOD2 only
    assert second.duplicates == 2  # GOOD1 (already ingested) and GOOD2 listed twice
    assert ledger.get("sentinel-2-l2a", "GOOD2").status is ItemStatus.INGESTED
    ds = open_cube(work / "cubes" / "33UXP.zarr", "S2")
    assert list(ds.item_ids.values) == ["GOOD1", "GOOD2"]
    assert len(pub.messages) == 2


@pytest.mark.parametrize(
    "item_id, why",
    [
        ("MISSING_ASSET", "missing asset(s) B05"),
        ("ASSET_404", "asset B11 unreadable"),
        ("CORRUPT", "asset B03 unreadable"),
        ("TRUNCATED_SAME_DAY", "reading window"),
        ("WRONG_CRS", "CRS EPSG:32634 differs from tile 33UXP grid EPSG:32633"),
        ("OUTSIDE", "lies outside tile 33UXP"),
        ("ALL_NODATA", "all pixels are no data"),
    ],
)
def test_bad_items_are_quarantined_with_reason(state, item_id, why):
    ledger = state[2]
    assert why in reason(ledger, item_id)


def test_malformed_items_are_quarantined(state):
    ledger, second = state[2], state[6]
    assert "no properties" in reason(ledger, "NO_PROPS")
    assert "not ISO 8601" in reason(ledger, "BAD_DATE")
    assert "no MGRS tile" in reason(ledger, "NO_TILE")
    malformed = [q for q in second.quarantined if q[0].startswith("malformed-")]
    assert len(malformed) == 1 and "not a JSON object" in malformed[0][1]


def test_earlier_content_untouched(state):
    a, work, _, _, before, series_before, *_ = state
    after = open_cube(work / "cubes" / "33UXP.zarr", "S2").load()
    np.testing.assert_array_equal(after.reflectance.values[0], before.reflectance.values[0])
    np.testing.assert_array_equal(after.clear.values[0], before.clear.values[0])
    assert (work / "series" / "33UXP" / "S2" / "20240503.parquet").read_bytes() == series_before
    # GOOD2's slot holds GOOD2 alone: the truncated same-day item left nothing behind
    src = a.arrays["GOOD2"]["B02"]
    got = after.reflectance.values[1, 0]
    np.testing.assert_array_equal(got[src != 0], (src[src != 0].astype(int) - 1000).clip(1))


def test_quarantined_items_are_not_retried(state):
    poll, items, ledger = state[7], state[8], state[2]
    again = poll([items["CORRUPT"], items["GOOD2"]])
    assert again.ingested_slots == 0 and again.duplicates == 2 and not again.quarantined
    assert ledger.get("sentinel-2-l2a", "CORRUPT").status is ItemStatus.QUARANTINED


def test_newer_processing_baseline_supersedes(state):
    a, work, ledger, pub, _, _, _, poll, items = state
    newer = copy.deepcopy(items["GOOD1"])
    newer["id"] = "GOOD1_N0511"
    newer["properties"]["s2:processing_baseline"] = "05.11"
    newer["properties"]["published"] = "2024-06-01T00:00:00Z"
    newer["assets"] = copy.deepcopy(items["GOOD2"]["assets"])  # other pixel values, same acquisition
    report = poll([newer])
    assert report.superseded == ["GOOD1"] and report.ingested_slots == 1
    e = ledger.get("sentinel-2-l2a", "GOOD1")
    assert e.status is ItemStatus.SUPERSEDED and "GOOD1_N0511" in e.reason
    ds = open_cube(work / "cubes" / "33UXP.zarr", "S2")
    assert ds.sizes["time"] == 2 and list(ds.item_ids.values) == ["GOOD1_N0511", "GOOD2"]
    np.testing.assert_array_equal(ds.reflectance.values[0], ds.reflectance.values[1])  # same assets as GOOD2
    # an older baseline arriving later does not replace the newer one
    older = copy.deepcopy(items["GOOD1"])
    older["id"] = "GOOD1_N0400"
    older["properties"]["s2:processing_baseline"] = "04.00"
    late = poll([older])
    assert late.superseded == ["GOOD1_N0400"]
    assert list(open_cube(work / "cubes" / "33UXP.zarr", "S2").item_ids.values) == ["GOOD1_N0511", "GOOD2"]


def test_late_published_item_within_lookback_is_found(served, tmp_path):
    """Watermark at 'now' = 2024-05-15; an item acquired 2024-05-13 but published 2024-05-22 is found."""
    a, endpoint, items = served
    ledger = open_ledger(tmp_path / "l.sqlite")
    now = [datetime(2024, 5, 15, tzinfo=UTC).timestamp()]
    visible = [items["GOOD2"]]
    p = Poller([ListSource(visible)], ledger, tmp_path / "cubes", tmp_path / "series",
               WatchConfig(tiles=("33UXP",), collections=("sentinel-2-l2a",), lookback_s=10 * 86400),
               grids={"33UXP": a.grid}, clock=lambda: now[0], chunk=64)
    assert p.poll_once().ingested_slots == 1  # GOOD2 (05-08) within now - lookback
    late = copy.deepcopy(items["GOOD1"])
    late["id"] = "LATE"
    late["properties"]["datetime"] = "2024-05-13T10:00:00Z"
    late["properties"]["published"] = "2024-05-22T00:00:00Z"
    visible.append(late)
    now[0] = datetime(2024, 5, 22, 12, tzinfo=UTC).timestamp()
    r = p.poll_once()
    assert r.ingested_slots == 1 and r.duplicates == 1
    ds = open_cube(tmp_path / "cubes" / "33UXP.zarr", "S2")
    assert list(ds.item_ids.values) == ["GOOD2", "LATE"]
    # an item older than watermark - lookback is outside the window (that is what the look-back bounds)
    older = copy.deepcopy(items["GOOD1"])
    older["id"] = "TOO_LATE"
    older["properties"]["datetime"] = "2024-05-01T10:00:00Z"
    visible.append(older)
    now[0] = datetime(2024, 5, 23, tzinfo=UTC).timestamp()
    assert p.poll_once().ingested_slots == 0
    assert ledger.get("sentinel-2-l2a", "TOO_LATE") is None


def test_malformed_search_answer_is_reported(tmp_path):
    with ScriptedServer() as srv:
        srv.script("/", 200, landing(srv.url))
        srv.script("/search", 200, "{this is not json")
        ledger = open_ledger(tmp_path / "l.sqlite")
        p = Poller([StacApiSource(srv.url)], ledger, tmp_path / "c", tmp_path / "s",
                   WatchConfig(collections=("sentinel-2-l2a",), start_s=0))
        r = p.poll_once()
    assert len(r.errors) == 1 and "sentinel-2-l2a" in r.errors[0]
    assert json.dumps(r.to_dict())  # the report is JSON-serialisable for the CLI
