"""Start and stop the real local services that integration tests use (helpers for tests/conftest.py).

Every service is started by its script in ``scripts/services/`` (the same scripts a developer or CI
runs by hand), keeps its data under ``.services/`` and binds to 127.0.0.1.

Several test sessions may run at once in one working tree (engineers share the machine), so a
shared service (Kafka, PostgreSQL) is held through a *lease*: under a file lock, a session starts the
service if it is not running and records its pid as a lease holder; at the end it drops its lease,
and the last holder stops the service if a test session started it. A service that was already
running before any test session (a developer's own) is never stopped.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

from ingest.stac_server import stop_process

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = REPO_ROOT / "scripts" / "services"
SERVICES_DIR = Path(os.environ.get("SITSMON_SERVICES_DIR", REPO_ROOT / ".services"))

KAFKA_PORT = int(os.environ.get("KAFKA_PORT", "29092"))
ZK_PORT = int(os.environ.get("ZK_PORT", "22181"))
PG_PORT = int(os.environ.get("PG_PORT", "25432"))


class ServiceError(RuntimeError):
    """A local service could not be started or prepared (the message carries the log tail)."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 25, since: float = 0.0) -> str:
    try:
        if path.stat().st_mtime < since:
            return f"({path} not written by this attempt)"
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"
    return f"--- last lines of {path} ---\n" + "\n".join(text.splitlines()[-lines:])


def run_script(
    script: str,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    logs: tuple[Path, ...] = (),
) -> str:
    """Run ``scripts/services/<script> args...``; return its stdout (stripped) or raise ServiceError."""
    full_env = {**os.environ, "SITSMON_SERVICES_DIR": str(SERVICES_DIR), **(env or {})}
    cmd = [str(SCRIPTS / script), *args]
    started = time.time()
    try:
        done = subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as e:
        tails = "\n".join(_tail(p, since=started) for p in logs)
        raise ServiceError(f"{' '.join(cmd)} did not finish within {timeout} s\n{tails}") from e
    if done.returncode != 0:
        tails = "\n".join(_tail(p, since=started) for p in logs)
        raise ServiceError(
            f"{' '.join(cmd)} failed with status {done.returncode}\n"
            f"--- stderr ---\n{done.stderr.strip()[-3000:]}\n{tails}"
        )
    return done.stdout.strip()


def script_ok(script: str, *args: str, env: dict[str, str] | None = None) -> bool:
    full_env = {**os.environ, "SITSMON_SERVICES_DIR": str(SERVICES_DIR), **(env or {})}
    done = subprocess.run(
        [str(SCRIPTS / script), *args], env=full_env, capture_output=True, text=True, timeout=60, check=False
    )
    return done.returncode == 0


@contextmanager
def _flock(name: str) -> Iterator[None]:
    SERVICES_DIR.mkdir(parents=True, exist_ok=True)
    with open(SERVICES_DIR / f".{name}.lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def leased_service(
    name: str, start: Callable[[], str], stop: Callable[[], None], is_running: Callable[[], bool]
) -> Iterator[str]:
    """Hold service ``name`` for this process: start it if needed, stop it when the last holder leaves.

    ``start()`` is idempotent and returns the address; ``is_running()`` says whether it runs now.
    """
    leases = SERVICES_DIR / "leases" / name
    marker = SERVICES_DIR / "leases" / f"{name}.started-by-tests"
    mine = leases / str(os.getpid())

    def live_leases() -> list[Path]:
        out = []
        for lease in leases.glob("*") if leases.exists() else []:
            if lease.name.isdigit() and _pid_alive(int(lease.name)):
                out.append(lease)
            else:
                lease.unlink(missing_ok=True)  # a crashed session's lease
        return out

    with _flock(name):
        leases.mkdir(parents=True, exist_ok=True)
        live_leases()  # forget the leases of crashed sessions
        # Already running with no marker: a developer's own server, left running at the end. A crashed
        # session's leftover still has its marker and is stopped by whoever leaves last.
        started = not is_running()
        address = start()
        if started:
            marker.touch()
        mine.touch()
    try:
        yield address
    finally:
        with _flock(name):
            mine.unlink(missing_ok=True)
            if not live_leases() and marker.exists():
                try:
                    stop()
                finally:
                    marker.unlink(missing_ok=True)


# ---- Kafka -------------------------------------------------------------------------------------


def kafka_env() -> dict[str, str]:
    return {"KAFKA_PORT": str(KAFKA_PORT), "ZK_PORT": str(ZK_PORT)}


