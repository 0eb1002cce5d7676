"""The same searches against the two STAC APIs we run (rustac, in memory, and pgstac on PostgreSQL)
give the same item ids: the embedded default and the production-like server agree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pystac_client import Client

from ingest.archive import open_archive
from ingest.stac_server import running_stac_api
from tests.services import SEARCH_CASES, expected_ids, search_cases

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def archive_path(small_archive: Path) -> Path:
    return small_archive


@pytest.fixture(scope="module")
def items(archive_path: Path) -> list[dict[str, Any]]:
    return open_archive(archive_path).items()


@pytest.fixture(scope="module")
def urls(pgstac_api, archive_path: Path, items: list[dict[str, Any]]):
    pgstac = pgstac_api(open_archive(archive_path).collections(), items)
    with running_stac_api(archive_path) as endpoint:
        yield {"rustac": endpoint.url, "pgstac": pgstac}


def search_ids(url: str, **search: Any) -> list[str]:
    found = Client.open(url).search(method="POST", max_items=None, **search)
    return [item["id"] for item in found.items_as_dicts()]


@pytest.mark.parametrize("case", SEARCH_CASES)
@pytest.mark.parametrize("limit", [100, 4])
def test_rustac_and_pgstac_agree(
    urls: dict[str, str], items: list[dict[str, Any]], case: str, limit: int
) -> None:
    search = search_cases(items)[case]
    got = {name: search_ids(url, limit=limit, **search) for name, url in urls.items()}
    for name, ids in got.items():
        assert len(ids) == len(set(ids)), f"{name} returned an item twice"
    assert set(got["rustac"]) == set(got["pgstac"])
    assert set(got["pgstac"]) == expected_ids(items, search)
