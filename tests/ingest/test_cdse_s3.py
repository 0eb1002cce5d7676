"""Copernicus Data Space items whose assets are on S3 (``s3://eodata/Sentinel-2/MSI/L2A/...SAFE/.../*.jp2``),
read through GDAL's /vsis3/ at the source's configured endpoint with credentials from the environment.

The season of tests/ingest/test_dialects.py is written in the ``cdse`` dialect, its JPEG 2000 files are
uploaded to a real S3 server (moto) under the eodata layout and the items' hrefs rewritten to ``s3://``;
rustac serves the items. The cubes and series must equal the synthetic dialect's (read from local COGs),
and with credentials missing (or refused by a key-checking S3 server) the items are quarantined naming the
source while the committed cube stays as it was.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from contracts import storage
from ingest.cube import open_cube
from ingest.grid import grids_from_manifest
from ingest.ledger import open_ledger
from ingest.parcels import read_parcels
from ingest.poller import Poller, WatchConfig
from ingest.series import read_series
from ingest.sources.configured import configured_source
from ingest.stac_server import running_stac_api
from ingest.synth.dialects import s3_hrefs
from ingest.types import S2_BANDS
from tests.ingest.test_dialects import CONFIG, _cube, _ingest

pytestmark = [pytest.mark.integration]
SOURCE = "cdse-s3"
MID_S = int(datetime(2024, 5, 8, tzinfo=UTC).timestamp())


@pytest.fixture(scope="module")
def cdse_archive(tmp_path_factory, s3_endpoint):
    """The cdse archive with its S2 hrefs on s3://eodata (files uploaded to the moto server)."""
    from ingest.synth import SynthConfig, generate_archive

    archive = tmp_path_factory.mktemp("cdse-s3") / "archive"
    generate_archive(archive, SynthConfig(**CONFIG), dialect="cdse")
    uploads = s3_hrefs(archive)
    assert uploads and all(k.startswith("Sentinel-2/MSI/L2A/2024/05/") and k.endswith(".jp2") for k in uploads)
    fs = storage.filesystem()
    if not fs.exists("eodata"):
        fs.mkdir("eodata")
    for key, path in uploads.items():
        fs.put_file(str(path), f"eodata/{key}")
        path.unlink()  # nothing local is left to read: the pixels can only come from S3
    return archive


def _poller(archive, url, work, s3_endpoint):
    grids = grids_from_manifest(archive)
    gdf, _ = read_parcels(archive / "parcels" / "parcels.parquet")
    source = configured_source(url, "cdse", name=SOURCE, s3_endpoint=s3_endpoint)
    return Poller([source], open_ledger(work / "ledger.sqlite"), work / "cubes", work / "series",
                  WatchConfig(tiles=tuple(grids), collections=("sentinel-2-l2a",), start_s=0, lookback_s=10**9),
                  grids=grids, parcels=gdf, chunk=96), next(iter(grids))


def test_items_on_s3_give_the_synthetic_cubes_and_series(cdse_archive, s3_endpoint, tmp_path):
    with running_stac_api(cdse_archive) as endpoint:
        hrefs = [a["href"] for it in endpoint.archive.iter_items("sentinel-2-l2a") for a in it["assets"].values()]
        assert hrefs and all(h.startswith("s3://eodata/Sentinel-2/MSI/L2A/") and ".SAFE/GRANULE/" in h for h in hrefs)
        poller, tile = _poller(cdse_archive, endpoint.url, tmp_path / "s3", s3_endpoint)
        report = poller.poll_once()
    assert report.errors == [] and report.quarantined == [] and report.ingested_items > 0
    ref_report, _, ref_tile = _ingest(tmp_path / "synthetic" / "archive", "synthetic", tmp_path / "synthetic")
    assert ref_tile == tile and ref_report.quarantined == []
    ref = _cube({"work": tmp_path / "synthetic", "tile": tile}, "S2")
    got = _cube({"work": tmp_path / "s3", "tile": tile}, "S2")
    np.testing.assert_array_equal(got.time.values, ref.time.values)
    np.testing.assert_array_equal(got.reflectance.values, ref.reflectance.values)
    np.testing.assert_array_equal(got.clear.values, ref.clear.values)
    assert (ref.reflectance.values > 0).mean() > 0.9  # the comparison is over real data
    key = ["parcel_id", "time"]
    a = read_series(tmp_path / "synthetic" / "series", tile, sensor="S2").to_pandas().sort_values(key)
    b = read_series(tmp_path / "s3" / "series", tile, sensor="S2").to_pandas().sort_values(key)
    assert len(a) > 0
    np.testing.assert_array_equal(b[key].to_numpy(), a[key].to_numpy())
    np.testing.assert_array_equal(b[list(S2_BANDS)].to_numpy(float), a[list(S2_BANDS)].to_numpy(float))


def test_missing_credentials_quarantine_naming_the_source_and_keep_the_cube(cdse_archive, s3_endpoint, tmp_path,
                                                                             monkeypatch):
    work = tmp_path / "work"
    with running_stac_api(cdse_archive) as endpoint:
        poller, tile = _poller(cdse_archive, endpoint.url, work, s3_endpoint)
        first = poller.backfill(0, MID_S)  # with credentials: the first week
        assert first.ingested_items > 0 and first.quarantined == []
        before = open_cube(work / "cubes" / f"{tile}.zarr", "S2").load()
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
        report = poller.poll_once()
    assert report.errors == [] and report.ingested_items == 0
    assert report.quarantined, "the second week's items must be quarantined"
    for _, reason in report.quarantined:
        assert f"source {SOURCE}" in reason and "AWS_SECRET_ACCESS_KEY" in reason and "not set" in reason
    after = open_cube(work / "cubes" / f"{tile}.zarr", "S2").load()
    assert after.identical(before)
    rows = [e for e in open_ledger(work / "ledger.sqlite").entries() if e.status.value == "quarantined"]
    assert len(rows) == len(report.quarantined)


def test_wrong_credentials_quarantine_naming_the_source(cdse_archive, tmp_path, monkeypatch):
    """An S3 server that checks the keys (moto with IAM enforced) refuses ours: quarantined, with why and where."""
    from tests.services import moto_s3_service

    monkeypatch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", "0")  # moto: every request is authenticated
    with moto_s3_service() as checking, running_stac_api(cdse_archive) as endpoint:
        poller, tile = _poller(cdse_archive, endpoint.url, tmp_path, checking)
        report = poller.backfill(0, MID_S)
    assert report.ingested_items == 0 and report.quarantined and report.errors == []
    for _, reason in report.quarantined:
        assert f"from source {SOURCE} at {checking}" in reason and "Access Key Id you provided does not exist" in reason
    assert not (tmp_path / "cubes" / f"{tile}.zarr").exists() or open_cube(
        tmp_path / "cubes" / f"{tile}.zarr", "S2").sizes["time"] == 0


def test_wrong_endpoint_quarantines_naming_the_source(cdse_archive, tmp_path):
    """Credentials set but the S3 endpoint answers nothing: GDAL's read error, with the source and endpoint."""
    from tests.services import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    with running_stac_api(cdse_archive) as endpoint:
        poller, _ = _poller(cdse_archive, endpoint.url, tmp_path, dead)
        report = poller.backfill(0, MID_S)
    assert report.ingested_items == 0 and report.quarantined
    for _, reason in report.quarantined:
        assert f"from source {SOURCE} at {dead}" in reason and "unreadable (s3://eodata/" in reason
