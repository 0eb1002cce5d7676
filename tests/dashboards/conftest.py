"""One small data dir per session: a copy of the session's demo run on a tiny synthetic archive (one tile,
30 parcels, ten weeks; ``demo_run`` in tests/conftest.py), plus a parcel whose id holds '#', '/' and a space, and the users of each role."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from alerts.store import open_store
from dashboards.config import DashboardConfig
from dashboards.security import UserStore

ODD_ID = "33UXP/odd #1 a"
FOREIGN_TILE = "99ZZZ"


@dataclass(frozen=True)
class Site:
    data_dir: Path
    config: DashboardConfig
    tokens: dict[str, str]
    tile: str
    alert_ids: list[str]
    parcel_ids: list[str]
    odd_alert_id: str


def _add_odd_parcel(root: Path, tile: str) -> str:
    """Rename a parcel without alerts (in the layer and the lights) to an id with '#', '/' and a space,
    and give it an alert, so URL-encoded ids are exercised on real rows."""
    import geopandas as gpd
    import pandas as pd

    path = root / "archive" / "parcels" / "parcels.parquet"
    gdf = gpd.read_parquet(path)
    with open_store(str(root / "alerts.sqlite")) as store:
        alerted = {a.parcel_id for a in store.query(limit=1000)}
    row = next(i for i, pid in zip(gdf.index, gdf["parcel_id"], strict=True) if pid not in alerted)
    old = str(gdf.at[row, "parcel_id"])
    gdf.loc[row, "parcel_id"] = ODD_ID
    gdf.to_parquet(path)
    lights = pd.read_csv(root / "traffic-lights.csv", dtype={"parcel_id": str})
    lights.loc[lights["parcel_id"] == old, "parcel_id"] = ODD_ID
    lights.to_csv(root / "traffic-lights.csv", index=False)
    with open_store(str(root / "alerts.sqlite")) as store:
        a = store.query(limit=1)[0]
        from alerts.types import make_alert_id

        odd = a.model_copy(update={"parcel_id": ODD_ID, "history": (), "alert_id": make_alert_id(
            ODD_ID, a.type, a.window_start, a.window_end), "tile_id": tile})
        store.upsert(odd)
    return odd.alert_id


@pytest.fixture(scope="session")
def site(tmp_path_factory, demo_run) -> Site:
    # a copy of the session's demo run (tests/conftest.py, which tests/test_demo.py checks), changed below
    root = copy_data_dir(demo_run[0], tmp_path_factory.mktemp("dash") / "data")
    tile = json.loads((root / "archive" / "archive.json").read_text())["tiles"][0]["tile_id"]
    odd_alert = _add_odd_parcel(root, tile)
    config = DashboardConfig.from_data_dir(root, stream_poll_s=0.3)
    users = UserStore(config.users_db)
    tokens = {
        "admin": users.add("admin", "admin", ["*"]),
        "controller": users.add("ctl", "controller", [tile]),
        "viewer": users.add("viewer", "viewer", [tile]),
        "operator": users.add("op", "operator", [tile]),
        "foreign": users.add("foreign", "controller", [FOREIGN_TILE]),
        "foreign_op": users.add("foreign_op", "operator", [FOREIGN_TILE]),
    }
    users.close()
    with open_store(config.alerts_url) as store:
        alert_ids = [a.alert_id for a in store.query(limit=1000)]
    import geopandas as gpd

    parcel_ids = gpd.read_parquet(config.parcels_path)["parcel_id"].astype(str).tolist()
    return Site(root, config, tokens, tile, alert_ids, parcel_ids, odd_alert)


@pytest.fixture(scope="session")
def app(site):
    from dashboards import create_app

    return create_app(site.config)


@pytest.fixture(scope="session")
def client(app):
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        yield c


def copy_data_dir(src: Path, dst: Path, skip: tuple[str, ...] = ()) -> Path:
    """A copy of a data dir whose SQLite files are copied through SQLite's backup API.

    Never a plain file copy of a database this process has open: closing any other descriptor of
    the file drops every POSIX lock the process holds on it (SQLite's own connections included),
    so a later server process believes itself alone, checkpoints and deletes the WAL under the
    open connections, and the file reads as malformed.
    """
    import shutil
    import sqlite3

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.sqlite", "*.sqlite-wal", "*.sqlite-shm", *skip))
    for db in src.rglob("*.sqlite"):
        rel = db.relative_to(src)
        if any(part in skip for part in rel.parts):
            continue
        with sqlite3.connect(db) as a, sqlite3.connect(dst / rel) as b:
            a.backup(b)
        a.close()
        b.close()
    return dst


def auth(site: Site, who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {site.tokens[who]}"}
