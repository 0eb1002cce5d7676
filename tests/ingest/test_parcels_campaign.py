"""Parcel layers imported per campaign, with the per-parcel report the traffic light reads.

Pixel counts (vectorised candidates, then shapely's contains) against a plain reference (every pixel
of the bounding box by overlay area); the report's statuses, areas, overlaps and counts on a layer with
known answers; a bad layer refused in one line with the campaign's earlier files unchanged; and the
light calling a parcel not analysable from the import's counts where the series' pixel centres say
it could be judged.
"""

from __future__ import annotations

import math
import subprocess
import sys
from datetime import date

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from ingest.parcel_campaign import PIXEL_COLUMNS, REPORT_COLUMNS, import_campaign_layer, pixels_inside

X0, Y0 = 500000.0, 5300000.0


def _reference(geom, res):
    """Every pixel of the bounding box by overlay: inside when its intersection with the parcel is all of it."""
    minx, miny, maxx, maxy = geom.bounds
    n = 0
    for x in np.arange(math.floor(minx / res) * res, maxx, res):
        for y in np.arange(math.floor(miny / res) * res, maxy, res):
            n += abs(geom.intersection(shapely.box(x, y, x + res, y + res)).area - res * res) < 1e-6
    return n


@pytest.mark.parametrize("res", [10.0, 20.0])
def test_pixels_inside_agree_with_testing_every_pixel(res):
    rng = np.random.default_rng(4)
    shapes = [shapely.box(X0, Y0, X0 + 100, Y0 + 100),  # on the grid: edge pixels are inside
              shapely.box(X0 + 5, Y0 + 3, X0 + 105, Y0 + 77),
              shapely.Polygon([(X0, Y0), (X0 + 230, Y0 + 40), (X0 + 60, Y0 + 190)]),
              shapely.box(X0, Y0, X0 + 200, Y0 + 200).difference(shapely.box(X0 + 60, Y0 + 60, X0 + 120, Y0 + 140)),
              shapely.box(X0 + 2, Y0 + 2, X0 + 9, Y0 + 9)]  # smaller than a pixel
    for _ in range(6):
        c = shapely.Point(X0 + rng.uniform(0, 500), Y0 + rng.uniform(0, 500))
        shapes.append(shapely.affinity.rotate(c.buffer(rng.uniform(20, 120), quad_segs=3), rng.uniform(0, 90)))
    for geom in shapes:
        assert pixels_inside(geom, res) == _reference(geom, res), geom.wkt[:80]


def _layer(path):
    bow_tie = shapely.Polygon([(X0 + 400, Y0), (X0 + 500, Y0 + 100), (X0 + 500, Y0), (X0 + 400, Y0 + 100)])
    rows = [("A", shapely.box(X0, Y0, X0 + 100, Y0 + 100)),
            ("B", shapely.box(X0 + 50, Y0, X0 + 150, Y0 + 100)),  # half over A
            ("C", shapely.box(X0 + 1000, Y0, X0 + 1015, Y0 + 15)),  # too small for a 20 m pixel
            ("D", bow_tie),  # invalid: repaired
            ("E", shapely.box(X0 + 2000, Y0, X0 + 2100, Y0 + 100)),
            ("E", shapely.box(X0 + 3000, Y0, X0 + 3100, Y0 + 100)),  # duplicate id: both rejected
            ("F", shapely.Polygon())]
    gdf = gpd.GeoDataFrame({"parcel_id": [r[0] for r in rows], "land_use": ["grassland"] * len(rows)},
                           geometry=[r[1] for r in rows], crs="EPSG:32633")
    gdf.to_parquet(path)
    return gdf


