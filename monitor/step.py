"""The one update rule: fold one acquisition into a tile's state (encoder, detectors) → events.

``step_tile`` is pure apart from mutating the ``TileState`` it is given: it reads nothing and writes
nothing, so the service, the late-arrival rewind and ``monitor replay`` all fold acquisitions with
the same code. Per acquisition, in this order:

1. for S2, the encoder's forecast for every parcel with a row: what the parcel should look like given
   its history (its own past, the season and the S1 views since) — the expectation and its std;
2. the encoder's recurrent step for all parcels of the tile at once (rows without an observation
   leave their state unchanged), in place: the state store owns the buffers and the rewind points;
3. every detector's batch step on the same rows, with the expectation as evidence;
4. each event gets the model's expectation at the first clear S2 view on or after its date that
   the stream has seen (``alerts.expectation`` does the same offline, looking up to 30 days ahead).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from alerts.expectation import EXPECTED, EXPECTED_STD
from alerts.intervals import add_view_intervals
from alerts.series import from_days
from alerts.types import Event
from contracts.indices import ndvi
from monitor.inputs import SlotKey, detector_inputs, encoder_observation

logger = logging.getLogger(__name__)

WATCH_AREA = "watch_area"  # the land use of watch-area pixels in a tile state
EVIDENCE_HORIZON_DAYS = 30.0  # how far after an event a view may be to carry the model's expectation
INT64_MIN = np.iinfo(np.int64).min


@dataclass
class TileState:
    """Everything the monitor knows about one tile: parcels, encoder and detector states, what is folded in.

    ``folded`` maps each folded acquisition (its canonical ``SlotKey``) to the item ids it was made of;
    the state is by definition the fold of those acquisitions in key order.
    """

    tile_id: str
    parcel_ids: pd.Index
    land_uses: np.ndarray
    encoder: Any  # sits.EncoderState
    detectors: dict[str, Any]
    folded: dict[SlotKey, str] = field(default_factory=dict)
    recent: list[pd.DataFrame] = field(default_factory=list)  # expectation rows of recent S2 views
    area_sites: list[dict] = field(default_factory=list)  # watch-area installations already raised
    watch: dict[str, Any] = field(default_factory=dict)  # area id -> its stepped pixel solar state (watch_areas.py)
    campaign: int | None = None  # the campaign whose parcel list this is (None: not yet known, or an older state)

    @property
    def n(self) -> int:
        return len(self.parcel_ids)

    @property
    def last_key(self) -> SlotKey | None:
        return max(self.folded) if self.folded else None


@dataclass
class StepResult:
    key: SlotKey
    events: list[Event]
    parcels_updated: int
    unknown_parcels: int
    expectations: pd.DataFrame | None  # S2: parcel_id, days, observed/expected NDVI and std
    seconds: dict[str, float]
    alerts: list = field(default_factory=list)  # the alerts made of ``events`` (filled by the service)
    new_alerts: int = 0


def new_tile_state(tile_id: str, parcels: pd.DataFrame, model, detectors) -> TileState:
    index = pd.Index(parcels["parcel_id"].astype(str).to_numpy(), name="parcel_id")
    land_uses = parcels["land_use"].astype(str).str.lower().to_numpy()
    return TileState(tile_id=tile_id, parcel_ids=index, land_uses=land_uses, encoder=model.init_state(len(index)),
                     detectors={d.event_type: d.init_states(list(index), list(land_uses)) for d in detectors})


def _t_last_seconds(encoder) -> np.ndarray:
    t = encoder.t_last_datetime()
    out = t.astype("datetime64[s]").astype(np.int64)
    out[np.isnat(t)] = INT64_MIN
    return out


def _observed_ndvi(rows: pd.DataFrame) -> np.ndarray:
    return ndvi(rows["B04"].to_numpy(np.float64), rows["B08"].to_numpy(np.float64))


def known_rows(state: TileState, key: SlotKey, rows: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """``rows`` without those of parcels outside the tile's parcel layer (logged), and how many there were."""
    known = state.parcel_ids.get_indexer(rows["parcel_id"]) >= 0
    unknown = int((~known).sum())
    if unknown:
        logger.warning("tile %s slot %s: %d row(s) of parcels outside the tile's parcel layer skipped",
                       state.tile_id, key.slot, unknown)
        rows = rows[known]
    return rows, unknown


