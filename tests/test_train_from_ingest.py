"""`sitsmon train` on what ingest writes: the parcel-series store and pixel samples of the tile cubes."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest
import torch

from ingest.cube import open_cube, reflectance
from ingest.grid import grids_from_manifest
from ingest.ledger import open_ledger
from ingest.parcels import read_parcels
from ingest.poller import Poller, WatchConfig
from ingest.series import read_series
from ingest.sources import StacApiSource
from ingest.stac_server import running_stac_api
from sitsmon.cli import main
from sitsmon.training_data import frame_from_cubes, frame_from_series_store

START = int(datetime(2024, 4, 1, tzinfo=UTC).timestamp())
FAST = ["--epochs", "1", "--window", "24", "--batch-size", "8", "--threads", "1", "--d-model", "16", "--heads", "2",
        "--layers", "1"]


@pytest.fixture(scope="module")
def ingested(small_archive, tmp_path_factory):
    """The small synthetic season polled from its STAC API into cubes and the parcel-series store."""
    work = tmp_path_factory.mktemp("ingested")
    gdf, _ = read_parcels(small_archive / "parcels" / "parcels.parquet")
    grids = grids_from_manifest(small_archive)
    with running_stac_api(small_archive) as endpoint:
        poller = Poller([StacApiSource(endpoint.url)], open_ledger(work / "ledger.sqlite"), work / "cubes",
                        work / "series", WatchConfig(tiles=tuple(grids), start_s=START, lookback_s=10**9),
                        grids=grids, parcels=gdf, chunk=256)
        report = poller.poll_once()
    assert report.errors == [] and report.ingested_slots > 0
    return work


@pytest.mark.integration
def test_train_on_the_series_store(ingested, tmp_path, capsys):
    table = read_series(ingested / "series")
    df = frame_from_series_store(ingested / "series")
    assert len(df) == table.num_rows and set(df["sensor"]) == {"S1", "S2"}
    out = tmp_path / "series.pt"
    assert main(["train", "--series", str(ingested / "series"), "--out", str(out), "--evaluate", *FAST]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["parcels"] == len(set(table.column("parcel_id").to_pylist()))
    assert summary["train_parcels"] + summary["val_parcels"] == summary["parcels"]
    assert out.is_file() and summary["evaluation"]["gapfill_all"]["n"] > 0
    assert summary["data"].startswith("series store")


@pytest.mark.integration
def test_train_on_cube_pixels(ingested, tmp_path, capsys):
    cube = ingested / "cubes" / "33UXP.zarr"
    df = frame_from_cubes(ingested / "cubes", pixels_per_tile=30, seed=5)
    assert df["parcel_id"].nunique() == 30 and set(df["sensor"]) == {"S1", "S2"}
    # a sampled pixel's S2 series is the cube's, value for value, with the cube's clear flag
    pid = df["parcel_id"].iloc[0]
    row, col = (int(v) for v in pid.split("/")[1].split("_"))
    s2 = open_cube(cube, "S2")
    mine = df[(df["parcel_id"] == pid) & (df["sensor"] == "S2")]
    cube_values = reflectance(s2).isel(y=row, x=col).transpose("time", "band").values
    have = np.isfinite(cube_values).any(axis=1)
    np.testing.assert_array_equal(mine["time"].values, s2["time"].values[have])
    np.testing.assert_allclose(mine[list(s2["band"].values)].values, cube_values[have])
    np.testing.assert_array_equal(mine["clear"].values, s2["clear"].isel(y=row, x=col).values[have])
    assert frame_from_cubes(ingested / "cubes", 30, seed=5).equals(df)  # the sample is the seed's

    out = tmp_path / "pixels.pt"
    assert main(["train", "--cubes", str(ingested / "cubes"), "--pixels", "30", "--seed", "5", "--out", str(out),
                 *FAST]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["parcels"] == 30 and out.is_file()
    assert torch.load(out, weights_only=False)["train"]["data"].startswith("30 pixels per tile")


def test_train_sources_bad_input(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["train", "--cubes", str(tmp_path / "empty")]) == 1
    assert "no <tile>.zarr cubes" in capsys.readouterr().err
    assert main(["train", "--series", str(tmp_path / "missing")]) == 1
    assert "no parcel-series store" in capsys.readouterr().err
    assert main(["train", "--cubes", str(tmp_path / "empty"), "--pixels", "0"]) == 1
    assert "--pixels must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # two sources at once: argparse refuses
        main(["train", "--series", str(tmp_path), "--cubes", str(tmp_path)])
