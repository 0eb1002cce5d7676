"""Helpers for the monitor tests: write interchange series into the series store slot by slot and
announce each slot on the bus as ingest does (another path into the series store)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from ingest.events import ACQUISITIONS_TOPIC
from ingest.series import SCHEMA, write_slot
from ingest.types import S1_POLS, S2_BANDS

TILE = "T00TST"


def slot_name(time: pd.Timestamp, sensor: str) -> str:
    return time.strftime("%Y%m%dT%H%M%S") + ("-s1" if sensor == "S1" else "")


def write_slots(series_dir: Path, obs: pd.DataFrame, tile_id: str = TILE) -> list[dict]:
    """Write ``obs`` (normalised interchange rows) as one slot per (sensor, time); returns the event values
    in acquisition order (time, S1 before S2)."""
    events = []
    for (time, sensor), rows in sorted(obs.groupby(["time", "sensor"]), key=lambda kv: (kv[0][0], kv[0][1] == "S2")):
        slot = slot_name(time, sensor)
        n = len(rows)
        data = {"parcel_id": rows["parcel_id"].astype(str).to_numpy(),
                "time": np.full(n, time.tz_convert("UTC").tz_localize(None).to_datetime64().astype("datetime64[s]")),
                "sensor": [sensor] * n}
        for c in (*S2_BANDS, "clear", *S1_POLS):
            data[c] = rows[c].to_numpy(np.float32)
        data["orbit"] = rows["orbit"].fillna(-1).to_numpy(np.int16)
        data["tile_id"] = [tile_id] * n
        data["clear_fraction"] = rows["clear"].to_numpy(np.float32)
        data["pixel_count"] = np.ones(n, np.int32)
        data["valid_count"] = np.ones(n, np.int32)
        data["pass"] = [""] * n
        data["item_ids"] = [f"item-{slot}"] * n
        data["slot"] = [slot] * n
        table = pa.table(data).cast(SCHEMA)
        write_slot(series_dir, tile_id, sensor, slot, table.sort_by("parcel_id"))
        events.append({"schema": "sitsmon.acquisition/1", "tile_id": tile_id, "sensor": sensor,
                       "time": time.strftime("%Y-%m-%dT%H:%M:%SZ"), "item_ids": [f"item-{slot}"], "cube": "",
                       "slot": slot, "series": str(Path(series_dir) / tile_id)})
    return events


def publish(bus, events: list[dict]) -> None:
    for value in events:
        bus.publish(ACQUISITIONS_TOPIC, value["tile_id"], value)
    bus.flush()


def comparable(alerts) -> list[str]:
    """Alerts as JSON of what must agree between the stream and the offline run: everything but the
    detection time, the model version tag and the model's expectation (the stream knows only the views
    seen before an event's confirmation; offline looks 30 days ahead)."""
    import json

    out = []
    for a in alerts:
        d = json.loads(a.to_json())
        for k in ("detected_at", "model_version"):
            d.pop(k)
        d["evidence"].pop("model", None)
        out.append(json.dumps(d, sort_keys=True))
    return sorted(out)