def expectation_frame(state: TileState, rows: pd.DataFrame, expected: np.ndarray,
                      expected_std: np.ndarray) -> pd.DataFrame:
    """What ``expected/S2-<slot>.parquet`` holds for an S2 view: per row, observed and expected NDVI and std
    (``expected``/``expected_std``: ``[N]`` over the tile's rows)."""
    at = state.parcel_ids.get_indexer(rows["parcel_id"])
    return pd.DataFrame({
        "parcel_id": rows["parcel_id"].to_numpy(), "days": rows["days"].to_numpy(np.float64),
        "clear": rows["clear"].to_numpy(np.float64), "observed_ndvi": _observed_ndvi(rows),
        EXPECTED: expected[at].astype(np.float32), EXPECTED_STD: expected_std[at].astype(np.float32)})


def step_tile(state: TileState, key: SlotKey, item_ids: str, rows: pd.DataFrame, model, detectors,
              clock=None) -> StepResult:
    """Fold one acquisition (``rows``: prepared rows of one slot, see ``monitor.inputs.prepare_rows``)."""
    import time

    clock = clock or time.perf_counter
    seconds: dict[str, float] = {}
    rows, unknown = known_rows(state, key, rows)
    if rows.empty:
        state.folded[key] = item_ids
        return StepResult(key, [], 0, unknown, None, seconds)

    t0 = clock()
    obs, _ = encoder_observation(rows, state.parcel_ids, model, _t_last_seconds(state.encoder))
    expected = expected_std = None
    if key.sensor == "S2":
        prediction = model.forecast(state.encoder, obs.time, "S2")
        expected, expected_std = prediction.ndvi()
    state.encoder, _ = model.step(state.encoder, obs, inplace=True)
    seconds["encoder"] = clock() - t0
    return detect_step(state, key, item_ids, rows, unknown, expected, expected_std, model, detectors, seconds, clock)


def detect_step(state: TileState, key: SlotKey, item_ids: str, rows: pd.DataFrame, unknown: int,
                expected: np.ndarray | None, expected_std: np.ndarray | None, model, detectors,
                seconds: dict[str, float], clock) -> StepResult:
    """Steps 3 and 4 of the module docstring, once the encoder has folded ``rows`` in (``expected``: the
    S2 forecast made before, ``[N]``; None for S1): the detectors, the folded map, the model's evidence."""
    expectations = expectation_frame(state, rows, expected, expected_std) if key.sensor == "S2" else None
    t0 = clock()
    # the parcel detectors see parcels only: watch-area pixels (monitor/watch_areas.py) have their own detector
    parcel_rows = rows[state.land_uses[state.parcel_ids.get_indexer(rows["parcel_id"])] != WATCH_AREA]
    inputs = detector_inputs(parcel_rows, state.parcel_ids, expected, expected_std)
    events: list[Event] = []
    for det in detectors:
        events.extend(det.step(state.detectors[det.event_type], inputs))
    detectors_s = clock() - t0

    state.folded[key] = item_ids
    if expectations is not None:
        _remember(state, expectations)
    t0 = clock()
    events = with_model_evidence(events, state.recent, model.version)
    events = add_view_intervals(events, state.recent)  # evidence["interval"]: start, bottom, end (so far)
    events.sort(key=lambda e: (e.parcel_id, e.date, e.event))
    seconds["detectors"] = detectors_s + clock() - t0  # the events' evidence is the detectors' stage too
    return StepResult(key, events, len(rows), unknown, expectations, seconds)


