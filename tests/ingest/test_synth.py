"""Tests of the synthetic archive (ingest.synth) and of `sitsmon synth`."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import date, datetime, timedelta
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
from rasterio import features
from rasterio.transform import Affine
from shapely.geometry import shape

from ingest.errors import IngestError
from ingest.synth import (
    ArchiveExistsError,
    SynthConfig,
    SynthConfigError,
    generate_archive,
    simulate_parcel_series,
)
from ingest.synth.generate import _unit_spectra, build_world
from ingest.synth.grid import tile_grids
from ingest.synth.phenology import BANDS
from ingest.synth.sentinel2 import to_dn
from sitsmon.cli import main

S2_BANDS = (*BANDS, "SCL")
SMALL = SynthConfig(
    seed=7,
    tile_size_px=256,
    parcels_per_tile=50,
    start=date(2024, 5, 1),
    end=date(2024, 6, 30),
    quicklooks=True,
)
TINY = dict(seed=3, tile_size_px=96, parcels_per_tile=8, start=date(2024, 6, 1), end=date(2024, 6, 20))


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "archive"
    generate_archive(out, SMALL)
    return out


def _items(root: Path, collection: str) -> list[dict]:
    return [json.loads(line) for line in (root / "items" / f"{collection}.ndjson").read_text().splitlines()]


def _read(root: Path, item: dict, asset: str) -> tuple[np.ndarray, dict]:
    with rasterio.open(root / item["assets"][asset]["href"]) as src:
        return src.read(1), src.profile


def _parcel_mask(root: Path, parcel_id: str, shape, transform) -> np.ndarray:
    parcels = gpd.read_parquet(root / "parcels" / "parcels.parquet").to_crs(32633)
    geom = parcels.loc[parcels.parcel_id == parcel_id, "geometry"].iloc[0]
    return features.rasterize([(geom, 1)], out_shape=shape, transform=Affine(*transform), fill=0).astype(bool)


def _digest(root: Path) -> dict[str, str]:
    """sha256 of every file but archive.json (whose ``created`` is the wall-clock time)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "archive.json"
    }


# --- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(parcels_per_tile=0), "no parcels"),
        (dict(start=date(2024, 5, 1), end=date(2024, 4, 1)), "not after start"),
        (dict(tile_size_px=4), "too small for a parcel"),
        (dict(tile_size_px=64, parcels_per_tile=500), "too small for 500 parcels"),
        (dict(mowing_share=0.8, grazing_share=0.5), "mowing_share + grazing_share"),
        (dict(seed=-1), "seed"),
    ],
)
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(SynthConfigError, match=re.escape(message)) as info:
        SynthConfig(**kwargs)
    assert isinstance(info.value, ValueError) and isinstance(info.value, IngestError)


# --- determinism ---------------------------------------------------------------------------------


def test_generate_archive_is_deterministic(tmp_path):
    a = generate_archive(tmp_path / "a", SynthConfig(**TINY, quicklooks=True))
    b = generate_archive(tmp_path / "b", SynthConfig(**TINY, quicklooks=True))
    generate_archive(tmp_path / "c", SynthConfig(**{**TINY, "seed": 4}))
    assert a["counts"] == b["counts"]
    digest_a = _digest(tmp_path / "a")
    assert len(digest_a) > 40 and any(k.endswith(".tif") for k in digest_a)
    assert digest_a == _digest(tmp_path / "b")  # same bytes: items, truth, parquet and COGs
    digest_c = _digest(tmp_path / "c")
    for name in ("items/sentinel-2-l2a.ndjson", "truth/events.csv", "truth/observations.parquet"):
        assert digest_a[name] != digest_c[name], name
    for item in _items(tmp_path / "a", "sentinel-2-l2a")[:2] + _items(tmp_path / "a", "sentinel-1-grd")[:2]:
        for asset in item["assets"]:
            pa, _ = _read(tmp_path / "a", item, asset)
            pb, _ = _read(tmp_path / "b", item, asset)
            np.testing.assert_array_equal(pa, pb)


# --- layout and items ------------------------------------------------------------------------------


