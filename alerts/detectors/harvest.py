"""Harvest on arable parcels from S1 (VH step down), from S2 (senescence and bare soil), or both.

S1 principle: cutting the crop removes most of the biomass that VH backscatter responds to, in one
day; VH falls by several dB and stays low (stubble, bare soil) until a catch crop grows. The step is
found on the merged S1 stream (all orbits) as the split with the largest drop between the mean VH of
the ``before_days`` before and the ``after_days`` after, confirmed once ``min_after`` acquisitions
lie after it and all of them stay below the pre-step level. This works through clouds.

S2 principle (consecutive clear views, at most ``s2_max_gap_days`` apart: the event's window, its
interval, is the bracket of the last clear view before the harvest and the first showing it, and
its date the middle): a harvest takes the standing crop off the field. A crop harvested green (maize,
silage) drops NDVI by ``min_drop_ndvi`` or more from a green level (``green_ndvi``) *and* loses its
canopy's tillage-index signal (NDTI = (B11 − B12)/(B11 + B12) falls by ``green_min_drop_ndti`` to the
stubble/soil level ``bare_ndti``: a cut of grass, a drought dip or a senescence seen across a long gap
keep it higher). A crop harvested dry (cereals, rapeseed, after senescence:
NDVI already below ``green_ndvi``) changes little in NDVI, but its standing straw has a cellulose
signal in NDTI that stubble and soil lack: NDTI falls by ``min_drop_ndti`` to the stubble/soil level
(``bare_ndti``). Either is confirmed by the next clear view not bringing the crop back (a new crop
— greener than the crop before the drop by ``regrowth_ndvi``, ``regrowth_days`` or more later: a
catch crop, volunteers, the next sowing — confirms it too), or emitted at once when the drop is
``unconfirmed_factor`` times its threshold or more where the parcel has no S1 views (at a season's
end no later clear view may come; such events carry a lower confidence and ``confirmed_day`` equal
to the window's end; with S1 at hand, the S1 step confirms within days instead). A long cloudy spell
may hide the harvest and the stubble both, the first clear view after it showing the next crop
already (catch crop, autumn sowing): a senesced crop seen as standing straw (NDVI below
``green_ndvi`` and no longer rising, NDTI above ``bare_ndti``) cannot green up again unless it was
harvested, so a view at least ``regrowth_days`` later and ``resown_ndvi`` greener is a harvest
between the two (kind "resown"; its ``drop`` is that NDVI rise). The defaults
were chosen by cross-validation by parcel on two synthetic worlds (``sitsmon eval harvest``; the
S2-only point dates are bounded by the clear views: a harvest inside a 60-day cloudy spell cannot
be dated within ±12 days from S2 alone, and is scored by its interval; docs/harvest-and-gapfill.md). When S1 views lie inside
the S2 interval, the largest VH drop between them dates the harvest (sensor "S2+S1"). S2 and S1 run
side by side: the first sensor to confirm emits, the other's later step is the same harvest
(``min_separation_days``). One harvest per parcel and season.

Weather moves the backscatter of every parcel at once (drying soil lowers VH by dB): when the
observations carry ``vh_ref`` (the regional median VH of the same acquisition), the detector works on
VH − vh_ref, so that only parcel-specific steps remain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from alerts.detectors.base import BaseDetector, DetectorState
from alerts.detectors.steps import find_window_step
from alerts.series import ParcelAcquisition, day_of_year, from_days
from alerts.types import Event
from contracts.land_use import HARVEST_WATCH


@dataclass(frozen=True, slots=True)
class HarvestParams:
    before_days: float = 12.0
    after_days: float = 12.0
    min_before: int = 2
    min_after: int = 2
    min_drop_db: float = 2.5
    persist_margin_db: float = 1.0
    min_drop_ndvi: float = 0.15
    season_doy: tuple[int, int] = (140, 330)
    min_separation_days: float = 120.0
    buffer_days: float = 120.0  # a confirming view after a long cloudy spell still finds the split
    use_regional_reference: bool = True
    use_s2: bool = True
    use_s1: bool = True
    s2_max_gap_days: float = 90.0  # the widest bracket of clear views a harvest is dated inside (its interval)
    green_ndvi: float = 0.45
    green_min_drop_ndti: float = 0.04
    min_drop_ndti: float = 0.015
    bare_ndti: float = 0.13
    confirm_margin_ndti: float = 0.02
    regrowth_ndvi: float = 0.05  # a confirming view this much greener than the crop before the drop is a new crop
    regrowth_days: float = 15.0  # ... when it comes at least this long after the drop (sowing and emergence)
    unconfirmed_factor: float = 1.5  # a drop this many times its threshold needs no confirming view (inf: all do)
    resown_ndvi: float = 0.1  # standing straw, then a view this much greener: harvested and re-sown (inf: off)

    def __post_init__(self) -> None:
        if self.before_days <= 0 or self.after_days <= 0 or self.min_before < 1 or self.min_after < 1:
            raise ValueError("HarvestParams: windows must be > 0 and counts >= 1")
        if self.min_drop_db <= 0 or self.min_drop_ndvi <= 0:
            raise ValueError("HarvestParams: drops must be > 0")


@dataclass(frozen=True, slots=True)
class HarvestState(DetectorState):
    s1: tuple[tuple[float, float], ...] = ()  # (day, VH dB)
    s2: tuple[tuple[float, ...], ...] = ()  # (day, NDVI, NDTI) clear views
    last_harvest: float = float("-inf")


def ndti(obs: ParcelAcquisition) -> float:
    """Normalised difference tillage index (B11 − B12)/(B11 + B12); NaN where a band is missing."""
    b11, b12 = obs.band("B11"), obs.band("B12")
    if not (math.isfinite(b11) and math.isfinite(b12)) or b11 + b12 <= 0:
        return math.nan
    return (b11 - b12) / (b11 + b12)


def s2_split(v0, v1, p: HarvestParams) -> tuple[str, float, float] | None:
    """The harvest rule between two consecutive clear views ``(day, NDVI, NDTI)``: (kind, drop, scale)."""
    (t0, n0, d0), (t1, n1, d1) = v0, v1
    if t1 - t0 > p.s2_max_gap_days or not all(math.isfinite(x) for x in (n0, n1, d0, d1)):
        return None
    if n0 >= p.green_ndvi:  # harvested green: the canopy goes, NDVI and NDTI both fall
        ok = n0 - n1 >= p.min_drop_ndvi and d0 - d1 >= p.green_min_drop_ndti and n1 < p.green_ndvi
        ok = ok and d1 <= p.bare_ndti  # stubble or soil after it, not senesced straw still standing
        return ("green", float(n0 - n1), p.min_drop_ndvi) if ok else None
    # harvested dry: the standing straw goes, NDTI falls to the stubble/soil level
    ok = d0 - d1 >= p.min_drop_ndti and d1 <= p.bare_ndti
    return ("dry", float(d0 - d1), p.min_drop_ndti) if ok else None


def s2_resown(views: np.ndarray, p: HarvestParams) -> dict | None:
    """A harvest hidden by clouds between the two newest clear views: straw before, a new crop after.

    View n−2 shows the crop senesced (NDVI below ``green_ndvi``, and not rising: an earlier held view
    is at least as green, where a crop emerging in spring is greener with every view) and still
    standing (NDTI above ``bare_ndti``: straw, not the soil of a seedbed), and view n−1,
    ``regrowth_days`` to ``s2_max_gap_days`` later, is ``resown_ndvi`` greener. The new crop itself
    confirms it."""
    if len(views) < 3 or not math.isfinite(p.resown_ndvi):
        return None
    (t0, n0, d0), (t1, n1, d1) = views[-2], views[-1]
    if not all(math.isfinite(x) for x in (n0, n1, d0, d1)) or not p.regrowth_days <= t1 - t0 <= p.s2_max_gap_days:
        return None
    earlier = views[:-2, 1]
    declining = bool(np.any(earlier[np.isfinite(earlier)] >= n0))  # senescence, not emergence
    if not (declining and n0 < p.green_ndvi and d0 > p.bare_ndti and n1 - n0 >= p.resown_ndvi):
        return None
    return {"kind": "resown", "t_hi": float(t0), "t_lo": float(t1), "drop": float(n1 - n0), "scale": p.resown_ndvi,
            "confirmed": True, "ndvi": (float(n0), float(n1)), "ndti": (float(d0), float(d1))}


def s2_harvest(views: np.ndarray, p: HarvestParams, s1_seen: bool = False) -> dict | None:
    """A harvest on the newest clear views, confirmed or (a strong drop) at once.

    ``views``: (n, 3) day, NDVI, NDTI of clear views in time order. Confirmed: the split lies between
    views n−3 and n−2, and view n−1 does not bring the crop back (it may show a new crop: greener
    than the crop before the drop by ``regrowth_ndvi``, at least ``regrowth_days`` after the drop).
    Otherwise, a drop of at least ``unconfirmed_factor`` times its threshold between views n−2 and
    n−1 counts at once (the end of a season may have no later clear view) where no S1 view is at
    hand (``s1_seen``: the S1 step confirms within days there). Before that, straw then a new crop
    on views n−2, n−1 (``s2_resown``). Returns the split's evidence or None.
    """
    if len(views) >= 3:
        (t0, n0, d0), (t1, n1, d1), (t2, n2, d2) = views[-3], views[-2], views[-1]
        cut = s2_split(views[-3], views[-2], p) if math.isfinite(n2) and math.isfinite(d2) else None
        if cut is not None:
            came_back = d2 > d1 + p.confirm_margin_ndti or n2 > n1 + p.min_drop_ndvi / 2
            regrown = n2 >= n0 + p.regrowth_ndvi and t2 - t1 >= p.regrowth_days
            if not came_back or regrown:
                return {"kind": cut[0], "t_hi": float(t0), "t_lo": float(t1), "drop": cut[1], "scale": cut[2],
                        "confirmed": True, "ndvi": (float(n0), float(n1)), "ndti": (float(d0), float(d1))}
    resown = s2_resown(views, p)
    if resown is not None:
        return resown
    if len(views) < 2 or s1_seen:
        return None
    (t0, n0, d0), (t1, n1, d1) = views[-2], views[-1]
    cut = s2_split(views[-2], views[-1], p)
    if cut is None or cut[1] < p.unconfirmed_factor * cut[2]:
        return None
    return {"kind": cut[0], "t_hi": float(t0), "t_lo": float(t1), "drop": cut[1], "scale": cut[2],
            "confirmed": False, "ndvi": (float(n0), float(n1)), "ndti": (float(d0), float(d1))}


def s1_date(s1: tuple[tuple[float, float], ...], t_hi: float, t_lo: float) -> tuple[float, float]:
    """Inside (t_hi, t_lo]: the midpoint of the consecutive S1 pair with the largest VH drop, and the drop (dB)."""
    pts = [(t, v) for t, v in s1 if t_hi - 6.0 <= t <= t_lo + 6.0]
    best, drop = math.nan, 0.0
    for (ta, va), (tb, vb) in zip(pts, pts[1:], strict=False):
        if va - vb > drop and t_hi <= 0.5 * (ta + tb) <= t_lo:
            best, drop = 0.5 * (ta + tb), va - vb
    return best, drop


class HarvestDetector(BaseDetector[HarvestState]):
    """Harvest date of arable parcels, from S1 (through clouds) or S2."""

    name = "harvest"
    event_type = "harvest"
    land_uses = HARVEST_WATCH
    reference_column, reference_switch = "VH_ref", "use_regional_reference"

    params_type = HarvestParams
    state_type = HarvestState
    params: HarvestParams

    def _step(self, state: HarvestState, obs: ParcelAcquisition) -> tuple[HarvestState, list[Event]]:
        p = self.params
        horizon = obs.time - p.buffer_days
        if obs.sensor == "S1":
            vh = 10.0 * math.log10(obs.vh)
            if p.use_regional_reference and math.isfinite(obs.vh_ref):
                vh -= obs.vh_ref
            state = replace(state, s1=tuple(x for x in state.s1 if x[0] >= horizon) + ((obs.time, vh),))
            if not p.use_s1 or obs.time - state.last_harvest < p.min_separation_days:
                return state, []
            return self._s1_step(state)
        s2 = tuple(x for x in state.s2 if x[0] >= horizon) + ((obs.time, obs.ndvi, ndti(obs)),)
        state = replace(state, s2=s2)
        if not p.use_s2 or obs.time - state.last_harvest < p.min_separation_days:
            return state, []
        return self._s2_step(state)

    def _emit(self, state: HarvestState, date: float, window: tuple[float, float], conf: float, sensor: str,
              evidence: dict) -> tuple[HarvestState, list[Event]]:
        lo, hi = self.params.season_doy
        if not lo <= day_of_year(date) <= hi or date - state.last_harvest < self.params.min_separation_days:
            return state, []
        event = Event(parcel_id=state.parcel_id, event="harvest", date=date, window=window,
                      confidence=float(min(max(conf, 0.0), 1.0)), sensor=sensor, evidence={"sensor": sensor, **evidence})
        return replace(state, last_harvest=date), [event]

    def _s1_step(self, state: HarvestState) -> tuple[HarvestState, list[Event]]:
        p = self.params
        arr = np.asarray(state.s1)
        step = find_window_step(
            arr[:, 0], arr[:, 1], before_days=p.before_days, after_days=p.after_days, min_before=p.min_before,
            min_after=p.min_after, min_drop=p.min_drop_db, margin=p.persist_margin_db, pick="best",
        )
        if step is None:
            return state, []
        k = step.k
        excerpt = [(from_days(a).date().isoformat(), round(float(b), 3)) for a, b in arr[max(0, k - 4) : k + 4]]
        return self._emit(
            state, 0.5 * (step.t_hi + step.t_lo), (step.t_hi, step.t_lo),
            1.0 - math.exp(-1.5 * step.drop / p.min_drop_db), "S1",
            {"quantity": "VH dB", "before": round(step.pre, 3), "after": round(step.post, 3),
             "drop": round(step.drop, 3), "series_excerpt": excerpt},
        )

    def _s2_step(self, state: HarvestState) -> tuple[HarvestState, list[Event]]:
        p = self.params
        cut = s2_harvest(np.asarray(state.s2, dtype=float), p, s1_seen=p.use_s1 and len(state.s1) > 0)
        if cut is None:
            return state, []
        t_hi, t_lo = cut["t_hi"], cut["t_lo"]
        date, sensor = 0.5 * (t_hi + t_lo), "S2"
        conf = (0.9 if cut["confirmed"] else 0.7) * (1.0 - math.exp(-1.5 * cut["drop"] / cut["scale"]))
        s1_day, s1_drop = s1_date(state.s1, t_hi, t_lo) if p.use_s1 else (math.nan, 0.0)
        if math.isfinite(s1_day):
            date, sensor = s1_day, "S2+S1"
            conf = 1.0 - (1.0 - conf) * (1.0 - min(0.9, max(0.0, s1_drop / (2 * p.min_drop_db))))
        evidence = {
            "quantity": "NDTI" if cut["kind"] == "dry" else "NDVI",
            "harvest_kind": cut["kind"],
            "ndvi_before": round(cut["ndvi"][0], 4), "ndvi_after": round(cut["ndvi"][1], 4),
            "ndti_before": round(cut["ndti"][0], 4), "ndti_after": round(cut["ndti"][1], 4),
            "drop": round(cut["drop"], 4),
            "confirmed_day": float(state.s2[-1][0]),  # the view it was emitted on: t_lo when unconfirmed
            "series_excerpt": [(from_days(t).date().isoformat(), round(n, 3), round(d, 3)) for t, n, d in state.s2[-5:]],
        }
        if math.isfinite(s1_day):
            evidence["s1_vh_drop_db"] = round(s1_drop, 3)
        return self._emit(state, date, (t_hi, t_lo), conf, sensor, evidence)