RECENT_DAYS = 4 * EVIDENCE_HORIZON_DAYS  # how far back the expectations of recent views are kept


def recent_s2_keys(folded) -> list[SlotKey]:
    """The folded S2 acquisitions whose expectations ``TileState.recent`` holds (reloaded with a state)."""
    if not folded:
        return []
    newest = max(folded).time_s
    return [k for k in folded if k.sensor == "S2" and k.time_s >= newest - RECENT_DAYS * 86400]


def _remember(state: TileState, expectations: pd.DataFrame) -> None:
    """Keep the clear views of the last ``RECENT_DAYS`` (events look back ``EVIDENCE_HORIZON_DAYS``)."""
    clear = expectations[(expectations["clear"] >= 0.5) & expectations[EXPECTED].notna()]
    if not clear.empty:
        state.recent.append(clear)
    newest = float(expectations["days"].max())
    state.recent = [f for f in state.recent if float(f["days"].max()) >= newest - RECENT_DAYS]


def with_model_evidence(events: list[Event], recent: list[pd.DataFrame], model_version: str) -> list[Event]:
    """``events``, each with the model's expectation at the first clear view of ``recent`` on or after its
    date (within ``EVIDENCE_HORIZON_DAYS``) as ``evidence["model"]``; the earliest frame wins a tie.

    One lookup for all events (the recent views' rows of the events' parcels, sorted by parcel and
    day), not a scan of every frame per event: an acquisition raising a thousand alerts on a
    20 000-parcel tile spent more here than in the encoder and the detectors together."""
    if not events or not recent:
        return list(events)
    wanted = pd.Index(sorted({e.parcel_id for e in events}))
    cols = ["parcel_id", "days", "observed_ndvi", EXPECTED, EXPECTED_STD]
    parts = []
    for order, frame in enumerate(recent):
        pick = frame["parcel_id"].isin(wanted).to_numpy()
        if pick.any():
            parts.append(frame.loc[pick, cols].assign(_order=order, _pos=np.flatnonzero(pick)))
    if not parts:
        return list(events)
    views = pd.concat(parts, ignore_index=True).sort_values(["parcel_id", "days", "_order", "_pos"],
                                                            kind="stable", ignore_index=True)
    pids = views["parcel_id"].to_numpy(dtype=object)
    days = views["days"].to_numpy(np.float64)
    values = {c: views[c].to_numpy() for c in ("observed_ndvi", EXPECTED, EXPECTED_STD)}
    starts = np.flatnonzero(np.r_[True, pids[1:] != pids[:-1]])
    span = dict(zip(pids[starts], zip(starts, np.r_[starts[1:], len(pids)], strict=True), strict=True))
    out = []
    for event in events:
        if event.parcel_id not in span:
            out.append(event)
            continue
        lo, hi = (int(x) for x in span[event.parcel_id])
        at = lo + int(np.searchsorted(days[lo:hi], event.date, side="left"))  # days ascending within a parcel
        if at >= hi or not days[at] <= event.date + EVIDENCE_HORIZON_DAYS:
            out.append(event)
            continue
        out.append(_evidence_event(event, float(days[at]), float(values["observed_ndvi"][at]),
                                   float(values[EXPECTED][at]), float(values[EXPECTED_STD][at]), model_version))
    return out


def _evidence_event(event: Event, view_days: float, observed: float, mean: float, std: float,
                    model_version: str) -> Event:
    from dataclasses import replace

    model = {
        "version": model_version,
        "date": from_days(view_days).date().isoformat(),
        "observed_ndvi": round(observed, 4) if math.isfinite(observed) else None,
        "expected_ndvi": round(mean, 4),
        "expected_ndvi_std": round(std, 4),
        "residual_z": round((observed - mean) / max(std, 1e-3), 2) if math.isfinite(observed) else None,
    }
    return replace(event, evidence={**event.evidence, "model": model})
