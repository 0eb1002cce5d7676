"""Sentinel Hub items loaded into cube slices through the Process API, on a local stand-in of the service.

The stand-in (``tests/ingest/sh_standin.py``) serves a small synthetic archive: OAuth token, Catalog API
search, and a Process API that runs the request's evalscript (node) over the archive's pixels. A poll
through ``SentinelHubSource`` must give the same cubes and parcel series as reading the archive's COGs
directly (``ListSource``, the plain load path); a token the service stops accepting is renewed once and
the poll goes on; a 429 with Retry-After is waited out; a 5xx that persists quarantines its item with the
reason while the poll goes on and the cube's earlier slots stay as they were.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime

import numpy as np
import pytest

from ingest.cube import open_cube
from ingest.http import RetryPolicy
from ingest.ledger import open_ledger
from ingest.poller import Poller, WatchConfig
from ingest.series import read_series
from ingest.sources.sentinelhub import SentinelHubSource
from ingest.types import S2_BANDS
from tests.ingest.helpers import TILE, ListSource, basic_archive, parcels_gdf
from tests.ingest.sh_standin import PROCESS, SEARCH, TOKEN, SentinelHubStandIn

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="the stand-in runs evalscripts with node "
                                "(installed by scripts/setup.sh with npm)")
FAST = RetryPolicy(max_retries=2, initial_wait_s=0.01, max_wait_s=0.1, jitter_s=0.0, timeout_s=10.0)
COLLECTIONS = ("sentinel-2-l2a", "sentinel-1-grd")


@pytest.fixture(autouse=True)
def _insecure_oauth(monkeypatch):
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the stand-in has no TLS


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return basic_archive(tmp_path_factory.mktemp("archive"), size=64)


def _poller(source, archive, work):
    return Poller([source], open_ledger(work / "ledger.sqlite"), work / "cubes", work / "series",
                  WatchConfig(tiles=(TILE,), collections=COLLECTIONS, start_s=0, lookback_s=10**9),
                  grids={TILE: archive.grid}, parcels=parcels_gdf(archive.grid), asset_root=archive.root, chunk=32)


@pytest.fixture(scope="module")
def from_cogs(archive, tmp_path_factory):
    """The reference: the archive's COGs read directly by the plain load path."""
    work = tmp_path_factory.mktemp("cogs")
    report = _poller(ListSource(archive.items), archive, work).poll_once()
    assert report.errors == [] and report.quarantined == [] and report.ingested_items == len(archive.items)
    return work


def _sentinelhub(standin, work):
    return SentinelHubSource("id", "secret", base_url=standin.url, token_url=standin.url + TOKEN, policy=FAST,
                             cache_dir=work / "sh-cache")


def _cube(work, sensor):
    return open_cube(work / "cubes" / f"{TILE}.zarr", sensor).load()


def _assert_same_cubes(work, reference):
    for sensor, var in (("S2", "reflectance"), ("S1", "backscatter")):
        ref, got = _cube(reference, sensor), _cube(work, sensor)
        assert ref.sizes["time"] > 0
        np.testing.assert_array_equal(got.time.values, ref.time.values)
        np.testing.assert_array_equal(got[var].values, ref[var].values)
    np.testing.assert_array_equal(_cube(work, "S2").clear.values, _cube(reference, "S2").clear.values)
    key = ["parcel_id", "time", "sensor"]
    a = read_series(reference / "series", TILE).to_pandas().sort_values(key).reset_index(drop=True)
    b = read_series(work / "series", TILE).to_pandas().sort_values(key).reset_index(drop=True)
    assert len(a) > 0 and list(b.columns) == list(a.columns)
    np.testing.assert_array_equal(b[key].to_numpy(), a[key].to_numpy())
    for col in (*S2_BANDS, "vv", "vh", "valid_count", "pixel_count"):
        if col in a.columns:
            np.testing.assert_array_equal(b[col].to_numpy(float), a[col].to_numpy(float))


def test_a_poll_through_sentinel_hub_gives_the_cubes_of_the_cogs(archive, from_cogs, tmp_path):
    with SentinelHubStandIn(archive) as standin:
        source = _sentinelhub(standin, tmp_path)
        report = _poller(source, archive, tmp_path).poll_once()
    assert report.errors == [] and report.quarantined == []
    assert report.ingested_items == len(archive.items)
    assert standin.count(PROCESS, 200) == len(archive.items)  # one request per item: the tile is one block
    assert standin.count(SEARCH) >= 2 and standin.issued == ["tok-1"]
    _assert_same_cubes(tmp_path, from_cogs)
    # S1 scenes carry no MGRS tile: placed on the tile by their footprint, one ledger row per tile
    s1 = [e for e in open_ledger(tmp_path / "ledger.sqlite").entries() if e.collection == "sentinel-1-grd"]
    assert len(s1) == 2 and all(e.item_id.endswith(f"@{TILE}") and e.status.value == "ingested" for e in s1)


def _on_first_process(fault):
    """A stand-in fault that acts on the first Process API request only (later ones are answered)."""
    done = []

    def once(path, body, item):
        if path == PROCESS and not done:
            done.append(1)
            return fault(path, body, item)
        return None
    return once


