"""Validation of raw STAC item JSON into :class:`ingest.types.ItemInfo`.

Malformed items raise :class:`ingest.errors.ItemError` with the reason; the poller quarantines them.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from ingest.assets import Dialect, baseline_key, resolve_assets, s1_calibration, s2_bands_and_scl
from ingest.errors import ItemError
from ingest.types import S1_ASSETS, ItemInfo, Sensor, sensor_of_collection

__all__ = ["parse_time", "tile_of_item", "epsg_of_item", "required_assets", "parse_item", "baseline_key"]


def parse_time(value: Any, what: str = "datetime") -> int:
    """ISO 8601 (``Z`` or offset) to UTC seconds since epoch; naive times are taken as UTC."""
    if not isinstance(value, str) or not value:
        raise ItemError(f"{what} must be an ISO 8601 string, got {value!r}")
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as e:
        raise ItemError(f"{what} is not ISO 8601: {value!r}") from e
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp())


def tile_of_item(item: dict[str, Any]) -> str | None:
    """MGRS tile id from ``grid:code`` (MGRS-33UXP), ``s2:mgrs_tile`` or the ``mgrs:*`` fields."""
    props = item.get("properties") if isinstance(item, dict) else None
    if not isinstance(props, dict):
        return None
    code = props.get("grid:code")
    if isinstance(code, str) and code.upper().startswith("MGRS-"):
        return code[5:]
    if isinstance(props.get("s2:mgrs_tile"), str):
        return props["s2:mgrs_tile"]
    zone, band, square = (props.get(k) for k in ("mgrs:utm_zone", "mgrs:latitude_band", "mgrs:grid_square"))
    if isinstance(zone, int) and isinstance(band, str) and isinstance(square, str):
        return f"{zone:02d}{band}{square}"
    return None


def epsg_of_item(item: dict[str, Any]) -> int | None:
    props = item.get("properties") if isinstance(item, dict) else None
    if not isinstance(props, dict):
        return None
    if props.get("proj:epsg") is not None:
        return int(props["proj:epsg"])
    code = props.get("proj:code")
    if isinstance(code, str) and code.upper().startswith("EPSG:"):
        return int(code.split(":", 1)[1])
    return None


def required_assets(sensor: Sensor) -> tuple[str, ...]:
    """The canonical bands ingest needs of a sensor (found in each item by ``ingest.assets.resolve_assets``)."""
    return s2_bands_and_scl() if sensor is Sensor.S2 else S1_ASSETS


def parse_item(item: Any, dialect: Dialect | str | None = None) -> ItemInfo:
    """Check a raw STAC item and extract what ingest needs; :class:`ItemError` says what is wrong.

    ``dialect`` is the publishing catalogue's (``ingest.assets``; default the synthetic archive's):
    every band must resolve, and an S1 item must come from a calibrated collection.
    """
    if not isinstance(item, dict):
        raise ItemError(f"item is not a JSON object: {type(item).__name__}")
    item_id = item.get("id")
    if not isinstance(item_id, str) or not item_id:
        raise ItemError("item has no id")
    props = item.get("properties")
    if not isinstance(props, dict):
        raise ItemError(f"item {item_id}: no properties object")
    collection = item.get("collection")
    if not isinstance(collection, str):
        raise ItemError(f"item {item_id}: no collection")
    try:
        sensor = sensor_of_collection(collection)
    except ValueError as e:
        raise ItemError(f"item {item_id}: {e}") from e
    when = props.get("datetime") or props.get("start_datetime")
    datetime_s = parse_time(when, f"item {item_id} datetime")
    published = props.get("published") or props.get("created")
    published_s = parse_time(published, f"item {item_id} published") if published else None
    tile_id = tile_of_item(item)
    if not tile_id:
        raise ItemError(f"item {item_id}: no MGRS tile (grid:code, s2:mgrs_tile or mgrs:*)")
    resolve_assets(item, sensor, dialect)
    if sensor is Sensor.S1:
        try:
            s1_calibration(collection, dialect)
        except ItemError as e:
            raise ItemError(f"item {item_id}: {e}") from None
    bbox = item.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, int | float) for v in bbox)):
        raise ItemError(f"item {item_id}: bbox must be 4 numbers, got {bbox!r}")
    cloud = props.get("eo:cloud_cover")
    orbit = props.get("sat:relative_orbit")
    try:
        return ItemInfo(
            item_id=item_id,
            collection=collection,
            sensor=sensor,
            tile_id=tile_id,
            datetime_s=datetime_s,
            published_s=published_s,
            epsg=epsg_of_item(item),
            baseline=str(props.get("s2:processing_baseline") or ""),
            cloud_cover=float(cloud) if isinstance(cloud, int | float) else math.nan,
            platform=str(props.get("platform") or ""),
            orbit=int(orbit) if isinstance(orbit, int) else -1,
            orbit_state=str(props.get("sat:orbit_state") or ""),
            bbox=tuple(float(v) for v in bbox),
        )
    except ValueError as e:
        raise ItemError(f"item {item_id}: {e}") from e
