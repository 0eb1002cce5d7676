"""Harvest on arable parcels: S1 VH step down (biomass removed), S2 NDVI drop when S1 is absent.

Principles: cutting the crop removes most of the biomass that VH backscatter responds to, in one
day; VH falls by several dB and stays low (stubble, bare soil) until a catch crop grows. The step is
found on the merged S1 stream (all orbits) as the split with the largest drop between the mean VH of
the ``before_days`` before and the ``after_days`` after, confirmed once ``min_after`` acquisitions
lie after it and all of them stay below the pre-step level. This works through clouds. When the
parcel has no S1 (S2-only sources), the same step rule runs on clear-view NDVI (green crops: maize,
rapeseed; dry-harvested cereals give little S2 signal). One harvest per parcel and season.

Weather moves the backscatter of every parcel at once (drying soil lowers VH by dB): when the
observations carry ``vh_ref`` (the regional median VH of the same acquisition), the detector works on
VH − vh_ref, so that only parcel-specific steps remain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from alerts.detectors.base import BaseDetector, DetectorState
from alerts.series import Observation, add_regional_reference, day_of_year, from_days
from alerts.types import Event


@dataclass(frozen=True, slots=True)
class HarvestParams:
    before_days: float = 12.0
    after_days: float = 12.0
    min_before: int = 2
    min_after: int = 2
    min_drop_db: float = 2.5
    persist_margin_db: float = 1.0
    min_drop_ndvi: float = 0.2
    season_doy: tuple[int, int] = (140, 330)
    min_separation_days: float = 120.0
    buffer_days: float = 60.0
    use_regional_reference: bool = True

    def __post_init__(self) -> None:
        if self.before_days <= 0 or self.after_days <= 0 or self.min_before < 1 or self.min_after < 1:
            raise ValueError("HarvestParams: windows must be > 0 and counts >= 1")
        if self.min_drop_db <= 0 or self.min_drop_ndvi <= 0:
            raise ValueError("HarvestParams: drops must be > 0")


@dataclass(frozen=True, slots=True)
class HarvestState(DetectorState):
    s1: tuple[tuple[float, float], ...] = ()  # (day, VH dB)
    s2: tuple[tuple[float, float], ...] = ()  # (day, NDVI) clear views
    last_harvest: float = float("-inf")


def find_step(
    t: np.ndarray,
    v: np.ndarray,
    p: HarvestParams,
    min_drop: float,
    margin: float,
    newly_complete: bool = True,
) -> dict | None:
    """Best confirmed step down in series ``v`` at times ``t`` (sorted), or None.

    A split k (between views k-1 and k) needs ``min_before`` views in ``before_days`` before it and
    ``min_after`` in ``after_days`` after; drop = mean(before) − mean(after) ≥ ``min_drop``; every
    view after must lie ≥ ``margin`` below the mean before (persistence).
    ``newly_complete``: only splits whose after-window completed with the newest view (a split's
    verdict is fixed once its windows are complete, so older ones were decided by earlier calls).
    """
    best = None
    for k in range(1, len(t)):
        if newly_complete and len(t) > 1 and t[k] + p.after_days <= t[-2]:
            continue  # its windows were already complete at the previous view: decided then
        pre = (t >= t[k] - p.before_days) & (t < t[k])
        post = (t >= t[k]) & (t <= t[k] + p.after_days)
        if pre.sum() < p.min_before or post.sum() < p.min_after:
            continue
        # confirmation needs the after-window to be complete (a later view exists beyond it)
        if t[-1] < t[k] + p.after_days:
            continue
        m_pre, m_post = float(v[pre].mean()), float(v[post].mean())
        drop = m_pre - m_post
        if drop < min_drop or float(v[post].max()) > m_pre - margin:
            continue
        if v[k - 1] < m_pre - margin:  # the view before the split was already low: not the step
            continue
        if best is None or drop > best["drop"]:
            best = {
                "k": k,
                "drop": drop,
                "pre": m_pre,
                "post": m_post,
                "t_hi": float(t[k - 1]),
                "t_lo": float(t[k]),
            }
    return best


class HarvestDetector(BaseDetector[HarvestState]):
    """Harvest date of arable parcels, from S1 (through clouds) or S2."""

    name = "harvest"
    event_type = "harvest"
    land_uses = frozenset({"cereal", "maize", "rapeseed", "arable", "wheat", "barley", "sunflower", "other"})

    params_type = HarvestParams
    state_type = HarvestState
    params: HarvestParams

    def prepare(self, obs: pd.DataFrame) -> pd.DataFrame:
        if self.params.use_regional_reference and "VH_ref" not in obs.columns:
            return add_regional_reference(obs)
        return obs

    def _step(self, state: HarvestState, obs: Observation) -> tuple[HarvestState, list[Event]]:
        p = self.params
        horizon = obs.time - p.buffer_days
        if obs.sensor == "S1":
            vh = 10.0 * math.log10(obs.vh)
            if p.use_regional_reference and math.isfinite(obs.vh_ref):
                vh -= obs.vh_ref
            s1 = tuple(x for x in state.s1 if x[0] >= horizon) + ((obs.time, vh),)
            state = replace(state, s1=s1)
        else:
            s2 = tuple(x for x in state.s2 if x[0] >= horizon) + ((obs.time, obs.ndvi),)
            state = replace(state, s2=s2)
        if obs.time - state.last_harvest < p.min_separation_days:
            return state, []
        if state.s1:
            if obs.sensor != "S1":
                return state, []
            arr = np.asarray(state.s1)
            step = find_step(arr[:, 0], arr[:, 1], p, p.min_drop_db, p.persist_margin_db)
            sensor, unit = "S1", "VH dB"
        else:
            arr = np.asarray(state.s2)
            step = find_step(arr[:, 0], arr[:, 1], p, p.min_drop_ndvi, 0.5 * p.min_drop_ndvi)
            sensor, unit = "S2", "NDVI"
        if step is None:
            return state, []
        date = 0.5 * (step["t_hi"] + step["t_lo"])
        lo, hi = p.season_doy
        if not lo <= day_of_year(date) <= hi or date - state.last_harvest < p.min_separation_days:
            return state, []
        scale = p.min_drop_db if sensor == "S1" else p.min_drop_ndvi
        conf = float(min(1.0, 1.0 - math.exp(-1.5 * step["drop"] / scale)))
        k = step["k"]
        excerpt = [
            (from_days(a).date().isoformat(), round(float(b), 3)) for a, b in arr[max(0, k - 4) : k + 4]
        ]
        event = Event(
            parcel_id=state.parcel_id,
            event="harvest",
            date=date,
            window=(step["t_hi"], step["t_lo"]),
            confidence=conf,
            sensor=sensor,
            evidence={
                "sensor": sensor,
                "quantity": unit,
                "before": round(step["pre"], 3),
                "after": round(step["post"], 3),
                "drop": round(step["drop"], 3),
                "series_excerpt": excerpt,
            },
        )
        return replace(state, last_harvest=date), [event]
