"""Solar-farm construction: parcel level (S1 VV) and pixel level (a small cube, with polygons).

Parcel level. Ground-mounted PV panels are strong, permanent scatterers: VV backscatter rises by
several dB as the rows go up and never comes back (no crop does that). The rule: the VV of the last
``confirm_days`` all lie ``rise_db`` or more above the baseline (median VV of the views between
``baseline_days`` and ``baseline_gap_days`` before), with at least ``min_confirm`` views, and their median reaches ``min_level_db`` (PV arrays are
among the brightest VV targets; wet or thawing soil raises VV by several dB but not to that
level). The start
of works is dated at the onset of the rise (the first view from which VV stays above baseline +
``onset_db``) minus ``lead_days`` (ground works precede the panels); the window spans from the last
view at baseline level to the onset. One event per parcel.

Pixel level (``detect_solar_pixels``): on a small ``(time, band, y, x)`` cube of S2 reflectance
(optionally with S1 VV in dB as a band), a pixel is "changed" when it turns persistently into the PV
signature (dark and spectrally flat: low NIR and low SWIR, low NDVI) or, with VV, when VV rises
persistently; connected changed pixels (``scipy.ndimage.label``) of at least ``min_pixels`` form an
installation, its polygon comes from ``rasterio.features.shapes`` on the cube's transform, and its
start of works is the earliest time most of its pixels departed from their baseline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from alerts.detectors.base import BaseDetector, DetectorState
from alerts.errors import SeriesError
from alerts.series import Observation, from_days
from alerts.types import Event

CUBE_DIMS = ("time", "band", "y", "x")


@dataclass(frozen=True, slots=True)
class SolarParams:
    rise_db: float = 4.0
    min_level_db: float = -6.5
    onset_db: float = 1.5
    confirm_days: float = 15.0
    min_confirm: int = 3
    baseline_days: float = 150.0
    baseline_gap_days: float = 45.0
    min_baseline: int = 4
    lead_days: float = 25.0
    works_search_days: float = 75.0
    works_vh_drop_db: float = 2.0
    works_ndvi_drop: float = 0.2
    buffer_days: float = 200.0

    def __post_init__(self) -> None:
        if self.rise_db <= self.onset_db or self.onset_db <= 0:
            raise ValueError("SolarParams: need rise_db > onset_db > 0")
        if self.baseline_days <= self.baseline_gap_days or self.buffer_days < self.baseline_days:
            raise ValueError("SolarParams: need buffer_days >= baseline_days > baseline_gap_days")


@dataclass(frozen=True, slots=True)
class SolarState(DetectorState):
    s1: tuple[tuple[float, float, float], ...] = ()  # (day, VV dB, VH dB)
    s2: tuple[tuple[float, float], ...] = ()  # (day, NDVI) of clear views
    found: bool = False


class SolarDetector(BaseDetector[SolarState]):
    """Start of solar-farm works on any parcel (every land use)."""

    event_type = "solar_construction"
    land_uses = None

    def __init__(self, params: SolarParams | None = None) -> None:
        self.params = params or SolarParams()

    def _init_state(self, parcel_id: str, land_use: str) -> SolarState:
        return SolarState(parcel_id=parcel_id, land_use=land_use)

    def _step(self, state: SolarState, obs: Observation) -> tuple[SolarState, list[Event]]:
        p = self.params
        if state.found:
            return state, []
        if obs.sensor == "S2":
            s2 = tuple(x for x in state.s2 if x[0] >= obs.time - p.buffer_days) + ((obs.time, obs.ndvi),)
            return replace(state, s2=s2), []
        if not (math.isfinite(obs.vv) and obs.vv > 0):
            return state, []
        now = obs.time
        vh = 10.0 * math.log10(obs.vh) if obs.vh > 0 else math.nan
        s1 = tuple(x for x in state.s1 if x[0] >= now - p.buffer_days) + (
            (now, 10.0 * math.log10(obs.vv), vh),
        )
        state = replace(state, s1=s1)
        arr = np.asarray(s1)
        t, v = arr[:, 0], arr[:, 1]
        base_sel = (t >= now - p.baseline_days) & (t < now - p.baseline_gap_days)
        if base_sel.sum() < p.min_baseline:
            return state, []
        base = float(np.median(v[base_sel]))
        recent = t > now - p.confirm_days
        if recent.sum() < p.min_confirm or float(v[recent].min()) < base + p.rise_db:
            return state, []
        if float(np.median(v[recent])) < p.min_level_db:  # panels are strong scatterers, soils are not
            return state, []
        # onset: first view from which VV stays above base + onset_db
        above = v >= base + p.onset_db
        k = len(v) - 1
        while k > 0 and above[k - 1]:
            k -= 1
        onset = float(t[k])
        last_base = float(t[k - 1]) if k > 0 else onset
        start = onset - p.lead_days
        # ground works remove the vegetation before the panels rise: a VH step down shortly before
        vh_step = _vh_step(t, arr[:, 2], onset - p.works_search_days, onset, p.works_vh_drop_db)
        nd_step = None
        if p.works_ndvi_drop > 0 and len(state.s2) >= 2:
            s2 = np.asarray(state.s2)
            nd_step = _step_down(s2[:, 0], s2[:, 1], onset - p.works_search_days, onset, p.works_ndvi_drop, 1)
        steps = [x for x in (vh_step, nd_step) if x is not None]
        if steps:
            start = max(steps)
        lo = min(start, last_base)
        event = Event(
            parcel_id=state.parcel_id,
            event="solar_construction",
            date=start,
            window=(lo, onset),
            confidence=float(min(1.0, 0.5 + 0.1 * (float(np.median(v[recent])) - base))),
            sensor="S1",
            evidence={
                "sensor": "S1",
                "vv_baseline_db": round(base, 2),
                "vv_recent_db": round(float(np.median(v[recent])), 2),
                "vv_onset": from_days(onset).date().isoformat(),
                "series_excerpt": [
                    (from_days(a).date().isoformat(), round(float(b), 2), round(float(c), 2))
                    for a, b, c in arr[max(0, k - 6) :]
                ][:14],
            },
        )
        return replace(state, found=True), [event]


def _vh_step(t: np.ndarray, vh: np.ndarray, lo: float, hi: float, min_drop: float) -> float | None:
    """Midpoint of the latest VH step down (mean of 2 views before vs 2 after ≥ ``min_drop`` dB)
    with its split in (lo, hi]: the works are the last vegetation removal before the panels."""
    return _step_down(t, vh, lo, hi, min_drop, 2)


def _step_down(t: np.ndarray, v: np.ndarray, lo: float, hi: float, min_drop: float, n: int) -> float | None:
    """Midpoint of the latest split in (lo, hi] where the mean of ``n`` views after is ``min_drop``
    below the mean of the ``n`` views before."""
    best = None
    for k in range(n, len(t) - n + 1):
        if not lo < t[k] <= hi:
            continue
        drop = float(np.nanmean(v[k - n : k]) - np.nanmean(v[k : k + n]))
        if drop >= min_drop:
            best = 0.5 * (t[k - 1] + t[k])
    return best


# -- pixel level ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PixelSolarParams:
    pv_max_nir: float = 0.15
    pv_max_swir: float = 0.13
    pv_max_ndvi: float = 0.45
    vv_rise_db: float = 4.0
    persist: int = 3
    min_pixels: int = 4
    departure: float = 0.5
    ndvi_departure: float = 0.2
    close_px: int = 2


def _pv_like(cube: np.ndarray, bands: tuple[str, ...], p: PixelSolarParams) -> np.ndarray:
    """(time, y, x) bool: the PV signature per view (NaN → False)."""
    b = {name: cube[:, i] for i, name in enumerate(bands)}
    for need in ("B04", "B08", "B11"):
        if need not in b:
            raise SeriesError(f"pixel solar detection needs band {need}; cube has {bands}")
    with np.errstate(invalid="ignore", divide="ignore"):
        ndvi = (b["B08"] - b["B04"]) / (b["B08"] + b["B04"])
        return (
            (b["B08"] < p.pv_max_nir) & (b["B11"] < p.pv_max_swir) & (ndvi < p.pv_max_ndvi) & (ndvi > -0.05)
        )


def detect_solar_pixels(
    cube: np.ndarray,
    times: np.ndarray,
    bands: tuple[str, ...],
    transform: Any,
    *,
    clear: np.ndarray | None = None,
    crs: str | None = None,
    area_id: str = "watch",
    params: PixelSolarParams | None = None,
) -> list[Event]:
    """Solar installations in a small watch-area cube.

    ``cube``: (time, band, y, x) float reflectance (``bands`` names the band axis; a ``VV`` band in
    dB is used when present); ``times``: (time,) float days since 1970 (or datetime64); ``transform``:
    the affine transform of the grid (rasterio ``Affine``); ``clear``: optional (time, y, x) bool,
    cloudy views ignored. Returns one event per installation, parcel_id ``f"{area_id}:{n}"``, with
    the polygon (GeoJSON, in the cube's CRS) and pixel count in the evidence.
    """
    from rasterio.features import shapes
    from scipy import ndimage

    p = params or PixelSolarParams()
    cube = np.asarray(cube, dtype=float)
    if cube.ndim != 4 or cube.shape[1] != len(bands):
        raise SeriesError(f"cube must be {CUBE_DIMS} with {len(bands)} bands, got shape {cube.shape}")
    times = np.asarray(times)
    if np.issubdtype(times.dtype, np.datetime64):
        times = times.astype("datetime64[s]").astype(np.int64) / 86400.0
    times = times.astype(float)
    if len(times) != cube.shape[0]:
        raise SeriesError(f"{len(times)} times for {cube.shape[0]} views")
    if np.any(np.diff(times) < 0):
        raise SeriesError("cube times must be sorted")
    nt = cube.shape[0]
    valid = np.all(
        np.isfinite(cube[:, [bands.index(x) for x in ("B04", "B08", "B11") if x in bands]]), axis=1
    )
    if clear is not None:
        valid &= np.asarray(clear, bool)
    pv = _pv_like(cube, bands, p) & valid
    with np.errstate(invalid="ignore", divide="ignore"):
        red, nir = cube[:, bands.index("B04")], cube[:, bands.index("B08")]
        ndvi = (nir - red) / (nir + red)
    # changed: the last `persist` valid views of the pixel are all PV-like, and its first valid view was not
    changed = np.zeros(cube.shape[2:], bool)
    onset = np.full(cube.shape[2:], np.nan)
    for iy in range(cube.shape[2]):
        for ix in range(cube.shape[3]):
            vidx = np.flatnonzero(valid[:, iy, ix])
            if len(vidx) < p.persist + 1:
                continue
            seq = pv[vidx, iy, ix]
            if seq[0] or not seq[-p.persist :].all():
                continue
            changed[iy, ix] = True
            # start of works: the final run of views departed from the baseline (ground works change
            # NDVI before the panels appear), or PV-like
            nd = ndvi[vidx, iy, ix]
            base = float(np.median(nd[: min(3, len(nd))]))
            departed = seq | (np.abs(nd - base) > p.ndvi_departure)
            last_non = np.flatnonzero(~departed)
            first_dep = last_non[-1] + 1 if len(last_non) else 0
            onset[iy, ix] = times[vidx[first_dep]]
    if "VV" in bands:
        vv = cube[:, bands.index("VV")]
        base = np.nanmedian(vv[: max(1, nt // 4)], axis=0)
        rise = np.all(vv[-p.persist :] >= base + p.vv_rise_db, axis=0)
        changed |= rise
    # panel rows alternate with inter-row strips: close small gaps so that one array is one installation
    if p.close_px > 0:
        changed = ndimage.binary_closing(changed, structure=np.ones((3, 3), bool), iterations=p.close_px)
        changed = ndimage.binary_fill_holes(changed)
    labels, n = ndimage.label(changed, structure=np.ones((3, 3), int))
    events: list[Event] = []
    for lab in range(1, n + 1):
        mask = labels == lab
        npx = int(mask.sum())
        if npx < p.min_pixels:
            continue
        on = onset[mask]
        on = on[np.isfinite(on)]
        if len(on) == 0:
            on = np.array([times[-1]])
        start = float(np.quantile(on, 1 - p.departure))
        first = float(on.min())
        last = float(on.max())
        geoms = [g for g, val in shapes(mask.astype(np.uint8), mask=mask, transform=transform) if val == 1]
        polygon = (
            geoms[0]
            if len(geoms) == 1
            else {"type": "MultiPolygon", "coordinates": [g["coordinates"] for g in geoms]}
        )
        events.append(
            Event(
                parcel_id=f"{area_id}:{lab}",
                event="solar_construction",
                date=start,
                window=(min(first, start), max(last, start)),
                confidence=float(min(1.0, 0.6 + 0.4 * min(1.0, npx / (4 * p.min_pixels)))),
                sensor="S2+S1" if "VV" in bands else "S2",
                evidence={
                    "polygon": polygon,
                    "crs": crs,
                    "pixels": npx,
                    "sensor": "S2+S1" if "VV" in bands else "S2",
                },
            )
        )
    return events