def test_manifest_and_layout(archive):
    manifest = json.loads((archive / "archive.json").read_text())
    assert manifest["schema"] == "sitsmon-archive/1"
    assert (
        manifest["seed"] == SMALL.seed
        and manifest["start"] == "2024-05-01"
        and manifest["end"] == "2024-06-30"
    )
    (tile,) = manifest["tiles"]
    assert tile["tile_id"] == "33UXP" and tile["epsg"] == 32633 and tile["shape"] == [256, 256]
    xmin, ymin, xmax, ymax = tile["bounds"]
    assert xmax - xmin == ymax - ymin == 2560.0
    assert manifest["counts"]["parcels"] == 50
    # 5-day S2 revisit and two 6-day S1 orbits over 61 days.
    assert manifest["counts"]["sentinel-2-l2a"] == len(_items(archive, "sentinel-2-l2a")) in (12, 13)
    assert manifest["counts"]["sentinel-1-grd"] == len(_items(archive, "sentinel-1-grd")) in (20, 21)
    for path in (
        "collections/sentinel-2-l2a.json",
        "collections/sentinel-1-grd.json",
        "truth/parcels.csv",
        "truth/events.csv",
        "truth/solar_sites.geojson",
        "truth/observations.parquet",
    ):
        assert (archive / path).is_file(), path
    assert (
        len(list((archive / "quicklooks" / "33UXP").glob("*_truecolor.png")))
        == manifest["counts"]["sentinel-2-l2a"]
    )
    assert (
        len(list((archive / "quicklooks" / "33UXP").glob("*_vv.png"))) == manifest["counts"]["sentinel-1-grd"]
    )


def test_items_carry_required_fields_and_assets_exist(archive):
    s2, s1 = _items(archive, "sentinel-2-l2a"), _items(archive, "sentinel-1-grd")
    common = (
        "datetime",
        "platform",
        "constellation",
        "proj:code",
        "proj:epsg",
        "grid:code",
        "mgrs:utm_zone",
        "mgrs:latitude_band",
        "mgrs:grid_square",
        "published",
        "created",
        "updated",
    )
    for it in s2 + s1:
        props = it["properties"]
        assert all(k in props for k in common), it["id"]
        assert (
            props["datetime"].endswith("Z")
            and props["proj:code"] == "EPSG:32633"
            and props["proj:epsg"] == 32633
        )
        assert props["grid:code"] == "MGRS-33UXP"
        assert it["geometry"]["type"] == "Polygon" and len(it["bbox"]) == 4
        assert props["created"] <= props["published"] and props["published"] > props["datetime"]
        for asset in it["assets"].values():
            assert not asset["href"].startswith("/") and (archive / asset["href"]).is_file()
            assert asset["type"] == "image/tiff; application=geotiff; profile=cloud-optimized"
            assert asset["roles"] == ["data"] and len(asset["proj:transform"]) == 6
    for it in s2:
        props = it["properties"]
        assert set(it["assets"]) == set(S2_BANDS)
        assert (
            it["id"]
            == f"S2{props['platform'][-1].upper()}_33UXP_{props['datetime'][:10].replace('-', '')}_0_L2A"
        )
        assert props["s2:processing_baseline"] == "05.10" and props["s2:mgrs_tile"] == "33UXP"
        assert 0.0 <= props["eo:cloud_cover"] <= 100.0
        b04 = it["assets"]["B04"]["raster:bands"][0]
        assert b04 == {
            "data_type": "uint16",
            "nodata": 0,
            "scale": 0.0001,
            "offset": -0.1,
            "spatial_resolution": 10,
        }
        assert it["assets"]["B11"]["proj:shape"] == [128, 128] and it["assets"]["B02"]["proj:shape"] == [
            256,
            256,
        ]
        assert it["assets"]["SCL"]["raster:bands"][0]["data_type"] == "uint8"
    assert {it["properties"]["platform"] for it in s2} == {"sentinel-2a", "sentinel-2b"}
    for it in s1:
        props = it["properties"]
        assert set(it["assets"]) == {"vv", "vh"}
        assert props["sar:polarizations"] == ["VV", "VH"] and props["sar:instrument_mode"] == "IW"
        assert props["sar:product_type"] == "GRD"
        state = props["sat:orbit_state"]
        assert it["id"].endswith(f"_33UXP_{state[0].upper()}{props['sat:relative_orbit']:03d}")
    assert {it["properties"]["sat:relative_orbit"] for it in s1} == {73, 124}
    # NDJSON in published order; some items published days late, so acquisition order differs.
    for items in (s2, s1):
        published = [it["properties"]["published"] for it in items]
        assert published == sorted(published)
    late = [
        it
        for it in s2 + s1
        if datetime.fromisoformat(it["properties"]["published"])
        - datetime.fromisoformat(it["properties"]["datetime"])
        > timedelta(days=1)
    ]
    assert late
    dts = [it["properties"]["datetime"] for it in s2 + s1]
    assert len(set(dts)) == len(dts)


