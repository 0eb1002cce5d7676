"""The pixel solar detector stepped per acquisition: a per-pixel state (arrays, one per field) and numba kernels.

``detect_solar_pixels`` (``alerts/detectors/solar_pixels.py``) is the plain reference: it reads a watch
area's whole cube history. ``PixelSolarState`` holds, per pixel, what that rule needs of the history so
far, and folds one acquisition at a time:

* the clear-view counters and shift registers of the PV / PV-or-bare / bare signatures over the last
  ``end_views`` clear views, and their counts over the first ``end_views`` (the temporal shares);
* the first three clear views (NDVI, signatures, times): their median NDVI is the pixel's pre-works
  level, fixed at the third view;
* three small machines that track where the final run of departed views starts under
  ``_final_run_start``'s rule (one isolated undeparted view tolerated) for the departures "PV or bare or
  NDVI drop", "PV or NDVI drop" and "PV": per machine the last two flags and the times of the last
  breaking view and the view after it. A view is breaking when it is undeparted and not isolated; it
  can be decided one view later, which is why the machine keeps the last two flags;
* for S1, per pixel the VV anomaly (VV minus the area's median VV of the acquisition) of the first and
  of the last ``end_views`` acquisitions.

``evidence()`` turns the fields into the reference's per-pixel evidence (changed pixels, works pixels,
departure brackets), and ``alerts.detectors.solar_pixels.installations`` — the same code as the batch
form — groups, dates and polygonises them. The S1 dating of a candidate installation needs its
pixels' VV series, which depends on the installation found: it is read (``s1_history``) only when a
candidate needs dating, never per acquisition. State: about 200 bytes per pixel (``nbytes_per_pixel``),
whatever the season's length.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np

from alerts.detectors.solar_pixels import (
    PixelEvidence,
    PixelSolarParams,
    S1History,
    _bare_like,
    _indices,
    _nanmedian0,
    _pv_like,
    area_median_vv,
    installations,
)
from alerts.errors import SeriesError
from alerts.types import Event

SCHEMA = "sitsmon-pixel-solar/1"
MAX_END_VIEWS = 32  # the shift registers are uint32
HEAD = 3  # the pre-works NDVI level is the median of the first three clear views
# machines: 0 departed = PV | bare | NDVI drop, 1 = PV | NDVI drop (land bare from its first view), 2 = PV
_HAS_BRK, _P1, _P2 = 1, 2, 4

# per-pixel fields: name -> (dtype, rows); rows 0 means a (P,) array, k a (k, P) one ("end" = end_views)
FIELDS: dict[str, tuple[str, int | str]] = {
    "n_valid": ("int32", 0), "pv_first": ("uint8", 0), "bare_first": ("uint8", 0),
    "registers": ("uint32", 3),  # last end_views clear views: PV, PV or bare, bare (bit 0 the newest)
    "head_ndvi": ("float64", HEAD), "head_t": ("float64", HEAD), "head_flags": ("uint8", HEAD),
    "base_ndvi": ("float64", 0),
    "m_bits": ("uint8", 3), "m_t_break": ("float64", 3), "m_t_after": ("float64", 3),
    "t_prev": ("float64", 0),  # the last clear view
    "anom_first": ("float64", "end"), "anom_last": ("float64", "end"),  # S1 VV anomaly (dB), a ring
}
# area-level scalars: S2 and S1 acquisitions folded, the last S2 view (days)
META = ("n_s2", "n_s1", "t_end")


@numba.njit(cache=True, inline="always")
def _mstep(bits: int, t_brk: float, t_aft: float, t_prev: float, length: int, x: bool, t: float):
    """One view ``x`` at ``t`` appended to a machine that has seen ``length`` views: the previous view
    (now not the last) is breaking when undeparted and not isolated (its neighbours both departed)."""
    if length >= 1:
        p1 = bits & _P1 != 0
        p2 = bits & _P2 != 0
        if not p1 and not (length >= 2 and p2 and x):
            bits |= _HAS_BRK
            t_brk, t_aft = t_prev, t
    bits = (bits & _HAS_BRK) | (_P2 if bits & _P1 else 0) | (_P1 if x else 0)
    return bits, t_brk, t_aft


@numba.njit(cache=True, inline="always")
def _mquery(bits: int, t_brk: float, t_aft: float, length: int, t_first: float):
    """(status, lo, hi) of the final departed run: 0 none (the last view breaks it), 1 it starts at the
    first view (lo = hi = that view), 2 it starts after the last breaking view (lo that view, hi the next)."""
    p1 = bits & _P1 != 0
    p2 = bits & _P2 != 0
    if not p1 and not (length >= 2 and p2):
        return 0, 0.0, 0.0
    if bits & _HAS_BRK:
        return 2, t_brk, t_aft
    return 1, t_first, t_first


@numba.njit(cache=True, inline="always")
def _median_head(a: float, b: float, c: float) -> float:
    return max(min(a, b), min(max(a, b), c))


@numba.njit(cache=True)
def _step_s2(valid, pv, bare, nd, t, n_end, departure, n_valid, pv_first, bare_first, registers, head_ndvi,
             head_t, head_flags, base_ndvi, m_bits, m_t_break, m_t_after, t_prev):  # pragma: no cover - numba
    full = np.uint32((1 << n_end) - 1) if n_end < 32 else np.uint32(0xFFFFFFFF)
    for i in range(valid.shape[0]):
        if not valid[i]:
            continue
        length = n_valid[i]
        x_pv, x_bare = pv[i], bare[i]
        if length < n_end:
            pv_first[i] += x_pv
            bare_first[i] += x_bare
        registers[0, i] = ((registers[0, i] << 1) | np.uint32(x_pv)) & full
        registers[1, i] = ((registers[1, i] << 1) | np.uint32(x_pv or x_bare)) & full
        registers[2, i] = ((registers[2, i] << 1) | np.uint32(x_bare)) & full
        m_bits[2, i], m_t_break[2, i], m_t_after[2, i] = _mstep(m_bits[2, i], m_t_break[2, i], m_t_after[2, i],
                                                                t_prev[i], length, x_pv, t)
        if length < HEAD:
            head_ndvi[length, i], head_t[length, i] = nd[i], t
            head_flags[length, i] = np.uint8(x_pv) | (np.uint8(x_bare) << 1)
            if length == HEAD - 1:  # the level is fixed now: the machines 0 and 1 see the first views
                base = _median_head(head_ndvi[0, i], head_ndvi[1, i], head_ndvi[2, i])
                base_ndvi[i] = base
                for k in range(HEAD):
                    f = head_flags[k, i]
                    drop = head_ndvi[k, i] < base - departure
                    tp = head_t[k - 1, i] if k > 0 else 0.0
                    for m in range(2):
                        x = (f & 1 != 0) or drop or (m == 0 and f & 2 != 0)
                        m_bits[m, i], m_t_break[m, i], m_t_after[m, i] = _mstep(
                            m_bits[m, i], m_t_break[m, i], m_t_after[m, i], tp, k, x, head_t[k, i])
        else:
            drop = nd[i] < base_ndvi[i] - departure
            for m in range(2):
                x = x_pv or drop or (m == 0 and x_bare)
                m_bits[m, i], m_t_break[m, i], m_t_after[m, i] = _mstep(m_bits[m, i], m_t_break[m, i],
                                                                        m_t_after[m, i], t_prev[i], length, x, t)
        t_prev[i] = t
        n_valid[i] = length + 1


@numba.njit(cache=True)
def _departures(n_valid, head_ndvi, head_t, head_flags, m_bits, m_t_break, m_t_after, t_prev,
                departure):  # pragma: no cover - numba
    """Per pixel (ok, lo, hi, panels, bare_base): ``_pixel_departures``' row from the machines."""
    n = n_valid.shape[0]
    ok = np.zeros(n, np.bool_)
    out = np.zeros((4, n))
    for i in range(n):
        length = n_valid[i]
        if length < 2:
            continue
        b0, tb0, ta0 = m_bits[0, i], m_t_break[0, i], m_t_after[0, i]
        b1, tb1, ta1 = m_bits[1, i], m_t_break[1, i], m_t_after[1, i]
        if length < HEAD:  # the level is still the median of the views so far: replay them
            base = 0.5 * (head_ndvi[0, i] + head_ndvi[1, i])
            b0 = b1 = 0
            tb0 = ta0 = tb1 = ta1 = 0.0
            for k in range(length):
                f = head_flags[k, i]
                drop = head_ndvi[k, i] < base - departure
                tp = head_t[k - 1, i] if k > 0 else 0.0
                b0, tb0, ta0 = _mstep(b0, tb0, ta0, tp, k, (f & 1 != 0) or (f & 2 != 0) or drop, head_t[k, i])
                b1, tb1, ta1 = _mstep(b1, tb1, ta1, tp, k, (f & 1 != 0) or drop, head_t[k, i])
        t_first = head_t[0, i]
        status, lo, hi = _mquery(b0, tb0, ta0, length, t_first)
        bare_base = status == 1
        if bare_base:  # bare or dry all along: only the panels or an NDVI drop mark the works
            status, lo, hi = _mquery(b1, tb1, ta1, length, t_first)
        if status == 0:
            continue
        s2, _, hi2 = _mquery(m_bits[2, i], m_t_break[2, i], m_t_after[2, i], length, t_first)
        ok[i] = True
        out[0, i], out[1, i] = lo, hi
        out[2, i] = t_prev[i] if s2 == 0 else hi2
        out[3, i] = 1.0 if bare_base else 0.0
    return ok, out