def test_a_refused_token_is_renewed_once_and_the_poll_goes_on(archive, from_cogs, tmp_path):
    with SentinelHubStandIn(archive) as standin:
        def revoke_token(path, body, item):
            standin.revoked.add(standin.issued[-1])  # the service stops accepting the token it gave

        standin.fault = _on_first_process(revoke_token)
        source = _sentinelhub(standin, tmp_path)
        report = _poller(source, archive, tmp_path).poll_once()
    assert report.errors == [] and report.quarantined == []
    assert standin.count(PROCESS, 401) == 1 and standin.issued == ["tok-1", "tok-2"]
    assert source.tokens.renewals == 1
    refused = next(i for i, r in enumerate(standin.requests) if r[2] == 401)
    assert {tok for p, tok, s in standin.requests[refused + 1:] if p != TOKEN} == {"tok-2"}
    _assert_same_cubes(tmp_path, from_cogs)


def test_a_429_with_retry_after_is_waited_out(archive, from_cogs, tmp_path):
    with SentinelHubStandIn(archive) as standin:
        # Retry-After in milliseconds, as Sentinel Hub sends it
        standin.fault = _on_first_process(lambda path, body, item: (429, {"Retry-After": "150"}))
        report = _poller(_sentinelhub(standin, tmp_path), archive, tmp_path).poll_once()
    assert report.errors == [] and report.quarantined == []
    assert standin.count(PROCESS, 429) == 1 and standin.count(PROCESS, 200) == len(archive.items)
    _assert_same_cubes(tmp_path, from_cogs)


def test_a_persisting_5xx_quarantines_the_item_and_the_poll_goes_on(archive, tmp_path):
    late = [i for i in archive.items if i["collection"] == "sentinel-2-l2a"][-1]  # the last S2 date
    late_s1 = [i for i in archive.items if i["collection"] == "sentinel-1-grd"][-1]
    with SentinelHubStandIn(archive) as standin:
        standin.visible = lambda item: item["id"] not in (late["id"], late_s1["id"])
        poller = _poller(_sentinelhub(standin, tmp_path), archive, tmp_path)
        first = poller.poll_once()
        assert first.quarantined == [] and first.ingested_items == len(archive.items) - 2
        before_s2, before_s1 = _cube(tmp_path, "S2"), _cube(tmp_path, "S1")

        standin.visible = lambda item: True
        standin.fault = lambda path, body, item: (503, {}) if item is not None and item["id"] == late["id"] else None
        second = poller.poll_once()
    assert len(second.quarantined) == 1
    item_id, reason = second.quarantined[0]
    assert item_id.startswith("S2") and "Process API" in reason and "503" in reason
    assert standin.count(PROCESS, 503) == FAST.max_retries + 1  # sentinelhub's attempts, then given up
    assert second.ingested_items == 1  # the late S1 scene still went in: the poll went on
    after_s2, after_s1 = _cube(tmp_path, "S2"), _cube(tmp_path, "S1")
    np.testing.assert_array_equal(after_s2.reflectance.values, before_s2.reflectance.values)
    np.testing.assert_array_equal(after_s2.time.values, before_s2.time.values)
    np.testing.assert_array_equal(after_s1.backscatter.values[: before_s1.sizes["time"]], before_s1.backscatter.values)
    assert after_s1.sizes["time"] == before_s1.sizes["time"] + 1
    entry = open_ledger(tmp_path / "ledger.sqlite").get("sentinel-2-l2a", item_id)
    assert entry.status.value == "quarantined" and entry.reason == reason
    assert datetime.fromtimestamp(entry.acq_time, UTC).date() == datetime.fromisoformat(
        late["properties"]["datetime"].replace("Z", "+00:00")).date()


def test_ingest_check_fetches_a_block_of_each_scene(archive, monkeypatch, tmp_path, capsys):
    from sitsmon.cli import main

    monkeypatch.setenv("SH_CLIENT_ID", "id")
    monkeypatch.setenv("SH_CLIENT_SECRET", "secret")
    monkeypatch.setenv("SITSMON_PATHS__DATA_DIR", str(tmp_path))
    with SentinelHubStandIn(archive) as standin:
        common = ["ingest", "check", "--sentinelhub", "--sentinelhub-url", standin.url, "--token-url",
                  standin.url + TOKEN]
        s2 = main([*common, "--day", "2024-05-03", "--collections", "sentinel-2-l2a"])
        s2_out = capsys.readouterr().out
        s1 = main([*common, "--day", "2024-05-04", "--collections", "sentinel-1-grd"])
        s1_out = capsys.readouterr().out
    assert (s2, s1) == (0, 0), s2_out + s1_out
    assert "ok       B8A = asset B8A: uint16 32x32 EPSG:32633 1 band(s), scale 0.0001 offset -0.1" in s2_out
    assert "ok       SCL = asset SCL: uint16 32x32" in s2_out and "MISSING" not in s2_out
    assert "no MGRS tile: placed on tiles by footprint when polled" in s1_out
    assert "ok       vh = asset vh: float32 32x32 EPSG:32633 1 band(s)" in s1_out
    assert standin.count(PROCESS, 200) == 2  # one 32 x 32 block per scene checked
