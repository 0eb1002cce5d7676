"""Parcel series: the interchange format (docs/data-contracts.md "Interchange format") read into typed records.

One row per parcel and acquisition: ``parcel_id, time (ISO 8601 UTC), sensor (S2|S1), B02…B12
(surface reflectance 0–1), clear (1/0), VV, VH (linear power), orbit``. Empty means missing.
The vocabulary (bands, sensors, units, NDVI, value ranges) and the one rule for reading such a table
(rejected rows, refused files, the duplicate policy) live in :mod:`contracts`; this module turns the
checked table into what the detectors read.

Times are handled as float days since 1970-01-01 UTC (``t_days``, :mod:`contracts.time`) inside the
detectors: differences of days are what every rule needs, and float days keep the arithmetic exact
enough (1e-9 day resolution) while staying cheap.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from alerts.errors import SeriesError, UnknownParcelError
from contracts import interchange
from contracts.bands import S1_POLS, S2_BANDS
from contracts.errors import InterchangeError
from contracts.indices import ndvi as _ndvi
from contracts.interchange import DUPLICATE_POLICY
from contracts.sensors import SENSORS, Sensor
from contracts.time import SECONDS_PER_DAY, timestamp_from_t_days, to_t_days

logger = logging.getLogger(__name__)

__all__ = ["DUPLICATE_POLICY", "S1_POLS", "S2_BANDS", "SENSORS", "Sensor"]

OBS_COLUMNS: tuple[str, ...] = ("parcel_id", "time", "sensor", *S2_BANDS, "clear", *S1_POLS, "orbit")
PARCEL_COLUMNS: tuple[str, ...] = ("parcel_id", "land_use")
DAY = SECONDS_PER_DAY
_RED, _NIR = S2_BANDS.index("B04"), S2_BANDS.index("B08")


def day_number(d: date) -> float:
    """A calendar date as float days since 1970-01-01 (its start, UTC)."""
    return float((d - date(1970, 1, 1)).days)


def to_days(time: pd.Timestamp | np.datetime64 | str) -> float:
    """UTC time → float days since 1970-01-01 (``t_days``; :func:`contracts.time.to_t_days`)."""
    return to_t_days(time)


def from_days(days: float) -> pd.Timestamp:
    """Float days since 1970-01-01 → UTC timestamp (rounded to the second)."""
    return timestamp_from_t_days(days)


def day_of_year(days: float) -> int:
    return int(from_days(days).dayofyear)


@dataclass(frozen=True, slots=True)
class ParcelAcquisition:
    """One acquisition of one sensor for one parcel.

    ``time`` in float days since 1970-01-01 UTC; ``bands`` the ten S2 reflectances in ``S2_BANDS``
    order (NaN where missing, all NaN for S1); ``clear`` True/False for S2 (None when unknown, S1);
    ``vv``/``vh`` linear power (NaN for S2); ``orbit`` relative orbit (-1 unknown);
    ``vh_ref`` the regional reference VH in dB for this acquisition (median over the parcels of the
    tile or area seen in the same acquisition; NaN when unknown): subtracting it removes the
    backscatter change common to all parcels (rain, drying soil), see ``add_regional_reference``;
    ``vv_ref`` the same for VV in dB (NaN when unknown).
    """

    parcel_id: str
    time: float
    sensor: str
    bands: tuple[float, ...] = (math.nan,) * len(S2_BANDS)
    clear: bool | None = None
    vv: float = math.nan
    vh: float = math.nan
    orbit: int = -1
    vh_ref: float = math.nan
    vv_ref: float = math.nan

    def __post_init__(self) -> None:
        if self.sensor not in SENSORS:
            raise SeriesError(f"parcel {self.parcel_id}: sensor must be S2 or S1, got {self.sensor!r}")
        if not math.isfinite(self.time):
            raise SeriesError(f"parcel {self.parcel_id}: observation time is not finite")
        if len(self.bands) != len(S2_BANDS):
            raise SeriesError(f"parcel {self.parcel_id}: {len(self.bands)} bands, expected {len(S2_BANDS)}")

    def band(self, name: str) -> float:
        return self.bands[S2_BANDS.index(name)]

    @property
    def ndvi(self) -> float:
        """NDVI from B08/B04 (:func:`contracts.indices.ndvi`); NaN when missing or not a clear S2 view."""
        if self.sensor != "S2" or not self.clear:
            return math.nan
        return _ndvi(self.bands[_RED], self.bands[_NIR])

    @property
    def is_valid(self) -> bool:
        """Carries any usable value (a clear S2 view with NDVI, or an S1 view with VH)."""
        if self.sensor == "S2":
            return math.isfinite(self.ndvi)
        return math.isfinite(self.vh) and self.vh > 0


def read_table(path: str | Path) -> pd.DataFrame:
    """Read CSV or Parquet (pandas' own parsing); raise ``SeriesError`` naming the file on failure."""
    try:
        path = interchange.require_file(path)
    except InterchangeError as e:
        raise SeriesError(str(e)) from e
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype={"parcel_id": str})
    except Exception as e:  # pandas raises many types; one clear message
        raise SeriesError(f"cannot read {path}: {' '.join(str(e).split())[:200]}") from e


