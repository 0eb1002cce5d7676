"""The Sentinel Hub catalogue adapter against recorded Catalog API answers served by a local HTTP server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest.errors import IngestError, SourceError
from ingest.http import RetryPolicy
from ingest.items import parse_item
from ingest.sources.sentinelhub import SentinelHubSource, normalise_feature
from tests.ingest.scripted_http import ScriptedServer

DATA = Path(__file__).parent / "data"
SEARCH = "/api/v1/catalog/1.0.0/search"
FAST = RetryPolicy(max_retries=2, initial_wait_s=0.01, max_wait_s=0.1, jitter_s=0.0, timeout_s=5.0)


def recorded(name: str) -> dict:
    return json.loads((DATA / name).read_text())


@pytest.fixture
def insecure_oauth(monkeypatch):
    # oauthlib refuses plain-HTTP token URLs; the local test server has no TLS.
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")


def test_search_pages_and_normalises(insecure_oauth):
    with ScriptedServer() as srv:
        srv.script("/oauth/token", 200, recorded("sentinelhub_token.json"))
        srv.script(SEARCH, 200, recorded("sentinelhub_search_page1.json"))
        srv.script(SEARCH, 200, recorded("sentinelhub_search_page2.json"))
        src = SentinelHubSource("id", "secret", base_url=srv.url, token_url=srv.url + "/oauth/token", policy=FAST,
                                asset_template="https://cogs.example/{tile}/{date}/{band}.tif")
        items = list(src.search("sentinel-2-l2a", (15.0, 47.8, 15.1, 47.9), 1714521600, 1716076800))
        assert [i["id"][:26] for i in items] == ["S2A_MSIL2A_20240503T100031", "S2B_MSIL2A_20240508T095549",
                                                  "S2A_MSIL2A_20240513T100031"]
        assert srv.count(SEARCH) == 2  # followed context.next
        body = json.loads(srv.requests[-1][2])
        assert body["next"] == 2 and body["collections"] == ["sentinel-2-l2a"]
        auth = [r for r in srv.requests if r[1] == SEARCH]
        assert auth
        infos = [parse_item(i) for i in items]
        assert {i.tile_id for i in infos} == {"33UXP"}
        assert [i.baseline for i in infos] == ["05.10", "05.10", "05.11"]
        assert infos[0].epsg == 32633 and infos[0].cloud_cover == 12.3
        assert items[0]["assets"]["B04"]["href"] == "https://cogs.example/33UXP/2024-05-03/B04.tif"


def test_without_asset_template_items_carry_process_api_bands():
    from ingest.assets import resolve_assets
    from ingest.grid import grid_from_item
    from ingest.sources.sh_process import PROCESS_SCHEME

    item = normalise_feature(recorded("sentinelhub_search_page1.json")["features"][0], "sentinel-2-l2a")
    info = parse_item(item, "sentinel-hub")
    resolved = resolve_assets(item, info.sensor, "sentinel-hub")
    assert resolved["B8A"].href == f"{PROCESS_SCHEME}{item['id']}/B8A" and "data" not in item["assets"]
    assert (resolved["B04"].scale, resolved["B04"].offset) == (0.0001, -0.1)  # baseline 05.10: the DN carry the offset
    grid = grid_from_item(item)  # the item's proj:bbox is its tile, at 10 m
    assert (grid.tile_id, grid.epsg, grid.bounds) == ("33UXP", 32633, (500000.0, 5300000.0, 609780.0, 5409780.0))


def test_server_errors_are_retried_then_reported(insecure_oauth):
    with ScriptedServer() as srv:
        srv.script("/oauth/token", 200, recorded("sentinelhub_token.json"))
        srv.script(SEARCH, 503, {"error": {"status": 503, "reason": "Service Unavailable"}})
        src = SentinelHubSource("id", "secret", base_url=srv.url, token_url=srv.url + "/oauth/token", policy=FAST)
        with pytest.raises(SourceError, match="Sentinel Hub catalogue"):
            list(src.search("sentinel-2-l2a", None, 0, 10))
        assert srv.count(SEARCH) == 3  # 1 + max_retries


def test_credentials_required():
    with pytest.raises(IngestError, match="client id and secret"):
        SentinelHubSource("", "")
