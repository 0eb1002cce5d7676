"""Public shapes of the API (request bodies, paged answers) and the shared query parameters."""

from __future__ import annotations

import math
import re
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field, field_validator

from alerts.types import Status

MAX_PAGE_SIZE = 500
MAX_BULK = 500
# ids are free text from the parcel layer (they may hold '#', '/', spaces), but bounded and printable
ID_MAX = 200
_PRINTABLE = re.compile(r"^[^\x00-\x1f\x7f]+$")

Page = Annotated[int, Query(ge=1, le=1_000_000, description="page number, from 1")]
PageSize = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description=f"rows per page (at most {MAX_PAGE_SIZE})")]
TileId = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_-]{1,32}$", description="tile id")]
Campaign = Annotated[int | None, Query(ge=1900, le=2200, description="the campaign of the lights (one light "
                                                                   "per parcel and campaign); default: each "
                                                                   "parcel's latest")]


def check_id(value: str, what: str) -> str:
    if not value or len(value) > ID_MAX or not _PRINTABLE.match(value):
        raise ValueError(f"malformed {what} id (1..{ID_MAX} printable characters)")
    return value


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """``minlon,minlat,maxlon,maxlat`` in WGS84, checked for order and range."""
    parts = text.split(",")
    if len(parts) != 4:
        raise ValueError(f"bbox must be minlon,minlat,maxlon,maxlat, got {text!r}")
    try:
        x0, y0, x1, y1 = (float(p) for p in parts)
    except ValueError:
        raise ValueError(f"bbox values must be numbers, got {text!r}") from None
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise ValueError("bbox values must be finite")
    if not (-180 <= x0 < x1 <= 180 and -90 <= y0 < y1 <= 90):
        raise ValueError(f"bbox must lie in lon -180..180, lat -90..90 with min < max, got {text!r}")
    return x0, y0, x1, y1


MAX_VERTICES = 10_000


class PolygonIn(BaseModel):
    """A GeoJSON Polygon or MultiPolygon in WGS84 (the area a controller drew or imported)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["Polygon", "MultiPolygon"]
    coordinates: list[Any] = Field(min_length=1)

    def to_shape(self):
        import shapely
        from shapely.geometry import shape

        try:
            geom = shape({"type": self.type, "coordinates": self.coordinates})
        except Exception as e:  # noqa: BLE001 - shapely raises many kinds for bad rings
            raise ValueError(f"invalid {self.type}: {' '.join(str(e).split())[:200]}") from e
        n = shapely.get_num_coordinates(geom)
        if n > MAX_VERTICES:
            raise ValueError(f"polygon has {n} vertices, at most {MAX_VERTICES}")
        if geom.is_empty or not geom.is_valid:
            raise ValueError(f"invalid {self.type}: {shapely.is_valid_reason(geom)}")
        x0, y0, x1, y1 = geom.bounds
        if not (-180 <= x0 <= x1 <= 180 and -90 <= y0 <= y1 <= 90):
            raise ValueError("polygon must lie in lon -180..180, lat -90..90 (WGS84)")
        return geom


class ParcelSearchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    geometry: PolygonIn
    light: Literal["green", "orange", "red", "not_analysable"] | None = None


TileStr = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")]


class BackfillIn(BaseModel):
    """A replay to start: some tiles, or the tiles of the parcels a polygon touches, and a period."""

    model_config = ConfigDict(extra="forbid")

    tiles: list[TileStr] | None = Field(None, min_length=1, max_length=500)
    polygon: PolygonIn | None = None
    start: date
    end: date

    @field_validator("end")
    @classmethod
    def _end_after_start(cls, end: date, info) -> date:
        start = info.data.get("start")
        if start is not None and end < start:
            raise ValueError(f"end {end} is before start {start}")
        return end


class Paged(BaseModel):
    count: int
    page: int
    page_size: int
    data: list[Any]


class StatusChangeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Status
    note: str = Field("", max_length=4000)
    # the photo request of the ladder: what to photograph, where, facing which way
    photo_what: str | None = Field(None, max_length=500)
    photo_lon: float | None = Field(None, ge=-180, le=180)
    photo_lat: float | None = Field(None, ge=-90, le=90)
    photo_direction_deg: float | None = Field(None, ge=0, lt=360)

    def full_note(self) -> str:
        if self.status != Status.PHOTO_REQUEST or not self.photo_what:
            return self.note
        where = (f" at {self.photo_lat:.6f},{self.photo_lon:.6f}"
                 if self.photo_lat is not None and self.photo_lon is not None else "")
        facing = f" facing {self.photo_direction_deg:.0f}°" if self.photo_direction_deg is not None else ""
        text = f"photo request: {self.photo_what}{where}{facing}"
        return f"{text}; {self.note}" if self.note else text


class BulkAckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alert_ids: list[str] = Field(min_length=1, max_length=MAX_BULK)
    note: str = Field("", max_length=4000)

    @field_validator("alert_ids")
    @classmethod
    def _ids(cls, v: list[str]) -> list[str]:
        for i in v:
            check_id(i, "alert")
        return list(dict.fromkeys(v))


class BulkResult(BaseModel):
    acknowledged: list[str]
    skipped: dict[str, str]


AlertSort = Literal["event_date_desc", "event_date_asc", "confidence_desc", "confidence_asc", "detected_at_desc"]


class HistoryPublic(BaseModel):
    status: str
    who: str
    when: datetime
    note: str


class AlertPublic(BaseModel):
    alert_id: str
    parcel_id: str
    tile_id: str
    type: str
    event_date: date
    window_start: date
    window_end: date
    detected_at: datetime
    confidence: float
    status: str
    model_version: str
    evidence: dict[str, Any]
    history: list[HistoryPublic]
    centroid: list[float] | None = None


class AlertsPublic(BaseModel):
    count: int
    page: int
    page_size: int
    data: list[AlertPublic]
    next_cursor: str | None = None  # pass as `cursor` for the next page; None on the last page


def finite(obj: Any) -> Any:
    """JSON-safe copy: NaN and infinities become null (evidence comes from numeric detectors)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    return obj


def alert_public(alert, centroid: tuple[float, float] | None, with_evidence: bool = True) -> AlertPublic:
    return AlertPublic(
        alert_id=alert.alert_id, parcel_id=alert.parcel_id, tile_id=alert.tile_id, type=alert.type,
        event_date=alert.event_date, window_start=alert.window_start, window_end=alert.window_end,
        detected_at=alert.detected_at, confidence=alert.confidence, status=alert.status.value,
        model_version=alert.model_version, evidence=finite(alert.evidence) if with_evidence else {},
        history=[HistoryPublic(status=h.status.value, who=h.who, when=h.when, note=h.note) for h in alert.history],
        centroid=list(centroid) if centroid else None,
    )
