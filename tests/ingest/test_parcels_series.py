"""Parcel layer checks and repair, the parcel-id raster, the series store and the interchange import."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely

import ingest.series as series_store
from ingest.errors import ImportFormatError, ParcelLayerError
from ingest.importer import import_series
from ingest.parcels import rasterize_parcels, read_parcels
from ingest.series import COMPACT, SCHEMA, compact_index, compact_series, read_series, stats_table, write_slot
from ingest.types import Sensor
from tests import SHARED_DATA
from tests.ingest.helpers import grid

BOWTIE = shapely.Polygon([(500100, 5300100), (500300, 5300300), (500300, 5300100), (500100, 5300300)])


def layer(tmp_path, rows, suffix):
    g = grid(64)
    gdf = gpd.GeoDataFrame({"parcel_id": [r[0] for r in rows], "land_use": "grassland"},
                           geometry=[r[1] for r in rows], crs=f"EPSG:{g.epsg}")
    path = tmp_path / f"parcels{suffix}"
    if suffix == ".parquet":
        gdf.to_parquet(path)
    else:
        gdf.to_file(path, driver="GPKG" if suffix == ".gpkg" else "GeoJSON")
    return path


@pytest.mark.parametrize("suffix", [".parquet", ".gpkg", ".geojson"])
def test_invalid_empty_duplicate_parcels_are_reported(tmp_path, suffix):
    box = shapely.box(500000, 5300000, 500100, 5300100)
    rows = [
        ("A", box),
        ("B", BOWTIE),  # self-intersecting: repaired
        ("C", shapely.Polygon()),  # empty: rejected
        ("D", box.buffer(-1)),
        ("D", box.buffer(-2)),  # duplicate id: both rejected
        ("", box),  # empty id
        ("E", shapely.Polygon([(500000, 5300000), (500010, 5300010), (500020, 5300020), (500000, 5300000)])),  # no area
    ]
    gdf, report = read_parcels(layer(tmp_path, rows, suffix))
    assert list(gdf.parcel_id) == ["A", "B"]
    assert gdf.geometry.is_valid.all()
    assert report.total == 7 and report.kept == 2
    assert [r[1] for r in report.repaired] == ["B"] and "Self-intersection" in report.repaired[0][2]
    reasons = {(r[1], r[2].split(" (")[0]) for r in report.rejected}
    assert ("C", "empty geometry") in reasons
    assert ("D", "duplicate parcel id") in reasons
    assert ("", "empty parcel id") in reasons
    assert any(r[1] == "E" and "without area" in r[2] for r in report.rejected)
    assert any("rejected" in line for line in report.lines())


def test_unusable_layers(tmp_path):
    with pytest.raises(ParcelLayerError, match="cannot read parcel layer"):
        read_parcels(tmp_path / "missing.gpkg")
    gdf = gpd.GeoDataFrame({"id": ["a"]}, geometry=[shapely.box(0, 0, 1, 1)], crs=4326)
    gdf.to_parquet(tmp_path / "noid.parquet")
    with pytest.raises(ParcelLayerError, match="no 'parcel_id' column"):
        read_parcels(tmp_path / "noid.parquet")
    with pytest.raises(ParcelLayerError, match="no usable parcel"):
        read_parcels(layer(tmp_path, [("X", shapely.Polygon())], ".parquet"))


def test_mgrs_coarse_bbox_contains_the_tile():
    from ingest.errors import ConfigError
    from ingest.grid import grid_bbox_4326, mgrs_coarse_bbox

    x0, y0, x1, y1 = grid_bbox_4326(grid(64))  # 33UXP-like grid of the helpers (UTM 33N, ~47.8 N)
    b = mgrs_coarse_bbox("33UXP")
    assert b[0] <= x0 and x1 <= b[2] and b[1] <= y0 and y1 <= b[3]
    assert b == (10.5, 47.0, 19.5, 57.0)  # zone 33: 12-18 E, band U: 48-56 N, plus margins
    assert mgrs_coarse_bbox("01CAA")[0] == -180.0
    with pytest.raises(ConfigError, match="not an MGRS tile id"):
        mgrs_coarse_bbox("IMPORTED")


def test_parcel_raster_on_tile_grid():
    g = grid(64)
    x0, y0 = g.bounds[0], g.bounds[3]
    gdf = gpd.GeoDataFrame({"parcel_id": ["in", "out"]},
                           geometry=[shapely.box(x0, y0 - 100, x0 + 50, y0), shapely.box(0, 0, 10, 10)],
                           crs=g.epsg).to_crs(4326)
    r = rasterize_parcels(gdf, g)
    assert r.parcel_ids == ("in",)
    assert r.labels.shape == (64, 64) and r.labels.dtype == np.int32
    assert (r.labels == 1).sum() == 50  # 10 rows x 5 columns of 10 m pixels
    assert r.labels[:10, :5].min() == 1 and r.labels[10:, :].max() == 0


def table(t, vals, slot):
    ids = ["p1", "p2"]
    sums = np.array(vals, dtype=float)[:, None].repeat(10, 1) * 1e4
    return stats_table(ids, Sensor.S2, t, "T", sums, np.array([1, 1]), np.array([1, 1]), ["i"], slot=slot)


def test_series_slots_compaction_and_override(tmp_path):
    write_slot(tmp_path, "T", "S2", "20240501", table(1714521600, [0.1, 0.2], "20240501"))
    write_slot(tmp_path, "T", "S2", "20240506", table(1714953600, [0.3, 0.4], "20240506"))
    assert read_series(tmp_path, "T", parcel_id="p1").column("B02").to_pylist() == pytest.approx([0.1, 0.3])
    assert compact_series(tmp_path, "T") == 2
    assert not list((tmp_path / "T" / "S2").glob("*.parquet"))
    assert read_series(tmp_path, "T", parcel_id="p2").column("B02").to_pylist() == pytest.approx([0.2, 0.4])
    # a slot rewritten after compaction overrides the compacted rows
    write_slot(tmp_path, "T", "S2", "20240501", table(1714521600, [0.5, 0.6], "20240501"))
    got = read_series(tmp_path, "T", parcel_id="p1")
    assert got.column("B02").to_pylist() == pytest.approx([0.5, 0.3])
    assert compact_series(tmp_path, "T") == 1
    assert read_series(tmp_path, parcel_id="p1").column("B02").to_pylist() == pytest.approx([0.5, 0.3])
    assert read_series(tmp_path, "T", sensor="S1").num_rows == 0


def many_parcel_slot(t: int, seed: int, slot: str, n: int = 300) -> pa.Table:
    ids = [f"P{i:04d}" for i in range(n)]
    rng = np.random.default_rng(seed)
    valid = rng.integers(1, 9, n)
    return stats_table(ids, Sensor.S2, t, "T", rng.uniform(0, 3000, (n, 10)) * valid[:, None], valid, valid + 1,
                       [f"i{seed}"], slot=slot)


def by_pandas(root, ids):
    """The reference: the tile's whole table (the dataset scan of every row group) filtered in pandas."""
    whole = read_series(root, "T").to_pandas()
    return whole[whole["parcel_id"].isin(ids)].reset_index(drop=True)


