"""Detectors over all parcels of a tile, one acquisition at a time: what the streaming monitor steps.

``AcquisitionInputs`` is one acquisition of one sensor for the N parcels of a tile (parcel order
fixed by the caller, NaN time where a parcel has no row). A ``BatchDetector`` folds it into the
states of all N parcels in place and returns the events it confirms:

- ``ReferenceBatch(detector)``: the plain reference — the per-parcel ``BaseDetector.update`` on one
  ``Observation`` per parcel, states a list of the detector's frozen dataclasses.
- ``MowingKernel``, ``HarvestKernel``, ``SolarKernel``: the same rules as numba kernels over state
  arrays (``alerts.detectors.kernels``); ``Event`` objects and their evidence are built in Python
  only for the parcels that emit. ``tests/alerts/test_batch_kernels.py`` holds each kernel equal to
  the reference, event for event and state for state.

Parcels whose land use a detector does not handle are skipped (they hold no state). An acquisition
older than a parcel's last one raises ``SeriesError`` before any state changes (the monitor rewinds
the tile to a checkpoint); a re-delivered one is skipped.

Interface notes (for the monitor): input arrays are float64, not float32 — float32 rounding of the
reflectances moves NDVI by ~1e-7 and would let the streamed alerts differ from ``sitsmon detect``
offline whenever a value sits on a threshold; the inputs are transient (one acquisition), only the
states are stored. ``dump``/``load`` give and take plain numpy arrays, one per field, plus
``parcel_id``/``land_use`` (unicode; ``load`` also takes object or StringDType arrays, as a Zarr
store gives them back) and ``handled`` (bool) columns; ``state_version`` names layout
and rules and must match on ``load``.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from alerts.detectors import kernels as K
from alerts.detectors.base import BaseDetector, DetectorState
from alerts.detectors.registry import detector_class, make_detector
from alerts.detectors.state_io import STATE_SCHEMA, state_from_dict, state_to_dict
from alerts.errors import SeriesError
from alerts.series import S2_BANDS, SENSORS, Observation, from_days
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

    def observation(self, i: int, parcel_id: str) -> Observation | None:
        """Parcel i's row as the reference's ``Observation`` (``iter_observations`` semantics);
        None where the parcel has no row in this acquisition (NaN time)."""
        if not math.isfinite(float(self.t_days[i])):
            return None
        c = float(self.clear[i])
        return Observation(
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


# -- the plain reference ----------------------------------------------------------------------------


@dataclass
class ReferenceStates:
    parcel_ids: np.ndarray
    land_uses: np.ndarray
    handled: np.ndarray
    states: list[DetectorState | None]


class ReferenceBatch:
    """The per-parcel Python detector stepped over a tile (the specification of the kernels)."""

    def __init__(self, detector: BaseDetector) -> None:
        self.detector = detector
        self.event_type = detector.event_type
        self.state_version = f"reference/{type(detector).__name__}/{STATE_SCHEMA}"

    def init_states(self, parcel_ids: Sequence[str], land_uses: Sequence[str]) -> ReferenceStates:
        ids, lus, handled = _base_columns(parcel_ids, land_uses, self.detector.handles)
        states: list[DetectorState | None] = [
            self.detector.init_state(p, lu) if h else None for p, lu, h in zip(ids, lus, handled, strict=True)
        ]
        return ReferenceStates(ids, lus, handled, states)

    def step(self, states: ReferenceStates, inputs: AcquisitionInputs) -> list[Event]:
        if inputs.n_parcels != len(states.parcel_ids):
            raise SeriesError(f"{inputs.n_parcels} inputs for {len(states.parcel_ids)} parcels")
        t_last = np.array([s.mark.t_last if s is not None else -np.inf for s in states.states])
        _check_order(inputs.t_days, t_last, states.parcel_ids)
        events: list[Event] = []
        for i in np.flatnonzero(states.handled & np.isfinite(inputs.t_days)):
            state = states.states[i]
            assert state is not None
            obs = inputs.observation(int(i), str(states.parcel_ids[i]))
            assert obs is not None  # finite times only
            state, new = self.detector.update(state, obs)
            states.states[i] = state
            events.extend(new)
        return events

    def dump(self, states: ReferenceStates) -> dict[str, np.ndarray]:
        blobs = [json.dumps(state_to_dict(s)) if s is not None else "" for s in states.states]
        return {
            "state_version": _text([self.state_version]),
            "parcel_id": _text(states.parcel_ids),
            "land_use": _text(states.land_uses),
            "handled": states.handled.copy(),
            "state_json": _text(blobs),
        }

    def load(self, arrays: dict[str, np.ndarray]) -> ReferenceStates:
        _check_loaded(arrays, self.state_version, type(self).__name__)
        st = [
            state_from_dict(json.loads(b)) if b else None for b in np.asarray(arrays["state_json"]).tolist()
        ]
        return ReferenceStates(
            _as_str(arrays["parcel_id"]),
            _as_str(arrays["land_use"]),
            np.asarray(arrays["handled"], dtype=bool),
            st,
        )


# -- kernels ----------------------------------------------------------------------------------------


def _cap(buffer_days: float) -> int:
    """Buffer capacity for ``buffer_days``: one view per two days on average (S2 clear views and S1
    passes of one parcel come at most every 2-3 days; the densest real series, grassland-sk-dev,
    holds 28 clear S2 views in 120 days and 34 S1 in 200), plus slack."""
    return int(math.ceil(buffer_days / 2.0)) + 8


@dataclass
class KernelStates:
    """State arrays of one detector for one tile: the handled parcels only (``index`` their
    positions in the tile's parcel order), scalar fields ``[M]`` and buffers ``[M, CAP, C]``."""

    parcel_ids: np.ndarray
    land_uses: np.ndarray
    handled: np.ndarray
    index: np.ndarray
    arrays: dict[str, np.ndarray]

    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in self.arrays.values()))


