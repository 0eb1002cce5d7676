"""``sitsmon ingest check`` against the local STAC API, for sources of two dialects configured in TOML.

Earth Search and Copernicus Data Space archives (``generate_archive(dialect=...)``) are served by
rustac; ``[[ingest.sources]]`` names each with its dialect. The check prints every band it resolved
with the asset it came from; a deleted asset file and the uncalibrated S1 GRD collection are named as
missing / refused and make the exit status 1.
"""

from __future__ import annotations

import json
from datetime import date

import pytest

from ingest.errors import ConfigError
from ingest.sources.configured import configured_source
from ingest.stac_server import running_stac_api
from sitsmon.cli import main

pytestmark = [pytest.mark.integration]
CONFIG = dict(seed=5, tile_size_px=64, parcels_per_tile=5, start=date(2024, 5, 1), end=date(2024, 5, 12))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from contextlib import ExitStack

    from ingest.synth import SynthConfig, generate_archive

    roots = {}
    for dialect in ("earth-search", "cdse"):
        roots[dialect] = tmp_path_factory.mktemp(dialect) / "archive"
        generate_archive(roots[dialect], SynthConfig(**CONFIG), dialect=dialect)
    items = [json.loads(line) for line in (roots["cdse"] / "items" / "sentinel-2-l2a.ndjson").read_text().splitlines()]
    days = sorted({i["properties"]["datetime"][:10] for i in items})
    second = next(i for i in items if i["properties"]["datetime"][:10] == days[1])
    with ExitStack() as stack:
        endpoints = {d: stack.enter_context(running_stac_api(r)) for d, r in roots.items()}
        # GDAL remembers in this process what it read (and what was missing) over HTTP: not for the CDSE
        # assets, one of which a test removes and puts back.
        mp = stack.enter_context(pytest.MonkeyPatch.context())
        mp.setenv("CPL_VSIL_CURL_NON_CACHED", f"/vsicurl/{endpoints['cdse'].assets_url}")
        yield {d: e.url for d, e in endpoints.items()}, roots, second, days


def _toml(tmp_path, urls, cdse_collections):
    path = tmp_path / "sitsmon.toml"
    path.write_text(
        f'[paths]\ndata_dir = "{tmp_path}"\n'
        f'[[ingest.sources]]\nname = "es"\nurl = "{urls["earth-search"]}"\ndialect = "earth-search"\n'
        'collections = ["sentinel-2-l2a"]\ntoken_env = "TEST_ES_TOKEN"\n'
        f'[[ingest.sources]]\nname = "cdse"\nurl = "{urls["cdse"]}"\ndialect = "cdse"\n'
        f"collections = {json.dumps(cdse_collections)}\n")
    return path


def test_check_resolves_every_asset_of_both_dialects(served, tmp_path, capsys, monkeypatch):
    urls, _, _, days = served
    monkeypatch.setenv("TEST_ES_TOKEN", "secret")
    assert main(["--config", str(_toml(tmp_path, urls, ["sentinel-2-l2a"])), "ingest", "check", "--day", days[0]]) == 0
    out = capsys.readouterr().out
    assert "es (earth-search dialect)" in out and "cdse (cdse dialect)" in out
    assert "MISSING" not in out
    assert "ok       B05 = asset rededge1: uint16 32x32 EPSG:32633 1 band(s), scale 0.0001 offset 0" in out
    assert "ok       B02 = asset B02_10m: uint16 64x64 EPSG:32633 1 band(s), scale 0.0001 offset -0.1" in out
    assert "ok       SCL = asset SCL_20m: uint8 32x32" in out
    assert "secret" not in out


def test_check_names_what_is_missing(served, tmp_path, capsys, monkeypatch):
    urls, roots, second, days = served
    monkeypatch.setenv("TEST_ES_TOKEN", "secret")
    lost = roots["cdse"] / second["assets"]["B11_20m"]["href"]
    moved = lost.with_suffix(".moved")
    lost.rename(moved)
    try:
        code = main(["--config", str(_toml(tmp_path, urls, ["sentinel-2-l2a", "sentinel-1-grd"])),
                     "ingest", "check", "--day", days[1], "--source", "cdse"])
    finally:
        moved.rename(lost)
    out = capsys.readouterr().out
    assert code == 1 and "es (earth-search dialect)" not in out
    assert "MISSING  B11 = asset B11_20m: unreadable" in out
    assert "MISSING  sentinel-1-grd: refused: source cdse: S1 collection 'sentinel-1-grd' of cdse is uncalibrated GRD" in out
    assert "ok       B12 = asset B12_20m" in out  # the rest still checked


def test_credentials_come_from_the_environment(monkeypatch):
    monkeypatch.delenv("TEST_PC_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"\[\[ingest.sources\]\] pc: token_env names TEST_PC_KEY, which is not set"):
        configured_source("https://planetarycomputer.microsoft.com/api/stac/v1", "planetary-computer", name="pc",
                          token_env="TEST_PC_KEY")
    monkeypatch.setenv("TEST_CDSE_TOKEN", "t0k")
    cdse = configured_source("https://stac.dataspace.copernicus.eu/v1", "cdse", token_env="TEST_CDSE_TOKEN",
                             calibration={"sentinel-1-grd": "sigma0"})
    assert cdse.headers == {"Authorization": "Bearer t0k"} and cdse.dialect.s1_radiometry["sentinel-1-grd"] == "sigma0"
    pc = configured_source("https://planetarycomputer.microsoft.com/api/stac/v1", "planetary-computer",
                           sas_url="http://127.0.0.1:9/token")
    assert pc.sign_item is not None and pc.headers == {}


def test_poll_takes_the_configured_sources_with_their_dialects(served, tmp_path, capsys, monkeypatch):
    urls, roots, _, _ = served
    monkeypatch.setenv("TEST_ES_TOKEN", "secret")
    config = _toml(tmp_path, urls, ["sentinel-2-l2a"])
    argv = ["--config", str(config), "ingest", "poll", "--once", "--since", "2024-04-01", "--grids",
            str(roots["cdse"]), "--bus", "none", "--chunk", "32"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    n_s2 = len((roots["cdse"] / "items" / "sentinel-2-l2a.ndjson").read_text().splitlines())
    # both sources publish the same S2 scenes under their own ids: each is ingested once, nothing quarantined
    assert report["quarantined"] == [] and report["errors"] == []
    assert report["ingested_items"] == 2 * n_s2
