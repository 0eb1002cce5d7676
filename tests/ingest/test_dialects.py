"""The whole ingest (poll -> load -> cube -> series) against each catalogue dialect behind the local STAC API.

One small season is written four times by ``generate_archive(dialect=...)``: as the synthetic archive,
as Earth Search (``blue`` … ``scl``, pixels with the offset already applied), as Planetary Computer
(no ``raster:bands``: offset from the processing baseline; S1 from ``sentinel-1-rtc``) and as the
Copernicus Data Space (``B02_10m`` next to ``B02_20m``, STAC 1.1 ``bands``, JPEG 2000). Each is served by
rustac and ingested; the cubes and parcel series must be equal to the synthetic one's, which the
other tests compare with the source COGs.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from ingest.cube import open_cube
from ingest.errors import ConfigError
from ingest.grid import grids_from_manifest
from ingest.ledger import open_ledger
from ingest.parcels import read_parcels
from ingest.poller import Poller, WatchConfig
from ingest.series import read_series
from ingest.sources import StacApiSource
from ingest.stac_server import running_stac_api
from ingest.types import S2_BANDS

pytestmark = [pytest.mark.integration]
DIALECTS = ("synthetic", "earth-search", "planetary-computer", "cdse")
S1_COLLECTION = {"synthetic": "sentinel-1-grd", "planetary-computer": "sentinel-1-rtc"}
CONFIG = dict(seed=11, tile_size_px=96, parcels_per_tile=8, start=date(2024, 5, 1), end=date(2024, 5, 16))


def _ingest(archive, dialect, work):
    from ingest.synth import SynthConfig, generate_archive

    generate_archive(archive, SynthConfig(**CONFIG), dialect=dialect)
    grids = grids_from_manifest(archive)
    gdf, _ = read_parcels(archive / "parcels" / "parcels.parquet")
    collections = ("sentinel-2-l2a", *([S1_COLLECTION[dialect]] if dialect in S1_COLLECTION else []))
    with running_stac_api(archive) as endpoint:
        poller = Poller([StacApiSource(endpoint.url, dialect=dialect)], open_ledger(work / "ledger.sqlite"),
                        work / "cubes", work / "series",
                        WatchConfig(tiles=tuple(grids), collections=collections, start_s=0, lookback_s=10**9),
                        grids=grids, parcels=gdf, chunk=96)
        report = poller.poll_once()
        n_items = {cid: sum(1 for _ in endpoint.archive.iter_items(cid)) for cid in endpoint.archive.collection_ids}
    return report, n_items, next(iter(grids))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = {}
    for dialect in DIALECTS:
        root = tmp_path_factory.mktemp(dialect)
        report, n_items, tile = _ingest(root / "archive", dialect, root)
        out[dialect] = {"report": report, "n_items": n_items, "work": root, "tile": tile}
    return out


def _cube(run, sensor):
    return open_cube(run["work"] / "cubes" / f"{run['tile']}.zarr", sensor).load()


@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_dialect_ingests_everything_it_watches(runs, dialect):
    run = runs[dialect]
    report = run["report"]
    assert report.errors == [] and report.quarantined == []
    watched_s1 = dialect in S1_COLLECTION
    s2 = _cube(run, "S2")
    assert s2.sizes["time"] > 0
    want = run["n_items"]["sentinel-2-l2a"] + (run["n_items"][S1_COLLECTION[dialect]] if watched_s1 else 0)
    assert report.ingested_items == want
    assert report.ingested_slots == s2.sizes["time"] + (_cube(run, "S1").sizes["time"] if watched_s1 else 0)


@pytest.mark.parametrize("dialect", DIALECTS[1:])
def test_s2_cube_and_series_equal_the_synthetic_dialect(runs, dialect):
    ref, got = _cube(runs["synthetic"], "S2"), _cube(runs[dialect], "S2")
    np.testing.assert_array_equal(got.time.values, ref.time.values)
    np.testing.assert_array_equal(got.reflectance.values, ref.reflectance.values)
    np.testing.assert_array_equal(got.clear.values, ref.clear.values)
    assert (ref.reflectance.values > 0).mean() > 0.9  # the comparison is over real data
    a = read_series(runs["synthetic"]["work"] / "series", ref.attrs.get("tile_id", runs["synthetic"]["tile"]),
                    sensor="S2").to_pandas()
    b = read_series(runs[dialect]["work"] / "series", runs[dialect]["tile"], sensor="S2").to_pandas()
    key = ["parcel_id", "time"]
    a, b = a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True)
    assert len(a) > 0
    np.testing.assert_array_equal(b[key].to_numpy(), a[key].to_numpy())
    np.testing.assert_array_equal(b[list(S2_BANDS)].to_numpy(float), a[list(S2_BANDS)].to_numpy(float))
    np.testing.assert_array_equal(b["valid_count"].to_numpy(), a["valid_count"].to_numpy())


def test_s1_from_planetary_computer_rtc_equals_the_synthetic_backscatter(runs):
    ref, got = _cube(runs["synthetic"], "S1"), _cube(runs["planetary-computer"], "S1")
    assert ref.sizes["time"] > 0
    np.testing.assert_array_equal(got.time.values, ref.time.values)
    np.testing.assert_array_equal(got.backscatter.values, ref.backscatter.values)


@pytest.mark.parametrize("dialect", ["earth-search", "cdse", "planetary-computer"])
def test_uncalibrated_grd_is_refused_at_configuration(runs, dialect, tmp_path):
    with pytest.raises(ConfigError, match=r"sentinel-1-grd.*uncalibrated GRD \(digital numbers, not backscatter\)"):
        Poller([StacApiSource("http://127.0.0.1:9", dialect=dialect)], open_ledger(tmp_path / "l.sqlite"),
               tmp_path / "c", tmp_path / "s",
               WatchConfig(tiles=("33UXP",), collections=("sentinel-2-l2a", "sentinel-1-grd")))
    # a declared calibration step lifts the refusal
    from ingest.assets import dialect_named

    declared = dialect_named(dialect).with_calibration({"sentinel-1-grd": "sigma0"})
    Poller([StacApiSource("http://127.0.0.1:9", dialect=declared)], open_ledger(tmp_path / "m.sqlite"),
           tmp_path / "c", tmp_path / "s", WatchConfig(tiles=("33UXP",), collections=("sentinel-1-grd",)))


def test_planetary_computer_rtc_items_carry_no_tile_and_are_placed_by_footprint(runs):
    """As the real catalogue: no MGRS field on sentinel-1-rtc items; ingest places them by footprint."""
    from ingest.archive import open_archive
    from ingest.items import tile_of_item

    run = runs["planetary-computer"]
    items = list(open_archive(run["work"] / "archive").iter_items("sentinel-1-rtc"))
    assert items and all(tile_of_item(i) is None for i in items)
    ledger = open_ledger(run["work"] / "ledger.sqlite")
    rows = [e for e in ledger.entries() if e.collection == "sentinel-1-rtc"]
    assert sorted(e.item_id for e in rows) == sorted(f"{i['id']}@{run['tile']}" for i in items)
    assert {e.status.value for e in rows} == {"ingested"}
