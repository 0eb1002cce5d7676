"""Planetary Computer signing through the ``planetary-computer`` package, against a local stand-in.

The stand-in answers like the SAS token endpoint (``GET <sas_url>/<account>/<container>`` ->
``{"msft:expiry": ..., "token": ...}``). A signed href carries the token; hrefs outside blob storage
are left alone; a failing endpoint and an expired token quarantine the item with the reason while the
poll goes on and the earlier cube stays as it was.
"""

from __future__ import annotations

import copy
import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from ingest.cube import open_cube
from ingest.ledger import open_ledger
from ingest.poller import Poller, WatchConfig
from ingest.sources.planetary import PlanetaryComputerSigner, SigningError
from ingest.stac_server import running_stac_api
from ingest.types import ItemStatus
from tests.ingest.helpers import ListSource, MiniArchive, add_s2, grid, parcels_gdf

BLOB = "https://sentinel2l2a01.blob.core.windows.net"
TOKEN = "st=2024-05-01T00%3A00%3A00Z&se=2024-05-02T00%3A00%3A00Z&sp=rl&sv=2021-06-08&sr=c&sig=c2lnbmF0dXJl"


class _TokenEndpoint(BaseHTTPRequestHandler):
    requests: list[tuple[str, str | None]] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        container = self.path.rstrip("/").split("/")[-1]
        type(self).requests.append((self.path, self.headers.get("Ocp-Apim-Subscription-Key")))
        if container.startswith("broken"):
            self.send_response(403)
            self.end_headers()
            self.wfile.write(b'{"message": "Access denied"}')
            return
        hours = -2 if container.startswith("expired") else 1
        expiry = (datetime.now(UTC) + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = json.dumps({"msft:expiry": expiry, "token": TOKEN}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def sas_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TokenEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/api/sas/v1/token"
    server.shutdown()


def _blob_item(container: str) -> dict:
    return {"id": f"S2A_{container}", "assets": {
        "B04": {"href": f"{BLOB}/{container}/33/U/XP/B04_10m.tif"},
        "thumbnail": {"href": "https://planetarycomputer.microsoft.com/api/data/v1/item/preview.png"}}}


def test_blob_hrefs_are_signed_with_the_endpoint_token(sas_url):
    signer = PlanetaryComputerSigner(sas_url, subscription_key="key-from-env")
    item = _blob_item("sentinel2-l2")
    signed = signer.sign(item)
    assert signed["assets"]["B04"]["href"] == f"{item['assets']['B04']['href']}?{TOKEN}"
    assert signed["assets"]["thumbnail"] == item["assets"]["thumbnail"]  # not in blob storage
    assert item["assets"]["B04"]["href"].endswith(".tif")  # the ledger's copy stays unsigned
    assert ("/api/sas/v1/token/sentinel2l2a01/sentinel2-l2", "key-from-env") in _TokenEndpoint.requests


def test_failing_endpoint_and_expired_token_raise_with_reason(sas_url):
    signer = PlanetaryComputerSigner(sas_url, retries=0)
    with pytest.raises(SigningError, match=r"signing asset B04 failed at .*/sentinel2l2a01/broken-a: 403"):
        signer.sign(_blob_item("broken-a"))
    with pytest.raises(SigningError, match=r"SAS token for sentinel2l2a01/expired-a expired at"):
        signer.sign(_blob_item("expired-a"))


def test_signing_failures_quarantine_the_item_and_the_poll_goes_on(sas_url, tmp_path):
    d0 = datetime(2024, 5, 3, 10, tzinfo=UTC)
    a = MiniArchive(tmp_path / "archive", grid(64))
    add_s2(a, d0, seed=1, item_id="GOOD1")
    add_s2(a, d0 + timedelta(days=2), seed=2, item_id="GOOD2")
    a.write_catalog()
    ledger = open_ledger(tmp_path / "ledger.sqlite")
    signer = PlanetaryComputerSigner(sas_url, retries=0)
    with running_stac_api(a.root) as endpoint:
        items = {i["id"]: i for i in endpoint.archive.items(endpoint.assets_url)}
        bad = []
        for n, container in enumerate(("broken-b", "expired-b")):
            item = copy.deepcopy(items["GOOD1"])
            item["id"] = container.upper()
            item["properties"]["datetime"] = (d0 + timedelta(days=4 + n)).strftime("%Y-%m-%dT%H:%M:%SZ")
            for asset in item["assets"].values():
                asset["href"] = f"{BLOB}/{container}/{asset['href'].rsplit('/', 1)[-1]}"
            bad.append(item)

        def poll(raw):
            source = ListSource(raw, name="pc")
            source.sign_item = signer.sign
            p = Poller([source], ledger, tmp_path / "cubes", tmp_path / "series",
                       WatchConfig(tiles=("33UXP",), collections=("sentinel-2-l2a",), start_s=0, lookback_s=10**9),
                       grids={"33UXP": a.grid}, parcels=parcels_gdf(a.grid), chunk=32)
            return p.poll_once()

        assert poll([items["GOOD1"]]).ingested_items == 1
        before = open_cube(tmp_path / "cubes" / "33UXP.zarr", "S2").load()
        report = poll([*bad, items["GOOD2"]])
    assert report.ingested_items == 1 and report.errors == []
    reasons = dict(report.quarantined)
    assert "signing asset" in reasons["BROKEN-B"] and "403" in reasons["BROKEN-B"]
    assert "expired at" in reasons["EXPIRED-B"]
    assert ledger.get("sentinel-2-l2a", "EXPIRED-B").status is ItemStatus.QUARANTINED
    after = open_cube(tmp_path / "cubes" / "33UXP.zarr", "S2").load()
    assert list(after.item_ids.values) == ["GOOD1", "GOOD2"]
    np.testing.assert_array_equal(after.reflectance.values[0], before.reflectance.values[0])