def normalise_observations(
    df: pd.DataFrame, source: str = "observations", sensors: Sequence[Sensor | str] | None = None,
    strict: bool = True,
) -> pd.DataFrame:
    """Validate an interchange observation table; return it with ``days`` (float) added, sorted.

    The rule is :func:`contracts.interchange.check_observations`: a missing value column of a sensor
    in ``sensors`` (default both), or a plainly wrong unit, refuses the table; so does any rejected row
    (text or an infinity in a value column, a value out of its physical range, a bad id, time or
    sensor), the message listing the lines: an offline result computed on a silently thinned table
    would be wrong without a word. Rows of sensors not in ``sensors`` are left out. Duplicates follow
    :data:`~contracts.interchange.DUPLICATE_POLICY` (the last row is kept) and are logged.
    ``strict=False`` (a streaming consumer that must go on): rejected rows are left out and logged
    with their lines instead; a refused table still raises.
    """
    try:
        checked = interchange.check_observations(df, source=source, sensors=sensors)
    except InterchangeError as e:
        raise SeriesError(str(e)) from e
    if checked.rejected and strict:
        raise SeriesError(checked.summary(source))
    if checked.rejected:
        logger.warning("%s", checked.summary(source))
    if checked.duplicates:
        logger.warning(
            "%s: %d duplicate (parcel, time, sensor) rows, keeping the last", source, checked.duplicates
        )
    if checked.left_out:
        logger.info("%s: %d rows of sensors other than %s left out", source, checked.left_out,
                    ",".join(str(s) for s in (sensors or SENSORS)))
    out = checked.frame
    out["days"] = (out["time"] - pd.Timestamp("1970-01-01", tz="UTC")).dt.total_seconds() / DAY
    return out.sort_values(["parcel_id", "days", "sensor"], kind="stable").reset_index(drop=True)


def read_observations(path: str | Path, sensors: Sequence[Sensor | str] | None = None) -> pd.DataFrame:
    """An interchange observation file, checked (see :func:`normalise_observations`)."""
    try:
        df = interchange.read_table(path)
    except InterchangeError as e:
        raise SeriesError(str(e)) from e
    return normalise_observations(df, source=str(path), sensors=sensors)