def test_s2_dates_alternate_every_five_days(archive):
    s2 = sorted(_items(archive, "sentinel-2-l2a"), key=lambda it: it["properties"]["datetime"])
    days = [date.fromisoformat(it["properties"]["datetime"][:10]) for it in s2]
    assert {(b - a).days for a, b in zip(days, days[1:], strict=False)} == {5}
    platforms = [it["properties"]["platform"] for it in s2]
    assert all(a != b for a, b in zip(platforms, platforms[1:], strict=False))


# --- COGs --------------------------------------------------------------------------------------------


def test_cog_properties(archive):
    item = _items(archive, "sentinel-2-l2a")[0]
    for band, size in (("B04", 256), ("B11", 128), ("SCL", 128)):
        with rasterio.open(archive / item["assets"][band]["href"]) as src:
            assert src.driver == "GTiff" and src.block_shapes[0] == (256, 256)
            assert src.shape == (size, size) and src.crs.to_epsg() == 32633
            assert src.overviews(1) == [2], f"{band} overviews {src.overviews(1)}"
            assert src.compression.name.lower() == "deflate"
            assert src.nodata == 0
            assert src.dtypes[0] == ("uint8" if band == "SCL" else "uint16")
            assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT", "COG") == "COG"
    s1 = _items(archive, "sentinel-1-grd")[0]
    with rasterio.open(archive / s1["assets"]["vv"]["href"]) as src:
        assert src.dtypes[0] == "float32" and np.isnan(src.nodata) and src.overviews(1)
        vv = src.read(1)
    assert np.isfinite(vv).all() and (vv > 0).all()
    db = 10 * np.log10(vv)
    assert -30 < np.median(db) < -3


def test_dn_formula_round_trips():
    refl = np.array([-0.05, 0.0, 0.0312, 0.25, 0.9], np.float32)
    dn = to_dn(refl)
    np.testing.assert_array_equal(dn, [500, 1000, 1312, 3500, 10000])
    np.testing.assert_allclose(dn * 1e-4 - 0.1, refl, atol=1e-4)


def test_parcel_pixels_round_trip_to_intended_reflectance(archive):
    """On a cloud-free date, a parcel's pixels decode (DN * scale + offset) to the spectrum the generator drew."""
    items = sorted(_items(archive, "sentinel-2-l2a"), key=lambda it: it["properties"]["datetime"])
    j, item = min(enumerate(items), key=lambda p: p[1]["properties"]["eo:cloud_cover"])
    assert item["properties"]["eo:cloud_cover"] < 5.0
    tile = tile_grids(SMALL)[0]
    world = build_world(SMALL, tile)
    spectra = _unit_spectra(world, world.s2)  # (U, T, 10)
    scl20, _ = _read(archive, item, "SCL")
    clear10 = np.isin(np.kron(scl20, np.ones((2, 2), np.uint8)), (4, 5, 6))
    checked = 0
    for p in (0, 5, 10, 20, 30):
        parcel_id = world.layout.parcels["parcel_id"].iat[p]
        mask = _parcel_mask(archive, parcel_id, tile.shape, tile.transform()) & clear10
        if mask.sum() < 30:
            continue
        for band in ("B02", "B04", "B08"):
            dn, _ = _read(archive, item, band)
            rb = item["assets"][band]["raster:bands"][0]
            refl = dn[mask] * rb["scale"] + rb["offset"]
            intended = spectra[p + 1, j, BANDS.index(band)]
            assert abs(np.median(refl) - intended) < 0.006 + 0.06 * intended, (parcel_id, band)
        checked += 1
    assert checked >= 3