def test_the_import_reports_every_parcel(tmp_path):
    _layer(tmp_path / "lpis.parquet")
    result = import_campaign_layer(tmp_path / "lpis.parquet", 2024, tmp_path / "parcels")
    assert (result.total, result.kept, result.repaired, result.rejected, result.overlapping) == (7, 4, 1, 3, 2)
    report = pd.read_csv(result.report_path, dtype={"parcel_id": str, "reason": str, "overlap_ids": str})
    report = report.fillna({"reason": "", "overlap_ids": ""}).set_index("row")
    assert list(report.reset_index().columns) == list(REPORT_COLUMNS)
    assert report.loc[0, "status"] == "ok" and report.loc[0, "area_m2"] == 10000.0
    assert (report.loc[0, "overlap_m2"], report.loc[0, "overlap_ids"]) == (5000.0, "B")
    assert (report.loc[1, "overlap_m2"], report.loc[1, "overlap_ids"]) == (5000.0, "A")
    assert tuple(report.loc[0, list(PIXEL_COLUMNS)]) == (100, 25, 25)
    assert tuple(report.loc[2, list(PIXEL_COLUMNS)]) == (1, 0, 0) and report.loc[2, "overlap_m2"] == 0.0
    assert report.loc[3, "status"] == "repaired" and "make_valid" in report.loc[3, "reason"]
    assert report.loc[3, "area_m2"] == 5000.0  # the bow tie's two triangles
    assert [report.loc[r, "status"] for r in (4, 5, 6)] == ["rejected"] * 3
    assert "duplicate parcel id" in report.loc[4, "reason"] and "empty geometry" in report.loc[6, "reason"]
    kept = gpd.read_parquet(result.parcels_path)
    assert list(kept.parcel_id) == ["A", "B", "C", "D"] and set(kept.campaign) == {2024}
    assert kept.crs.to_epsg() == 32633 and list(kept.s2_10m_pixels) == list(report.loc[[0, 1, 2, 3], "s2_10m_pixels"])
    assert result.parcels_path.parent.name == "2024"


def test_a_bad_layer_is_refused_and_the_campaigns_stay(tmp_path):
    _layer(tmp_path / "lpis.parquet")
    first = import_campaign_layer(tmp_path / "lpis.parquet", 2024, tmp_path / "parcels")
    before = (first.parcels_path.read_bytes(), first.report_path.read_bytes())
    (tmp_path / "table.csv").write_text("parcel_id,land_use\nA,grassland\n")
    env = {"PYTHONPATH": str(__import__("pathlib").Path(__file__).parents[2]), "PATH": "/usr/bin:/bin",
           "SITSMON_PATHS__DATA_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "sitsmon", "ingest", "parcels", "import", str(tmp_path / "table.csv"),
                           "--campaign", "2024", "--root", str(tmp_path / "parcels")],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "table.csv" in lines[0], done.stderr
    assert (first.parcels_path.read_bytes(), first.report_path.read_bytes()) == before
    # another campaign is a folder of its own
    second = import_campaign_layer(tmp_path / "lpis.parquet", 2025, tmp_path / "parcels")
    assert second.parcels_path.parent.name == "2025"
    assert (first.parcels_path.read_bytes(), first.report_path.read_bytes()) == before


def test_the_light_calls_not_analysable_from_the_import(tmp_path):
    """The series' pixel centres (50 per view) would let the parcel be judged; fully inside it holds 2."""
    from alerts.series import normalise_observations
    from alerts.traffic_light import Light, Reason, assess_frame
    from tests.alerts.conftest import s1_row, s2_row
    from tests.alerts.test_traffic_light import day_of

    rows = [s2_row("A", float(d), 0.8) for d in np.arange(day_of("2024-03-01"), day_of("2024-10-31"), 8.0)]
    rows += [s1_row("A", float(d), -16.0) for d in np.arange(day_of("2024-03-02"), day_of("2024-10-31"), 6.0)]
    obs = normalise_observations(pd.DataFrame(rows))
    obs["pixel_count"] = 50
    gdf = gpd.GeoDataFrame({"parcel_id": ["A"], "land_use": ["grassland"]},
                           geometry=[shapely.box(X0 + 5, Y0 + 5, X0 + 35, Y0 + 25)], crs="EPSG:32633")
    gdf.to_parquet(tmp_path / "lpis.parquet")
    result = import_campaign_layer(tmp_path / "lpis.parquet", 2024, tmp_path / "parcels", s1_resolution_m=20.0)
    imported = pd.DataFrame(gpd.read_parquet(result.parcels_path))
    assert (int(imported.s2_10m_pixels[0]), int(imported.s1_pixels[0])) == (2, 0)

    plain = assess_frame(obs, imported[["parcel_id", "land_use"]], [], campaign=2024, as_of=date(2024, 10, 1))
    assert plain.light[0] != Light.NOT_ANALYSABLE
    lights = assess_frame(obs, imported, [], campaign=2024, as_of=date(2024, 10, 1))
    assert lights.light[0] == Light.NOT_ANALYSABLE
    assert set(lights.reason_codes[0].split(",")) == {Reason.TOO_FEW_S2_PIXELS, Reason.NO_S1_PIXEL}