class KernelBatch:
    """Shared workflow of the three kernels: state layout, order check, events from the rows."""

    detector_name: ClassVar[str]
    layout_version: ClassVar[str]
    event_cols: ClassVar[int]
    # (name, columns) of each buffer, and its horizon parameter
    buffers: ClassVar[tuple[tuple[str, int], ...]]
    scalars: ClassVar[tuple[tuple[str, Any, float], ...]]  # (name, dtype, initial value)

    def __init__(self, params=None) -> None:
        self.reference = make_detector(self.detector_name, params)
        self.params = self.reference.params
        self.event_type = self.reference.event_type
        self.state_version = f"{self.layout_version};{_params_tag(self.params)}"
        self.P = self.param_vector()

    def param_vector(self) -> np.ndarray:
        raise NotImplementedError

    def capacity(self) -> int:
        cap = _cap(self.params.buffer_days)
        if cap > K.MAX_CAPACITY:
            raise ValueError(
                f"{type(self).__name__}: buffer_days {self.params.buffer_days} needs {cap} views, over {K.MAX_CAPACITY}"
            )
        return cap

    def handles(self, land_use: str) -> bool:
        return self.reference.handles(land_use)

    def init_states(self, parcel_ids: Sequence[str], land_uses: Sequence[str]) -> KernelStates:
        ids, lus, handled = _base_columns(parcel_ids, land_uses, self.handles)
        index = np.flatnonzero(handled)
        m = len(index)
        cap = self.capacity()
        arrays: dict[str, np.ndarray] = {
            "t_last": np.full(m, -np.inf),
            "sensors": np.zeros(m, np.int8),
            "n_obs": np.zeros(m, np.int64),
            "overflow": np.zeros(m, np.int32),
        }
        for name, dtype, init in self.scalars:
            arrays[name] = np.full(m, init, dtype=dtype)
        for name, cols in self.buffers:
            arrays[name] = np.full((m, cap, cols), np.nan)
            arrays[f"n_{name}"] = np.zeros(m, np.int64)
        return KernelStates(ids, lus, handled, index, arrays)

    def dump(self, states: KernelStates) -> dict[str, np.ndarray]:
        out = {
            "state_version": _text([self.state_version]),
            "parcel_id": _text(states.parcel_ids),
            "land_use": _text(states.land_uses),
            "handled": states.handled.copy(),
        }
        out.update({k: v.copy() for k, v in states.arrays.items()})
        return out

    def load(self, arrays: dict[str, np.ndarray]) -> KernelStates:
        _check_loaded(arrays, self.state_version, type(self).__name__)
        handled = np.asarray(arrays["handled"], dtype=bool)
        index = np.flatnonzero(handled)
        st = self.init_states(_as_str(arrays["parcel_id"])[:0], [])  # the layout's names
        own: dict[str, np.ndarray] = {}
        for name, proto in st.arrays.items():
            a = np.asarray(arrays[name])
            if a.shape[0] != len(index) or a.shape[1:] != proto.shape[1:] or a.dtype != proto.dtype:
                raise SeriesError(
                    f"{type(self).__name__}: state field {name} has shape {a.shape} {a.dtype}, expected "
                    f"({len(index)}, *{proto.shape[1:]}) {proto.dtype}"
                )
            own[name] = np.ascontiguousarray(a).copy()
        return KernelStates(
            _as_str(arrays["parcel_id"]),
            _as_str(arrays["land_use"]),
            handled,
            index,
            own,
        )

    def step(self, states: KernelStates, inputs: AcquisitionInputs) -> list[Event]:
        if inputs.n_parcels != len(states.parcel_ids):
            raise SeriesError(f"{inputs.n_parcels} inputs for {len(states.parcel_ids)} parcels")
        idx = states.index
        X = gather_inputs(inputs, idx)
        _check_order(X[:, K.X_T], states.arrays["t_last"], states.parcel_ids[idx])
        # at most three events per parcel and acquisition (mowing's newest candidates)
        ev_parcel = np.empty(3 * len(idx) + 1, np.int64)
        ev_f = np.empty((3 * len(idx) + 1, self.event_cols))
        overflow_before = int(states.arrays["overflow"].sum())
        n = self._kernel(states, X, inputs.sensor == "S2", ev_parcel, ev_f)
        dropped = int(states.arrays["overflow"].sum()) - overflow_before
        if dropped:  # the state no longer holds all the reference holds: results may differ from it
            j = int(np.argmax(states.arrays["overflow"]))
            logger.warning(
                "%s: %d buffer entries dropped (capacity %d full), e.g. parcel %s; raise the capacity",
                type(self).__name__,
                dropped,
                self.capacity(),
                states.parcel_ids[idx[j]],
            )
        return [self._event(states, int(ev_parcel[r]), ev_f[r]) for r in range(n)]

    def _kernel(self, states, X, is_s2, ev_parcel, ev_f) -> int:
        raise NotImplementedError

    def _event(self, states: KernelStates, j: int, row: np.ndarray) -> Event:
        raise NotImplementedError


