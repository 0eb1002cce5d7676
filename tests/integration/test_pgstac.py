"""A pgstac STAC API (stac-fastapi-pgstac on PostgreSQL/PostGIS) loaded with an archive answers
pystac-client searches with exactly the expected items.

Two catalogues: the small synthetic archive (one tile, what ingest reads) and a hand-made two-tile
catalogue (so that spatial searches must tell tiles apart).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import httpx
import pytest
from pystac_client import Client

from ingest.archive import open_archive
from tests.services import SEARCH_CASES, expected_ids, search_cases, write_handmade_archive

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=["small_archive", "two_tiles"])
def archive_path(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if request.param == "small_archive":
        return request.getfixturevalue("small_archive")
    return write_handmade_archive(tmp_path_factory.mktemp("two_tiles") / "archive")


@pytest.fixture(scope="module")
def items(archive_path: Path) -> list[dict[str, Any]]:
    return open_archive(archive_path).items()


@pytest.fixture(scope="module")
def pgstac_url(pgstac_api, archive_path: Path, items: list[dict[str, Any]]) -> str:
    return pgstac_api(open_archive(archive_path).collections(), items)


def search_ids(url: str, **search: Any) -> list[str]:
    found = Client.open(url).search(method="POST", max_items=None, **search)
    return [item["id"] for item in found.items_as_dicts()]


@pytest.mark.parametrize("case", SEARCH_CASES)
def test_search_returns_expected_items(pgstac_url: str, items: list[dict[str, Any]], case: str) -> None:
    search = search_cases(items)[case]
    got = search_ids(pgstac_url, limit=100, **search)
    assert len(got) == len(set(got)), "an item came back twice"
    assert set(got) == expected_ids(items, search)
    if "outside" not in case:
        assert got, f"case {case} selects nothing: the test would prove nothing"


def test_two_tiles_are_told_apart(pgstac_url: str, items: list[dict[str, Any]]) -> None:
    tiles = {item["properties"]["grid:code"] for item in items}
    search = search_cases(items)["bbox-inside"]
    got = search_ids(pgstac_url, limit=100, **search)
    first_tile = items[0]["properties"]["grid:code"]
    assert {i["properties"]["grid:code"] for i in items if i["id"] in got} == {first_tile}
    if len(tiles) > 1:
        assert len(got) < len(items)


def test_paging_with_a_small_limit(pgstac_url: str, items: list[dict[str, Any]]) -> None:
    search = search_cases(items)["all-collections"]
    found = Client.open(pgstac_url).search(method="POST", limit=7, max_items=None, **search)
    pages = [[item["id"] for item in page["features"]] for page in found.pages_as_dicts()]
    every = [item_id for page in pages for item_id in page]
    assert all(len(page) <= 7 for page in pages)
    assert len(pages) == math.ceil(len(items) / 7)
    assert len(every) == len(set(every)) == len(items)
    assert set(every) == {item["id"] for item in items}


def test_collections_and_items_read_back(
    pgstac_url: str, archive_path: Path, items: list[dict[str, Any]]
) -> None:
    client = Client.open(pgstac_url)
    archive = open_archive(archive_path)
    assert {c.id for c in client.get_collections()} == {c["id"] for c in archive.collections()}
    item = items[len(items) // 2]
    base = f"{pgstac_url}/collections/{item['collection']}/items"
    response = httpx.get(f"{base}/{item['id']}", timeout=10)
    assert response.status_code == 200
    served = response.json()
    assert served["properties"]["datetime"] == item["properties"]["datetime"]
    served_hrefs = {key: asset["href"] for key, asset in served["assets"].items()}
    assert served_hrefs == {key: asset["href"] for key, asset in item["assets"].items()}
    assert httpx.get(f"{base}/no-such-item", timeout=10).status_code == 404


def test_postgres_dsn_is_a_fresh_postgis_database(postgres_dsn: str, make_database) -> None:
    """The database fixtures pgstac (and the alert store) build on: fresh, PostGIS-enabled, separate."""
    import psycopg

    other = make_database("other")
    assert other != postgres_dsn
    with psycopg.connect(postgres_dsn) as conn:
        assert conn.execute("SELECT postgis_version()").fetchone()[0].startswith("3.")
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
            " AND table_name <> 'spatial_ref_sys'"
        ).fetchone()[0]
        assert tables == 0
        conn.execute("CREATE TABLE t (id int)")
    with psycopg.connect(other) as conn:
        assert conn.execute("SELECT to_regclass('public.t')").fetchone()[0] is None
