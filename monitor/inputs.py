"""One acquisition's parcel statistics, aligned on a tile's parcel index: encoder and detector inputs.

The slice comes from the parcel-series store (``ingest.series``), where ingest (and ``ingest
import``) wrote it before announcing the acquisition. The regional S1 reference (median VH/VV in dB
of the same day and orbit over the tile's parcels) is computed here, per acquisition, with the same
function the offline detectors use on a whole table, so both paths see equal inputs.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from alerts.detectors.batch import AcquisitionInputs
from alerts.series import add_regional_reference, normalise_observations
from ingest.series import read_slot
from monitor.errors import BadEventError

SENSOR_RANK = {"S1": 0, "S2": 1}  # the offline order at equal times: S1 before S2


class SlotKey(NamedTuple):
    """Where an acquisition sits in a tile's canonical order: time, then S1 before S2, then slot name."""

    time_s: int
    rank: int
    slot: str

    @classmethod
    def of(cls, time_s: int, sensor: str, slot: str) -> SlotKey:  # noqa: ANN102 - a NamedTuple constructor
        return cls(int(time_s), SENSOR_RANK[sensor], str(slot))

    @property
    def sensor(self) -> str:
        return "S1" if self.rank == 0 else "S2"


def read_slot_rows(series_dir, tile_id: str, sensor: str, slot: str, calendar=None) -> pd.DataFrame:
    """The rows of one acquisition slot (its slot file, or its rows in the compacted file), each with its
    campaign (rows of an older store: the campaign of their date under ``calendar``)."""
    table = read_slot(series_dir, tile_id, sensor, slot, calendar)
    if table.num_rows == 0:
        raise BadEventError(f"tile {tile_id}: slot {sensor}/{slot} is not in the series store {series_dir}")
    return table.to_pandas()


def prepare_rows(raw: pd.DataFrame, source: str) -> pd.DataFrame:
    """Normalised interchange rows with ``VH_ref``/``VV_ref`` (the regional reference of this acquisition)."""
    # One impossible value must not stop a whole acquisition: such rows are left out and logged.
    rows = normalise_observations(raw, source=source, strict=False)
    return add_regional_reference(rows)


def encoder_observation(rows: pd.DataFrame, index: pd.Index, model, t_last_s: np.ndarray):
    """``sits.Observation`` for every parcel of ``index`` (all-NaN values where the parcel has no row).

    ``t_last_s``: per parcel the encoder state's last time (seconds, int64; INT64 min where empty): a
    parcel without a row gets a time no earlier than that, so the step's order check holds for it too.
    """
    import sits

    sensor = str(rows["sensor"].iloc[0])
    at = index.get_indexer(rows["parcel_id"])
    names = list(model.bands.s2 if sensor == "S2" else model.bands.s1)
    n = len(index)
    values = np.full((n, len(names)), np.nan, np.float32)
    values[at] = rows[names].to_numpy(np.float32)
    row_s = np.round(rows["days"].to_numpy(np.float64) * 86400.0).astype(np.int64)
    time_s = np.maximum(np.full(n, row_s.max(), np.int64), t_last_s)
    time_s[at] = row_s
    clear = np.zeros(n, np.float32)
    orbit = np.zeros(n, np.int64)
    if sensor == "S2":
        clear[at] = rows["clear"].fillna(0).to_numpy(np.float32)
    else:
        orbit[at] = rows["orbit"].fillna(0).to_numpy(np.int64)
    return sits.Observation(time=time_s, sensor=sensor, values=values, clear=clear, orbit=orbit), time_s


def detector_inputs(rows: pd.DataFrame, index: pd.Index, expected: np.ndarray | None = None,
                    expected_std: np.ndarray | None = None) -> AcquisitionInputs:
    rows = rows.copy()
    if expected is not None:
        at = index.get_indexer(rows["parcel_id"])
        rows["expected_ndvi"] = expected[at]
        rows["expected_ndvi_std"] = expected_std[at]
    return AcquisitionInputs.from_frame(rows, index)