# --- ground truth and signals -------------------------------------------------------------------


def test_truth_events_in_range_and_on_existing_parcels(archive):
    events = pd.read_csv(archive / "truth" / "events.csv", dtype=str, keep_default_na=False)
    parcels = gpd.read_parquet(archive / "parcels" / "parcels.parquet")
    assert list(events.columns) == ["parcel_id", "event", "date", "end_date"]
    assert set(events.event) <= {"mowing", "grazing", "harvest", "solar_construction"}
    assert {"mowing", "solar_construction"} <= set(events.event)
    assert set(events.parcel_id) <= set(parcels.parcel_id)
    assert (events.date >= "2024-05-01").all() and (events.date <= "2024-06-30").all()
    ends = events.end_date[events.end_date != ""]
    assert (ends >= "2024-05-01").all() and (ends <= "2024-06-30").all()
    mown = events.parcel_id[events.event == "mowing"]
    assert set(parcels.set_index("parcel_id").loc[mown, "land_use"]) == {"grassland"}
    sites = json.loads((archive / "truth" / "solar_sites.geojson").read_text())["features"]
    in_parcels = [f for f in sites if f["properties"]["parcel_id"]]
    assert in_parcels and len(sites) > len(in_parcels)  # also some outside parcels
    assert {f["properties"]["parcel_id"] for f in in_parcels} == set(
        events.parcel_id[events.event == "solar_construction"]
    )


def test_parcel_layer(archive):
    parcels = gpd.read_parquet(archive / "parcels" / "parcels.parquet")
    assert parcels.crs.to_epsg() == 4326
    assert list(parcels.columns) == [
        "parcel_id",
        "tile_id",
        "land_use",
        "declared_practice",
        "area_ha",
        "geometry",
    ]
    assert parcels.parcel_id.is_unique and parcels.parcel_id.str.fullmatch(r"33UXP-\d{6}").all()
    assert set(parcels.land_use) <= {"grassland", "cereal", "maize", "rapeseed", "other"}
    area = parcels.to_crs(32633).area / 1e4
    assert area.between(0.5, 20.0).all() and parcels.area_ha.between(0.5, 20.0).all()
    np.testing.assert_allclose(area, parcels.area_ha, rtol=1e-3)
    assert parcels.is_valid.all()
    # Convex-ish fields: area over convex hull area.
    utm = parcels.to_crs(32633).geometry
    assert (utm.area / utm.convex_hull.area).min() > 0.9
    # Parcels do not overlap (gaps for roads and hedges).
    assert utm.union_all().area == pytest.approx(utm.area.sum(), rel=1e-6)
    truth = pd.read_csv(archive / "truth" / "parcels.csv")
    assert list(truth.columns) == ["parcel_id", "land_use", "lon", "lat", "geometry"]
    assert json.loads(truth.geometry.iloc[0])["type"] == "Polygon"


def _ndvi(obs: pd.DataFrame) -> pd.Series:
    return (obs.B08 - obs.B04) / (obs.B08 + obs.B04)


def test_mowing_visible_in_ndvi_and_vh(archive):
    events = pd.read_csv(archive / "truth" / "events.csv")
    obs = pd.read_parquet(archive / "truth" / "observations.parquet")
    obs["day"] = obs.time.dt.tz_localize(None).dt.normalize()
    s2 = obs[(obs.sensor == "S2") & (obs.clear == 1)].assign(ndvi=lambda d: _ndvi(d))
    drops = []
    for ev in events[events.event == "mowing"].itertuples():
        d = pd.Timestamp(ev.date)
        series = s2[s2.parcel_id == ev.parcel_id]
        before = series[(series.day < d) & (series.day >= d - pd.Timedelta(days=12))]
        after = series[(series.day >= d) & (series.day <= d + pd.Timedelta(days=6))]
        if len(before) and len(after):
            drops.append(before.ndvi.iloc[-1] - after.ndvi.iloc[0])
    assert len(drops) >= 3
    assert np.mean(np.array(drops) > 0.15) >= 0.8, drops