@pytest.mark.parametrize("shuffled", [False, True])
def test_parcel_reads_by_row_group_index_match_a_whole_file_scan(tmp_path, monkeypatch, shuffled):
    monkeypatch.setattr(series_store, "ROW_GROUP", 64)  # many small groups: a parcel spans group edges
    for k in range(4):
        write_slot(tmp_path, "T", "S2", f"2024050{k + 1}", many_parcel_slot(1714521600 + k * 86400, k, f"2024050{k + 1}"))
    compact_series(tmp_path, "T")
    path = tmp_path / "T" / COMPACT
    if shuffled:  # a compacted file not sorted by parcel: the index must fall back to a scan of the ranges
        t = pq.read_table(path)
        t = t.take(np.random.default_rng(0).permutation(t.num_rows))
        pq.write_table(t, path, row_group_size=64)
    index = compact_index(path)
    assert index.metadata.num_row_groups > 10 and index.ordered is not shuffled
    rng = np.random.default_rng(1)
    for ids in (["P0000"], ["P0299"], ["P0150", "P0007", "P0150"], list(rng.choice([f"P{i:04d}" for i in range(300)], 40)),
                ["nope"], ["P0100", "nope"]):
        got = read_series(tmp_path, "T", parcel_id=list(ids)).to_pandas()
        want = by_pandas(tmp_path, ids)
        assert len(got) == len(want) and got.equals(want), ids
    assert read_series(tmp_path, "T", parcel_id=[]).num_rows == 0


