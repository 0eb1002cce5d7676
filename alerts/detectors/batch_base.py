"""Inputs and the interface of the batch detectors (one acquisition, all parcels of a tile); see
``alerts.detectors.batch``."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from alerts.errors import SeriesError
from alerts.series import S2_BANDS, SENSORS, ParcelAcquisition
from alerts.types import Event

logger = logging.getLogger(__name__)

# -- inputs -----------------------------------------------------------------------------------------


def _column(rows: pd.DataFrame, name: str, pos: np.ndarray, n: int, fill: float = np.nan) -> np.ndarray:
    out = np.full(n, fill, dtype=np.float64)
    if name in rows.columns:
        out[pos] = pd.to_numeric(rows[name], errors="coerce").to_numpy(np.float64)
    return out


@dataclass(frozen=True)
class AcquisitionInputs:
    """One acquisition of one sensor for the N parcels of a tile (shapes ``[N]``, ``bands [N, 10]``).

    ``t_days`` days since 1970 (``alerts.series.to_days``), NaN where the parcel has no row;
    ``bands`` S2 reflectance in ``alerts.series.S2_BANDS`` order (NaN for S1 / missing); ``clear``
    1/0, NaN unknown; ``vv``/``vh`` linear power (NaN for S2); ``orbit`` relative orbit, -1 unknown;
    ``vh_ref``/``vv_ref`` the regional reference in dB (``alerts.series.add_regional_reference``),
    NaN unknown; ``expected_ndvi``/``expected_ndvi_std`` the encoder's expectation for this view
    (NaN unknown; evidence only, the rules do not read it yet). All float64 (see the module note).
    """

    sensor: str
    t_days: np.ndarray
    bands: np.ndarray
    clear: np.ndarray
    vv: np.ndarray
    vh: np.ndarray
    orbit: np.ndarray
    vh_ref: np.ndarray
    vv_ref: np.ndarray
    expected_ndvi: np.ndarray
    expected_ndvi_std: np.ndarray

    def __post_init__(self) -> None:
        if self.sensor not in SENSORS:
            raise SeriesError(f"AcquisitionInputs: sensor must be S2 or S1, got {self.sensor!r}")
        n = len(self.t_days)
        for f in fields(self):
            if f.name == "sensor":
                continue
            a = getattr(self, f.name)
            want = (n, len(S2_BANDS)) if f.name == "bands" else (n,)
            if not isinstance(a, np.ndarray) or a.shape != want:
                got = getattr(a, "shape", type(a).__name__)
                raise SeriesError(f"AcquisitionInputs.{f.name}: expected shape {want}, got {got}")

    @property
    def n_parcels(self) -> int:
        return len(self.t_days)

    n = n_parcels  # the name the monitor's first draft used

    @classmethod
    def empty(cls, sensor: str, n: int) -> AcquisitionInputs:
        nan = np.full(n, np.nan)
        return cls(
            sensor=sensor,
            t_days=nan.copy(),
            bands=np.full((n, len(S2_BANDS)), np.nan),
            clear=nan.copy(),
            vv=nan.copy(),
            vh=nan.copy(),
            orbit=np.full(n, -1, dtype=np.int16),
            vh_ref=nan.copy(),
            vv_ref=nan.copy(),
            expected_ndvi=nan.copy(),
            expected_ndvi_std=nan.copy(),
        )

    @classmethod
    def from_frame(cls, rows: pd.DataFrame, parcel_index: pd.Index) -> AcquisitionInputs:
        """Inputs from the normalised interchange rows (``alerts.series.normalise_observations``,
        with ``VH_ref``/``VV_ref`` when known) of ONE acquisition of one sensor.

        ``parcel_index`` fixes the parcel order; rows of parcels not in it raise ``SeriesError``.
        """
        n = len(parcel_index)
        sensors = rows["sensor"].unique() if len(rows) else np.array(["S2"])
        if len(sensors) != 1:
            raise SeriesError(f"one acquisition per call: rows hold sensors {sorted(sensors)}")
        pos = parcel_index.get_indexer(rows["parcel_id"].astype(str))
        if (pos < 0).any():
            bad = rows["parcel_id"].to_numpy()[pos < 0][0]
            raise SeriesError(f"acquisition rows name parcel {bad!r}, not in the tile's parcel index")
        if len(np.unique(pos)) != len(pos):
            raise SeriesError("acquisition rows name a parcel twice (one row per parcel and acquisition)")
        t = np.full(n, np.nan)
        t[pos] = rows["days"].to_numpy(np.float64)
        bands = np.full((n, len(S2_BANDS)), np.nan)
        if len(rows):
            bands[pos] = rows[list(S2_BANDS)].to_numpy(np.float64)
        orbit_f = _column(rows, "orbit", pos, n)
        orbit = np.where(np.isfinite(orbit_f), orbit_f, -1).astype(np.int16)
        return cls(
            sensor=str(sensors[0]),
            t_days=t,
            bands=bands,
            clear=_column(rows, "clear", pos, n),
            vv=_column(rows, "VV", pos, n),
            vh=_column(rows, "VH", pos, n),
            orbit=orbit,
            vh_ref=_column(rows, "VH_ref", pos, n),
            vv_ref=_column(rows, "VV_ref", pos, n),
            expected_ndvi=_column(rows, "expected_ndvi", pos, n),
            expected_ndvi_std=_column(rows, "expected_ndvi_std", pos, n),
        )

    def observation(self, i: int, parcel_id: str) -> ParcelAcquisition | None:
        """Parcel i's row as the reference's ``ParcelAcquisition`` (``iter_observations`` semantics);
        None where the parcel has no row in this acquisition (NaN time)."""
        if not math.isfinite(float(self.t_days[i])):
            return None
        c = float(self.clear[i])
        return ParcelAcquisition(
            parcel_id=parcel_id,
            time=float(self.t_days[i]),
            sensor=self.sensor,
            bands=tuple(float(x) for x in self.bands[i]),
            clear=None if not math.isfinite(c) else bool(c >= 0.5),
            vv=float(self.vv[i]),
            vh=float(self.vh[i]),
            orbit=int(self.orbit[i]),
            vh_ref=float(self.vh_ref[i]),
            vv_ref=float(self.vv_ref[i]),
        )


def iter_acquisitions(obs: pd.DataFrame, parcel_index: pd.Index):
    """``(key, AcquisitionInputs)`` per acquisition of a normalised table, in time order: rows
    grouped by (time, sensor), S1 before S2 at equal times — the order of
    ``normalise_observations`` (sorted by parcel, days, sensor), which is what ``sitsmon detect``
    folds in offline; the monitor must feed equal-time acquisitions in the same order."""
    keys = obs[["days", "sensor"]].drop_duplicates().sort_values(["days", "sensor"], kind="stable")
    groups = obs.groupby(["days", "sensor"], sort=False)
    for days, sensor in zip(keys["days"], keys["sensor"], strict=True):
        yield (
            (float(days), str(sensor)),
            AcquisitionInputs.from_frame(groups.get_group((days, sensor)), parcel_index),
        )


# -- the interface --------------------------------------------------------------------------------


@runtime_checkable
class BatchDetector(Protocol):
    """One detector over all parcels of one tile."""

    event_type: str
    state_version: str

    def init_states(self, parcel_ids: Sequence[str], land_uses: Sequence[str]) -> Any: ...

    def step(self, states: Any, inputs: AcquisitionInputs) -> list[Event]: ...

    def dump(self, states: Any) -> dict[str, np.ndarray]: ...

    def load(self, arrays: dict[str, np.ndarray]) -> Any: ...


def _check_order(t_new: np.ndarray, t_last: np.ndarray, parcel_ids: np.ndarray) -> None:
    """Refuse an acquisition older than some parcel's last one, before any state changes."""
    with np.errstate(invalid="ignore"):
        late = t_new < t_last
    if late.any():
        k = int(np.flatnonzero(late)[0])
        raise SeriesError(
            f"parcel {parcel_ids[k]}: observation at day {t_new[k]:.3f} is older than the last one "
            f"({t_last[k]:.3f}); rewind to a checkpoint to fold in late arrivals"
            + (f" ({int(late.sum()) - 1} more parcels)" if late.sum() > 1 else "")
        )