def test_clouds_bright_in_b02_and_shadows_dark(archive):
    items = _items(archive, "sentinel-2-l2a")
    partly = [it for it in items if 10 < it["properties"]["eo:cloud_cover"] < 90]
    assert partly
    it = partly[0]
    scl, _ = _read(archive, it, "SCL")
    b02, _ = _read(archive, it, "B02")
    b08, _ = _read(archive, it, "B08")
    b02 = b02[::2, ::2] * 1e-4 - 0.1
    b08 = b08[::2, ::2] * 1e-4 - 0.1
    assert (scl == 9).sum() > 50 and (scl == 4).sum() > 50
    assert b02[scl == 9].mean() > 0.3 > 0.1 > b02[scl == 4].mean()
    assert set(np.unique(scl)) <= set(range(1, 12))
    if (scl == 3).sum() > 50:
        assert b08[scl == 3].mean() < 0.7 * b08[scl == 4].mean()
    # Cloud cover in the item matches the SCL cloud classes.
    assert it["properties"]["eo:cloud_cover"] == pytest.approx(
        100 * np.isin(scl, (8, 9, 10)).mean(), abs=0.01
    )


def test_s1_vv_higher_over_finished_solar_sites(archive):
    sites = json.loads((archive / "truth" / "solar_sites.geojson").read_text())["features"]
    done = [f for f in sites if f["properties"]["works_end"]]
    assert done
    site = min(done, key=lambda f: f["properties"]["works_end"])
    end = site["properties"]["works_end"]
    s1 = [it for it in _items(archive, "sentinel-1-grd") if it["properties"]["datetime"][:10] > end]
    assert s1
    tile = tile_grids(SMALL)[0]
    shape = gpd.GeoDataFrame.from_features([site], crs=4326).to_crs(32633).geometry.iloc[0]
    mask = features.rasterize(
        [(shape, 1)], out_shape=tile.shape, transform=Affine(*tile.transform()), fill=0
    ).astype(bool)
    parcels = gpd.read_parquet(archive / "parcels" / "parcels.parquet").to_crs(32633)
    fields = (
        features.rasterize(
            [(g, 1) for g in parcels.geometry],
            out_shape=tile.shape,
            transform=Affine(*tile.transform()),
            fill=0,
        ).astype(bool)
        & ~mask
    )
    for it in s1[:3]:
        vv, _ = _read(archive, it, "vv")
        site_db = 10 * np.log10(vv[mask].mean())
        fields_db = 10 * np.log10(vv[fields].mean())
        assert site_db > fields_db + 3.0, (it["id"], site_db, fields_db)


def test_observations_match_rasters(archive):
    """The truth series is the parcel mean of the rendered pixels (checked on one S1 date)."""
    obs = pd.read_parquet(archive / "truth" / "observations.parquet")
    assert list(obs.columns) == ["parcel_id", "time", "sensor", *BANDS, "clear", "VV", "VH", "orbit"]
    assert str(obs.time.dt.tz) == "UTC"
    it = _items(archive, "sentinel-1-grd")[3]
    vh, _ = _read(archive, it, "vh")
    tile = tile_grids(SMALL)[0]
    pid = "33UXP-000004"
    mask = _parcel_mask(archive, pid, tile.shape, tile.transform())
    row = obs[(obs.parcel_id == pid) & (obs.time == pd.Timestamp(it["properties"]["datetime"]))]
    assert len(row) == 1 and row.sensor.iloc[0] == "S1"
    assert row.VH.iloc[0] == pytest.approx(vh[mask].mean(), rel=0.02)
    assert row.orbit.iloc[0] == it["properties"]["sat:relative_orbit"]
    s2 = obs[obs.sensor == "S2"]
    assert s2.VV.isna().all() and s2.B04.notna().all() and s2.clear.isin([0, 1]).all()
    assert 0.2 < s2.clear.mean() < 0.95


