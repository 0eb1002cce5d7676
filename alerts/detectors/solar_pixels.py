"""Solar-farm construction at pixel level: a small watch-area cube, installations as polygons.

Pixel level (``detect_solar_pixels``): on a small ``(time, band, y, x)`` cube of S2 reflectance with
its clear mask, optionally with S1 VV (dB) on the same grid, a pixel is "changed" when its last clear
views carry the PV signature (dark and spectrally flat: low NIR, SWIR below NIR) and its first do
not; connected changed pixels (``scipy.ndimage.label``) of at least ``min_pixels`` form an
installation, its polygon comes from ``rasterio.features.shapes`` on the cube's transform. With S1,
works begun but without panels yet (bare soil at the end, a persistent VV rise) are installations
too. The start of works is bracketed by S2 (the onset of the pixels' final departure from their
pre-works state) and, with S1, dated at the installation's VV step (works roughen the soil and strip
the canopy), which S1 sees through clouds. See ``PixelSolarParams``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from alerts.errors import SeriesError
from alerts.series import from_days
from alerts.types import Event
from contracts.indices import ndvi
from contracts.time import SECONDS_PER_DAY

CUBE_DIMS = ("time", "band", "y", "x")


@dataclass(frozen=True, slots=True)
class PixelSolarParams:
    """Thresholds of the pixel-level detector (reflectance 0-1, NDVI, dB, days).

    PV signature of a clear view: ``NIR < pv_max_nir``, ``SWIR1 < pv_max_swir``, SWIR1 below NIR (soils
    and sealed surfaces have SWIR above NIR) and ``0 < NDVI < pv_max_ndvi`` (water has NDVI < 0; the
    grass between the rows keeps NDVI above bare soil but NIR stays low). Bare soil / works: ``NDVI <
    bare_max_ndvi`` with SWIR1 above NIR. A pixel is "changed" when at least ``end_share`` of its last
    ``end_views`` clear views carry the PV signature and at most ``base_share`` of its first
    ``end_views`` do (robust temporal shares, so one wrongly masked view changes nothing). With S1 VV
    (dB), a pixel whose VV anomaly (VV minus the watch area's median VV of the same acquisition, which
    carries rain and soil moisture) lies ``vv_rise_db`` above its first ``end_views`` values at each
    of the last ``end_views`` acquisitions is changed too, unless S2 last saw vegetation there (panels
    up under clouds). Connected changed pixels (8-neighbourhood, after a ``close_px`` closing) of at
    least ``min_pixels`` form an installation.

    Works without panels yet (only with S1, ``works_without_panels``): bare soil in ``end_share`` of
    the last ``end_views`` clear views where at most ``base_share`` of the first were bare, grouped
    likewise (``min_works_pixels``), kept only when the VV anomaly shows the works' rise (below) and
    it holds to the end for at least ``works_min_days`` (a harvest lowers VV, tillage roughness fades).

    Start of works (the onset of the bare-soil phase, not the panels): per pixel, the start of the
    final run of clear views departed from the pre-works state (PV signature, bare soil, or NDVI
    ``ndvi_departure`` below the median of the first views; only PV or the NDVI drop where the pixel
    was bare or dry from its first view), one isolated undeparted view tolerated; the installation's
    S2 bracket is (median last view before, median first departed view]. With S1 VV the date is the
    first acquisition between the bracket start and the panels' appearance (± ``s1_margin_days``;
    from ``s1_lookback_days`` before on bare/dry land) where the installation's median VV anomaly,
    mean of ``s1_half`` acquisitions after vs before (an even count balances ascending and descending
    passes), steps up by ``s1_min_step_db`` and lies that much above its pre-works level (works
    roughen the soil and strip the canopy); on land already ``s1_bright_db`` above the area
    (buildings) the raw VV must step down instead (demolition). Without S1 the date is the middle of
    the S2 bracket.

    Touching installations: with S1, a component whose pixels fall into two groups of S2 departure
    dates is split when both groups' S1 starts are found, at least ``split_days`` apart, and agree
    with their S2 brackets.
    """

    pv_max_nir: float = 0.19
    pv_max_swir: float = 0.15
    pv_max_ndvi: float = 0.5
    bare_max_ndvi: float = 0.3
    end_views: int = 4
    end_share: float = 0.75
    base_share: float = 0.25
    vv_rise_db: float = 4.0
    min_pixels: int = 25
    ndvi_departure: float = 0.2
    close_px: int = 2
    s1_margin_days: float = 12.0
    s1_half: int = 4
    s1_min_step_db: float = 0.8
    s1_bright_db: float = 3.0
    s1_lookback_days: float = 90.0
    works_without_panels: bool = True
    min_works_pixels: int = 25
    works_min_days: float = 21.0
    split_days: float = 15.0

    def __post_init__(self) -> None:
        if self.end_views < 2 or self.min_pixels < 1 or self.close_px < 0 or self.s1_half < 1:
            raise ValueError(
                "PixelSolarParams: need end_views >= 2, min_pixels >= 1, close_px >= 0, s1_half >= 1"
            )
        if not 0 <= self.base_share < self.end_share <= 1:
            raise ValueError("PixelSolarParams: need 0 <= base_share < end_share <= 1")


def _indices(cube: np.ndarray, bands: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    b = {name: i for i, name in enumerate(bands)}
    for need in ("B04", "B08", "B11"):
        if need not in b:
            raise SeriesError(f"pixel solar detection needs band {need}; cube has {bands}")
    red, nir, swir = cube[:, b["B04"]], cube[:, b["B08"]], cube[:, b["B11"]]
    return ndvi(red, nir), nir, swir


def _pv_like(cube: np.ndarray, bands: tuple[str, ...], p: PixelSolarParams) -> np.ndarray:
    """(time, y, x) bool: the PV signature per view (dark, spectrally flat; NaN → False)."""
    ndvi, nir, swir = _indices(cube, bands)
    with np.errstate(invalid="ignore"):
        return (
            (nir < p.pv_max_nir) & (swir < p.pv_max_swir) & (swir < nir) & (ndvi > 0) & (ndvi < p.pv_max_ndvi)
        )


def _bare_like(ndvi: np.ndarray, nir: np.ndarray, swir: np.ndarray, p: PixelSolarParams) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return (ndvi < p.bare_max_ndvi) & (swir > nir)


def _final_run_start(dep: np.ndarray) -> int:
    """Index where the final run of True starts in a 1-D bool array; an isolated False inside the
    run or at its end is tolerated (a wrongly unmasked cloud or shadow); len(dep) when there is no
    such run."""
    k = len(dep)
    while k > 0:
        if dep[k - 1]:
            k -= 1
        elif k >= 2 and dep[k - 2] and (k == len(dep) or dep[k]):
            k -= 1  # isolated gap
        else:
            break
    return k if k < len(dep) and dep[k:].any() else len(dep)


def _s1_onset(
    vv: np.ndarray,
    area_vv: np.ndarray,
    t1: np.ndarray,
    lo: float,
    hi: float,
    p: PixelSolarParams,
    *,
    to_end: bool = False,
) -> float | None:
    """Start of works from the VV anomaly of an installation: the first step in [lo, hi] where the
    mean of the next ``h`` acquisitions lies ``s1_min_step_db`` above the mean of the ``h`` before AND
    above the pre-works level (median of the last ``2h`` acquisitions before ``lo``), dated at the
    acquisition where that step is largest (its centre).
    Works roughen the soil and strip the canopy, so VV rises; harvests and mowing lower it. On land
    already ``s1_bright_db`` above the area (buildings, sheds), works demolish and VV steps down.
    ``to_end``: works without panels yet — the rise must hold until the last acquisition (every
    2-acquisition mean stays above the pre-works level by half the step; tillage roughness fades)
    and has lasted ``works_min_days`` by the last acquisition; bright land is not considered."""
    h = p.s1_half + p.s1_half % 2
    ok = np.isfinite(vv) & np.isfinite(area_vv)
    t = t1[ok]
    a = vv[ok] - area_vv[ok]
    pre = t < lo
    if pre.sum() < h:
        pre = np.arange(len(a)) < 2 * h
    sign = 1.0
    if float(np.median(a[pre][-2 * h :])) >= p.s1_bright_db:
        # demolition of a bright scatterer (moisture-insensitive: raw VV, not the anomaly) lowers VV
        sign, a = -1.0, vv[ok]
    base = float(np.median(a[pre][-2 * h :]))
    if to_end and sign < 0:
        return None
    pair = 0.5 * (a[1:] + a[:-1]) if len(a) > 1 else a
    for k in range(h, len(a) - h + 1):
        if not lo <= t[k] <= hi:
            continue
        after = float(a[k : k + h].mean())
        step = sign * (after - float(a[k - h : k].mean()))
        if step >= p.s1_min_step_db and sign * (after - base) >= p.s1_min_step_db:
            # the step is centred where it is largest, not where it first shows
            while k + 1 <= len(a) - h and t[k + 1] <= hi:
                nxt = sign * (float(a[k + 1 : k + 1 + h].mean()) - float(a[k + 1 - h : k + 1].mean()))
                if nxt <= step:
                    break
                k, step = k + 1, nxt
            if to_end and (
                t[-1] - t[k] < p.works_min_days
                or float(a[-h:].mean()) - base < p.s1_min_step_db
                or float(pair[k:].min()) - base < 0.5 * p.s1_min_step_db
            ):
                continue
            return float(t[k])
    return None


def _close(mask: np.ndarray, close_px: int) -> np.ndarray:
    from scipy import ndimage

    if close_px > 0:
        mask = ndimage.binary_closing(mask, structure=np.ones((3, 3), bool), iterations=close_px)
        mask = ndimage.binary_fill_holes(mask)
    return mask


def _components(mask: np.ndarray) -> list[np.ndarray]:
    """Connected components (8-neighbourhood) as boolean masks, in label order."""
    from scipy import ndimage

    labels, n = ndimage.label(mask, structure=np.ones((3, 3), int))
    return [labels == k for k in range(1, n + 1)]


def _pixel_departures(
    mask: np.ndarray,
    valid: np.ndarray,
    ndvi: np.ndarray,
    pv: np.ndarray,
    bare: np.ndarray,
    times: np.ndarray,
    p: PixelSolarParams,
) -> np.ndarray:
    """(N, 6) rows ``y, x, lo, hi, panels, bare_base`` for the pixels of ``mask`` that departed:
    ``hi`` the first clear view of the final run departed from the pre-works state, ``lo`` the clear
    view before it, ``panels`` the first view of the final PV run; ``bare_base`` (0/1) when the pixel
    was bare or dry from its first view on (then only the panels or an NDVI drop mark the works)."""
    rows = []
    for iy, ix in zip(*np.nonzero(mask), strict=True):
        vidx = np.flatnonzero(valid[:, iy, ix])
        if len(vidx) < 2:
            continue
        nd = ndvi[vidx, iy, ix]
        base = float(np.median(nd[: min(3, len(nd))]))
        ndvi_drop = nd < base - p.ndvi_departure
        dep = pv[vidx, iy, ix] | bare[vidx, iy, ix] | ndvi_drop
        k = _final_run_start(dep)
        bare_base = k == 0
        if bare_base:  # bare or dry all along: only the panels or an NDVI drop mark the works
            k = _final_run_start(pv[vidx, iy, ix] | ndvi_drop)
        if k >= len(vidx):
            continue
        kp = _final_run_start(pv[vidx, iy, ix])
        rows.append(
            (
                iy,
                ix,
                times[vidx[k - 1]] if k > 0 else times[vidx[k]],
                times[vidx[k]],
                times[vidx[kp]] if kp < len(vidx) else times[vidx[-1]],
                float(bare_base),
            )
        )
    return np.asarray(rows, dtype=float).reshape(-1, 6)


def _bracket(dep: np.ndarray, t_end: float) -> tuple[float, float, float, bool]:
    """(lo, hi, panels, bare_base) of an installation: medians over its departed pixels."""
    if len(dep) == 0:
        return t_end, t_end, t_end, False
    lo, hi, pvon = (float(np.median(dep[:, j])) for j in (2, 3, 4))
    return min(lo, hi), hi, max(hi, pvon), bool(dep[:, 5].mean() > 0.5)


def _split(dep: np.ndarray, shape: tuple[int, int], min_px: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Two groups of an installation's pixels by their S2 departure time (the split between
    consecutive departure dates that separates the group medians most, each group at least
    ``min_px`` and 15 % of the pixels), as masks; None when no such split."""
    hi = dep[:, 3]
    levels = np.unique(hi)
    best, best_gap = None, 0.0
    for tau in levels[:-1]:
        early = hi <= tau
        ne = int(early.sum())
        if min(ne, len(hi) - ne) < max(min_px, 0.15 * len(hi)):
            continue
        gap = float(np.median(hi[~early]) - np.median(hi[early]))
        if gap > best_gap:
            best, best_gap = early, gap
    if best is None:
        return None
    masks = []
    for sel in (best, ~best):
        m = np.zeros(shape, bool)
        m[dep[sel, 0].astype(int), dep[sel, 1].astype(int)] = True
        masks.append(m)
    return masks[0], masks[1]


