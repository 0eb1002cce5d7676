"""The archive reader and the local STAC API (rustac + COG server with Range requests).

These tests build a tiny archive by hand (two items, one small COG each) so that they check the
server on its own; the synthetic generator has its own tests, and the integration tests run the
same searches on a generated archive against rustac and pgstac.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
import rasterio
from pystac_client import Client
from rasterio.transform import from_origin

from ingest.archive import ArchiveError, open_archive
from ingest.stac_server import running_stac_api
from sitsmon.cli import main

EPSG = 32633
ORIGIN = (600000.0, 5340000.0)
SIZE = 64


def _cog(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (np.arange(SIZE * SIZE, dtype=np.uint16).reshape(SIZE, SIZE) % 1000) + value
    profile = dict(driver="COG", width=SIZE, height=SIZE, count=1, dtype="uint16", nodata=0,
                   crs=f"EPSG:{EPSG}", transform=from_origin(*ORIGIN, 10, 10), compress="deflate",
                   blocksize=32)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)


def _item(collection: str, item_id: str, when: str, asset_href: str) -> dict:
    lon0, lat0, lon1, lat1 = 16.35, 48.2, 16.36, 48.21
    return {
        "type": "Feature", "stac_version": "1.1.0", "id": item_id, "collection": collection,
        "geometry": {"type": "Polygon", "coordinates": [[[lon0, lat0], [lon1, lat0], [lon1, lat1],
                                                          [lon0, lat1], [lon0, lat0]]]},
        "bbox": [lon0, lat0, lon1, lat1],
        "properties": {"datetime": when, "proj:code": f"EPSG:{EPSG}", "grid:code": "MGRS-33UXP"},
        "links": [],
        "assets": {"B04": {"href": asset_href, "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                           "roles": ["data"]}},
    }


def _collection(cid: str) -> dict:
    return {
        "type": "Collection", "stac_version": "1.1.0", "id": cid, "description": cid, "license": "proprietary",
        "extent": {"spatial": {"bbox": [[16.0, 48.0, 17.0, 49.0]]},
                   "temporal": {"interval": [["2024-05-01T00:00:00Z", None]]}},
        "links": [{"rel": "self", "href": "./x.json"}],
    }


@pytest.fixture
def handmade_archive(tmp_path: Path) -> Path:
    root = tmp_path / "archive"
    (root / "collections").mkdir(parents=True)
    (root / "items").mkdir()
    manifest = {"schema": "sitsmon-archive/1", "seed": 0, "start": "2024-05-01", "end": "2024-05-31",
                "tiles": [{"tile_id": "33UXP", "epsg": EPSG, "resolution": 10.0,
                           "bounds": [ORIGIN[0], ORIGIN[1] - SIZE * 10, ORIGIN[0] + SIZE * 10, ORIGIN[1]],
                           "shape": [SIZE, SIZE]}]}
    (root / "archive.json").write_text(json.dumps(manifest))
    s2 = [("S2A_33UXP_20240505_0_L2A", "2024-05-05T10:00:00Z", 100),
          ("S2B_33UXP_20240510_0_L2A", "2024-05-10T10:00:00Z", 200)]
    lines = []
    for item_id, when, value in s2:
        href = f"data/sentinel-2-l2a/33UXP/{item_id}/B04.tif"
        _cog(root / href, value)
        lines.append(json.dumps(_item("sentinel-2-l2a", item_id, when, href)))
    (root / "items" / "sentinel-2-l2a.ndjson").write_text("\n".join(lines) + "\n")
    s1_id = "S1A_IW_GRDH_20240507T051234_33UXP_A073"
    (root / "items" / "sentinel-1-grd.ndjson").write_text(
        json.dumps(_item("sentinel-1-grd", s1_id, "2024-05-07T05:12:34Z", "data/none.tif")) + "\n")
    for cid in ("sentinel-2-l2a", "sentinel-1-grd"):
        (root / "collections" / f"{cid}.json").write_text(json.dumps(_collection(cid)))
    return root


def test_open_archive_reads_tiles_and_rewrites_hrefs(handmade_archive: Path) -> None:
    archive = open_archive(handmade_archive)
    assert [t.tile_id for t in archive.tiles] == ["33UXP"]
    assert archive.tiles[0].shape == (SIZE, SIZE)
    local = archive.items()
    assert [i["id"] for i in local][:2] == ["S2A_33UXP_20240505_0_L2A", "S2B_33UXP_20240510_0_L2A"]
    assert Path(local[0]["assets"]["B04"]["href"]).is_file()
    remote = archive.items("http://127.0.0.1:9/")
    assert remote[0]["assets"]["B04"]["href"] == (
        "http://127.0.0.1:9/data/sentinel-2-l2a/33UXP/S2A_33UXP_20240505_0_L2A/B04.tif")
    assert all(link["rel"] == "license" for c in archive.collections() for link in c["links"])


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda root: shutil.rmtree(root), "archive not found"),
        (lambda root: (root / "archive.json").unlink(), "no archive.json"),
        (lambda root: (root / "archive.json").write_text("{not json"), "corrupt JSON"),
        (lambda root: (root / "archive.json").write_text('{"schema": "other/9", "tiles": []}'), "unsupported schema"),
        (lambda root: (root / "collections" / "sentinel-1-grd.json").unlink(), "missing collections/sentinel-1-grd.json"),
    ],
)
def test_open_archive_names_the_problem(handmade_archive: Path, damage, message: str) -> None:
    damage(handmade_archive)
    with pytest.raises(ArchiveError, match=message):
        open_archive(handmade_archive)


def test_corrupt_item_line_is_reported_with_file_and_line(handmade_archive: Path) -> None:
    path = handmade_archive / "items" / "sentinel-2-l2a.ndjson"
    path.write_text(path.read_text() + '{"type": "Feature", "id": "trunc\n')
    with pytest.raises(ArchiveError, match=r"sentinel-2-l2a.ndjson:3: not a JSON item"):
        open_archive(handmade_archive).items()


def test_stac_api_searches_and_serves_cogs_with_range(handmade_archive: Path) -> None:
    with running_stac_api(handmade_archive) as endpoint:
        client = Client.open(endpoint.url)
        assert {c.id for c in client.get_collections()} == {"sentinel-2-l2a", "sentinel-1-grd"}

        found = list(client.search(collections=["sentinel-2-l2a"], datetime="2024-05-08/2024-05-31")
                     .items_as_dicts())
        assert [i["id"] for i in found] == ["S2B_33UXP_20240510_0_L2A"]
        every = list(client.search(collections=["sentinel-2-l2a", "sentinel-1-grd"], bbox=[16.3, 48.1, 16.4, 48.3],
                                   limit=1).items_as_dicts())
        assert len(every) == 3  # paging with limit=1 walks all pages

        href = found[0]["assets"]["B04"]["href"]
        assert href.startswith(endpoint.assets_url)
        local = handmade_archive / "data/sentinel-2-l2a/33UXP/S2B_33UXP_20240510_0_L2A/B04.tif"
        partial = httpx.get(href, headers={"Range": "bytes=10-29"})
        assert partial.status_code == 206
        assert partial.content == local.read_bytes()[10:30]

        with rasterio.open(href) as src:  # GDAL reads the COG over HTTP with Range requests
            assert src.read(1)[3, 5] == (3 * SIZE + 5) % 1000 + 200


def test_stac_serve_missing_archive_is_one_line_error(tmp_path: Path, capsys) -> None:
    code = main(["stac", "serve", "--archive", str(tmp_path / "nowhere"), "--port", "18999"])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert len(err.splitlines()) == 1
    assert "archive not found" in err and "nowhere" in err


def test_stac_serve_corrupt_archive_is_one_line_error(handmade_archive: Path, capsys) -> None:
    (handmade_archive / "archive.json").write_text("[1, 2")
    code = main(["stac", "serve", "--archive", str(handmade_archive), "--port", "18999"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1
    assert "corrupt JSON" in err