def test_poll_takes_the_layer_of_its_campaign(tmp_path, monkeypatch):
    import argparse

    from sitsmon.commands.ingest import campaign_parcels
    from sitsmon.settings import Settings

    monkeypatch.setenv("SITSMON_PATHS__DATA_DIR", str(tmp_path))
    settings = Settings()
    _layer(tmp_path / "lpis.parquet")
    with pytest.raises(FileNotFoundError, match=r"--campaign 2024: no parcel layer imported at .*2024/parcels.parquet"):
        campaign_parcels(argparse.Namespace(parcels=None, campaign=2024), settings)
    result = import_campaign_layer(tmp_path / "lpis.parquet", 2024, tmp_path / "parcels")
    chosen = campaign_parcels(argparse.Namespace(parcels=None, campaign=2024), settings)
    assert (chosen["parcels_path"], chosen["campaign"]) == (result.parcels_path, 2024)
    assert campaign_parcels(argparse.Namespace(parcels="other.gpkg", campaign=2024), settings)["parcels_path"] == "other.gpkg"
    # neither: the layers imported per campaign, each acquisition with its date's
    assert campaign_parcels(argparse.Namespace(parcels=None, campaign=None), settings)["parcels_root"] == \
        tmp_path / "parcels"


def test_pixels_inside_are_counted_on_each_tiles_own_grid(tmp_path):
    """A parcel near the 33/34 UTM border on a tile of zone 34 whose grid starts 5 m off the multiples of
    10 m: counted in that tile's CRS on its own pixel edges (reference: every pixel of the shifted
    parcel's box by overlay), not on the layer's zone-33 grid."""
    from ingest.types import TileGrid

    lpis = gpd.GeoDataFrame({"parcel_id": ["A", "B"], "land_use": ["grassland"] * 2},
                            geometry=[shapely.box(X0 + 1003, Y0 + 7, X0 + 1188, Y0 + 151),
                                      shapely.Polygon([(X0, Y0), (X0 + 230, Y0 + 40), (X0 + 60, Y0 + 190)])],
                            crs="EPSG:32633")
    lpis.to_parquet(tmp_path / "lpis.parquet")
    local = lpis.to_crs(32634).geometry
    xmin, ymin, _, _ = (float(np.floor(v / 10) * 10 - 1000) for v in local.total_bounds)
    tile = TileGrid("34XXX", 32634, 10.0, (xmin + 5, ymin + 5, xmin + 5 + 3000, ymin + 5 + 3000))
    result = import_campaign_layer(tmp_path / "lpis.parquet", 2024, tmp_path / "parcels", grids={"34XXX": tile})
    kept = gpd.read_parquet(result.parcels_path)
    plain = import_campaign_layer(tmp_path / "lpis.parquet", 2025, tmp_path / "parcels")  # the zone-33 grid
    zone33 = gpd.read_parquet(plain.parcels_path)
    assert list(kept.tiles) == ["34XXX", "34XXX"] and list(zone33.tiles) == ["", ""]
    ox, oy = tile.bounds[0], tile.bounds[3]
    for i, geom in enumerate(local):
        shifted = shapely.affinity.translate(geom, -ox, -oy)
        for col, res in zip(PIXEL_COLUMNS, (10.0, 20.0, 20.0), strict=True):
            assert int(kept[col][i]) == _reference(shifted, res), (i, col)
    assert list(kept.s2_10m_pixels) != list(zone33.s2_10m_pixels)  # the grid matters
