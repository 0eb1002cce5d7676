"""Import parcel series in the interchange format (CSV or Parquet, DESIGN.md) into the parcel-series store.

One row per parcel and acquisition: ``parcel_id, time, sensor (S2|S1), B02..B12, clear, VV, VH, orbit``;
empty means missing. Rows are written as one slot file per sensor of one tile (``tile_id``, default
``imported``), sorted by parcel, so importing the same file again replaces, never duplicates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from ingest.errors import ImportFormatError
from ingest.series import SCHEMA, write_slot
from ingest.types import S1_POLS, S2_BANDS

logger = logging.getLogger(__name__)

REQUIRED = ("parcel_id", "time", "sensor")
OPTIONAL = (*S2_BANDS, "clear", *S1_POLS, "orbit")


@dataclass(frozen=True, slots=True)
class ImportReport:
    path: str
    rows: int
    parcels: int
    slots: int
    rejected: tuple[tuple[int, str], ...]

    def __post_init__(self) -> None:
        if self.rows < 0:
            raise ValueError("negative row count")


def read_interchange(path: str | Path) -> pd.DataFrame:
    p = Path(path)
    try:
        if p.suffix.lower() in (".parquet", ".pq"):
            df = pd.read_parquet(p)
        else:
            df = pd.read_csv(p, dtype={"parcel_id": str, "sensor": str})
    except (OSError, ValueError, pa.ArrowInvalid) as e:
        raise ImportFormatError(f"cannot read {p}: {e}") from e
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ImportFormatError(f"{p}: missing column(s) {', '.join(missing)} (have {list(df.columns)})")
    return df


def import_series(path: str | Path, series_root: str | Path, tile_id: str = "imported") -> ImportReport:
    """Validate and write the rows; bad rows (no id, bad time, unknown sensor) are rejected with their line."""
    df = read_interchange(path)
    rejected: list[tuple[int, str]] = []
    ids = df["parcel_id"].astype("string").str.strip()
    times = pd.to_datetime(df["time"], utc=True, errors="coerce", format="ISO8601")
    sensor = df["sensor"].astype("string").str.strip().str.upper()
    ok = pd.Series(True, index=df.index)
    for mask, why in ((ids.isna() | (ids == ""), "empty parcel_id"), (times.isna(), "time is not ISO 8601"),
                      (~sensor.isin(["S1", "S2"]), "sensor must be S1 or S2")):
        for i in np.flatnonzero((mask & ok).to_numpy()):
            rejected.append((int(i) + 2, why))  # +2: header line and 1-based lines
        ok &= ~mask
    for col in OPTIONAL:
        if col in df.columns and not pd.api.types.is_numeric_dtype(df[col]):
            conv = pd.to_numeric(df[col], errors="coerce")
            bad = conv.isna() & df[col].notna() & ok
            for i in np.flatnonzero(bad.to_numpy()):
                rejected.append((int(i) + 2, f"{col} is not a number: {df[col].iloc[i]!r}"))
            ok &= ~bad
            df[col] = conv
    dup = pd.DataFrame({"p": ids, "t": times, "s": sensor}).duplicated(keep="first") & ok
    for i in np.flatnonzero(dup.to_numpy()):
        rejected.append((int(i) + 2, "duplicate parcel_id, time and sensor"))
    ok &= ~dup
    good = df[ok.to_numpy()].copy()
    good["parcel_id"], good["time"], good["sensor"] = ids[ok], times[ok].dt.floor("s"), sensor[ok]
    n = len(good)
    out = pd.DataFrame({"parcel_id": good["parcel_id"].astype(str), "time": good["time"],
                        "sensor": good["sensor"].astype(str)})
    for col in (*S2_BANDS, "clear", *S1_POLS):
        out[col] = good[col].astype("float32") if col in good.columns else np.float32(np.nan)
    out["orbit"] = good["orbit"].fillna(-1).astype("int16") if "orbit" in good.columns else np.int16(-1)
    out["tile_id"] = tile_id
    out["clear_fraction"] = out["clear"].astype("float32")
    out["pixel_count"] = np.int32(0)
    out["valid_count"] = np.int32(0)
    out["pass"] = ""
    out["item_ids"] = f"import:{Path(path).name}"
    slots = 0
    if n:
        # One slot file per sensor and imported file: importing again replaces it.
        stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(path).stem)
        for sens, part in out.groupby("sensor", sort=True):
            part = part.sort_values(["parcel_id", "time"]).assign(slot=f"import-{stem}")
            table = pa.Table.from_pandas(part, schema=SCHEMA, preserve_index=False)
            write_slot(series_root, tile_id, sens, f"import-{stem}", table)
            slots += 1
    report = ImportReport(str(path), n, int(out["parcel_id"].nunique()), slots, tuple(sorted(rejected)))
    for line, why in report.rejected[:20]:
        logger.warning("%s line %d rejected: %s", path, line, why)
    return report
