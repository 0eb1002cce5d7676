"""Import parcel series in the interchange format (CSV or Parquet, docs/data-contracts.md) into the parcel-series store.

One row per parcel and acquisition: ``parcel_id, time, sensor (S2|S1), B02..B12, clear, VV, VH, orbit``;
empty means missing. The rows are checked by the shared rule (:mod:`contracts.interchange`): a file
without a value column of a sensor it is imported for, or with a plainly wrong unit, is refused whole;
rows with a bad id, time or sensor, text or an infinity in a value column, or a value outside its
physical range are rejected with their line number and the other rows are stored.

Rows are keyed by (parcel_id, time, sensor), never by the file they came from: they are written as one
slot file per acquisition (sensor + UTC day, ``<series>/<tile_id>/<S2|S1>/<YYYYMMDD>.parquet``, as
ingest names its slots) merged with the rows already stored in that slot, so importing another file
of the same name adds its rows, and importing the same rows again (under any name) stores nothing
twice. Duplicates follow the one policy, :data:`contracts.interchange.DUPLICATE_POLICY`: within a file
the last row wins, across imports the later import wins. An import is identified by a hash of its
accepted rows (``import_id``); ``<series>/<tile_id>/imports.json`` lists the imports of a tile.

For every slot written, an acquisition event is published (``cube`` empty, ``extra`` naming the slot
and the series folder), so imported series stream through the monitor like ingested ones.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from contracts import interchange
from contracts.errors import InterchangeError
from contracts.sensors import Sensor
from contracts.time import utc_day
from ingest.errors import ImportFormatError
from ingest.events import AcquisitionPublisher, NullPublisher, publish_acquisition
from ingest.series import COMPACT, SCHEMA, slot_file, write_slot
from ingest.types import S1_POLS, S2_BANDS, AcquisitionEvent

logger = logging.getLogger(__name__)

REQUIRED = interchange.REQUIRED
OPTIONAL = (*S2_BANDS, "clear", *S1_POLS, "orbit")
MANIFEST = "imports.json"


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What one import did. ``rows``: accepted rows of the file; ``new_rows``: rows not stored before
    (the rest replaced a stored row of the same key or were identical to it); ``slots``: slot files
    written; ``rejected``: (line, reason); ``duplicates``: rows of the file dropped by the duplicate
    policy; ``import_id``: hash of the accepted rows; ``already_imported``: the same rows were
    imported before (nothing written)."""

    path: str
    rows: int
    parcels: int
    slots: int
    rejected: tuple[tuple[int, str], ...]
    import_id: str = ""
    new_rows: int = 0
    duplicates: int = 0
    left_out: int = 0
    already_imported: bool = False

    def __post_init__(self) -> None:
        if self.rows < 0:
            raise ValueError("negative row count")


def read_interchange(path: str | Path) -> pd.DataFrame:
    """The file as read (``contracts.interchange.read_table``); ImportFormatError naming it on failure."""
    try:
        df = interchange.read_table(path)
    except InterchangeError as e:
        raise ImportFormatError(str(e)) from e
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        have = ", ".join(str(c)[:40] for c in list(df.columns)[:20])
        raise ImportFormatError(f"{path}: missing column(s) {', '.join(missing)} (have {have})")
    return df


def _store_frame(frame: pd.DataFrame, tile_id: str, import_id: str) -> pd.DataFrame:
    """Checked interchange rows → rows of the series store schema."""
    out = pd.DataFrame({"parcel_id": frame["parcel_id"].astype(str),
                        "time": pd.to_datetime(frame["time"], utc=True).dt.floor("s"),
                        "sensor": frame["sensor"].astype(str)})
    for col in (*S2_BANDS, "clear", *S1_POLS):
        out[col] = frame[col].astype("float32")
    out["orbit"] = frame["orbit"].fillna(-1).astype("int16")
    out["tile_id"] = tile_id
    out["clear_fraction"] = out["clear"].astype("float32")
    out["pixel_count"] = np.int32(0)
    out["valid_count"] = np.int32(0)
    out["pass"] = ""
    out["item_ids"] = f"import:{import_id}"
    out["slot"] = ""
    out["campaign"] = _campaigns(frame)
    return out


def _campaigns(frame: pd.DataFrame) -> pd.Series:
    """An optional ``campaign`` column (the campaign whose outlines the rows were computed with); absent
    or empty: null, read as the campaign of the row's date (``ingest.series.with_campaigns``)."""
    if "campaign" not in frame.columns:
        return pd.Series(pd.array([None] * len(frame), dtype="Int16"), index=frame.index)
    raw = frame["campaign"]
    values = pd.to_numeric(raw, errors="coerce")
    bad = (values.isna() & raw.notna() & (raw.astype(str).str.strip() != "")) | ~(
        values.isna() | values.between(1900, 2200) & (values == values.round()))
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise ImportFormatError(f"campaign must be a year, got {str(raw.iloc[i])[:40]!r} "
                                f"({int(bad.sum())} such row(s)); the file is refused")
    return values.astype("Int16")


def content_id(rows: pd.DataFrame) -> str:
    """Hash of the accepted rows (key and values, in key order): the identity of an import."""
    key = rows.sort_values(["parcel_id", "time", "sensor"], kind="stable")
    h = hashlib.sha256()
    for col in ("parcel_id", "sensor"):
        h.update("\x1f".join(key[col].astype(str)).encode())
    h.update(key["time"].astype("int64").to_numpy().tobytes())
    for col in (*S2_BANDS, "clear", *S1_POLS, "orbit"):
        h.update(np.ascontiguousarray(key[col].to_numpy(np.float32)).tobytes())
    return h.hexdigest()[:20]


