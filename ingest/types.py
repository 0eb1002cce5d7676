"""Records produced by the ingest stage.

Dimension orders are declared once here; every array in the cubes follows them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypedDict

import numpy as np

from contracts.bands import S1_POLS, S2_BANDS  # noqa: F401 - re-exported: the shared vocabulary
from contracts.sensors import Sensor  # noqa: F401 - re-exported

S2_DIMS = ("time", "band", "y", "x")
S1_DIMS = ("time", "pol", "y", "x")
MASK_DIMS = ("time", "y", "x")

S1_ASSETS = ("vv", "vh")
SCL_ASSET = "SCL"
# ESA Sen2Cor scene classes that count as clear: vegetation, bare soil, water, unclassified.
# Not clear: 0 no data, 1 saturated/defective, 2 dark area/topographic shadow, 3 cloud shadow,
# 8/9 cloud, 10 thin cirrus, 11 snow.
SCL_CLEAR = (4, 5, 6, 7)
REFLECTANCE_SCALE = 1e-4  # stored uint16 = round(reflectance / 1e-4); 0 is the fill value

SENSOR_COLLECTIONS = {"S2": ("sentinel-2-l2a",), "S1": ("sentinel-1-grd", "sentinel-1-rtc")}


class ItemStatus(StrEnum):
    """Status of an item in the ledger."""

    PENDING = "pending"  # seen, being ingested (re-ingested on restart)
    INGESTED = "ingested"
    QUARANTINED = "quarantined"
    SUPERSEDED = "superseded"  # a newer processing baseline of the same acquisition replaced it


class StacItemDict(TypedDict, total=False):
    """Raw STAC item JSON (the fields ingest reads)."""

    type: str
    id: str
    collection: str
    geometry: dict[str, Any]
    bbox: list[float]
    properties: dict[str, Any]
    assets: dict[str, dict[str, Any]]
    links: list[dict[str, Any]]


def sensor_of_collection(collection: str) -> Sensor:
    """``S2`` for Sentinel-2 collections, ``S1`` for Sentinel-1 ones; ValueError otherwise."""
    c = collection.lower()
    if "sentinel-2" in c or c.startswith("s2"):
        return Sensor.S2
    if "sentinel-1" in c or c.startswith("s1"):
        return Sensor.S1
    raise ValueError(f"unknown collection {collection!r}: expected a Sentinel-1 or Sentinel-2 collection")


@dataclass(frozen=True, slots=True)
class TileGrid:
    """The fixed grid of one tile: UTM CRS, bounds in metres, pixel size.

    ``bounds`` is (xmin, ymin, xmax, ymax); shape is (height, width) = extent / resolution.
    """

    tile_id: str
    epsg: int
    resolution: float
    bounds: tuple[float, float, float, float]

    def __post_init__(self) -> None:
        if not self.tile_id or "/" in self.tile_id:
            raise ValueError(f"invalid tile id {self.tile_id!r}")
        if self.resolution <= 0 or not math.isfinite(self.resolution):
            raise ValueError(f"tile {self.tile_id}: resolution must be > 0, got {self.resolution}")
        xmin, ymin, xmax, ymax = self.bounds
        if not (xmax > xmin and ymax > ymin):
            raise ValueError(f"tile {self.tile_id}: empty bounds {self.bounds}")
        for extent in (xmax - xmin, ymax - ymin):
            n = extent / self.resolution
            if abs(n - round(n)) > 1e-6:
                raise ValueError(
                    f"tile {self.tile_id}: bounds {self.bounds} are not a whole number of {self.resolution} m pixels"
                )

    @property
    def shape(self) -> tuple[int, int]:
        xmin, ymin, xmax, ymax = self.bounds
        return (round((ymax - ymin) / self.resolution), round((xmax - xmin) / self.resolution))

    @property
    def transform(self) -> tuple[float, float, float, float, float, float]:
        """Affine (a, b, c, d, e, f) as in rasterio / proj:transform."""
        xmin, _, _, ymax = self.bounds
        return (self.resolution, 0.0, xmin, 0.0, -self.resolution, ymax)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tile_id": self.tile_id,
            "epsg": self.epsg,
            "resolution": self.resolution,
            "bounds": list(self.bounds),
            "shape": list(self.shape),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TileGrid:
        try:
            grid = cls(str(d["tile_id"]), int(d["epsg"]), float(d["resolution"]), tuple(float(v) for v in d["bounds"]))
        except (KeyError, TypeError) as e:
            raise ValueError(f"tile grid needs tile_id, epsg, resolution, bounds: got {d}") from e
        if "shape" in d and tuple(int(v) for v in d["shape"]) != grid.shape:
            raise ValueError(f"tile {grid.tile_id}: shape {d['shape']} disagrees with bounds/resolution {grid.shape}")
        return grid


@dataclass(frozen=True, slots=True)
class ItemInfo:
    """What ingest needs from one STAC item, validated (see :func:`ingest.items.parse_item`)."""

    item_id: str
    collection: str
    sensor: Sensor
    tile_id: str
    datetime_s: int  # acquisition time, UTC seconds since epoch
    published_s: int | None
    epsg: int | None
    baseline: str  # s2:processing_baseline ("" for S1)
    cloud_cover: float  # percent, NaN when unknown
    platform: str
    orbit: int  # sat:relative_orbit, -1 when unknown (S2)
    orbit_state: str  # ascending | descending | "" (S2)
    bbox: tuple[float, float, float, float]  # EPSG:4326

    def __post_init__(self) -> None:
        if not self.item_id:
            raise ValueError("item without id")
        if self.sensor is Sensor.S1 and self.orbit_state not in ("ascending", "descending"):
            raise ValueError(f"item {self.item_id}: sat:orbit_state must be ascending|descending, got {self.orbit_state!r}")

    @property
    def slot_key(self) -> str:
        """Acquisitions sharing a slot are mosaicked into one cube time step: tile, sensor, UTC day (and pass for S1)."""
        day = np.datetime64(self.datetime_s, "s").astype("datetime64[D]").astype(str).replace("-", "")
        return f"{day}-{self.orbit_state}" if self.sensor is Sensor.S1 else day

    @property
    def acquisition_key(self) -> tuple[str, str, str, int]:
        """Same acquisition, possibly reprocessed under another baseline."""
        return (self.tile_id, self.sensor.value, self.platform, self.datetime_s)


@dataclass(frozen=True, slots=True)
class AcquisitionEvent:
    """Message put on ``sits.acquisitions`` after a cube slice and its parcel statistics are committed."""

    tile_id: str
    sensor: Sensor
    time_s: int
    item_ids: tuple[str, ...]
    cube: str
    schema: str = "sitsmon.acquisition/1"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.item_ids:
            raise ValueError(f"acquisition event for {self.tile_id} without item ids")

    def to_message(self) -> dict[str, Any]:
        time_iso = np.datetime64(self.time_s, "s").astype(str) + "Z"
        return {
            "schema": self.schema,
            "tile_id": self.tile_id,
            "sensor": self.sensor.value,
            "time": time_iso,
            "item_ids": list(self.item_ids),
            "cube": self.cube,
            **self.extra,
        }