@contextmanager
def kafka_service() -> Iterator[str]:
    """Yield the bootstrap address of the local Kafka 0.9 broker (started fresh if not running)."""
    logs = (SERVICES_DIR / "kafka" / "kafka.log", SERVICES_DIR / "kafka" / "zookeeper.log")

    def start() -> str:
        running = script_ok("kafka.sh", "status", env=kafka_env())
        env = kafka_env() if running else {**kafka_env(), "FRESH": "1"}
        return run_script("kafka.sh", "start", env=env, timeout=180, logs=logs).splitlines()[-1]

    with leased_service(
        "kafka",
        start,
        lambda: run_script("kafka.sh", "stop", env=kafka_env(), timeout=60),
        lambda: script_ok("kafka.sh", "status", env=kafka_env()),
    ) as address:
        yield address


# ---- PostgreSQL --------------------------------------------------------------------------------


def pg_env() -> dict[str, str]:
    return {"PG_PORT": str(PG_PORT)}


@contextmanager
def postgres_service() -> Iterator[str]:
    """Yield the DSN of the local PostgreSQL + PostGIS server's ``sitsmon`` database."""
    logs = (SERVICES_DIR / "postgres" / "postgres.log", SERVICES_DIR / "postgres" / "initdb.log")
    with leased_service(
        "postgres",
        lambda: run_script("postgres.sh", "start", env=pg_env(), timeout=300, logs=logs).splitlines()[-1],
        lambda: run_script("postgres.sh", "stop", env=pg_env(), timeout=60),
        lambda: script_ok("postgres.sh", "status", env=pg_env()),
    ) as dsn:
        yield dsn


def _dsn_with_db(dsn: str, dbname: str) -> str:
    return dsn.rsplit("/", 1)[0] + "/" + dbname


def unique_db_name(hint: str) -> str:
    """A fresh, valid database name: ``t_<hint>_<8 hex>`` (hint reduced to [a-z0-9_], 40 chars)."""
    clean = re.sub(r"[^a-z0-9_]+", "_", hint.lower()).strip("_")[:40] or "db"
    return f"t_{clean}_{uuid.uuid4().hex[:8]}"


def create_database(admin_dsn: str, name: str, *, postgis: bool = True) -> str:
    """Create database ``name`` (with the postgis extension) and return its DSN."""
    import psycopg

    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise ServiceError(f"bad database name {name!r}")
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = _dsn_with_db(admin_dsn, name)
    if postgis:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SET client_min_messages = warning")
            conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    return dsn


def drop_database(admin_dsn: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ---- pgstac ------------------------------------------------------------------------------------


def _write_ndjson(path: Path, records: list[dict[str, Any]]) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, separators=(",", ":")) + "\n")
    return path


@dataclass
class PgstacServers:
    """Start pgstac APIs, each on its own database and free port; ``close()`` stops them all.

    The same collections + items (by content) give back the same running API.
    """

    admin_dsn: str
    work_dir: Path
    _urls: dict[str, str] = field(default_factory=dict)  # data digest -> API URL
    _made: list[tuple[str, int]] = field(default_factory=list)  # (database, port) to clean up

    def _env(self, db: str, port: int | None = None) -> dict[str, str]:
        env = {**pg_env(), "PGSTAC_DB": db}
        if port is not None:
            env["PGSTAC_PORT"] = str(port)
        return env

    def __call__(self, collections: list[dict[str, Any]], items: list[dict[str, Any]]) -> str:
        if not collections:
            raise ServiceError("pgstac_api needs at least one collection")
        payload = json.dumps([collections, items], sort_keys=True).encode()
        digest = hashlib.sha256(payload).hexdigest()[:12]
        if digest in self._urls:
            return self._urls[digest]
        run_script("pgstac.sh", "install", timeout=900)
        db = f"t_pgstac_{digest}_{uuid.uuid4().hex[:6]}"
        create_database(self.admin_dsn, db)
        port = free_port()
        self._made.append((db, port))  # close() cleans up even after a failure below
        run_script("pgstac.sh", "migrate", env=self._env(db), timeout=120)
        folder = self.work_dir / db
        folder.mkdir(parents=True, exist_ok=True)
        run_script(
            "pgstac.sh",
            "load",
            "collections",
            str(_write_ndjson(folder / "c.ndjson", collections)),
            env=self._env(db),
            timeout=120,
        )
        if items:
            run_script(
                "pgstac.sh",
                "load",
                "items",
                str(_write_ndjson(folder / "i.ndjson", items)),
                env=self._env(db),
                timeout=300,
            )
        log = SERVICES_DIR / "pgstac" / f"api-{port}.log"
        url = run_script("pgstac.sh", "serve", env=self._env(db, port), timeout=120, logs=(log,))
        url = url.splitlines()[-1]
        self._urls[digest] = url
        return url

    def close(self) -> None:
        errors = []
        for db, port in self._made:
            try:
                run_script("pgstac.sh", "stop", env=self._env(db, port), timeout=60)
            except ServiceError as e:
                errors.append(str(e))
            try:
                drop_database(self.admin_dsn, db)
            except Exception as e:  # noqa: BLE001 - report every cleanup failure together
                errors.append(f"drop {db}: {e}")
        self._made.clear()
        self._urls.clear()
        if errors:
            raise ServiceError("pgstac cleanup failed: " + " | ".join(errors))


