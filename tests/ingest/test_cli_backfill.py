"""`sitsmon ingest poll|backfill|import` through ``main([...])``, and the backfill over two tiles."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pytest

from ingest.cube import open_cube
from ingest.ledger import open_ledger
from ingest.load import resolve_hrefs
from ingest.pipeline import TileIngestor
from ingest.poller import Poller, WatchConfig
from ingest.series import read_series
from ingest.types import ItemStatus
from sitsmon.cli import main
from tests.ingest.helpers import (
    D0,
    CountingBar,
    ListSource,
    MiniArchive,
    add_s1,
    add_s2,
    grid,
    served_basic_archive,
)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    yield from served_basic_archive(tmp_path_factory, "cli")


@pytest.mark.integration
def test_poll_once_then_again(served, tmp_path, capsys):
    archive, endpoint, parcels = served
    argv = ["ingest", "poll", "--once", "--stac-url", endpoint.url, "--tiles", "33UXP", "--since", "2024-04-01",
            "--grids", str(archive.root), "--parcels", str(parcels), "--cubes", str(tmp_path / "cubes"),
            "--series", str(tmp_path / "series"), "--ledger", str(tmp_path / "ledger.sqlite"), "--bus", "none",
            "--chunk", "64"]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert first["ingested_slots"] == 5 and first["errors"] == []
    assert main([*argv, "--lookback-days", "100000"]) == 0
    second = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert second["ingested_slots"] == 0 and second["duplicates"] == 6
    assert open_cube(tmp_path / "cubes" / "33UXP.zarr", "S2").sizes["time"] == 3
    assert read_series(tmp_path / "series", "33UXP", parcel_id="P002").num_rows == 5
    assert main(["ingest", "status", "--ledger", str(tmp_path / "ledger.sqlite")]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["counts"] == {"ingested": 6} and status["quarantined"] == []
    assert {w["collection"] for w in status["watermarks"]} == {"sentinel-2-l2a", "sentinel-1-grd"}


@pytest.mark.integration
def test_backfill_command_shows_progress(served, tmp_path, capsys):
    archive, endpoint, _ = served
    argv = ["ingest", "backfill", "--start", "2024-05-01", "--end", "2024-05-08", "--stac-url", endpoint.url,
            "--tiles", "33UXP", "--cubes", str(tmp_path / "c"), "--series", str(tmp_path / "s"),
            "--ledger", str(tmp_path / "l.sqlite"), "--bus", "none", "--chunk", "64"]
    assert main(argv) == 0
    out = capsys.readouterr()
    report = json.loads(out.out.splitlines()[-1])
    assert report["ingested_slots"] == 3  # S2 05-03 (two items mosaicked), S1 05-04, S2 05-08; not 05-10/05-13
    assert "backfill" in out.err and "slot" in out.err  # tqdm progress on stderr
    assert open_cube(tmp_path / "c" / "33UXP.zarr", "S2").sizes["time"] == 2


@pytest.mark.integration
def test_aoi_is_mapped_onto_tiles(served, tmp_path, capsys):
    archive, endpoint, _ = served
    from tests.ingest.helpers import bbox4326, footprint

    x0, y0, x1, y1 = bbox4326(archive.grid)
    aoi = tmp_path / "aoi.geojson"
    aoi.write_text(json.dumps(footprint([x0, y0, (x0 + x1) / 2, (y0 + y1) / 2])))
    assert main(["ingest", "poll", "--once", "--stac-url", endpoint.url, "--aoi", str(aoi), "--since", "2024-04-01",
                 "--collections", "sentinel-1-grd", "--cubes", str(tmp_path / "c"), "--series", str(tmp_path / "s"),
                 "--ledger", str(tmp_path / "l.sqlite"), "--bus", "none"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["ingested_slots"] == 2
    assert open_cube(tmp_path / "c" / "33UXP.zarr", "S1").sizes["time"] == 2


@pytest.mark.integration
def test_run_poll_once_with_the_in_process_bus(served, tmp_path):
    """What `sitsmon demo` calls: plain values in, events on the in-process bus."""
    from ingest import run_poll_once
    from monitor.bus import make_bus

    archive, endpoint, parcels = served
    bus = make_bus("memory")
    report = run_poll_once([endpoint.url], tmp_path / "cubes", tmp_path / "series", tmp_path / "l.sqlite",
                           tiles=["33UXP"], start="2024-04-01", grids_from=archive.root, parcels_path=parcels,
                           publisher=bus, chunk=64)
    assert report["ingested_slots"] == 5 and report["errors"] == []
    with bus.consumer(["sits.acquisitions"], "test") as consumer:
        messages = consumer.poll(timeout_s=1.0)
    assert len(messages) == 5 and {m.key for m in messages} == {"33UXP"}
    assert sorted(m.value["sensor"] for m in messages) == ["S1", "S1", "S2", "S2", "S2"]


def test_unreachable_catalogue_is_one_line(tmp_path, capsys):
    from ingest.stac_server import free_port

    code = main(["ingest", "poll", "--once", "--stac-url", f"http://127.0.0.1:{free_port()}", "--max-retries", "1",
                 "--cubes", str(tmp_path / "c"), "--series", str(tmp_path / "s"), "--ledger", str(tmp_path / "l"),
                 "--bus", "none"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1].startswith("sitsmon ingest: error: every search failed (2); first: http://127.0.0.1:")
    assert err[-1].endswith("unreachable ([Errno 111] Connection refused)")


def test_no_source_and_bad_dates_are_refused(tmp_path, capsys):
    assert main(["ingest", "poll", "--once", "--cubes", str(tmp_path), "--ledger", str(tmp_path / "l"),
                 "--bus", "none"]) == 1
    assert "no catalogue to search" in capsys.readouterr().err
    assert main(["ingest", "backfill", "--start", "tomorrow", "--end", "2024-01-01", "--stac-url",
                 "http://127.0.0.1:9", "--ledger", str(tmp_path / "l"), "--bus", "none"]) == 1
    assert "--start is not ISO 8601" in capsys.readouterr().err


def test_status_lists_quarantined_items(tmp_path, capsys):
    from ingest.ledger import open_ledger as _open

    led = _open(tmp_path / "l.sqlite")
    led.quarantine_raw("src", "sentinel-2-l2a", "BAD", {"id": "BAD"}, "item BAD: no properties object")
    led.close()
    assert main(["ingest", "status", "--ledger", str(tmp_path / "l.sqlite")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["counts"] == {"quarantined": 1}
    assert out["quarantined"][0]["reason"] == "item BAD: no properties object"
    assert main(["ingest", "status", "--ledger", str(tmp_path / "none.sqlite")]) == 1
    assert "no ledger at" in capsys.readouterr().err


def test_import_command(tmp_path, capsys):
    csv = tmp_path / "o.csv"
    csv.write_text("parcel_id,time,sensor,B02,B03,B04,B05,B06,B07,B08,B8A,B11,B12,clear,VV,VH,orbit\n"
                   "P1,2021-01-01T10:00:00Z,S2,,,0.3,,,,,,,,1,,,\n,2021-01-01,S2,,,0.1,,,,,,,,1,,,\n")
    assert main(["ingest", "import", str(csv), "--series", str(tmp_path / "s"), "--tile-id", "sk",
                 "--bus", "none"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["rows"] == 1
    assert "line 3 rejected: empty parcel_id" in out.err
    assert main(["ingest", "import", str(tmp_path / "nope.csv"), "--series", str(tmp_path / "s"), "--bus", "none"]) == 1
    assert "file not found" in capsys.readouterr().err


def two_tiles(root):
    """Two tiles, three dates each, items with absolute local hrefs."""
    items, grids = [], {}
    for k, tile in enumerate(("33UXP", "33UXQ")):
        g = grid(48, tile)
        g = type(g)(tile, g.epsg, g.resolution, (g.bounds[0], g.bounds[1] + k * 480, g.bounds[2], g.bounds[3] + k * 480))
        a = MiniArchive(root / tile, g)
        for d in range(3):
            add_s2(a, D0 + timedelta(days=5 * d), seed=10 * k + d)
        add_s1(a, D0 + timedelta(days=2), seed=50 + k)
        items += [resolve_hrefs(i, a.root) for i in a.items]
        grids[tile] = g
    return items, grids


def test_backfill_two_tiles_in_parallel_resumes_after_interruption(tmp_path, monkeypatch):
    items, grids = two_tiles(tmp_path / "src")
    start, end = int((D0 - timedelta(days=1)).timestamp()), int((D0 + timedelta(days=30)).timestamp())

    def poller(work):
        return Poller([ListSource(items)], open_ledger(work / "l.sqlite"), work / "cubes", work / "series",
                      WatchConfig(tiles=("33UXP", "33UXQ")), grids=grids, workers=2, chunk=48)

    reference = poller(tmp_path / "ref").backfill(start, end)
    assert reference.ingested_slots == 8 and not reference.errors
    original = TileIngestor.ingest_slot
    calls = {"n": 0}

    def flaky(self, sensor, slot, new):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the operator pressed Ctrl-C in the middle of a slot
        return original(self, sensor, slot, new)

    monkeypatch.setattr(TileIngestor, "ingest_slot", flaky)
    work = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        poller(work).backfill(start, end)
    monkeypatch.setattr(TileIngestor, "ingest_slot", original)

    bar = CountingBar()
    resumed = poller(work).backfill(start, end, progress=bar)
    assert resumed.ingested_slots + resumed.duplicates >= 6 and not resumed.errors
    assert bar.n == bar.total > 0
    led = open_ledger(work / "l.sqlite")
    assert {e.status for e in led.entries()} == {ItemStatus.INGESTED} and len(led.entries()) == 8
    for tile in grids:
        for sensor in ("S2", "S1"):
            a = open_cube(work / "cubes" / f"{tile}.zarr", sensor).drop_vars("ingested_at").load()
            b = open_cube(tmp_path / "ref" / "cubes" / f"{tile}.zarr", sensor).drop_vars("ingested_at").load()
            assert a.identical(b)
    # the backfill replayed in time order per tile
    t = open_cube(work / "cubes" / "33UXQ.zarr", "S2").time.values
    assert np.all(np.diff(t.astype("int64")) > 0)


def test_run_forever_polls_every_interval_until_stopped(tmp_path):
    items, grids = two_tiles(tmp_path / "src")
    visible: list = []
    p = Poller([ListSource(visible)], open_ledger(tmp_path / "l.sqlite"), tmp_path / "cubes", tmp_path / "series",
               WatchConfig(tiles=("33UXP",), collections=("sentinel-1-grd",), start_s=0, lookback_s=10**9,
                           interval_s=30.0), grids=grids, chunk=48)
    reports, sleeps = [], []

    def on_report(r):
        reports.append(r)
        visible[:] = items  # new items published between the polls

    p.run_forever(stop=lambda: len(reports) >= 3, sleep=sleeps.append, on_report=on_report)
    assert [r.ingested_slots for r in reports] == [0, 1, 0]
    assert len(sleeps) == 2 and all(0 < s <= 30.0 for s in sleeps)
