"""Parcel series keyed by campaign: each acquisition reduced with its campaign's outlines.

A parcel id reused by campaign 2026 with a new outline gets a 2026 series beside its 2025 one, each
equal to a zonal mean computed here directly from the source COG arrays and the year's own polygon
(pixel centres inside, shapely; not the ingest's rasteriser and kernel); an acquisition of a campaign
without an imported layer, or outside every configured campaign, stops the run before anything is
written; a store written before the ``campaign`` column existed still reads, its rows of their date's
campaign.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import geopandas as gpd
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely

from contracts.campaigns import CampaignCalendar
from ingest.campaign_layers import ParcelLayers, unchanged_parcels
from ingest.cube import open_cube
from ingest.errors import CampaignLayerError
from ingest.ledger import open_ledger
from ingest.parcel_campaign import import_campaign_layer
from ingest.poller import Poller, WatchConfig
from ingest.series import SCHEMA, read_series, read_slot
from ingest.types import S2_BANDS, SCL_CLEAR
from tests.ingest.helpers import ListSource, MiniArchive, add_s1, add_s2, grid

X0, Y0 = 500000.0, 5300000.0  # the helpers' tile origin (EPSG:32633, 10 m, 64 px)
D25 = datetime(2025, 6, 10, 10, tzinfo=UTC)
D26 = datetime(2026, 6, 12, 10, tzinfo=UTC)
OUTLINES = {  # parcel A is redrawn in 2026; B is only declared in 2025, C only in 2026
    2025: {"A": shapely.box(X0 + 40, Y0 + 40, X0 + 200, Y0 + 160), "B": shapely.box(X0 + 300, Y0 + 300, X0 + 420, Y0 + 400)},
    2026: {"A": shapely.box(X0 + 120, Y0 + 100, X0 + 330, Y0 + 250), "C": shapely.box(X0 + 450, Y0 + 50, X0 + 600, Y0 + 180)},
}


def _import(root, campaign):
    gdf = gpd.GeoDataFrame({"parcel_id": list(OUTLINES[campaign]), "land_use": ["grassland"] * len(OUTLINES[campaign])},
                           geometry=list(OUTLINES[campaign].values()), crs="EPSG:32633").to_crs(4326)
    path = root / f"lpis-{campaign}.gpkg"
    gdf.to_file(path, driver="GPKG")
    return import_campaign_layer(path, campaign, root / "parcels")


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    a = MiniArchive(tmp_path_factory.mktemp("campaigns") / "archive", grid(64))
    add_s2(a, D25, seed=11)
    add_s1(a, D25 + timedelta(days=1), seed=12)
    add_s2(a, D26, seed=13)
    add_s1(a, D26 + timedelta(days=1), seed=14)
    add_s2(a, datetime(2027, 6, 1, 10, tzinfo=UTC), seed=15, item_id="S2_2027")  # no 2027 layer is imported
    return a


def _poller(a, work, items, layers):
    return Poller([ListSource(items)], open_ledger(work / "ledger.sqlite"), work / "cubes", work / "series",
                  WatchConfig(tiles=(a.grid.tile_id,), start_s=0, lookback_s=10**9), grids={a.grid.tile_id: a.grid}, parcels=layers,
                  asset_root=a.root, chunk=32)


def _centres_inside(geom, g):
    """The tile's pixels whose centre lies in ``geom`` (what 'a parcel's pixels' means on a tile grid)."""
    h, w = g.shape
    xmin, _, _, ymax = g.bounds
    xs = xmin + (np.arange(w) + 0.5) * g.resolution
    ys = ymax - (np.arange(h) + 0.5) * g.resolution
    x, y = np.meshgrid(xs, ys)
    return shapely.contains_xy(geom, x, y)


def _reference(a, item_id, sensor, geom):
    """Zonal means of one item straight from its source arrays: S2 clear (SCL 4-7, every band > 0)
    reflectance (DN · 1e-4 − 0.1, the baseline 05.10 offset), S1 linear power where both polarisations
    are finite."""
    inside = _centres_inside(geom, a.grid)
    arr = a.arrays[item_id]
    if sensor == "S2":
        dn = np.stack([arr[b] for b in S2_BANDS]).astype(np.float64)
        ok = inside & np.isin(arr["SCL"], SCL_CLEAR) & (dn > 0).all(axis=0)
        return {b: float(np.mean(np.maximum(dn[i][ok] - 1000, 1)) * 1e-4) for i, b in enumerate(S2_BANDS)}, \
            int(inside.sum())
    vv, vh = arr["vv"].astype(np.float64), arr["vh"].astype(np.float64)
    ok = inside & np.isfinite(vv) & np.isfinite(vh)
    return {"VV": float(vv[ok].mean()), "VH": float(vh[ok].mean())}, int(inside.sum())


@pytest.fixture(scope="module")
def ingested(archive, tmp_path_factory):
    work = tmp_path_factory.mktemp("campaigns-out")
    for year in (2025, 2026):
        _import(work, year)
    items = [i for i in archive.items if i["id"] != "S2_2027"]
    poller = _poller(archive, work, items, ParcelLayers.by_campaign(work / "parcels"))
    report = poller.backfill(0, 2 * 10**9)
    poller.ledger.close()
    assert report.ingested_slots == 4 and not report.quarantined
    return work


def test_a_reused_parcel_id_has_one_series_per_campaign_each_of_its_own_outline(archive, ingested):
    tile = archive.grid.tile_id
    rows = read_series(ingested / "series", tile).to_pandas()
    assert set(zip(rows.parcel_id, rows.campaign, strict=True)) == {("A", 2025), ("B", 2025), ("A", 2026), ("C", 2026)}
    for campaign, when in ((2025, D25), (2026, D26)):
        a = read_series(ingested / "series", tile, parcel_id="A", campaign=campaign).to_pandas()
        assert set(a.campaign) == {campaign} and len(a) == 2  # one S2, one S1 view of that year only
        assert {t.year for t in a.time} == {when.year}
        for sensor in ("S2", "S1"):
            row = a[a.sensor == sensor].iloc[0]
            item = next(i["id"] for i in archive.items if i["collection"].startswith(f"sentinel-{sensor[1]}")
                        and i["properties"]["datetime"].startswith(str(when.year)))
            values, n_pixels = _reference(archive, item, sensor, OUTLINES[campaign]["A"])
            assert int(row.pixel_count) == n_pixels
            for name, expected in values.items():
                assert row[name] == pytest.approx(expected, rel=2e-5, abs=2e-6), (campaign, sensor, name)
    # the two outlines give different pixels: the 2026 series is not the 2025 one continued
    s25 = read_series(ingested / "series", tile, parcel_id="A", campaign=2025, sensor="S2").to_pandas()
    s26 = read_series(ingested / "series", tile, parcel_id="A", campaign=2026, sensor="S2").to_pandas()
    assert int(s25.pixel_count[0]) != int(s26.pixel_count[0])


def test_a_campaign_without_its_layer_stops_the_run_before_anything_is_written(archive, ingested):
    series_before = {p: p.read_bytes() for p in sorted((ingested / "series").rglob("*.parquet"))}
    cube = ingested / "cubes" / f"{archive.grid.tile_id}.zarr"
    steps_before = open_cube(cube, "S2").sizes["time"]
    late = [i for i in archive.items if i["id"] == "S2_2027"]
    poller = _poller(archive, ingested, late, ParcelLayers.by_campaign(ingested / "parcels"))
    with pytest.raises(CampaignLayerError, match=r"no parcel layer imported for campaign 2027 .*imported: 2025, 2026"
                                                 r".*sitsmon ingest parcels import LAYER --campaign 2027.*2027-06-01"):
        poller.backfill(0, 2 * 10**9)
    assert poller.ledger.get("sentinel-2-l2a", "S2_2027") is None  # not even pending: polled again once imported
    poller.ledger.close()
    assert {p: p.read_bytes() for p in sorted((ingested / "series").rglob("*.parquet"))} == series_before
    assert open_cube(cube, "S2").sizes["time"] == steps_before


def test_an_acquisition_outside_every_configured_campaign_is_refused(archive, tmp_path):
    _import(tmp_path, 2025)
    calendar = CampaignCalendar.of([(2025, "2024-10-01", "2025-05-31")])  # 2025-06-10 lies after it
    poller = _poller(archive, tmp_path, archive.items[:1], ParcelLayers.by_campaign(tmp_path / "parcels", calendar))
    with pytest.raises(CampaignLayerError, match=r"acquisition of 2025-06-10 lies in no configured campaign "
                                                 r"\(configured: 2025 \(2024-10-01..2025-05-31\)\)"):
        poller.poll_once()
    poller.ledger.close()
    assert not (tmp_path / "series").exists() and not (tmp_path / "cubes" / f"{archive.grid.tile_id}.zarr").exists()


def test_the_campaign_flag_still_overrides_the_date(archive, tmp_path):
    """``--campaign 2026`` on a 2025 acquisition: reduced with the 2026 outlines, rows of campaign 2026."""
    result = _import(tmp_path, 2026)
    layers = ParcelLayers(fixed=gpd.read_parquet(result.parcels_path), campaign=2026)
    poller = _poller(archive, tmp_path, archive.items[:1], layers)
    assert poller.poll_once().ingested_slots == 1
    poller.ledger.close()
    rows = read_series(tmp_path / "series", archive.grid.tile_id).to_pandas()
    assert sorted(rows.parcel_id) == ["A", "C"] and set(rows.campaign) == {2026}
    assert {t.year for t in rows.time} == {2025}


def _old_format_slot(path, times):
    """A slot file as the code before campaigns wrote it: the store's columns without ``campaign``."""
    old = pa.schema([f for f in SCHEMA if f.name != "campaign"])
    n = len(times)
    cols = {f.name: pa.nulls(n, f.type) for f in old}
    cols.update(parcel_id=pa.array(["A"] * n), sensor=pa.array(["S2"] * n), tile_id=pa.array(["T"] * n),
                slot=pa.array([path.stem] * n), B04=pa.array([0.05] * n, pa.float32()),
                B08=pa.array([0.4] * n, pa.float32()),
                time=pa.array(np.array(times, dtype="datetime64[s]"), pa.timestamp("s", tz="UTC")))
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols, schema=old), path)


