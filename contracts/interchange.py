"""The interchange table (one row per parcel and acquisition; docs/data-contracts.md "Interchange format") and the
one rule every entry point applies to it: ``detect``, ``gapfill``, ``eval`` (through
``alerts.series``) and ``ingest import`` (through ``ingest.importer``).

Columns: ``parcel_id, time (ISO 8601 UTC), sensor (S2|S1), B02..B12 (reflectance 0-1), clear (1/0),
VV, VH (linear power), orbit``. Empty means missing.

The file is refused as a whole (:class:`~contracts.errors.InterchangeError`, one line naming the
file) when it cannot be read, is a directory, lacks ``parcel_id``/``time``/``sensor``, lacks a value
column of a sensor it is to be used for (``sensors``: the caller says which sensors' rows to use;
a file without S2 bands is usable for S1 only when told so), or when a column's unit is plainly
wrong (:func:`contracts.ranges.wrong_unit`).

A row is rejected, with its line number, when its parcel id is empty, its time unparseable, its
sensor neither S2 nor S1, a value column holds text or an infinity, or a value lies outside its
physical range (:mod:`contracts.ranges`). Callers decide what a rejected row means: the offline
commands refuse the file, the importer stores the other rows and lists the rejected ones.

:data:`DUPLICATE_POLICY` is applied by :func:`drop_duplicates`, the only place it lives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from contracts.bands import SENSOR_COLUMNS, VALUE_COLUMNS
from contracts.errors import InterchangeError
from contracts.ranges import COLUMN_RANGES, wrong_unit
from contracts.sensors import SENSORS, Sensor

REQUIRED: tuple[str, ...] = ("parcel_id", "time", "sensor")
KEY: tuple[str, ...] = ("parcel_id", "time", "sensor")
QUOTE_CHARS = 40

DUPLICATE_POLICY = (
    "Duplicates: rows with the same (parcel_id, time to the second, sensor) are one acquisition; the "
    "last one is kept (a re-delivery or a correction replaces the earlier row; on import a later "
    "import replaces the rows of an earlier one) and the number dropped is reported."
)


def quote(value: object, limit: int = QUOTE_CHARS) -> str:
    """``repr`` of a value cut to ``limit`` characters (a 300 MB cell is never echoed whole)."""
    text = str(value)
    if len(text) <= limit:
        return repr(text)
    return repr(text[:limit]) + f"... ({len(text)} characters)"


def require_file(path: str | Path) -> Path:
    """``path`` as a ``Path`` if it is a readable file; else InterchangeError saying what it is."""
    p = Path(path)
    if p.is_dir():
        raise InterchangeError(f"{p} is a directory, expected a file")
    if not p.is_file():
        raise InterchangeError(f"file not found: {p}")
    return p


def read_table(path: str | Path) -> pd.DataFrame:
    """Read an interchange CSV or Parquet file as it is (CSV cells as text, so that text in a numeric
    column can be reported by line). ``df.attrs`` records how rows map to file lines."""
    p = require_file(path)
    try:
        if p.suffix.lower() in (".parquet", ".pq"):
            df = pd.read_parquet(p)
            df.attrs.update(line_label="row", first_line=1)
        else:
            # skip_blank_lines=False keeps line numbers true; empty rows are dropped by the checker
            df = pd.read_csv(p, dtype=str, skip_blank_lines=False)
            df.attrs.update(line_label="line", first_line=2)
    except Exception as e:  # pandas and pyarrow raise many types; one clear line naming the file
        raise InterchangeError(f"cannot read {p}: {_short(e)}") from e
    return df


def _short(error: BaseException, limit: int = 200) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[:limit] + "..."


@dataclass(frozen=True, slots=True)
class Rejected:
    """One refused row: where (``line`` of the file, or row number), and why (one line)."""

    line: int
    reason: str


@dataclass(frozen=True, slots=True)
class CheckedTable:
    """Result of :func:`check_observations`.

    ``frame``: the accepted rows, index reset, ``parcel_id`` str, ``time`` UTC timestamps floored to
    the second, ``sensor`` "S2"/"S1", every value column float64 (NaN missing), other columns kept;
    ``lines``: the file line of each accepted row; ``rejected``: refused rows in line order;
    ``duplicates``: rows dropped by the duplicate policy; ``left_out``: valid rows of a sensor not
    asked for; ``line_label``: "line" (CSV) or "row".
    """

    frame: pd.DataFrame
    lines: np.ndarray
    rejected: tuple[Rejected, ...]
    duplicates: int
    left_out: int
    line_label: str = "line"

    def summary(self, source: str, limit: int = 5) -> str:
        """One line listing the first ``limit`` rejected rows of ``source``."""
        if not self.rejected:
            return f"{source}: no row rejected"
        parts = [f"{self.line_label} {r.line}: {r.reason}" for r in self.rejected[:limit]]
        more = f" (and {len(self.rejected) - limit} more)" if len(self.rejected) > limit else ""
        n = len(self.rejected)
        return f"{source}: {n} row{'s' if n > 1 else ''} rejected: " + "; ".join(parts) + more


def _sensors(sensors: Sequence[Sensor | str] | None) -> tuple[Sensor, ...]:
    if sensors is None:
        return tuple(Sensor(s) for s in SENSORS)
    out = tuple(Sensor(str(s).strip().upper()) for s in sensors)
    if not out:
        raise InterchangeError("no sensor selected")
    return out


def check_observations(df: pd.DataFrame, source: str = "observations",
                       sensors: Sequence[Sensor | str] | None = None) -> CheckedTable:
    """Apply the interchange rule to a table (see the module docstring); raise InterchangeError when
    the file is refused as a whole, else return the accepted rows and the rejected ones."""
    use = _sensors(sensors)
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        have = ", ".join(str(c)[:40] for c in list(df.columns)[:20])
        raise InterchangeError(f"{source}: missing column(s) {', '.join(missing)} (have {have})")
    for sensor in use:
        for col in SENSOR_COLUMNS[sensor]:
            if col not in df.columns:
                others = [s.value for s in use if s is not sensor] or [s for s in SENSORS if s != sensor.value]
                raise InterchangeError(
                    f"{source}: missing column {col} (needed by {sensor.value} rows); "
                    f"give --sensors {','.join(others)} to use only the {','.join(others)} rows"
                )
    label = str(df.attrs.get("line_label", "row"))
    first = int(df.attrs.get("first_line", 1))
    df = df.reset_index(drop=True)
    n = len(df)
    lines = np.arange(first, first + n, dtype=np.int64)

    # Entirely empty rows (blank lines) are no data, not bad data.
    def blank(col: pd.Series) -> pd.Series:
        return col.isna() | (col.astype(str).str.strip() == "") if col.dtype == object else col.isna()

    empty = np.logical_and.reduce([blank(df[c]).to_numpy() for c in df.columns]) if n and len(df.columns) else np.zeros(n, bool)
    reason: list[str | None] = [None] * n

    def reject(mask: np.ndarray, why) -> None:
        for i in np.flatnonzero(mask & ~empty):
            if reason[i] is None:
                reason[i] = why(i)

    ids = df["parcel_id"].astype("string").str.strip()
    reject((ids.isna() | (ids == "")).to_numpy(), lambda i: "empty parcel_id")
    raw_time = df["time"]
    if isinstance(raw_time.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(raw_time):
        times = pd.to_datetime(raw_time, utc=True)
    else:
        times = pd.to_datetime(raw_time.astype("string").str.strip(), utc=True, errors="coerce", format="ISO8601")
    times = times.dt.floor("s")
    reject(times.isna().to_numpy(),
           lambda i: "empty time" if pd.isna(raw_time.iloc[i]) else f"unparseable time {quote(raw_time.iloc[i])}")
    sensor = df["sensor"].astype("string").str.strip().str.upper()
    known = sensor.isin(list(SENSORS)).fillna(False).to_numpy(bool)
    reject(~known, lambda i: f"sensor must be S2 or S1, got {quote(df['sensor'].iloc[i])}")

    values: dict[str, np.ndarray] = {}
    for col in VALUE_COLUMNS:
        if col not in df.columns:
            values[col] = np.full(n, np.nan)
            continue
        raw = df[col]
        if pd.api.types.is_numeric_dtype(raw) or pd.api.types.is_bool_dtype(raw):
            conv = raw.astype("float64").to_numpy()
        else:
            conv = pd.to_numeric(raw, errors="coerce").astype("float64").to_numpy()
            text = np.isnan(conv) & ~blank(raw).to_numpy()
            reject(text, lambda i, c=col, r=raw: f"{c} is not a number: {quote(r.iloc[i])}")
        reject(np.isinf(conv), lambda i, c=col, v=conv: f"{c} is not finite: {v[i]}")
        values[col] = conv

    # A unit plainly wrong refuses the file; judged on the rows still standing.
    standing = np.array([r is None for r in reason], dtype=bool) & ~empty
    for col, conv in values.items():
        why = wrong_unit(col, conv[standing & np.isfinite(conv)])
        if why:
            raise InterchangeError(f"{source}: {why}; the file is refused")
    for col, conv in values.items():
        rng = COLUMN_RANGES[col]
        bad = ~rng.contains(np.where(np.isinf(conv), np.nan, conv))
        reject(bad, lambda i, c=col, v=conv, g=rng: f"{c} = {v[i]:.6g} out of range: {g.describe()}")

    rejected = tuple(Rejected(int(lines[i]), r) for i, r in enumerate(reason) if r is not None)
    ok = np.array([r is None for r in reason], dtype=bool) & ~empty
    wanted = sensor.isin([s.value for s in use]).fillna(False).to_numpy(bool)
    left_out = int((ok & ~wanted).sum())
    ok &= wanted

    out = df.loc[ok].copy()
    out["parcel_id"] = ids[ok].astype(str).to_numpy()
    out["time"] = times[ok].to_numpy() if len(out) else pd.Series([], dtype="datetime64[ns, UTC]")
    out["time"] = pd.to_datetime(out["time"], utc=True)
    out["sensor"] = sensor[ok].astype(str).to_numpy()
    for col, conv in values.items():
        out[col] = conv[ok]
    out = out.reset_index(drop=True)
    kept_lines = lines[ok]
    out, dropped = drop_duplicates(out)
    return CheckedTable(out, kept_lines[~dropped], rejected, int(dropped.sum()), left_out, label)


def drop_duplicates(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """THE duplicate policy (:data:`DUPLICATE_POLICY`): of rows sharing (parcel_id, time, sensor) keep
    the last, in table order. Returns the frame without them (index reset, order otherwise kept) and
    the boolean mask of dropped rows (aligned with the input)."""
    if frame.empty:
        return frame.reset_index(drop=True), np.zeros(len(frame), dtype=bool)
    dup = frame.duplicated(list(KEY), keep="last").to_numpy()
    return frame.loc[~dup].reset_index(drop=True), dup
