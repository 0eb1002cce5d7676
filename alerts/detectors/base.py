"""The shared detector workflow: ``update(state, observation) -> (state, events)``.

As in the JRC ``nrt`` library's ``BaseNrt`` (fit / monitor / report), the base class owns the
workflow and subclasses fill in hooks:

- ``init_state(parcel_id, land_use)`` → the detector's initial state (a frozen dataclass),
- ``_step(state, obs)`` → ``(state, events)`` for one *valid, in-order, new* observation.

The base ``update`` handles everything around the hook, identically for streaming and batch:
parcel-id check, duplicate re-deliveries (skipped), out-of-order times (refused: the monitor
rewinds to a checkpoint), unusable observations (NaN, cloudy S2: the state is unchanged apart from
its time watermark). ``run`` (batch, offline) is literally a loop over ``update``, so streaming and
offline results are equal by construction. (For a tile of parcels at once, the vectorised kernels
in ``alerts.detectors.batch`` are held equal to this reference by tests.)

Subclasses register themselves under their ``name`` (``alerts.detectors.registry``); this module
imports none of them. State persistence lives in ``alerts.detectors.state_io``.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import asdict, dataclass, is_dataclass, replace
from typing import Any, ClassVar, Generic, TypeVar

import pandas as pd

from alerts.detectors import registry
from alerts.errors import SeriesError, UnsupportedLandUseError
from alerts.series import (
    ParcelAcquisition,
    add_regional_reference,
    check_known_parcels,
    group_by_parcel,
    iter_observations,
)
from alerts.types import Event

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Watermark:
    """Time of the last observation folded in and the sensors already seen at that time."""

    t_last: float = float("-inf")
    sensors_at_last: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class DetectorState:
    """Base state: parcel, land use, watermark. Subclasses add their own (immutable) fields."""

    parcel_id: str
    land_use: str
    mark: Watermark = Watermark()
    n_obs: int = 0


S = TypeVar("S", bound=DetectorState)


class BaseDetector(ABC, Generic[S]):
    """One detector; stateless object holding parameters, states are passed in and out."""

    name: ClassVar[str]  # the registry name ("mowing"); subclasses without one are not registered
    event_type: ClassVar[str]
    land_uses: ClassVar[frozenset[str] | None] = None  # None: any land use
    params_type: ClassVar[type]  # the detector's parameters (a dataclass with defaults)
    state_type: ClassVar[type]  # its per-parcel state (built from parcel_id and land_use)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            registry.register(cls.name, cls)

    def __init__(self, params=None) -> None:
        self.params = params if params is not None else self.params_type()

    def handles(self, land_use: str) -> bool:
        return self.land_uses is None or str(land_use).lower() in self.land_uses

    def init_state(self, parcel_id: str, land_use: str) -> S:
        if not self.handles(land_use):
            raise UnsupportedLandUseError(
                f"{type(self).__name__} does not handle land use {land_use!r} (parcel {parcel_id}); "
                f"it handles {sorted(self.land_uses or [])}"
            )
        return self.state_type(parcel_id=str(parcel_id), land_use=str(land_use).lower())

    @abstractmethod
    def _step(self, state: S, obs: ParcelAcquisition) -> tuple[S, list[Event]]: ...

    def update(self, state: S, obs: ParcelAcquisition) -> tuple[S, list[Event]]:
        """Fold one acquisition in; return the new state and the events it confirms."""
        if obs.parcel_id != state.parcel_id:
            raise SeriesError(
                f"observation of parcel {obs.parcel_id} given to the state of {state.parcel_id}"
            )
        mark = state.mark
        if obs.time < mark.t_last:
            raise SeriesError(
                f"parcel {obs.parcel_id}: observation at day {obs.time:.3f} is older than the last one "
                f"({mark.t_last:.3f}); rewind to a checkpoint to fold in late arrivals"
            )
        if obs.time == mark.t_last and obs.sensor in mark.sensors_at_last:
            logger.debug(
                "duplicate observation skipped", extra={"parcel_id": obs.parcel_id, "time": obs.time}
            )
            return state, []
        sensors = mark.sensors_at_last | {obs.sensor} if obs.time == mark.t_last else frozenset({obs.sensor})
        new_mark = Watermark(obs.time, sensors)
        if not obs.is_valid:
            return replace(state, mark=new_mark), []
        state = replace(state, mark=new_mark, n_obs=state.n_obs + 1)
        return self._step(state, obs)

    def run(self, parcel_id: str, land_use: str, observations: Iterable[ParcelAcquisition]) -> list[Event]:
        """Batch (offline) run of one parcel: a loop over ``update``."""
        state = self.init_state(parcel_id, land_use)
        events: list[Event] = []
        for obs in observations:
            state, new = self.update(state, obs)
            events.extend(new)
        return events

    # the regional reference the rules read (``alerts.series.add_regional_reference``): its column
    # and the parameter that switches it on; None: none
    reference_column: ClassVar[str | None] = None
    reference_switch: ClassVar[str] = ""

    def prepare(self, obs: pd.DataFrame) -> pd.DataFrame:
        """Hook: add table-level inputs before the per-parcel loop: the regional reference when the
        rules read it and the table lacks it."""
        if self.reference_column is None or not getattr(self.params, self.reference_switch):
            return obs
        return obs if self.reference_column in obs.columns else add_regional_reference(obs)

    def run_frame(self, obs: pd.DataFrame, parcels: pd.DataFrame) -> tuple[list[Event], list[str]]:
        """Batch run over a normalised interchange table. Returns (events, parcels skipped).

        Parcels whose land use this detector does not handle are skipped (and listed), never an error.
        Observations naming a parcel missing from ``parcels`` raise ``UnknownParcelError``.
        """
        check_known_parcels(obs, parcels)
        obs = self.prepare(obs)
        land_use = dict(zip(parcels["parcel_id"], parcels["land_use"].astype(str), strict=True))
        events: list[Event] = []
        skipped: list[str] = []
        for pid, group in group_by_parcel(obs):
            lu = land_use[pid]
            if not self.handles(lu):
                skipped.append(pid)
                continue
            events.extend(self.run(pid, lu, iter_observations(group)))
        return events, skipped


def describe(obj: Any) -> dict[str, Any]:
    """Parameters of a detector as a plain dict (for evidence and reports)."""
    return asdict(obj) if is_dataclass(obj) else dict(vars(obj))
