"""Band names: the ten S2 L2A bands (surface reflectance), the two S1 polarisations (linear power).

The value columns of the interchange table per sensor are :data:`SENSOR_COLUMNS`: an S2 row carries
the ten bands and ``clear``; an S1 row ``VV``, ``VH`` (and ``orbit``, optional).
"""

from __future__ import annotations

from contracts.sensors import Sensor

S2_BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
S1_POLS: tuple[str, ...] = ("VV", "VH")
RED, NIR = "B04", "B08"
CLEAR = "clear"
ORBIT = "orbit"

SENSOR_COLUMNS: dict[Sensor, tuple[str, ...]] = {Sensor.S2: (*S2_BANDS, CLEAR), Sensor.S1: S1_POLS}
"""Columns an interchange file must have for the rows of each sensor to be usable."""

VALUE_COLUMNS: tuple[str, ...] = (*S2_BANDS, CLEAR, *S1_POLS, ORBIT)
"""Every numeric column of the interchange table, in file order."""
