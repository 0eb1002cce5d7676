"""Numba kernels: the mowing, harvest and parcel solar rules stepped over all parcels of a tile.

Each kernel folds ONE acquisition (one sensor, one time per parcel, NaN = no row for that parcel)
into state arrays that hold every parcel of a tile, in place, and writes the events it confirms
into an event table (one row per event: parcel index, then the detector's numeric fields). The
Python side (``alerts.detectors.batch_kernels``) builds ``Event`` objects only for those rows.

The plain reference is the per-parcel Python code (``BaseDetector.update`` and each detector's
``_step``); ``tests/alerts/test_batch_kernels.py`` holds every kernel equal to it, event for event
and state for state. To make that equality exact rather than approximate, the kernels reproduce the
reference's arithmetic: means are summed in numpy's pairwise order (``_np_sum``), medians are the
middle of a sorted copy (the mean of the two middle values for even counts, as ``np.median``), and
logarithms/exponentials call the same libm functions as ``math``.

State layout (per detector, all parcels of a tile): scalar fields as ``[N]`` arrays; each series
buffer as ``[N, CAP, C]`` (column 0 the time in days since 1970, oldest first) with its fill count
``[N]``. Buffers are pruned to the detector's horizon at every append as the reference prunes its
tuples; when a buffer is full the oldest entry is dropped and the parcel's ``overflow`` counter
counts it (the capacities are sized for the densest real revisit; see ``batch_kernels._cap``).
"""

from __future__ import annotations

from alerts.detectors.kernels.common import (
    E_CONF,
    E_DATE,
    E_SENSOR,
    E_W0,
    E_W1,
    MAX_CAPACITY,
    X_B11,
    X_B12,
    X_CLEAR,
    X_COLS,
    X_NIR,
    X_ORBIT,
    X_RED,
    X_T,
    X_VH,
    X_VH_REF,
    X_VV,
    X_VV_REF,
    day_of_year,
)
from alerts.detectors.kernels.harvest import (
    HARVEST_EVENT_COLS,
    HARVEST_PARAM_NAMES,
    HARVEST_SENSOR_S1,
    HARVEST_SENSOR_S2S1,
    HC_CONFIRMED,
    HC_D0,
    HC_D1,
    HC_DROP,
    HC_K,
    HC_KIND,
    HC_N0,
    HC_N1,
    HC_NDROP,
    HC_POST,
    HC_PRE,
    HC_S1DROP,
    harvest_step,
)
from alerts.detectors.kernels.mowing import (
    MC_AFTER,
    MC_BEFORE,
    MC_DROP,
    MC_ENV,
    MC_EX,
    MC_NEX,
    MC_NEXT,
    MC_S1DROP,
    MOW_EVENT_COLS,
    MOW_SENSOR_S1,
    MOW_SENSOR_S2S1,
    MOWING_PARAM_NAMES,
    MS_DROP,
    MS_POST,
    MS_PRE,
    mowing_step,
)
from alerts.detectors.kernels.solar import (
    SC_A,
    SC_B,
    SC_C,
    SC_D,
    SOLAR_EVENT_COLS,
    SOLAR_PARAM_NAMES,
    SOLAR_PHASE_WORKS,
    solar_step,
)

__all__ = [
    "E_CONF",
    "E_DATE",
    "E_SENSOR",
    "E_W0",
    "E_W1",
    "HARVEST_EVENT_COLS",
    "HARVEST_PARAM_NAMES",
    "HARVEST_SENSOR_S1",
    "HARVEST_SENSOR_S2S1",
    "HC_CONFIRMED",
    "HC_D0",
    "HC_D1",
    "HC_DROP",
    "HC_K",
    "HC_KIND",
    "HC_N0",
    "HC_N1",
    "HC_NDROP",
    "HC_POST",
    "HC_PRE",
    "HC_S1DROP",
    "MAX_CAPACITY",
    "MC_AFTER",
    "MC_BEFORE",
    "MC_DROP",
    "MC_ENV",
    "MC_EX",
    "MC_NEX",
    "MC_NEXT",
    "MC_S1DROP",
    "MOWING_PARAM_NAMES",
    "MOW_EVENT_COLS",
    "MOW_SENSOR_S1",
    "MOW_SENSOR_S2S1",
    "MS_DROP",
    "MS_POST",
    "MS_PRE",
    "SC_A",
    "SC_B",
    "SC_C",
    "SC_D",
    "SOLAR_EVENT_COLS",
    "SOLAR_PARAM_NAMES",
    "SOLAR_PHASE_WORKS",
    "X_B11",
    "X_B12",
    "X_CLEAR",
    "X_COLS",
    "X_NIR",
    "X_ORBIT",
    "X_RED",
    "X_T",
    "X_VH",
    "X_VH_REF",
    "X_VV",
    "X_VV_REF",
    "day_of_year",
    "harvest_step",
    "mowing_step",
    "solar_step",
]
