"""Reading parcel series from interchange files (CSV or Parquet; the format: docs/encoder.md "Input").

One row per parcel and acquisition: ``parcel_id, time, sensor (S2|S1), B02…B12, clear, VV, VH, orbit``;
an empty cell means missing. Rows whose own bands are all missing are dropped (counted in the log).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from sits.errors import EmptySeriesError, SitsError
from sits.tokens import ALL_S2_BANDS, S1, S1_BANDS, S2, BandSet, Series, to_seconds

logger = logging.getLogger(__name__)
REQUIRED_COLUMNS = ("parcel_id", "time", "sensor")


def read_interchange(path: str | Path) -> pd.DataFrame:
    """The observation table of ``path`` (``.csv`` or ``.parquet``), or of ``path/observations.*``."""
    path = Path(path)
    if path.is_dir():
        for name in ("observations.parquet", "observations.csv"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise SitsError(f"no observations.csv or observations.parquet in {path}")
    if not path.is_file():
        raise SitsError(f"interchange file not found: {path}")
    try:
        df = pd.read_parquet(path) if path.suffix.lower() in {".parquet", ".pq"} else pd.read_csv(path, dtype={"parcel_id": str})
    except Exception as e:  # noqa: BLE001 - any parser failure is a bad input file
        raise SitsError(f"cannot read {path}: {e}") from e
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise SitsError(f"{path}: missing columns {missing}")
    df["parcel_id"] = df["parcel_id"].astype(str)
    return df


def bands_present(df: pd.DataFrame) -> BandSet:
    """The band set with every S2 band that has at least one value (e.g. no B8A in grassland-sk-dev)."""
    s2 = tuple(b for b in ALL_S2_BANDS if b in df.columns and pd.to_numeric(df[b], errors="coerce").notna().any())
    s1 = tuple(b for b in S1_BANDS if b in df.columns and pd.to_numeric(df[b], errors="coerce").notna().any())
    return BandSet(s2, s1)


def series_from_frame(df: pd.DataFrame, bands: BandSet) -> list[Series]:
    """One :class:`Series` per parcel, merged S1/S2 in time order (S1 first on equal times)."""
    if df.empty:
        raise EmptySeriesError("the observation table is empty")
    cols = list(bands.all)
    df = df.copy()
    for c in cols:
        df[c] = pd.to_numeric(df[c], errors="coerce") if c in df.columns else np.nan
    df["_t"] = to_seconds(pd.to_datetime(df["time"], utc=True).dt.tz_localize(None).to_numpy())
    sensor = df["sensor"].astype(str).str.upper()
    bad = ~sensor.isin(["S1", "S2"])
    if bad.any():
        raise SitsError(f"unknown sensor {sensor[bad].iloc[0]!r} in row {int(np.argmax(bad.to_numpy()))}")
    df["_s"] = np.where(sensor == "S1", S1, S2)
    own_s2 = df[list(bands.s2)].notna().any(axis=1)
    own_s1 = df[list(bands.s1)].notna().any(axis=1) if bands.s1 else pd.Series(False, index=df.index)
    keep = np.where(df["_s"] == S2, own_s2, own_s1)
    dropped = int((~keep).sum())
    if dropped:
        logger.info("dropped %d rows with no value for their sensor's bands", dropped)
    df = df[keep]
    df = df.sort_values(["parcel_id", "_t", "_s"], ascending=[True, True, False], kind="stable")
    clear = pd.to_numeric(df["clear"], errors="coerce") if "clear" in df.columns else pd.Series(1.0, index=df.index)
    orbit = pd.to_numeric(df["orbit"], errors="coerce") if "orbit" in df.columns else pd.Series(0.0, index=df.index)
    df = df.assign(_clear=clear.fillna(0.0).to_numpy(), _orbit=orbit.fillna(0).to_numpy())
    out = []
    for pid, g in df.groupby("parcel_id", sort=True):
        out.append(Series(g["_t"].to_numpy(), g["_s"].to_numpy(), g[cols].to_numpy(np.float32), bands,
                          g["_clear"].to_numpy(np.float32), g["_orbit"].to_numpy(), id=str(pid)))
    if not out:
        raise EmptySeriesError("no parcel has any usable observation")
    return out


def split_ids(ids: list[str], val_frac: float, seed: int) -> tuple[set[str], set[str]]:
    """Deterministic split of parcel ids into (train, validation)."""
    rng = np.random.default_rng(seed)
    ids = sorted(ids)
    perm = rng.permutation(len(ids))
    n_val = int(round(val_frac * len(ids)))
    val = {ids[i] for i in perm[:n_val]}
    return set(ids) - val, val