def test_a_read_after_a_recompaction_sees_the_new_rows(tmp_path):
    write_slot(tmp_path, "T", "S2", "20240501", table(1714521600, [0.1, 0.2], "20240501"))
    compact_series(tmp_path, "T")
    path = tmp_path / "T" / COMPACT
    before = compact_index(path)
    assert read_series(tmp_path, "T", parcel_id="p1").column("B02").to_pylist() == pytest.approx([0.1])
    assert compact_index(path) is before  # cached: the footer is not parsed again
    # the same slot rewritten with values of the same size, then folded: same file size, new version
    write_slot(tmp_path, "T", "S2", "20240501", table(1714521600, [0.7, 0.8], "20240501"))
    assert compact_series(tmp_path, "T") == 1
    assert read_series(tmp_path, "T", parcel_id="p1").column("B02").to_pylist() == pytest.approx([0.7])
    assert compact_index(path).identity != before.identity
    # a new slot folded in: its rows are there for the parcel
    write_slot(tmp_path, "T", "S2", "20240506", table(1714953600, [0.3, 0.4], "20240506"))
    compact_series(tmp_path, "T")
    assert read_series(tmp_path, "T", parcel_id="p2").column("B02").to_pylist() == pytest.approx([0.8, 0.4])


def test_import_interchange_csv(tmp_path):
    csv = tmp_path / "obs.csv"
    csv.write_text(
        "parcel_id,time,sensor,B02,B03,B04,B05,B06,B07,B08,B8A,B11,B12,clear,VV,VH,orbit\n"
        "P1,2021-01-01T00:00:00Z,S1,,,,,,,,,,,,0.05,0.01,175\n"
        "P1,2021-01-02T10:00:00Z,S2,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,0.95,1,,,\n"
        "P2,2021-01-02T10:00:00Z,S2,0.1,,0.3,0.4,0.5,0.6,0.7,0.8,0.9,0.95,0,,,\n"
        ",2021-01-02T10:00:00Z,S2,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,0.95,1,,,\n"
        "P3,yesterday,S2,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,0.95,1,,,\n"
        "P3,2021-01-02T10:00:00Z,S3,,,,,,,,,,,,,,\n"
        "P1,2021-01-02T10:00:00Z,S2,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,0.95,1,,,\n"
    )
    r = import_series(csv, tmp_path / "series", tile_id="sk")
    assert r.rows == 3 and r.parcels == 2
    # one duplicate policy (contracts.interchange.DUPLICATE_POLICY): line 8 repeats line 3, the last is kept
    assert [why for _, why in r.rejected] == ["empty parcel_id", "unparseable time 'yesterday'",
                                              "sensor must be S2 or S1, got 'S3'"]
    assert [line for line, _ in r.rejected] == [5, 6, 7] and r.duplicates == 1
    p1 = read_series(tmp_path / "series", "sk", parcel_id="P1").to_pandas()
    assert list(p1.sensor) == ["S1", "S2"] and p1.VV.iloc[0] == pytest.approx(0.05) and p1.orbit.iloc[0] == 175
    assert p1.B04.iloc[1] == pytest.approx(0.3) and p1.clear.iloc[1] == 1
    assert np.isnan(read_series(tmp_path / "series", "sk", parcel_id="P2").to_pandas().B03.iloc[0])
    again = import_series(csv, tmp_path / "series", tile_id="sk")  # the same rows: nothing stored twice
    assert again.rows == 3 and again.already_imported and read_series(tmp_path / "series", "sk").num_rows == 3


