"""The Sentinel Hub Statistical API path on answers in the documented shape, served by a local HTTP server.

Two parcels, one request each (after a 429 that is waited out and a 503 that is retried, and one more
for the interval that failed with a retriable error); the daily
statistics land in the parcel-series store with the schema of the cube-based zonal statistics: band
means, pixel and clear counts, the clear flag; an all-masked day gives no values, an interval the
service failed on is reported, not written.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from ingest.http import RetryPolicy
from ingest.series import SCHEMA, read_series
from ingest.sources.sh_statistical import parcel_statistics
from ingest.types import S2_BANDS
from tests.ingest.helpers import grid, parcels_gdf
from tests.ingest.scripted_http import ScriptedServer

DATA = Path(__file__).parent / "data"
STATS = "/api/v1/statistics"
FAST = RetryPolicy(max_retries=2, initial_wait_s=0.01, max_wait_s=0.1, jitter_s=0.0, timeout_s=5.0)
START, END = 1714521600, 1715990399  # 2024-05-01 .. 2024-05-17


def recorded(name: str) -> dict:
    return json.loads((DATA / name).read_text())


@pytest.fixture
def written(monkeypatch, tmp_path):
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the local server has no TLS
    parcels = parcels_gdf(grid(64), n=2)
    with ScriptedServer() as srv:
        srv.script("/oauth/token", 200, recorded("sentinelhub_token.json"))
        srv.script(STATS, 429, {"status": 429, "reason": "Too Many Requests"}, {"Retry-After": "200"})
        srv.script(STATS, 200, recorded("sentinelhub_statistics_parcel_a.json"))
        # sentinelhub asks once more for the interval that failed with a retriable error; it fails again
        srv.script(STATS, 200, recorded("sentinelhub_statistics_parcel_a_interval.json"))
        srv.script(STATS, 503, {"status": 503, "reason": "Service Unavailable"})
        srv.script(STATS, 200, recorded("sentinelhub_statistics_parcel_b.json"))
        result = parcel_statistics(parcels, "33UXP", START, END, tmp_path / "series", client_id="id",
                                   client_secret="secret", base_url=srv.url, token_url=srv.url + "/oauth/token",
                                   policy=FAST)
        bodies = [json.loads(b) for m, p, b in srv.requests if p == STATS]
    return result, parcels, tmp_path / "series", bodies, srv


def test_statistics_fill_the_series_store(written):
    result, parcels, series, bodies, srv = written
    assert [p.name for p in result.slots] == ["20240503.parquet", "20240508.parquet"]
    assert pq.read_schema(result.slots[0]).names == SCHEMA.names
    rows = read_series(series, "33UXP", sensor="S2").to_pandas().set_index(["parcel_id", "slot"])
    ids = [str(p) for p in parcels["parcel_id"]]
    a = recorded("sentinelhub_statistics_parcel_a.json")["data"][0]["outputs"]["bands"]["bands"]
    got = rows.loc[(ids[0], "20240503")]
    np.testing.assert_allclose(got[list(S2_BANDS)].to_numpy(float), [a[f"B{i}"]["stats"]["mean"] for i in range(10)],
                               rtol=1e-6)
    assert (got.pixel_count, got.valid_count, got.clear) == (412, 404, 1.0)
    masked = rows.loc[(ids[0], "20240508")]
    assert masked.valid_count == 0 and masked.clear == 0.0 and np.isnan(masked[list(S2_BANDS)].to_numpy(float)).all()
    b = rows.loc[(ids[1], "20240503")]
    assert (b.pixel_count, b.valid_count, b.clear) == (1250, 1000, 0.0)  # 80 % clear: not a clear view
    assert result.failed == [(ids[0], "{'type': 'EXECUTION_ERROR', 'message': 'Failed to evaluate script!'}")]


def test_requests_follow_the_documented_payload_and_are_retried(written):
    _, _, _, bodies, srv = written
    assert srv.count("/oauth/token") == 1  # one token for every request
    assert len(bodies) == 5  # two parcels, 429 waited out, 503 retried, the failed interval asked again
    assert bodies[2]["aggregation"]["timeRange"]["from"].startswith("2024-05-13")
    body = bodies[-1]
    assert body["aggregation"]["aggregationInterval"] == {"of": "P1D"}
    assert body["aggregation"]["timeRange"]["from"].startswith("2024-05-01")
    assert body["input"]["data"][0]["type"] in ("sentinel-2-l2a", "S2L2A")
    assert "SCL" in body["aggregation"]["evalscript"] and body["input"]["bounds"]["geometry"]["type"] == "Polygon"


def test_cli_statistics_writes_the_slots(monkeypatch, tmp_path, capsys):
    from sitsmon.cli import main

    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    monkeypatch.setenv("SH_CLIENT_ID", "id")
    monkeypatch.setenv("SH_CLIENT_SECRET", "secret")
    layer = tmp_path / "parcels.geojson"
    parcels_gdf(grid(64), n=2).to_file(layer, driver="GeoJSON")
    with ScriptedServer() as srv:
        srv.script("/oauth/token", 200, recorded("sentinelhub_token.json"))
        srv.script(STATS, 200, recorded("sentinelhub_statistics_parcel_b.json"))
        code = main(["ingest", "statistics", "--parcels", str(layer), "--tile-id", "33UXP", "--start", "2024-05-01",
                     "--end", "2024-05-17", "--series", str(tmp_path / "series"), "--sentinelhub-url", srv.url,
                     "--token-url", srv.url + "/oauth/token"])
    assert code == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out == {"parcels": 2, "slots": ["20240503.parquet", "20240508.parquet"], "failed": []}
    rows = read_series(tmp_path / "series", "33UXP", sensor="S2").to_pandas()
    assert len(rows) == 4 and set(rows.valid_count) == {1000, 1210}