# ---- STAC test data and search cases ----------------------------------------------------------

S2, S1 = "sentinel-2-l2a", "sentinel-1-grd"
_HANDMADE_TILES = {  # tile_id: (epsg, lon_min, lat_min, lon_max, lat_max)
    "33UXP": (32633, 15.0, 48.6, 16.4, 49.6),
    "31TCJ": (32631, 0.9, 43.2, 2.2, 44.2),
}


def write_handmade_archive(root: Path) -> Path:
    """A tiny archive in the layout of docs/archive-format.md: STAC JSON only, no COGs.

    Two tiles far apart, S2 every 5 days and S1 every 6 days from 2024-05-01 to 2024-07-15 (57 items):
    catalogue tests (search, paging) where spatial searches must tell tiles apart.
    """
    from datetime import datetime, timedelta

    root.mkdir(parents=True, exist_ok=True)
    (root / "collections").mkdir(exist_ok=True)
    (root / "items").mkdir(exist_ok=True)
    start, end = datetime(2024, 5, 1, tzinfo=UTC), datetime(2024, 7, 15, tzinfo=UTC)
    manifest = {
        "schema": "sitsmon-archive/1",
        "seed": 0,
        "start": "2024-05-01",
        "end": "2024-07-15",
        "created": "2024-07-16T00:00:00Z",
        "generator": "tests/services.py",
        "tiles": [
            {
                "tile_id": t,
                "epsg": epsg,
                "resolution": 10.0,
                "bounds": [500000, 5300000, 502560, 5302560],
                "shape": [256, 256],
            }
            for t, (epsg, *_rest) in _HANDMADE_TILES.items()
        ],
        "counts": {},
    }
    for cid, title in ((S2, "Sentinel-2 L2A (hand-made)"), (S1, "Sentinel-1 GRD (hand-made)")):
        collection = {
            "type": "Collection",
            "stac_version": "1.0.0",
            "id": cid,
            "title": title,
            "description": f"{title} for tests",
            "license": "proprietary",
            "links": [],
            "extent": {
                "spatial": {"bbox": [[0.9, 43.2, 16.4, 49.6]]},
                "temporal": {
                    "interval": [
                        [start.isoformat().replace("+00:00", "Z"), end.isoformat().replace("+00:00", "Z")]
                    ]
                },
            },
        }
        (root / "collections" / f"{cid}.json").write_text(json.dumps(collection), encoding="utf-8")
    counts = {}
    for cid, every, hour in ((S2, 5, 10), (S1, 6, 5)):
        items = []
        for tile_id, (epsg, x0, y0, x1, y1) in _HANDMADE_TILES.items():
            when = start + timedelta(days=1 if tile_id == "31TCJ" else 0, hours=hour)
            while when <= end + timedelta(hours=23):
                day = when.strftime("%Y%m%d")
                item_id = (
                    f"S2B_{tile_id}_{day}_0_L2A" if cid == S2 else f"S1A_IW_GRDH_{day}T051234_{tile_id}_A073"
                )
                stamp = when.isoformat().replace("+00:00", "Z")
                items.append(
                    {
                        "type": "Feature",
                        "stac_version": "1.0.0",
                        "id": item_id,
                        "collection": cid,
                        "bbox": [x0, y0, x1, y1],
                        "geometry": {
                            "type": "Polygon",
                            "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]],
                        },
                        "properties": {
                            "datetime": stamp,
                            "published": stamp,
                            "proj:epsg": epsg,
                            "grid:code": f"MGRS-{tile_id}",
                        },
                        "assets": {
                            "B04" if cid == S2 else "vv": {
                                "href": f"data/{cid}/{tile_id}/{item_id}/{'B04' if cid == S2 else 'vv'}.tif",
                                "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                                "roles": ["data"],
                            }
                        },
                        "links": [],
                    }
                )
                when += timedelta(days=every)
        _write_ndjson(root / "items" / f"{cid}.ndjson", items)
        counts[cid] = len(items)
    manifest["counts"] = counts
    (root / "archive.json").write_text(json.dumps(manifest), encoding="utf-8")
    return root