# --- parcel-level path ---------------------------------------------------------------------------


def test_simulate_parcel_series_matches_archive_truth(archive):
    parcels, obs, events = simulate_parcel_series(SMALL)
    truth_events = pd.read_csv(archive / "truth" / "events.csv", dtype=str, keep_default_na=False)
    got = events.fillna("").astype(str).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, truth_events.reset_index(drop=True))
    stored = gpd.read_parquet(archive / "parcels" / "parcels.parquet")
    assert list(parcels.parcel_id) == list(stored.parcel_id)
    assert parcels.crs.to_epsg() == 4326
    n_s2 = json.loads((archive / "archive.json").read_text())["counts"]["sentinel-2-l2a"]
    assert (obs.sensor == "S2").sum() == 50 * n_s2
    clear = obs[(obs.sensor == "S2") & (obs.clear == 1)]
    ndvi = _ndvi(clear)
    assert ndvi.between(-0.3, 1.0).all() and ndvi.median() > 0.4
    vh_db = 10 * np.log10(obs.loc[obs.sensor == "S1", "VH"])
    assert -30 < vh_db.median() < -10


def test_simulate_parcel_series_crop_calendars():
    """Full season, parcel level: harvest drops cereal NDVI in July; unmanaged grassland has no event."""
    cfg = SynthConfig(seed=11, tile_size_px=512, parcels_per_tile=300)
    parcels, obs, events = simulate_parcel_series(cfg)
    assert set(events.event) == {"mowing", "grazing", "harvest", "solar_construction"}
    harvest = events[events.event == "harvest"].merge(parcels[["parcel_id", "land_use"]], on="parcel_id")
    months = pd.to_datetime(harvest.date).dt.month
    assert months[harvest.land_use == "cereal"].between(7, 8).all()
    assert months[harvest.land_use == "rapeseed"].between(6, 7).all()
    assert months[harvest.land_use == "maize"].between(9, 10).all()
    grass = parcels[parcels.land_use == "grassland"]
    unmanaged = set(grass.parcel_id) - set(events.parcel_id)
    assert len(unmanaged) > 0.05 * len(grass)
    s2 = obs[(obs.sensor == "S2") & (obs.clear == 1)].assign(ndvi=lambda d: _ndvi(d))
    s2 = s2.merge(parcels[["parcel_id", "land_use"]], on="parcel_id")
    month = s2.time.dt.month
    cereal = s2[s2.land_use == "cereal"]
    assert cereal.ndvi[cereal.time.dt.month == 5].median() > 0.7
    assert cereal.ndvi[cereal.time.dt.month == 8].median() < 0.4
    maize = s2[s2.land_use == "maize"]
    assert (
        maize.ndvi[month.loc[maize.index] == 4].median()
        < 0.3
        < 0.7
        < maize.ndvi[month.loc[maize.index] == 8].median()
    )
    # Cloudiness: about half the S2 acquisitions are mostly cloudy.
    cloudy = obs[obs.sensor == "S2"].groupby("time").clear.mean()
    assert 0.25 < (cloudy < 0.5).mean() < 0.75


# --- command line ------------------------------------------------------------------------------------


def _cli_args(out: Path, *extra: str) -> list[str]:
    return [
        "synth",
        "--out",
        str(out),
        "--tile-size",
        "96",
        "--parcels",
        "8",
        "--start",
        "2024-06-01",
        "--end",
        "2024-06-12",
        *extra,
    ]


