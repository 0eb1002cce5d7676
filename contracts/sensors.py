"""The two sensors, one enum everywhere. ``sits`` encodes them as integer codes in token arrays
(:data:`SENSOR_CODES`); every other stage uses the enum (a ``StrEnum``: ``Sensor.S2 == "S2"``)."""

from __future__ import annotations

from enum import StrEnum


class Sensor(StrEnum):
    S2 = "S2"  # Sentinel-2 MSI L2A: surface reflectance
    S1 = "S1"  # Sentinel-1 C-band SAR: calibrated backscatter (linear power)


SENSORS: tuple[str, ...] = tuple(s.value for s in Sensor)
"""Sensor names in their canonical order (S2 first)."""

SENSOR_CODES: dict[Sensor, int] = {Sensor.S2: 0, Sensor.S1: 1}
"""Integer codes of the sensors in ``sits`` token arrays."""


def parse_sensor(value: object) -> Sensor:
    """``"S2"``/``"s1"``/a ``Sensor`` → ``Sensor``; ValueError naming the value otherwise."""
    text = str(value).strip().upper()
    try:
        return Sensor(text)
    except ValueError:
        raise ValueError(f"sensor must be S2 or S1, got {str(value)[:40]!r}") from None


def parse_sensor_set(text: str | None) -> tuple[Sensor, ...] | None:
    """A comma-separated sensor list (``"S2,S1"``, ``"S1"``) → tuple of ``Sensor``; ``None``/empty → None."""
    if text is None or not str(text).strip():
        return None
    out: list[Sensor] = []
    for part in str(text).split(","):
        if part.strip():
            s = parse_sensor(part)
            if s not in out:
                out.append(s)
    return tuple(out)
