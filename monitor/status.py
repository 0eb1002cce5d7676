"""``monitor status``: what the state store and the workers' health reports (merged) say, as one JSON object."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from monitor.health import read_health
from monitor.state_store import TileStore


def monitor_status(root: Path) -> dict[str, Any]:
    root = Path(root)
    out: dict[str, Any] = {"namespaces": {}, "health": read_health(root)}
    if not root.is_dir():
        out["note"] = f"no monitor state under {root}"
        return out
    for ns in sorted(p for p in root.iterdir() if p.is_dir()):
        tiles = {}
        for tile_dir in sorted(p for p in ns.iterdir() if p.is_dir()):
            store = TileStore(root, ns.name, tile_dir.name)
            applied = store.applied()
            last = max(applied) if applied else None
            n_bytes = store.state_bytes()
            try:
                import zarr

                current = store._current()
                n = int(zarr.open_group(str(tile_dir / current["state"]), mode="r")["parcel_ids"].shape[0]) \
                    if current else 0
            except Exception:  # noqa: BLE001 - status reports what it can
                n = 0
            tiles[tile_dir.name] = {
                "acquisitions": len(applied),
                "last_acquisition": None if last is None else
                f"{datetime.fromtimestamp(last.time_s, UTC).isoformat()} {last.sensor} {last.slot}",
                "parcels": n, "state_bytes": n_bytes, "state_bytes_per_parcel": round(n_bytes / n, 1) if n else None,
                "checkpoints": len(store.checkpoints()), "refused": len(store.refused()),
            }
        out["namespaces"][ns.name] = tiles
    return out