@numba.njit(cache=True)
def _popcount(x):  # pragma: no cover - numba
    out = np.zeros(x.shape[0], np.int64)
    for i in range(x.shape[0]):
        v = x[i]
        c = 0
        while v:
            v &= v - np.uint32(1)
            c += 1
        out[i] = c
    return out


@dataclass
class PixelSolarState:
    """The stepped pixel solar detector of one watch area: per-pixel fields (see ``FIELDS``) on a
    ``shape`` = (y, x) grid, flattened row-major, and the area-level counters ``META``."""

    shape: tuple[int, int]
    params: PixelSolarParams = field(default_factory=PixelSolarParams)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, float] = field(default_factory=lambda: dict.fromkeys(META, 0.0))

    def __post_init__(self) -> None:
        if self.params.end_views > MAX_END_VIEWS:
            raise ValueError(f"PixelSolarParams.end_views: the stepped detector keeps at most {MAX_END_VIEWS}")
        n = self.shape[0] * self.shape[1]
        for name, (dtype, rows) in FIELDS.items():
            k = self.params.end_views if rows == "end" else rows
            want = (k, n) if k else (n,)
            if name not in self.arrays:
                fill = np.nan if name in ("anom_first", "anom_last", "base_ndvi") else 0
                self.arrays[name] = np.full(want, fill, dtype=dtype)
            elif self.arrays[name].shape != want or self.arrays[name].dtype != np.dtype(dtype):
                raise SeriesError(f"pixel solar state field {name}: {self.arrays[name].dtype}{self.arrays[name].shape}"
                                  f" is not {dtype}{want}")

    @property
    def n_pixels(self) -> int:
        return self.shape[0] * self.shape[1]

    @property
    def nbytes_per_pixel(self) -> float:
        return sum(a.nbytes for a in self.arrays.values()) / max(1, self.n_pixels)

    # ---- stepping ---------------------------------------------------------------------------------------
    def step_s2(self, t_days: float, reflectance: np.ndarray, bands: tuple[str, ...],
                clear: np.ndarray | None = None) -> None:
        """Fold one S2 view: ``reflectance`` (band, y, x) float, ``clear`` (y, x) bool."""
        refl = np.asarray(reflectance, dtype=float)
        if refl.shape != (len(bands), *self.shape):
            raise SeriesError(f"S2 view must be (band, y, x) = ({len(bands)}, {self.shape}), got {refl.shape}")
        if t_days < self.meta["t_end"] and self.meta["n_s2"]:
            raise SeriesError(f"S2 view at day {t_days} is older than the last one folded ({self.meta['t_end']})")
        cube = refl[None]  # the reference's signatures, on a one-view cube
        ndvi, nir, swir = _indices(cube, bands)
        valid = np.isfinite(ndvi) & np.isfinite(swir)
        if clear is not None:
            valid &= np.asarray(clear, bool).reshape(valid.shape)
        pv = _pv_like(cube, bands, self.params) & valid
        bare = _bare_like(ndvi, nir, swir, self.params) & valid
        a = self.arrays
        _step_s2(valid.ravel(), pv.ravel(), bare.ravel(), ndvi.ravel().astype(float), float(t_days),
                 self.params.end_views, self.params.ndvi_departure, a["n_valid"], a["pv_first"], a["bare_first"],
                 a["registers"], a["head_ndvi"], a["head_t"], a["head_flags"], a["base_ndvi"], a["m_bits"],
                 a["m_t_break"], a["m_t_after"], a["t_prev"])
        self.meta["n_s2"] += 1
        self.meta["t_end"] = float(t_days)

    def step_s1(self, vv_db: np.ndarray) -> None:
        """Fold one S1 acquisition: ``vv_db`` (y, x) VV in dB (NaN: no data)."""
        vv = np.asarray(vv_db, dtype=float)
        if vv.shape != self.shape:
            raise SeriesError(f"S1 VV must be (y, x) = {self.shape}, got {vv.shape}")
        anom = vv.ravel() - area_median_vv(vv[None])[0]
        k, n = int(self.meta["n_s1"]), self.params.end_views
        if k < n:
            self.arrays["anom_first"][k] = anom
        self.arrays["anom_last"][k % n] = anom
        self.meta["n_s1"] += 1

    # ---- evidence ---------------------------------------------------------------------------------------
    def evidence(self) -> PixelEvidence:
        """The per-pixel evidence of everything folded so far (what the reference computes from the cube)."""
        p, a, n = self.params, self.arrays, self.params.end_views
        nvalid = a["n_valid"]
        enough = nvalid >= 2 * n
        share = {name: _popcount(a["registers"][j]) / n for j, name in enumerate(("pv", "pvb", "bare"))}
        changed = enough & (share["pv"] >= p.end_share) & (a["pv_first"] / n <= p.base_share)
        works = None
        if self.meta["n_s1"] > 0:
            if self.meta["n_s1"] >= 2 * n:
                with np.errstate(invalid="ignore"):
                    vv_base = _nanmedian0(a["anom_first"])
                    not_veg = ~enough | (share["pvb"] >= p.end_share)
                    changed |= not_veg & np.all(a["anom_last"] >= vv_base[None] + p.vv_rise_db, axis=0)
            if p.works_without_panels:
                works = (enough & (share["bare"] >= p.end_share) & (a["bare_first"] / n <= p.base_share))
                works = works.reshape(self.shape)
        ok, dep = _departures(nvalid, a["head_ndvi"], a["head_t"], a["head_flags"], a["m_bits"], a["m_t_break"],
                              a["m_t_after"], a["t_prev"], p.ndvi_departure)
        ok = ok.reshape(self.shape)
        dep = dep.reshape(4, *self.shape)

        def departures(mask: np.ndarray) -> np.ndarray:
            iy, ix = np.nonzero(mask & ok)
            return np.column_stack([iy, ix, *(dep[j, iy, ix] for j in range(4))]).astype(float).reshape(-1, 6)

        return PixelEvidence(changed.reshape(self.shape), works, departures, float(self.meta["t_end"]))

    def installations(self, transform: Any, *, s1_history: S1History | None = None, crs: str | None = None,
                      area_id: str = "watch") -> list[Event]:
        """The installations of everything folded so far, as ``detect_solar_pixels`` finds them in the
        same history. ``s1_history``: the area's S1 history (vv (time1, y, x) dB, times in days; the
        area median is computed here), read only when a candidate needs S1 dating."""
        if self.meta["n_s2"] == 0:
            return []
        s1 = None
        if self.meta["n_s1"] > 0:
            if s1_history is None:
                raise SeriesError("the state has folded S1 acquisitions: installations need the s1_history reader")

            def s1() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
                vv, times = s1_history()
                vv = np.asarray(vv, dtype=float)
                return vv, np.asarray(times, dtype=float), area_median_vv(vv)

        return installations(self.evidence(), transform, s1=s1, crs=crs, area_id=area_id, params=self.params)

    # ---- storage ----------------------------------------------------------------------------------------
    def dump(self) -> dict[str, np.ndarray]:
        """The fields and the area-level counters, as arrays (the monitor's state store writes them)."""
        return {**self.arrays, "meta": np.array([self.meta[k] for k in META], dtype=float),
                "shape": np.array(self.shape, dtype=np.int64)}

    @classmethod
    def load(cls, arrays: dict[str, np.ndarray], params: PixelSolarParams | None = None) -> PixelSolarState:
        missing = sorted({*FIELDS, "meta", "shape"} - set(arrays))
        if missing:
            raise SeriesError(f"pixel solar state without {', '.join(missing)}")
        shape = tuple(int(v) for v in np.asarray(arrays["shape"]))
        meta = dict(zip(META, (float(v) for v in np.asarray(arrays["meta"])), strict=True))
        return cls((shape[0], shape[1]), params or PixelSolarParams(),
                   {k: np.array(arrays[k], copy=True) for k in FIELDS}, meta)

