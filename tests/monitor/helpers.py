"""Helpers for the monitor tests: write interchange series into the series store slot by slot and
announce each slot on the bus as ingest does (another path into the series store)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ingest.events import ACQUISITIONS_TOPIC
from monitor.bench import write_interchange_slots

TILE = "T00TST"


def write_slots(series_dir: Path, obs: pd.DataFrame, tile_id: str = TILE) -> list[dict]:
    """``obs`` written into the series store slot by slot; the acquisition events, in acquisition order."""
    return write_interchange_slots(series_dir, obs, tile_id)


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
        d["evidence"].pop("interval", None)  # likewise: the stream's interval ends at the views seen so far
        out.append(json.dumps(d, sort_keys=True))
    return sorted(out)