def test_import_real_dataset_and_parquet(tmp_path):
    src = str(SHARED_DATA / "grassland-sk-dev" / "observations.csv")
    r = import_series(src, tmp_path / "s")
    df = pd.read_csv(src)
    assert r.rows == len(df) and r.parcels == df.parcel_id.nunique() and not r.rejected
    one = read_series(tmp_path / "s", "imported", parcel_id="LR100").to_pandas()
    want = df[df.parcel_id == "LR100"]
    assert len(one) == len(want)
    assert one.time.is_monotonic_increasing
    pq_path = tmp_path / "obs.parquet"
    pa.Table.from_pandas(df.head(50)).to_pandas().to_parquet(pq_path)
    assert import_series(pq_path, tmp_path / "s2").rows == 50


def test_import_refuses_wrong_format(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,when\n1,2\n")
    with pytest.raises(ImportFormatError, match="missing column"):
        import_series(bad, tmp_path / "s")
    assert SCHEMA.names[:3] == ["parcel_id", "time", "sensor"]


def _greedy_groups(ids: list[str], size: int) -> list[tuple[int, int]]:
    """The plain rule: whole parcels added while the group stays within ``size`` rows (at least one)."""
    runs, at = [], 0
    for k in range(1, len(ids) + 1):
        if k == len(ids) or ids[k] != ids[k - 1]:
            runs.append(k - at)
            at = k
    groups, start, rows = [], 0, 0
    for r in runs:
        if rows and rows + r > size:
            groups.append((start, rows))
            start, rows = start + rows, 0
        rows += r
    return groups + ([(start, rows)] if rows else [])


@pytest.mark.parametrize("size", [1, 5, 16, 1000])
def test_compacted_row_groups_start_at_a_parcel(tmp_path, size):
    rng = np.random.default_rng(size)
    ids = sorted(f"P{rng.integers(0, 40):03d}" for _ in range(300))
    assert series_store.parcel_row_groups(pa.array(ids), size) == _greedy_groups(ids, size)
    assert series_store.parcel_row_groups(pa.array([], pa.string()), size) == []
    t = pa.table({"parcel_id": ids, "v": np.arange(300)})
    with series_store.CompactWriter(tmp_path / "c.parquet", t.schema) as w:
        w.write(t)
    f = pq.ParquetFile(tmp_path / "c.parquet")
    assert pq.read_table(tmp_path / "c.parquet").equals(t)
    firsts = [f.read_row_group(g)["parcel_id"][0].as_py() for g in range(f.num_row_groups)]
    lasts = [f.read_row_group(g)["parcel_id"][-1].as_py() for g in range(f.num_row_groups)]
    assert all(a != b for a, b in zip(lasts, firsts[1:], strict=False))  # no parcel straddles two groups


def test_the_index_cache_is_bounded_by_the_memory_of_its_footers(tmp_path, monkeypatch):
    monkeypatch.setattr(series_store, "ROW_GROUP", 1)  # a group per parcel
    paths = []
    for k, n in enumerate((10, 40, 20)):  # files of 10, 40 and 20 row groups
        t = pa.table({"parcel_id": [f"P{i:03d}" for i in range(n)], "v": np.arange(n)})
        with series_store.CompactWriter(tmp_path / f"{k}.parquet", t.schema) as w:
            w.write(t)
        paths.append(tmp_path / f"{k}.parquet")
    per_group = series_store.INDEX_BYTES_PER_CHUNK * 2  # two columns
    cache = series_store._IndexCache(max_bytes=per_group * 50)
    cached = lambda: [int(Path(k).stem) for k in cache._items]  # noqa: E731
    for p in paths[:2]:
        with open(p, "rb") as f:
            cache.get(p, f)
    assert cached() == [0, 1]  # 10 + 40 groups: within the bound
    with open(paths[2], "rb") as f:
        index = cache.get(paths[2], f)
    assert cached() == [2] and index.metadata.num_row_groups == 20  # 70 > 50: the oldest went, then 40 + 20 > 50
    small = series_store._IndexCache(max_bytes=1)
    with open(paths[1], "rb") as f:
        small.get(paths[1], f)
    assert len(small._items) == 1  # the one being read stays, whatever its size