def _stored_slot(series_root: Path, tile_id: str, sensor: str, slot: str) -> pd.DataFrame | None:
    """Rows stored for one slot: its slot file, else its rows in the compacted file (a slot file
    overrides the compacted rows of its slot, so the merge must start from them)."""
    path = slot_file(series_root, tile_id, sensor, slot)
    if path.exists():
        return pq.read_table(path, schema=SCHEMA).to_pandas()
    compact = series_root / tile_id / COMPACT
    if compact.exists():
        flt = (pads.field("sensor") == sensor) & (pads.field("slot") == slot)
        t = pads.dataset(str(compact), schema=SCHEMA, format="parquet").to_table(filter=flt)
        return t.to_pandas() if t.num_rows else None
    return None


def _read_manifest(tile_dir: Path) -> dict[str, dict]:
    f = tile_dir / MANIFEST
    if not f.exists():
        return {}
    try:
        return dict(json.loads(f.read_text()))
    except (OSError, ValueError) as e:
        raise ImportFormatError(f"unreadable import manifest {f}: {e}") from e


def _write_manifest(tile_dir: Path, manifest: dict[str, dict]) -> None:
    tile_dir.mkdir(parents=True, exist_ok=True)
    tmp = tile_dir / f".{MANIFEST}.{uuid.uuid4().hex}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    os.replace(tmp, tile_dir / MANIFEST)


def import_series(path: str | Path, series_root: str | Path, tile_id: str = "imported",
                  sensors: Sequence[Sensor | str] | None = None,
                  publisher: AcquisitionPublisher | None = None) -> ImportReport:
    """Check the file, merge its rows into the store slot by slot, publish one event per slot written.

    ``sensors``: import only these sensors' rows (a file without S2 bands imports with ``("S1",)``);
    default both, and then a missing value column of either sensor refuses the file.
    """
    df = read_interchange(path)
    try:
        checked = interchange.check_observations(df, source=str(path), sensors=sensors)
    except InterchangeError as e:
        raise ImportFormatError(str(e)) from e
    rejected = tuple((r.line, r.reason) for r in checked.rejected)
    for line, why in rejected[:20]:
        logger.warning("%s line %d rejected: %s", path, line, why)
    good = checked.frame
    n = len(good)
    root = Path(series_root)
    tile_dir = root / tile_id
    if not n:
        return ImportReport(str(path), 0, 0, 0, rejected, duplicates=checked.duplicates, left_out=checked.left_out)
    import_id = content_id(good)
    manifest = _read_manifest(tile_dir)
    if import_id in manifest:
        logger.info("%s: the same rows were imported before (%s)", path, manifest[import_id].get("path"))
        return ImportReport(str(path), n, int(good["parcel_id"].nunique()), 0, rejected, import_id, 0,
                            checked.duplicates, checked.left_out, already_imported=True)
    out = _store_frame(good, tile_id, import_id)
    out["_day"] = [utc_day(s) for s in out["time"].astype("int64") // 1_000_000_000]
    pub = publisher or NullPublisher()
    slots = new_rows = 0
    # time order (S1 before S2 on one day, as the encoder merges them): the monitor folds events in order
    for (day, sens), part in out.groupby(["_day", "sensor"], sort=True):
        part = part.drop(columns="_day").assign(slot=day)
        stored = _stored_slot(root, tile_id, sens, day)
        if stored is not None and len(stored):
            merged = pd.concat([stored, part], ignore_index=True)
            merged, dropped = interchange.drop_duplicates(merged)
            # rows of this import that replaced (or repeated) a stored row are not new
            new_rows += len(part) - int(dropped[: len(stored)].sum())
            unchanged = _same_rows(stored, merged)
        else:
            merged, new_rows, unchanged = part, new_rows + len(part), False
        if unchanged:
            continue
        merged = merged.sort_values(["parcel_id", "time"], kind="stable")
        write_slot(root, tile_id, sens, day, pa.Table.from_pandas(merged, schema=SCHEMA, preserve_index=False))
        slots += 1
        time_s = int(part["time"].astype("int64").min() // 1_000_000_000)
        publish_acquisition(pub, AcquisitionEvent(
            tile_id=tile_id, sensor=Sensor(sens), time_s=time_s, item_ids=(f"import:{import_id}",), cube="",
            extra={"slot": day, "series": str(tile_dir)}))
    manifest[import_id] = {"path": str(path), "rows": n, "new_rows": new_rows, "slots": slots,
                           "imported_at": datetime.now(UTC).isoformat(timespec="seconds")}
    _write_manifest(tile_dir, manifest)
    return ImportReport(str(path), n, int(good["parcel_id"].nunique()), slots, rejected, import_id, new_rows,
                        checked.duplicates, checked.left_out)


def _same_rows(stored: pd.DataFrame, merged: pd.DataFrame) -> bool:
    """True when the merge changed no value of the stored slot (an import of rows already there)."""
    if len(stored) != len(merged):
        return False
    cols = ["parcel_id", "time", "sensor", *S2_BANDS, "clear", *S1_POLS, "orbit"]
    def canonical(df: pd.DataFrame) -> pd.DataFrame:
        out = df[cols].copy()
        out["time"] = pd.to_datetime(out["time"], utc=True).dt.as_unit("s").astype("int64")  # s or ns stored
        out = out.astype({c: "float32" for c in cols[3:]} | {"parcel_id": str, "sensor": str})
        return out.sort_values(["parcel_id", "time", "sensor"]).reset_index(drop=True)

    return canonical(stored).equals(canonical(merged))