def test_a_store_written_before_campaigns_reads_with_the_campaign_of_each_date(tmp_path):
    _old_format_slot(tmp_path / "T" / "S2" / "20241105.parquet", ["2024-11-05T10:00:00"])
    _old_format_slot(tmp_path / "T" / "S2" / "20250601.parquet", ["2025-06-01T10:00:00"])
    assert "campaign" not in pq.read_schema(tmp_path / "T" / "S2" / "20241105.parquet").names
    plain = read_series(tmp_path, "T").to_pandas()
    assert list(plain.campaign) == [2024, 2025]  # calendar years by default
    autumn = CampaignCalendar.of([(2025, "2024-10-01", "2025-09-30")])
    assert list(read_series(tmp_path, "T", calendar=autumn).to_pandas().campaign) == [2025, 2025]
    assert read_series(tmp_path, "T", campaign=2024).num_rows == 1
    assert read_slot(tmp_path, "T", "S2", "20241105", autumn).column("campaign").to_pylist() == [2025]


def test_unchanged_parcels_tell_a_redrawn_outline_from_a_reexported_one():
    base = {"A": shapely.box(X0, Y0, X0 + 100, Y0 + 100), "B": shapely.box(X0 + 200, Y0, X0 + 300, Y0 + 100),
            "C": shapely.box(X0 + 400, Y0, X0 + 500, Y0 + 100), "D": shapely.box(X0 + 600, Y0, X0 + 700, Y0 + 100)}
    old = gpd.GeoDataFrame({"parcel_id": list(base), "land_use": ["grassland"] * 4}, geometry=list(base.values()),
                           crs="EPSG:32633")
    moved = {"A": shapely.affinity.translate(base["A"], 0.05, 0.05),  # re-exported: centimetres
             "B": shapely.box(X0 + 200, Y0, X0 + 300, Y0 + 130),  # redrawn: 30 % larger
             "C": base["C"], "E": shapely.box(X0 + 800, Y0, X0 + 900, Y0 + 100)}
    new = gpd.GeoDataFrame({"parcel_id": list(moved), "land_use": ["grassland", "grassland", "maize", "grassland"]},
                           geometry=list(moved.values()), crs="EPSG:32633").to_crs(4326)
    assert unchanged_parcels(old, new) == {"A"}  # B redrawn, C declared maize now, D gone, E new