def _base_columns(parcel_ids: Sequence[str], land_uses: Sequence[str], handles: Callable[[str], bool]):
    ids = np.asarray([str(p) for p in parcel_ids], dtype=str)
    lus = np.asarray([str(x).lower() for x in land_uses], dtype=str)
    if len(ids) != len(lus):
        raise SeriesError(f"{len(ids)} parcel ids for {len(lus)} land uses")
    if len(set(ids.tolist())) != len(ids):
        raise SeriesError("duplicate parcel id in the tile's parcel list")
    handled = np.fromiter((handles(x) for x in lus), dtype=bool, count=len(lus))
    return ids, lus, handled


def _text(values) -> np.ndarray:
    """A string column for ``dump`` (fixed-width unicode; a store writes it as Zarr's ``str``)."""
    return np.asarray(values, dtype=str)


def _as_str(a) -> np.ndarray:
    """A fixed-width unicode array from what a store gives back (unicode, object or StringDType)."""
    return np.asarray([str(x) for x in np.asarray(a).reshape(-1).tolist()], dtype=str)


def _check_loaded(arrays: dict[str, np.ndarray], version: str, who: str) -> None:
    got = arrays.get("state_version")
    got = str(np.asarray(got).reshape(-1)[0]) if got is not None else None
    if got != version:
        raise SeriesError(
            f"{who}: detector state version {got!r} is not {version!r}; rebuild from the series"
        )


def check_tile_inputs(inputs: AcquisitionInputs, parcel_ids: np.ndarray) -> None:
    """Refuse inputs made for another tile's parcel list (a different parcel count)."""
    if inputs.n_parcels != len(parcel_ids):
        raise SeriesError(f"{inputs.n_parcels} inputs for {len(parcel_ids)} parcels")


def dump_header(version: str, states: Any) -> dict[str, np.ndarray]:
    """The columns every ``dump`` starts with: ``state_version`` and the tile's parcel columns."""
    return {
        "state_version": _text([version]),
        "parcel_id": _text(states.parcel_ids),
        "land_use": _text(states.land_uses),
        "handled": states.handled.copy(),
    }


def load_header(arrays: dict[str, np.ndarray], version: str, who: str) -> tuple[np.ndarray, ...]:
    """``(parcel_ids, land_uses, handled)`` of dumped states, after their version is checked."""
    _check_loaded(arrays, version, who)
    return (
        _as_str(arrays["parcel_id"]),
        _as_str(arrays["land_use"]),
        np.asarray(arrays["handled"], dtype=bool),
    )