def _as_days(times: Any) -> np.ndarray:
    times = np.asarray(times)
    if np.issubdtype(times.dtype, np.datetime64):
        times = times.astype("datetime64[s]").astype(np.int64) / SECONDS_PER_DAY
    return times.astype(float)


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
    s1_vv: np.ndarray | None = None,
    s1_times: np.ndarray | None = None,
) -> list[Event]:
    """Solar installations in a small watch-area cube (the batch form: the plain reference of the stepped
    per-pixel state in ``alerts.detectors.solar_pixels_stream``).

    ``cube``: (time, band, y, x) float reflectance (``bands`` names the band axis; a ``VV`` band in
    dB is used as S1 when present); ``times``: (time,) float days since 1970 (or datetime64);
    ``transform``: the affine transform of the grid (rasterio ``Affine``); ``clear``: optional
    (time, y, x) bool, cloudy views ignored; ``s1_vv``: optional (time1, y, x) S1 VV in dB on the same
    grid with its own ``s1_times`` (NaN = no data). Returns one event per installation, parcel_id
    ``f"{area_id}:{n}"``, with the polygon (GeoJSON, in the cube's CRS), pixel count and S2 bracket
    of the start of works in the evidence. See ``PixelSolarParams`` for the rules.
    """
    p = params or PixelSolarParams()
    cube = np.asarray(cube, dtype=float)
    if cube.ndim != 4 or cube.shape[1] != len(bands):
        raise SeriesError(f"cube must be {CUBE_DIMS} with {len(bands)} bands, got shape {cube.shape}")
    times = _as_days(times)
    if len(times) != cube.shape[0]:
        raise SeriesError(f"{len(times)} times for {cube.shape[0]} views")
    if np.any(np.diff(times) < 0):
        raise SeriesError("cube times must be sorted")
    ndvi, nir, swir = _indices(cube, bands)
    valid = np.isfinite(ndvi) & np.isfinite(swir)
    if clear is not None:
        clear = np.asarray(clear, bool)
        if clear.shape != valid.shape:
            raise SeriesError(f"clear mask must be (time, y, x) {valid.shape}, got {clear.shape}")
        valid &= clear
    if s1_vv is None and "VV" in bands:
        s1_vv, s1_times = cube[:, bands.index("VV")], times
    if s1_vv is not None:
        s1_vv = np.asarray(s1_vv, dtype=float)
        if s1_times is None:
            raise SeriesError("s1_vv needs s1_times")
        s1_times = _as_days(s1_times)
        if s1_vv.ndim != 3 or s1_vv.shape[1:] != cube.shape[2:] or len(s1_times) != s1_vv.shape[0]:
            raise SeriesError(f"s1_vv must be (time1, y, x) on the cube's grid, got {s1_vv.shape}")
        if np.any(np.diff(s1_times) < 0):
            raise SeriesError("s1 times must be sorted")
    pv = _pv_like(cube, bands, p) & valid
    bare = _bare_like(ndvi, nir, swir, p) & valid
    n = p.end_views
    # order the clear views of every pixel first (stable), so that "first/last n clear views" is a slice
    order = np.argsort(~valid, axis=0, kind="stable")
    nvalid = valid.sum(axis=0)
    pv_sorted = np.take_along_axis(pv, order, axis=0)
    idx_last = np.clip(nvalid[None] - n + np.arange(n)[:, None, None], 0, None)
    end_share = np.take_along_axis(pv_sorted, idx_last, axis=0).mean(axis=0)
    base_share = pv_sorted[:n].mean(axis=0)
    changed = (nvalid >= 2 * n) & (end_share >= p.end_share) & (base_share <= p.base_share)
    works = None
    s1 = None
    if s1_vv is not None:
        with np.errstate(invalid="ignore"):
            area_vv = area_median_vv(s1_vv)
            if s1_vv.shape[0] >= 2 * n:
                anom = s1_vv - area_vv[:, None, None]
                vv_base = _nanmedian0(anom[:n])
                # panels up under clouds: a persistent VV rise where S2 last saw PV or bare soil
                # (or too little), never vegetation
                pvb_sorted = np.take_along_axis(pv | bare, order, axis=0)
                not_veg = (nvalid < 2 * n) | (
                    np.take_along_axis(pvb_sorted, idx_last, axis=0).mean(axis=0) >= p.end_share
                )
                changed |= not_veg & np.all(anom[-n:] >= vv_base[None] + p.vv_rise_db, axis=0)
        if p.works_without_panels:
            # works begun, panels not up yet: bare soil at the end of the series where the land was
            # not bare at its start; only with S1, which must show the works' persistent VV rise
            bare_sorted = np.take_along_axis(bare, order, axis=0)
            works = (
                (nvalid >= 2 * n)
                & (np.take_along_axis(bare_sorted, idx_last, axis=0).mean(axis=0) >= p.end_share)
                & (bare_sorted[:n].mean(axis=0) <= p.base_share)
            )
        history = (s1_vv, s1_times, area_vv)
        s1 = lambda: history  # noqa: E731 - the batch has the history at hand; the stream reads it lazily

    def departures(mask: np.ndarray) -> np.ndarray:
        return _pixel_departures(mask, valid, ndvi, pv, bare, times, p)

    return installations(PixelEvidence(changed, works, departures, float(times[-1])), transform, s1=s1, crs=crs,
                         area_id=area_id, params=p)