def _params_tag(params) -> str:
    """A short stable tag of a detector's parameters (states from other parameters are refused)."""
    import hashlib

    text = json.dumps({f.name: getattr(params, f.name) for f in fields(params)}, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _pack(params, names: Sequence[str], extra: dict[str, float] | None = None) -> np.ndarray:
    out = []
    for name in names:
        if extra and name in extra:
            out.append(float(extra[name]))
        elif name.endswith("]"):
            base, k = name[:-1].split("[")
            out.append(float(getattr(params, base)[int(k)]))
        else:
            out.append(float(getattr(params, name)))
    return np.asarray(out, dtype=np.float64)


def gather_inputs(inputs: AcquisitionInputs, idx: np.ndarray) -> np.ndarray:
    """The kernels' input block ``[M, kernels.X_COLS]`` float64 for the parcels ``idx``."""
    X = np.empty((len(idx), K.X_COLS))
    X[:, K.X_T] = inputs.t_days[idx]
    X[:, K.X_RED] = inputs.bands[idx, S2_BANDS.index("B04")]
    X[:, K.X_NIR] = inputs.bands[idx, S2_BANDS.index("B08")]
    X[:, K.X_CLEAR] = inputs.clear[idx]
    X[:, K.X_VV] = inputs.vv[idx]
    X[:, K.X_VH] = inputs.vh[idx]
    X[:, K.X_ORBIT] = inputs.orbit[idx]
    X[:, K.X_VH_REF] = inputs.vh_ref[idx]
    X[:, K.X_VV_REF] = inputs.vv_ref[idx]
    X[:, K.X_B11] = inputs.bands[idx, S2_BANDS.index("B11")]
    X[:, K.X_B12] = inputs.bands[idx, S2_BANDS.index("B12")]
    return X


@functools.lru_cache(maxsize=4096)
def _iso_cached(days: float) -> str:
    return from_days(days).date().isoformat()


def _iso(days: float) -> str:
    """``from_days(days).date().isoformat()``, cached: the parcels of a tile share acquisition
    dates, and a pandas Timestamp per excerpt entry was the largest cost of building events."""
    return _iso_cached(float(days))


class MowingKernel(KernelBatch):
    detector_name = "mowing"
    layout_version = "mowing-kernel/1"
    event_cols = K.MOW_EVENT_COLS
    buffers = (("s2", 2), ("s1", 3), ("s1n", 3))
    scalars = (("last_cut", np.float64, -np.inf),)

    def param_vector(self) -> np.ndarray:
        return _pack(self.params, K.MOWING_PARAM_NAMES)

    def _kernel(self, st, X, is_s2, ev_parcel, ev_f) -> int:
        a = st.arrays
        return K.mowing_step(
            self.P, is_s2, X, a["t_last"], a["sensors"], a["n_obs"], a["last_cut"],
            a["s2"], a["n_s2"], a["s1"], a["n_s1"], a["s1n"], a["n_s1n"], a["overflow"], ev_parcel, ev_f,
        )  # fmt: skip

    def _event(self, st: KernelStates, j: int, row: np.ndarray) -> Event:
        p = self.params
        pid = str(st.parcel_ids[st.index[j]])
        window = (float(row[K.E_W0]), float(row[K.E_W1]))
        if int(row[K.E_SENSOR]) == K.MOW_SENSOR_S1:
            pre, post, drop = (float(row[c]) for c in (K.MS_PRE, K.MS_POST, K.MS_DROP))
            buf = st.arrays["s1n"][j, : st.arrays["n_s1n"][j]]
            v = buf[:, 1].copy()
            for orbit in np.unique(buf[:, 2]):  # the series as the rule saw it (orbit offsets removed)
                sel = buf[:, 2] == orbit
                v[sel] -= np.median(v[sel])
            evidence = {
                "sensor": "S1",
                "reason": f"cloudy spell (no clear S2 view within {p.s1_blind_days:g} days): "
                "VH step down relative to the region",
                "vh_rel_before_db": round(pre, 2),
                "vh_rel_after_db": round(post, 2),
                "vh_drop_db": round(drop, 2),
                "series_excerpt": [
                    (_iso(a), round(float(b), 2))
                    for a, b in zip(buf[:, 0].tolist(), v.tolist(), strict=True)
                    if window[0] - 15 <= a <= window[1] + 15
                ],
            }
            sensor = "S1"
        else:
            sensor = "S2+S1" if int(row[K.E_SENSOR]) == K.MOW_SENSOR_S2S1 else "S2"
            nex = int(row[K.MC_NEX])
            ex = row[K.MC_EX : K.MC_EX + 2 * nex].reshape(nex, 2)
            evidence = {
                "ndvi_envelope": round(float(row[K.MC_ENV]), 4),
                "ndvi_before": round(float(row[K.MC_BEFORE]), 4),
                "ndvi_after": round(float(row[K.MC_AFTER]), 4),
                "ndvi_next": round(float(row[K.MC_NEXT]), 4),
                "ndvi_drop": round(float(row[K.MC_DROP]), 4),
                "s1_vh_drop_db": round(float(row[K.MC_S1DROP]), 3),
                "series_excerpt": [(_iso(a), round(b, 3)) for a, b in ex.tolist()],
                "sensor": sensor,
            }
        return Event(
            parcel_id=pid,
            event="mowing",
            date=float(row[K.E_DATE]),
            window=window,
            confidence=float(row[K.E_CONF]),
            sensor=sensor,
            evidence=evidence,
        )


class SolarKernel(KernelBatch):
    detector_name = "solar"
    layout_version = "solar-kernel/1"
    event_cols = K.SOLAR_EVENT_COLS
    buffers = (("s1", 3), ("s2", 2), ("s1a", 3))
    scalars = (("found", np.bool_, False),)

    def param_vector(self) -> np.ndarray:
        from alerts.detectors.solar import RAMP_DAYS

        return _pack(self.params, K.SOLAR_PARAM_NAMES, {"ramp_days": RAMP_DAYS})

    def _kernel(self, st, X, is_s2, ev_parcel, ev_f) -> int:
        a = st.arrays
        return K.solar_step(
            self.P, is_s2, X, a["t_last"], a["sensors"], a["n_obs"], a["found"],
            a["s1"], a["n_s1"], a["s2"], a["n_s2"], a["s1a"], a["n_s1a"], a["overflow"], ev_parcel, ev_f,
        )  # fmt: skip

    def _event(self, st: KernelStates, j: int, row: np.ndarray) -> Event:
        pid = str(st.parcel_ids[st.index[j]])
        if int(row[K.E_SENSOR]) == K.SOLAR_PHASE_WORKS:
            evidence = {
                "sensor": "S1",
                "phase": "works",
                "vv_rise_vs_region_db": round(float(row[K.SC_A]), 2),
                "ndvi_before": round(float(row[K.SC_B]), 3),
                "ndvi_after_max": round(float(row[K.SC_C]), 3),
                "vv_onset": _iso(row[K.SC_D]),
            }
        else:
            k = int(row[K.SC_D])
            arr = st.arrays["s1"][j, : st.arrays["n_s1"][j]]
            evidence = {
                "sensor": "S1",
                "vv_baseline_db": round(float(row[K.SC_A]), 2),
                "vv_recent_db": round(float(row[K.SC_B]), 2),
                "vv_onset": _iso(row[K.SC_C]),
                "series_excerpt": [
                    (_iso(a), round(b, 2), round(c, 2)) for a, b, c in arr[max(0, k - 6) :].tolist()
                ][:14],
            }
        return Event(
            parcel_id=pid,
            event="solar_construction",
            date=float(row[K.E_DATE]),
            window=(float(row[K.E_W0]), float(row[K.E_W1])),
            confidence=float(row[K.E_CONF]),
            sensor="S1",
            evidence=evidence,
        )


class HarvestKernel(KernelBatch):
    detector_name = "harvest"
    layout_version = "harvest-kernel/1"
    event_cols = K.HARVEST_EVENT_COLS
    buffers = (("s1", 2), ("s2", 2))
    scalars = (("last_harvest", np.float64, -np.inf),)

    def param_vector(self) -> np.ndarray:
        return _pack(self.params, K.HARVEST_PARAM_NAMES)

    def _kernel(self, st, X, is_s2, ev_parcel, ev_f) -> int:
        a = st.arrays
        return K.harvest_step(
            self.P, is_s2, X, a["t_last"], a["sensors"], a["n_obs"], a["last_harvest"],
            a["s1"], a["n_s1"], a["s2"], a["n_s2"], a["overflow"], ev_parcel, ev_f,
        )  # fmt: skip

    def _event(self, st: KernelStates, j: int, row: np.ndarray) -> Event:
        pid = str(st.parcel_ids[st.index[j]])
        s1 = int(row[K.E_SENSOR]) == K.HARVEST_SENSOR_S1
        name = "s1" if s1 else "s2"
        arr = st.arrays[name][j, : st.arrays[f"n_{name}"][j]]
        k = int(row[K.HC_K])
        sensor = "S1" if s1 else "S2"
        return Event(
            parcel_id=pid,
            event="harvest",
            date=float(row[K.E_DATE]),
            window=(float(row[K.E_W0]), float(row[K.E_W1])),
            confidence=float(row[K.E_CONF]),
            sensor=sensor,
            evidence={
                "sensor": sensor,
                "quantity": "VH dB" if s1 else "NDVI",
                "before": round(float(row[K.HC_PRE]), 3),
                "after": round(float(row[K.HC_POST]), 3),
                "drop": round(float(row[K.HC_DROP]), 3),
                "series_excerpt": [(_iso(a), round(b, 3)) for a, b in arr[max(0, k - 4) : k + 4].tolist()],
            },
        )


class HarvestS2Kernel(HarvestKernel):
    """Harvest with S1 and S2 side by side (the rules with ``HarvestParams.use_s2``: S2 harvests from
    NDVI and NDTI on the three newest clear views, dated by S1 when it saw the drop)."""

    layout_version = "harvest-kernel/2"
    event_cols = K.HARVEST2_EVENT_COLS
    buffers = (("s1", 2), ("s2", 3))

    def param_vector(self) -> np.ndarray:
        return _pack(self.params, K.HARVEST2_PARAM_NAMES)

    def _kernel(self, st, X, is_s2, ev_parcel, ev_f) -> int:
        a = st.arrays
        return K.harvest_step_s2(
            self.P, is_s2, X, a["t_last"], a["sensors"], a["n_obs"], a["last_harvest"],
            a["s1"], a["n_s1"], a["s2"], a["n_s2"], a["overflow"], ev_parcel, ev_f,
        )  # fmt: skip

    def _event(self, st: KernelStates, j: int, row: np.ndarray) -> Event:
        code = int(row[K.E_SENSOR])
        if code == K.HARVEST_SENSOR_S1:
            return super()._event(st, j, row)
        sensor = "S2+S1" if code == K.HARVEST_SENSOR_S2S1 else "S2"
        green = int(row[K.H2_KIND]) == 0
        views = st.arrays["s2"][j, : st.arrays["n_s2"][j]]
        evidence: dict[str, Any] = {
            "sensor": sensor,
            "quantity": "NDVI" if green else "NDTI",
            "harvest_kind": "green" if green else "dry",
            "ndvi_before": round(float(row[K.H2_N0]), 4),
            "ndvi_after": round(float(row[K.H2_N1]), 4),
            "ndti_before": round(float(row[K.H2_D0]), 4),
            "ndti_after": round(float(row[K.H2_D1]), 4),
            "drop": round(float(row[K.H2_DROP]), 4),
            "confirmed_day": float(row[K.H2_CONFIRMED]),
            "series_excerpt": [(_iso(t), round(n, 3), round(d, 3)) for t, n, d in views[-5:].tolist()],
        }
        if code == K.HARVEST_SENSOR_S2S1:
            evidence["s1_vh_drop_db"] = round(float(row[K.H2_S1DROP]), 3)
        return Event(
            parcel_id=str(st.parcel_ids[st.index[j]]),
            event="harvest",
            date=float(row[K.E_DATE]),
            window=(float(row[K.E_W0]), float(row[K.E_W1])),
            confidence=float(row[K.E_CONF]),
            sensor=sensor,
            evidence=evidence,
        )


def _harvest_kernel() -> type[KernelBatch]:
    """The harvest port for the rules present: S1 and S2 side by side once ``HarvestParams`` has
    ``use_s2``, else S1 with the S2 step rule as its fallback."""
    from alerts.detectors.harvest import HarvestParams

    return HarvestS2Kernel if "use_s2" in {f.name for f in fields(HarvestParams)} else HarvestKernel


KERNELS: dict[str, type[KernelBatch]] = {
    "mowing": MowingKernel,
    "harvest": _harvest_kernel(),
    "solar": SolarKernel,
}

# The rules each kernel was ported from and is held equal to: a hash of the reference detector's
# module and of the shared step finders (``rules_fingerprint``). When a detector's Python rules
# change, its kernel is not used (the reference runs instead, with a warning) until the kernel is
# ported again, the equality tests pass and the new fingerprint is recorded here;
# tests/alerts/test_batch_kernels.py fails on the mismatch meanwhile, naming the detector.
PORTED_RULES: dict[str, tuple[str, ...]] = {
    "mowing": ("03046702def01c84",),
    # harvest: the S1 rules (HarvestKernel), and the S1 + S2 rules of the "lights" branch
    # (HarvestS2Kernel, held equal to that branch's harvest.py before the merge)
    "harvest": ("e6f4fd73e27ea75a", "302be161c9ba4f35"),
    "solar": ("e453a26f09bd2f5f",),
}


def rules_fingerprint(name: str) -> str:
    """A short hash of the source of detector ``name``'s module and of ``alerts.detectors.steps``."""
    import hashlib
    import inspect
    import sys

    from alerts.detectors import steps

    module = sys.modules[detector_class(name).__module__]
    text = inspect.getsource(module) + inspect.getsource(steps)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def make_batch_detectors(
    names: Sequence[str], kernel: bool = True, params: dict[str, Any] | None = None
) -> list[BatchDetector]:
    """Batch detectors by name (``alerts.detectors.registry`` names): the numba kernel where one is
    ported from the detector's present rules (``PORTED_RULES``), else — and with ``kernel=False`` —
    the plain reference. ``params``: optional parameters per name (the detector's params type)."""
    params = params or {}
    out: list[BatchDetector] = []
    for name in names:
        detector_class(name)  # a clear error for an unknown name
        if kernel and name in KERNELS:
            if rules_fingerprint(name) in PORTED_RULES.get(name, ()):
                out.append(KERNELS[name](params.get(name)))
                continue
            logger.warning(
                "the %s rules changed since its kernel was ported (rules %s, kernel ported from %s): "
                "running the per-parcel reference instead",
                name,
                rules_fingerprint(name),
                PORTED_RULES.get(name),
            )
        out.append(ReferenceBatch(make_detector(name, params.get(name))))
    return out