def read_parcels(path: str | Path) -> pd.DataFrame:
    """Parcels table (``parcel_id, land_use`` at least); GeoJSON/GeoPackage/GeoParquet also read."""
    try:
        path = interchange.require_file(path)
    except InterchangeError as e:
        raise SeriesError(str(e)) from e
    if path.suffix.lower() in (".geojson", ".gpkg", ".json"):
        import geopandas as gpd

        try:
            df = pd.DataFrame(gpd.read_file(path))
        except Exception as e:
            raise SeriesError(f"cannot read {path}: {e}") from e
    elif path.suffix.lower() in (".parquet", ".pq") and path.is_file():
        try:  # GeoParquet keeps shapely geometries; a plain Parquet table falls back to pandas
            import geopandas as gpd

            df = pd.DataFrame(gpd.read_parquet(path))
        except Exception:
            df = read_table(path)
    else:
        df = read_table(path)
    missing = [c for c in PARCEL_COLUMNS if c not in df.columns]
    if missing:
        raise SeriesError(f"{path}: missing column(s) {', '.join(missing)}")
    df = df.copy()
    df["parcel_id"] = df["parcel_id"].astype(str)
    if df["parcel_id"].duplicated().any():
        raise SeriesError(
            f"{path}: duplicate parcel_id {df.loc[df.parcel_id.duplicated(), 'parcel_id'].iloc[0]}"
        )
    return df


def check_known_parcels(obs: pd.DataFrame, parcels: pd.DataFrame) -> None:
    unknown = sorted(set(obs["parcel_id"]) - set(parcels["parcel_id"]))
    if unknown:
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise UnknownParcelError(f"observations name unknown parcel id {unknown[0]!r}{more}")


def iter_observations(df: pd.DataFrame) -> Iterator[ParcelAcquisition]:
    """Rows of a normalised table as ``ParcelAcquisition`` records, in table order."""
    bands = df[list(S2_BANDS)].to_numpy(float)
    clear = df["clear"].to_numpy(float)
    vv = df["VV"].to_numpy(float)
    vh = df["VH"].to_numpy(float)
    orbit = df["orbit"].to_numpy(float)
    ref = df["VH_ref"].to_numpy(float) if "VH_ref" in df.columns else np.full(len(df), np.nan)
    vref = df["VV_ref"].to_numpy(float) if "VV_ref" in df.columns else np.full(len(df), np.nan)
    for i, (pid, days, sensor) in enumerate(zip(df["parcel_id"], df["days"], df["sensor"], strict=True)):
        c = None if not math.isfinite(clear[i]) else bool(clear[i] >= 0.5)
        yield ParcelAcquisition(
            parcel_id=pid,
            time=float(days),
            sensor=sensor,
            bands=tuple(float(x) for x in bands[i]),
            clear=c,
            vv=float(vv[i]),
            vh=float(vh[i]),
            orbit=int(orbit[i]) if math.isfinite(orbit[i]) else -1,
            vh_ref=float(ref[i]),
            vv_ref=float(vref[i]),
        )


def add_regional_reference(df: pd.DataFrame, min_parcels: int = 5) -> pd.DataFrame:
    """Add ``VH_ref`` and ``VV_ref``: per S1 acquisition (same day and orbit), the median VH (VV) in dB
    over all parcels.

    Acquisitions seen by fewer than ``min_parcels`` parcels get NaN (no reference: a parcel is not
    its own region).

    The streaming monitor computes the same number per acquisition event over the parcels of the
    tile (every parcel of one acquisition is processed together), so both paths see equal inputs.
    """
    df = df.copy()
    day = df["time"].dt.floor("D")
    key = [day, df["orbit"].fillna(-1)]
    for pol in ("VH", "VV"):
        s1 = (df["sensor"] == "S1") & (df[pol] > 0)
        db = pd.Series(np.nan, index=df.index)
        db[s1] = 10 * np.log10(df.loc[s1, pol])
        grouped = db.groupby(key)
        ref = grouped.transform("median")
        n = grouped.transform("count")
        df[f"{pol}_ref"] = ref.where(s1 & (n >= min_parcels))
    return df


def group_by_parcel(df: pd.DataFrame) -> Iterable[tuple[str, pd.DataFrame]]:
    return df.groupby("parcel_id", sort=True)


def ndvi_frame(df: pd.DataFrame) -> pd.Series:
    """NDVI of every row (NaN for S1 rows, cloudy rows and missing bands)."""
    v = pd.Series(_ndvi(df["B04"].to_numpy(float), df["B08"].to_numpy(float)), index=df.index)
    ok = (df["sensor"] == "S2") & (df["clear"] >= 0.5) & np.isfinite(v)
    return v.where(ok)