def area_median_vv(s1_vv: np.ndarray) -> np.ndarray:
    """(time1,) the watch area's median VV per acquisition (it carries rain and soil moisture)."""
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an acquisition with no data at all: NaN
        return np.nanmedian(s1_vv.reshape(len(s1_vv), -1), axis=1)


def _nanmedian0(a: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a pixel without S1 data: NaN, never changed
        return np.nanmedian(a, axis=0)


@dataclass(frozen=True)
class PixelEvidence:
    """What the per-pixel rule says of a watch area at one moment, the input of the installation stage.

    ``changed`` / ``works``: (y, x) bool before closing (``works`` None without S1 or works); ``departures``:
    a mask's departed pixels as ``_pixel_departures`` rows; ``t_end``: the last S2 view. The batch form
    computes it from the cube, the stepped state from its per-pixel fields."""

    changed: np.ndarray
    works: np.ndarray | None
    departures: Callable[[np.ndarray], np.ndarray]
    t_end: float


S1History = Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray]]  # () -> (vv (time1, y, x) dB, times, area vv)


def installations(evidence: PixelEvidence, transform: Any, *, s1: S1History | None = None, crs: str | None = None,
                  area_id: str = "watch", params: PixelSolarParams | None = None) -> list[Event]:
    """Installations from per-pixel evidence: closing, components, dating (S2 bracket, S1 VV step), the
    split of touching installations, polygons. ``s1``: None without any S1 acquisition; else called (once,
    only when a candidate needs it) for the S1 history of the area."""
    from rasterio.features import shapes

    p = params or PixelSolarParams()
    cache: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def history() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not cache:
            cache.append(s1())
        return cache[0]

    # panel rows alternate with inter-row strips: close small gaps so that one array is one installation
    changed = _close(evidence.changed, p.close_px)
    candidates = [(m, "panels", p.min_pixels) for m in _components(changed)]
    if s1 is not None and evidence.works is not None:
        works = _close(evidence.works, p.close_px) & ~changed
        candidates += [(m, "works", p.min_works_pixels) for m in _components(works)]
    events: list[Event] = []
    t_end = evidence.t_end

    def date_of(mask: np.ndarray, dep: np.ndarray, phase: str) -> tuple[float, float, float, str] | None:
        lo, hi, panels_on, bare_base = _bracket(dep, t_end)
        start, how = 0.5 * (lo + hi), "S2 bracket middle"
        if s1 is not None:
            s1_vv, s1_times, area_vv = history()
            with np.errstate(invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                comp = np.nanmedian(s1_vv[:, mask], axis=1)
            # the works start between the S2 departure and the panels (a harvest may come first)
            s1_lo, s1_hi = lo - p.s1_margin_days, panels_on + p.s1_margin_days
            if bare_base:  # bare or dry before the works: S2 sees only the panels, look further back
                s1_lo = min(s1_lo, hi - p.s1_lookback_days)
            if phase == "works":  # the bare phase may have begun with a harvest: search up to the end
                s1_hi = float(s1_times[-1])
            onset = _s1_onset(comp, area_vv, s1_times, s1_lo, s1_hi, p, to_end=phase == "works")
            if onset is not None:
                start, how = onset, "S1 VV step"
            elif phase == "works":
                return None  # bare soil without the works' VV rise: a harvest or tillage, not works
        return lo, hi, start, how

    dated = []
    for mask, phase, min_px in candidates:
        if int(mask.sum()) < min_px:
            continue
        dep = evidence.departures(mask)
        d = date_of(mask, dep, phase)
        if d is None:
            continue
        # adjacent installations touch: split when two groups of pixels departed at S2 dates apart
        # AND their S1 VV steps confirm two different starts of works
        parts = _split(dep, mask.shape, min_px) if s1 is not None and phase == "panels" else None
        if parts is not None:
            sub = [(part, date_of(part, evidence.departures(part), phase)) for part in parts]
            (_, early), (_, late) = sub
            if (
                early is not None
                and late is not None
                and early[3] == late[3] == "S1 VV step"
                and late[2] - early[2] >= p.split_days  # S1: the later group started later ...
                and late[0] >= early[1]  # ... and S2 agrees: it was undisturbed when the first departed
                and all(x[0] - p.s1_margin_days <= x[2] <= x[1] + p.s1_margin_days for x in (early, late))
            ):
                dated += [(part, phase, min_px, x) for part, x in sub]
                continue
        dated.append((mask, phase, min_px, d))
    sensor = "S2+S1" if s1 is not None else "S2"
    for mask, phase, min_px, (lo, hi, start, how) in dated:
        npx = int(mask.sum())
        geoms = [g for g, val in shapes(mask.astype(np.uint8), mask=mask, transform=transform) if val == 1]
        polygon = (
            geoms[0]
            if len(geoms) == 1
            else {"type": "MultiPolygon", "coordinates": [g["coordinates"] for g in geoms]}
        )
        events.append(
            Event(
                parcel_id=f"{area_id}:{len(events) + 1}",
                event="solar_construction",
                date=start,
                window=(min(lo, start), max(hi, start)),
                confidence=float(min(1.0, 0.6 + 0.4 * min(1.0, npx / (4 * min_px))))
                * (1.0 if phase == "panels" else 0.8),
                sensor=sensor,
                evidence={
                    "polygon": polygon,
                    "crs": crs,
                    "pixels": npx,
                    "sensor": sensor,
                    "phase": phase,
                    "dating": how,
                    "s2_bracket": [from_days(lo).date().isoformat(), from_days(hi).date().isoformat()],
                },
            )
        )
    return events
