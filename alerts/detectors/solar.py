"""Solar-farm construction at parcel level (S1 VV, with S2 NDVI for the works phase).

Parcel level. Ground-mounted PV panels are strong, permanent scatterers: VV backscatter rises by
several dB as the rows go up and never comes back (no crop does that). The rule: the VV of the last
``confirm_days`` all lie ``rise_db`` or more above the baseline (median VV of the views between
``baseline_days`` and ``baseline_gap_days`` before), with at least ``min_confirm`` views, and their median reaches ``min_level_db`` (PV arrays are
among the brightest VV targets; wet or thawing soil raises VV by several dB but not to that
level). The start
of works is dated at the onset of the rise (the first view from which VV stays above baseline +
``onset_db``) minus ``lead_days`` (ground works precede the panels); the window spans from the last
view at baseline level to the onset. One event per parcel.
Works begun without panels yet (``works_phase``): a green parcel stripped to bare soil (NDVI) while
its VV relative to the regional median (``ParcelAcquisition.vv_ref``, added by ``prepare``) rose and stayed up
for ``works_min_days``; see ``_works_phase``. A site bare from the start of the series is dated at its
VV-vs-region step up (the works roughen the soil) when no VH/NDVI step precedes the panels.

The pixel level (a watch-area cube, with polygons) is ``alerts.detectors.solar_pixels``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from alerts.detectors.base import BaseDetector, DetectorState
from alerts.detectors.steps import step_down_midpoint
from alerts.series import ParcelAcquisition, from_days
from alerts.types import Event


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
    # works phase (no panels yet): VV relative to the regional median (``ParcelAcquisition.vv_ref``)
    works_phase: bool = True
    works_rise_db: float = 1.5
    works_onset_db: float = 0.75
    works_min_days: float = 21.0
    works_min_views: int = 4
    works_bare_ndvi: float = 0.3
    works_soil_min_ndvi: float = 0.08
    works_green_ndvi: float = 0.5
    works_green_days: float = 75.0

    def __post_init__(self) -> None:
        if self.rise_db <= self.onset_db or self.onset_db <= 0:
            raise ValueError("SolarParams: need rise_db > onset_db > 0")
        if self.works_rise_db <= self.works_onset_db or self.works_onset_db <= 0:
            raise ValueError("SolarParams: need works_rise_db > works_onset_db > 0")
        if self.works_min_days <= 0 or self.works_min_views < 2:
            raise ValueError("SolarParams: need works_min_days > 0 and works_min_views >= 2")
        if not 0 <= self.works_soil_min_ndvi < self.works_bare_ndvi < self.works_green_ndvi < 1:
            raise ValueError(
                "SolarParams: need 0 <= works_soil_min_ndvi < works_bare_ndvi < works_green_ndvi < 1"
            )
        if self.baseline_days <= self.baseline_gap_days or self.buffer_days < self.baseline_days:
            raise ValueError("SolarParams: need buffer_days >= baseline_days > baseline_gap_days")


@dataclass(frozen=True, slots=True)
class SolarState(DetectorState):
    s1: tuple[tuple[float, float, float], ...] = ()  # (day, VV dB, VH dB)
    s2: tuple[tuple[float, float], ...] = ()  # (day, NDVI) of clear views
    found: bool = False
    s1a: tuple[tuple[float, float, int], ...] = ()  # (day, VV - regional VV dB, orbit)


class SolarDetector(BaseDetector[SolarState]):
    """Start of solar-farm works on any parcel (every land use)."""

    name = "solar"
    event_type = "solar_construction"
    land_uses = None
    reference_column, reference_switch = "VV_ref", "works_phase"

    params_type = SolarParams
    state_type = SolarState
    params: SolarParams

    def _step(self, state: SolarState, obs: ParcelAcquisition) -> tuple[SolarState, list[Event]]:
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
        if math.isfinite(obs.vv_ref):
            s1a = tuple(x for x in state.s1a if x[0] >= now - p.buffer_days) + (
                (now, 10.0 * math.log10(obs.vv) - obs.vv_ref, obs.orbit),
            )
            state = replace(state, s1a=s1a)
        arr = np.asarray(s1)
        t, v = arr[:, 0], arr[:, 1]
        base_sel = (t >= now - p.baseline_days) & (t < now - p.baseline_gap_days)
        if base_sel.sum() < p.min_baseline:
            return state, []
        base = float(np.median(v[base_sel]))
        recent = t > now - p.confirm_days
        panels = recent.sum() >= p.min_confirm and float(v[recent].min()) >= base + p.rise_db
        # panels are strong scatterers, soils are not
        if not (panels and float(np.median(v[recent])) >= p.min_level_db):
            works = _works_phase(state, now, p) if p.works_phase else None
            return (replace(state, found=True), [works]) if works is not None else (state, [])
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
            nd_step = step_down_midpoint(
                s2[:, 0], s2[:, 1], onset - p.works_search_days, onset, p.works_ndvi_drop, 1
            )
        steps = [x for x in (vh_step, nd_step) if x is not None]
        if steps:
            start = max(steps)
        elif p.works_phase and len(state.s1a) >= 4:
            # no canopy to strip (bare since the series began): the works roughened the soil, a
            # step up of VV against the regional median well before the panels
            a = np.asarray(state.s1a)
            vv_step = step_down_midpoint(
                a[:, 0], -a[:, 1], onset - p.works_search_days, onset, p.works_rise_db, 2, first=True
            )
            if vv_step is not None:
                start = vv_step
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


RAMP_DAYS = 7.0  # clearing a parcel takes days: views this close to the last green one may be mixed


def _works_phase(state: SolarState, now: float, p: SolarParams) -> Event | None:
    """Works begun, no panels yet: a green parcel stripped to bare soil while its VV, relative to
    the regional median of the same acquisition, rose and stayed up for ``works_min_days``.

    Machinery and disturbed soil roughen the surface (VV up), the canopy is gone (NDVI bare); a
    harvest strips a senesced crop (not green before), a cut leaves a green residual (not bare),
    and rain or drying soil moves the regional median too (removed by the reference). The VV
    anomaly is taken per orbit against its median over the baseline views (incidence offsets).
    """
    if len(state.s1a) < p.min_baseline + p.works_min_views or len(state.s2) < 2:
        return None
    a = np.asarray(state.s1a)
    t, x, orb = a[:, 0], a[:, 1].copy(), a[:, 2]
    base_sel = (t >= now - p.baseline_days) & (t < now - p.baseline_gap_days)
    for o in np.unique(orb):
        sel = orb == o
        if (base_sel & sel).sum() < p.min_baseline:
            return None
        x[sel] -= float(np.median(x[base_sel & sel]))
    recent = t > now - p.works_min_days
    if recent.sum() < p.works_min_views or float(np.median(x[recent])) < p.works_rise_db:
        return None
    above = x >= p.works_onset_db
    k = len(x) - 1
    while k > 0 and above[k - 1]:
        k -= 1
    if not above[-1] or k == 0 or t[k] > now - p.works_min_days:
        return None
    onset, last_base = float(t[k]), float(t[k - 1])
    s2 = np.asarray(state.s2)
    before = s2[(s2[:, 0] <= onset) & (s2[:, 0] >= onset - p.works_green_days)]
    green = before[before[:, 1] >= p.works_green_ndvi]
    if len(green) == 0:
        return None  # not green (senesced, harvested, bare) when the works began
    t_green = float(green[-1, 0])
    after = s2[s2[:, 0] > t_green]
    settled = after[after[:, 0] > t_green + RAMP_DAYS]
    if len(after) == 0 or len(settled) == 0 or float(settled[:, 1].max()) > p.works_bare_ndvi:
        return None  # bare ever since the canopy went
    if float(settled[:, 1].min()) < p.works_soil_min_ndvi:
        return None  # snow, ice or water (NDVI about 0 or below), not bare soil
    start = min(0.5 * (t_green + float(after[0, 0])), onset)
    rise = float(np.median(x[recent]))
    return Event(
        parcel_id=state.parcel_id,
        event="solar_construction",
        date=start,
        window=(min(start, last_base), onset),
        confidence=float(min(1.0, 0.4 + 0.1 * rise)),
        sensor="S1",
        evidence={
            "sensor": "S1",
            "phase": "works",
            "vv_rise_vs_region_db": round(rise, 2),
            "ndvi_before": round(float(green[-1, 1]), 3),
            "ndvi_after_max": round(float(settled[:, 1].max()), 3),
            "vv_onset": from_days(onset).date().isoformat(),
        },
    )


def _vh_step(t: np.ndarray, vh: np.ndarray, lo: float, hi: float, min_drop: float) -> float | None:
    """Midpoint of the latest VH step down (mean of 2 views before vs 2 after ≥ ``min_drop`` dB)
    with its split in (lo, hi]: the works are the last vegetation removal before the panels."""
    return step_down_midpoint(t, vh, lo, hi, min_drop, 2)
