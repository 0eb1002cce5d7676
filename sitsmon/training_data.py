"""Training data for `sitsmon train` from what ingest writes: the parcel-series store, or pixel samples
from the tile cubes. Both come out as an interchange-format table (docs/encoder.md "Input"), the
form `sits.data` reads, so the encoder never imports the ingest stage (the wiring lives here).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ingest.cube import open_cube, reflectance
from ingest.errors import CubeError
from ingest.series import read_series
from ingest.types import S1_POLS, S2_BANDS

logger = logging.getLogger(__name__)

INTERCHANGE_COLUMNS = ("parcel_id", "time", "sensor", *S2_BANDS, "clear", *S1_POLS, "orbit")


class TrainingDataError(ValueError):
    """No usable training data at the given place."""


def frame_from_series_store(root: str | Path) -> pd.DataFrame:
    """Every parcel observation of a parcel-series store (all tiles), as an interchange table."""
    root = Path(root)
    if not root.is_dir():
        raise TrainingDataError(f"no parcel-series store at {root}")
    table = read_series(root)
    if table.num_rows == 0:
        raise TrainingDataError(f"the parcel-series store {root} holds no observations")
    df = table.select(list(INTERCHANGE_COLUMNS)).to_pandas()
    logger.info("series store %s: %d observations of %d parcels", root, len(df), df["parcel_id"].nunique())
    return df


def frame_from_cubes(root: str | Path, pixels_per_tile: int, seed: int) -> pd.DataFrame:
    """``pixels_per_tile`` pixels drawn at random (``seed``) from every ``<tile>.zarr`` cube under
    ``root``, each pixel's S2 (reflectance, clear flag from the cube's mask) and S1 (linear power, orbit)
    series as an interchange table; a pixel is named ``<tile>/<row>_<col>``. S1 is read at the S1
    pixel nearest to the S2 one (the two groups may have different grids)."""
    if pixels_per_tile < 1:
        raise TrainingDataError(f"--pixels must be >= 1; got {pixels_per_tile}")
    root = Path(root)
    cubes = sorted(root.glob("*.zarr"))
    if not cubes:
        raise TrainingDataError(f"no <tile>.zarr cubes under {root}")
    rng = np.random.default_rng(seed)
    parts = []
    for path in cubes:
        tile = path.name.removesuffix(".zarr")
        try:
            s2 = open_cube(path, "S2")
        except CubeError as e:
            raise TrainingDataError(str(e)) from e
        ny, nx = s2.sizes["y"], s2.sizes["x"]
        n = min(pixels_per_tile, ny * nx)
        flat = rng.choice(ny * nx, size=n, replace=False)
        rows, cols = np.divmod(flat, nx)
        names = np.array([f"{tile}/{r}_{c}" for r, c in zip(rows, cols, strict=True)])
        ys, xs = s2["y"].values[rows], s2["x"].values[cols]
        parts.append(_s2_rows(s2, rows, cols, names))
        try:
            s1 = open_cube(path, "S1")
        except CubeError:
            s1 = None
        if s1 is not None and s1.sizes["time"]:
            parts.append(_s1_rows(s1, ys, xs, names))
    df = pd.concat(parts, ignore_index=True)
    if df.empty:
        raise TrainingDataError(f"the cubes under {root} hold no observations")
    logger.info("cubes %s: %d observations of %d pixels", root, len(df), df["parcel_id"].nunique())
    return df


def _points(values: np.ndarray) -> xr.DataArray:
    """An indexer along a new ``pixel`` dimension (pointwise selection: one value per sampled pixel)."""
    return xr.DataArray(values, dims="pixel")


def _s2_rows(ds, rows, cols, names) -> pd.DataFrame:
    at = {"y": _points(rows), "x": _points(cols)}
    refl = reflectance(ds).isel(at).load().transpose("time", "pixel", "band")  # [T, P, B]
    clear = ds["clear"].isel(at).load().transpose("time", "pixel").values  # [T, P]
    T, P = clear.shape
    values = refl.values.reshape(T * P, -1)
    df = pd.DataFrame(values, columns=[str(b) for b in refl["band"].values])
    df.insert(0, "parcel_id", np.tile(names, T))
    df.insert(1, "time", np.repeat(ds["time"].values, P))
    df.insert(2, "sensor", "S2")
    df["clear"] = clear.reshape(-1).astype(np.float32)
    return df[np.isfinite(values).any(axis=1)].reset_index(drop=True)


def _s1_rows(ds, ys, xs, names) -> pd.DataFrame:
    power = ds["backscatter"].sel(y=_points(ys), x=_points(xs), method="nearest").load()
    power = power.transpose("time", "pixel", "pol")
    T, P = power.sizes["time"], power.sizes["pixel"]
    values = power.values.reshape(T * P, -1)
    df = pd.DataFrame(values, columns=[str(p) for p in power["pol"].values])
    df.insert(0, "parcel_id", np.tile(names, T))
    df.insert(1, "time", np.repeat(ds["time"].values, P))
    df.insert(2, "sensor", "S1")
    df["orbit"] = np.repeat(ds["orbit"].values.astype(np.int64), P)
    return df[np.isfinite(values).any(axis=1)].reset_index(drop=True)
