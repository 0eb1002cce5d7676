"""File exports of alerts: CSV (interchange-like) and GeoJSON (with the parcel geometry when known)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from alerts.types import Alert

CSV_COLUMNS = (
    "alert_id",
    "parcel_id",
    "tile_id",
    "event",
    "date",
    "window_start",
    "window_end",
    "confidence",
    "sensor",
    "status",
    "detected_at",
    "model_version",
    "evidence",
)


def alerts_frame(alerts: Iterable[Alert]) -> pd.DataFrame:
    rows = [
        {
            "alert_id": a.alert_id,
            "parcel_id": a.parcel_id,
            "tile_id": a.tile_id,
            "event": a.type,
            "date": a.event_date.isoformat(),
            "window_start": a.window_start.isoformat(),
            "window_end": a.window_end.isoformat(),
            "confidence": a.confidence,
            "sensor": a.evidence.get("sensor", ""),
            "status": a.status.value,
            "detected_at": a.detected_at.isoformat(),
            "model_version": a.model_version,
            "evidence": json.dumps(a.evidence, separators=(",", ":"), sort_keys=True),
        }
        for a in alerts
    ]
    return pd.DataFrame(rows, columns=list(CSV_COLUMNS))


def write_csv(alerts: Iterable[Alert], path: str | Path) -> int:
    df = alerts_frame(alerts)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    return len(df)


def write_geojson(
    alerts: Iterable[Alert], path: str | Path, geometries: Mapping[str, dict[str, Any]] | None = None
) -> int:
    """FeatureCollection, one feature per alert; geometry from the evidence polygon, else the parcel's."""
    feats = []
    for a in alerts:
        geom = a.evidence.get("polygon") or (geometries or {}).get(a.parcel_id)
        props = json.loads(a.model_dump_json(by_alias=True))
        props.pop("history", None)
        feats.append({"type": "Feature", "geometry": geom, "properties": props})
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    return len(feats)


def parcel_geometries(parcels: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """parcel_id → GeoJSON geometry from an interchange parcels table (``geometry`` as GeoJSON text)."""
    if "geometry" not in parcels.columns:
        return {}
    out = {}
    for pid, g in zip(parcels["parcel_id"], parcels["geometry"], strict=True):
        if isinstance(g, str) and g.strip().startswith("{"):
            try:
                out[str(pid)] = json.loads(g)
            except json.JSONDecodeError:
                continue
        elif hasattr(g, "__geo_interface__"):
            out[str(pid)] = g.__geo_interface__
    return out