def test_cli_writes_archive_and_summary(tmp_path, capsys):
    out = tmp_path / "arch"
    assert main(_cli_args(out, "--seed", "5")) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("synth: wrote 1 tile(s), 8 parcels") and str(out) in line
    assert json.loads((out / "archive.json").read_text())["seed"] == 5
    # Overwrite replaces the archive with a new one.
    assert main(_cli_args(out, "--seed", "6", "--overwrite")) == 0
    assert json.loads((out / "archive.json").read_text())["seed"] == 6
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--parcels", "0"], "no parcels"),
        (["--start", "2024-06-10", "--end", "2024-06-01"], "not after start"),
        (["--tile-size", "4"], "too small for a parcel"),
        (["--tile-size", "64", "--parcels", "400"], "too small for 400 parcels"),
        (["--start", "2024-02-30"], "--start '2024-02-30' is not a date"),
    ],
)
def test_cli_bad_input(tmp_path, capsys, extra, message):
    out = tmp_path / "arch"
    assert main([*_cli_args(out), *extra]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("sitsmon synth: error:") and message in err and "\n" not in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_cli_refuses_non_empty_out_and_leaves_it_intact(tmp_path, capsys):
    out = tmp_path / "arch"
    out.mkdir()
    (out / "archive.json").write_text('{"keep": true}')
    before = {p: p.read_bytes() for p in out.rglob("*")}
    assert main(_cli_args(out)) == 1
    err = capsys.readouterr().err
    assert "exists and is not empty" in err and "--overwrite" in err
    assert {p: p.read_bytes() for p in out.rglob("*")} == before
    assert [p.name for p in tmp_path.iterdir()] == ["arch"]
    # A bad value with --overwrite damages nothing either.
    assert main([*_cli_args(out), "--overwrite", "--parcels", "0"]) == 1
    assert {p: p.read_bytes() for p in out.rglob("*")} == before


def test_generate_archive_raises_on_existing_folder(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f").write_text("1")
    with pytest.raises(ArchiveExistsError) as info:
        generate_archive(tmp_path / "x", SynthConfig(**TINY))
    assert isinstance(info.value, FileExistsError)


def test_same_truth_in_another_process(tmp_path):
    """Nothing depends on the interpreter's hash seed (set order...): a child with another seed agrees."""
    import os
    import subprocess
    import sys

    cfg = "SynthConfig(seed=9, tile_size_px=192, parcels_per_tile=40)"
    code = (
        f"from ingest.synth import SynthConfig, simulate_parcel_series; p, o, e = simulate_parcel_series({cfg});"
        f"e.to_csv({str(tmp_path / 'events.csv')!r}, index=False); o.to_parquet({str(tmp_path / 'obs.parquet')!r})"
    )
    seed = "1" if os.environ.get("PYTHONHASHSEED") != "1" else "2"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONHASHSEED": seed})
    _, obs, events = simulate_parcel_series(SynthConfig(seed=9, tile_size_px=192, parcels_per_tile=40))
    events.to_csv(tmp_path / "here.csv", index=False)
    assert (tmp_path / "events.csv").read_bytes() == (tmp_path / "here.csv").read_bytes()
    obs.to_parquet(tmp_path / "here.parquet")
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "obs.parquet"), pd.read_parquet(tmp_path / "here.parquet")
    )


def test_two_tiles(tmp_path):
    manifest = generate_archive(
        tmp_path / "two",
        SynthConfig(
            n_tiles=2, tile_size_px=128, parcels_per_tile=10, start=date(2024, 6, 1), end=date(2024, 6, 15)
        ),
    )
    assert [t["tile_id"] for t in manifest["tiles"]] == ["33UXP", "33UYP"]
    parcels = gpd.read_parquet(tmp_path / "two" / "parcels" / "parcels.parquet")
    assert parcels.groupby("tile_id").size().to_dict() == {"33UXP": 10, "33UYP": 10}
    assert parcels.parcel_id.is_unique and list(parcels.parcel_id) == sorted(parcels.parcel_id)
    s2 = _items(tmp_path / "two", "sentinel-2-l2a")
    assert {it["properties"]["s2:mgrs_tile"] for it in s2} == {"33UXP", "33UYP"}
    # Each tile's footprint contains its parcels.
    for tile_id in ("33UXP", "33UYP"):
        item = next(it for it in s2 if it["properties"]["s2:mgrs_tile"] == tile_id)
        footprint = shape(item["geometry"])
        assert parcels[parcels.tile_id == tile_id].within(footprint).all()
