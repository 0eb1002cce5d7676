"""The plain reference batch detector: the per-parcel ``BaseDetector.update`` over a tile."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from alerts.detectors.base import BaseDetector, DetectorState
from alerts.detectors.batch_base import (
    AcquisitionInputs,
    _base_columns,
    _check_order,
    _text,
    check_tile_inputs,
    dump_header,
    load_header,
)
from alerts.detectors.state_io import STATE_SCHEMA, state_from_dict, state_to_dict
from alerts.types import Event

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
        check_tile_inputs(inputs, states.parcel_ids)
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
        return {**dump_header(self.state_version, states), "state_json": _text(blobs)}

    def load(self, arrays: dict[str, np.ndarray]) -> ReferenceStates:
        ids, lus, handled = load_header(arrays, self.state_version, type(self).__name__)
        st = [
            state_from_dict(json.loads(b)) if b else None for b in np.asarray(arrays["state_json"]).tolist()
        ]
        return ReferenceStates(ids, lus, handled, st)