def _parse_time(text: str):
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00"))


SEARCH_CASES = (
    "one-collection",
    "all-collections",
    "bbox-inside",
    "bbox-nearby-outside",
    "bbox-far-outside",
    "datetime-window",
    "bbox-datetime-one-collection",
)


def search_cases(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Named item searches (pystac-client ``search`` keywords) that cover a given set of items.

    Built from the items themselves: a bbox well inside the first item's footprint, one just east of
    every footprint and one far away, a datetime window over the middle third of the time span, and their mixes.
    """
    first = items[0]
    x0, y0, x1, y1 = first["bbox"]
    cx, cy, wx, wy = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 10, (y1 - y0) / 10
    inside = [cx - wx, cy - wy, cx + wx, cy + wy]
    east = max(i["bbox"][2] for i in items)  # just east of every footprint
    nearby = [east + 0.01, cy - wy, east + 0.05, cy + wy]
    times = sorted(_parse_time(i["properties"]["datetime"]) for i in items)
    span = times[-1] - times[0]
    lo, hi = times[0] + span / 3, times[0] + 2 * span / 3
    window = f"{lo.strftime('%Y-%m-%dT%H:%M:%SZ')}/{hi.strftime('%Y-%m-%dT%H:%M:%SZ')}"
    collections = sorted({i["collection"] for i in items})
    return {
        "one-collection": {"collections": [collections[0]]},
        "all-collections": {"collections": collections},
        "bbox-inside": {"collections": collections, "bbox": inside},
        "bbox-nearby-outside": {"collections": collections, "bbox": nearby},
        "bbox-far-outside": {"collections": collections, "bbox": [-60.0, -30.0, -59.5, -29.5]},
        "datetime-window": {"collections": collections, "datetime": window},
        "bbox-datetime-one-collection": {
            "collections": [first["collection"]],
            "bbox": inside,
            "datetime": window,
        },
    }


def expected_ids(items: list[dict[str, Any]], search: dict[str, Any]) -> set[str]:
    """The ids a correct STAC API returns for ``search`` (collections, bbox on the item bbox, datetime)."""
    out = set()
    for item in items:
        if "collections" in search and item["collection"] not in search["collections"]:
            continue
        if "bbox" in search:
            a = search["bbox"]
            b = item["bbox"]
            if a[0] > b[2] or a[2] < b[0] or a[1] > b[3] or a[3] < b[1]:
                continue
        if "datetime" in search:
            lo, hi = (_parse_time(t) for t in search["datetime"].split("/"))
            if not lo <= _parse_time(item["properties"]["datetime"]) <= hi:
                continue
        out.add(item["id"])
    return out


# ---- S3-compatible object storage (moto in server mode) ----------------------------------------
# One private server per test session on a free port (moto keeps its buckets in memory, so nothing is
# shared or left behind); the object-storage tests reach it the way production reaches MinIO or S3:
# an endpoint URL plus credentials in the environment (dummy ones here).

S3_TEST_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "sitsmon-test", "AWS_SECRET_ACCESS_KEY": "sitsmon-test-secret",
                       "AWS_DEFAULT_REGION": "us-east-1"}


@contextmanager
def moto_s3_service(timeout_s: float = 60.0) -> Iterator[str]:
    """Yield the endpoint URL (``http://127.0.0.1:PORT``) of a moto S3 server started for this session."""
    import sys
    import urllib.request

    port = free_port()
    log_dir = SERVICES_DIR / "moto"
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"moto-{os.getpid()}.log"
    url = f"http://127.0.0.1:{port}"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **S3_TEST_CREDENTIALS})
    try:
        deadline = time.monotonic() + timeout_s
        while True:  # health check: moto's own API answers once the server accepts S3 requests
            if proc.poll() is not None:
                raise ServiceError(f"moto server exited with status {proc.returncode}\n{_tail(log)}")
            try:
                with urllib.request.urlopen(f"{url}/moto-api/", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise ServiceError(f"moto server on {url} did not answer within {timeout_s} s\n{_tail(log)}")
            time.sleep(0.2)
        yield url
    finally:
        stop_process(proc)
