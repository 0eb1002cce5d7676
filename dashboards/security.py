"""Users, roles, regions and bearer tokens (no HTTP here).

A token is 32 random bytes (``secrets.token_urlsafe``) shown once when the user is added; the users
table keeps only its SHA-256. A slow password hash is not needed: the token has 256 bits of
entropy, so the digest cannot be searched, and a fast digest keeps every request cheap. Lookups
compare digests with ``hmac.compare_digest``. A verified token is remembered for
:data:`AUTH_TTL_S` seconds (keyed by its digest) while the users file is unchanged: SQLite's
``PRAGMA data_version`` moves whenever another connection (``sitsmon users revoke``, another worker)
commits, and then the remembered tokens are dropped, so a revoke takes effect at the next request.

Roles: ``viewer`` reads; ``controller`` reads and changes alert statuses; ``operator`` reads and
sees the ingest and monitor pages; ``admin`` does everything. A region is a set of tile ids
(``*`` grants every tile) and, optionally, a polygon (WGS84 GeoJSON): then only the parcels of
those tiles that intersect the polygon, and their alerts, are the user's.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from dashboards.errors import UserStoreError

ALL_TILES = "*"
TOKEN_PREFIX = "smk_"
NAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
TILE_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
AUTH_TTL_S = 5.0
AUTH_CACHE_MAX = 1024


class Role(StrEnum):
    VIEWER = "viewer"
    CONTROLLER = "controller"
    OPERATOR = "operator"
    ADMIN = "admin"


# Who may do what; routes name one of these sets.
READ = frozenset(Role)
TRIAGE = frozenset({Role.CONTROLLER, Role.ADMIN})
OPERATE = frozenset({Role.OPERATOR, Role.ADMIN})


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: Role
    tiles: frozenset[str]
    created_at: datetime
    revoked: bool = False
    polygon: str | None = None  # GeoJSON geometry text (WGS84) narrowing the region to its parcels

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.name):
            raise ValueError(f"user name must match {NAME_RE.pattern}, got {self.name!r}")
        for t in self.tiles:
            if t != ALL_TILES and not TILE_RE.match(t):
                raise ValueError(f"region tile id must match {TILE_RE.pattern}, got {t!r}")
        if self.polygon is not None:
            region_shape(self.polygon)

    @property
    def all_tiles(self) -> bool:
        return ALL_TILES in self.tiles

    def may_see(self, tile_id: str) -> bool:
        return self.all_tiles or tile_id in self.tiles

    def visible(self, tiles: list[str]) -> list[str]:
        return [t for t in tiles if self.may_see(t)]

    @property
    def region(self):
        """The region polygon as a shapely geometry (None: the tiles alone)."""
        return None if self.polygon is None else region_shape(self.polygon)

    def as_dict(self) -> dict:
        return {"name": self.name, "role": self.role.value, "tiles": sorted(self.tiles),
                "region_polygon": None if self.polygon is None else json.loads(self.polygon),
                "created_at": self.created_at.isoformat(), "revoked": self.revoked}


MAX_REGION_VERTICES = 100_000


@lru_cache(maxsize=256)
def region_shape(geojson: str):
    """The shapely geometry of a region polygon's GeoJSON text (checked: a valid WGS84 (Multi)Polygon)."""
    import shapely
    from shapely.geometry import shape

    try:
        geom = shape(json.loads(geojson))
    except Exception as e:  # noqa: BLE001 - json and shapely raise many kinds for bad input
        raise ValueError(f"region polygon is not GeoJSON geometry: {' '.join(str(e).split())[:200]}") from e
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        raise ValueError(f"region polygon must be a Polygon or MultiPolygon, got {geom.geom_type}")
    if geom.is_empty or not geom.is_valid:
        raise ValueError(f"region polygon is invalid: {shapely.is_valid_reason(geom)}")
    if shapely.get_num_coordinates(geom) > MAX_REGION_VERTICES:
        raise ValueError(f"region polygon has over {MAX_REGION_VERTICES} vertices")
    x0, y0, x1, y1 = geom.bounds
    if not (-180 <= x0 <= x1 <= 180 and -90 <= y0 <= y1 <= 90):
        raise ValueError("region polygon must lie in lon -180..180, lat -90..90 (WGS84 degrees)")
    shapely.prepare(geom)
    return geom


def region_polygon_from_geojson(text: str, source: str) -> str:
    """A region polygon from a GeoJSON document (a geometry, a Feature, or a FeatureCollection whose
    features are united) as compact geometry text; ValueError naming ``source`` when it is not one."""
    import shapely
    from shapely.geometry import mapping, shape

    try:
        doc = json.loads(text)
        if doc.get("type") == "FeatureCollection":
            geom = shapely.union_all([shape(f["geometry"]) for f in doc["features"]])
        elif doc.get("type") == "Feature":
            geom = shape(doc["geometry"])
        else:
            geom = shape(doc)
        out = json.dumps(mapping(geom), separators=(",", ":"))
        region_shape(out)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{source}: not a usable region polygon ({' '.join(str(e).split())[:200]})") from e
    return out


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


_DDL = """CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, role TEXT NOT NULL, tiles TEXT NOT NULL, token_sha256 TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL, revoked_at TEXT, region_polygon TEXT)"""


class UserStore:
    """The users table in a SQLite file (``<data_dir>/dashboard.sqlite``); thread-safe."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(_DDL)
            columns = {row[1] for row in self._conn.execute("PRAGMA table_info(users)")}
            if "region_polygon" not in columns:  # a users file of an older version
                self._conn.execute("ALTER TABLE users ADD COLUMN region_polygon TEXT")
        except (sqlite3.Error, OSError) as e:
            raise UserStoreError(f"cannot open users database {self.path}: {e}") from e
        self._verified: dict[str, tuple[float, User]] = {}  # digest -> (monotonic expiry, user)
        self._data_version = -1

    def add(self, name: str, role: Role | str, tiles: list[str] | frozenset[str], token: str | None = None,
            polygon: str | None = None) -> str:
        """Add a user; returns the token (shown once). A revoked name may be added again.
        ``polygon``: GeoJSON geometry text narrowing the region to the parcels it intersects."""
        user = User(name, Role(role), frozenset(tiles), datetime.now(UTC), polygon=polygon)
        if not user.tiles:
            raise ValueError(f"user {name!r} needs at least one region tile (or '{ALL_TILES}')")
        token = token or new_token()
        with self._lock:
            row = self._conn.execute("SELECT revoked_at FROM users WHERE name = ?", (name,)).fetchone()
            if row is not None and row[0] is None:
                raise ValueError(f"user {name!r} exists; revoke it first")
            try:
                self._conn.execute(
                    "INSERT OR REPLACE INTO users (name, role, tiles, token_sha256, created_at, revoked_at, "
                    "region_polygon) VALUES (?, ?, ?, ?, ?, NULL, ?)",
                    (name, user.role.value, json.dumps(sorted(user.tiles)), hash_token(token),
                     user.created_at.isoformat(), polygon),
                )
            except sqlite3.Error as e:
                raise UserStoreError(f"cannot add user {name!r} to {self.path}: {e}") from e
        return token

    def reissue(self, name: str, role: Role | str, tiles: list[str] | frozenset[str]) -> str:
        """A fresh token for ``name`` (revoking its old one): how the demo prints working logins
        on every run although only digests are kept."""
        try:
            self.revoke(name)
        except KeyError:
            pass
        return self.add(name, role, tiles)

    def revoke(self, name: str) -> None:
        with self._lock:
            self._verified.clear()
            cur = self._conn.execute(
                "UPDATE users SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
                (datetime.now(UTC).isoformat(), name),
            )
        if cur.rowcount == 0:
            raise KeyError(f"no active user {name!r} in {self.path}")

    def list(self) -> list[User]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT name, role, tiles, created_at, revoked_at, region_polygon FROM users ORDER BY name"
            ).fetchall()
        return [User(n, Role(r), frozenset(json.loads(t)), datetime.fromisoformat(c), v is not None, p)
                for n, r, t, c, v, p in rows]

    def authenticate(self, token: str) -> User | None:
        """The active user holding ``token``, else None."""
        if not token or len(token) > 200:
            return None
        digest = hash_token(token)
        now = time.monotonic()
        with self._lock:
            version = self._conn.execute("PRAGMA data_version").fetchone()[0]
            if version != self._data_version:  # another connection committed: a user may be revoked
                self._verified.clear()
                self._data_version = version
            hit = self._verified.get(digest)
            if hit is not None and hit[0] > now:
                return hit[1]
            row = self._conn.execute(
                "SELECT name, role, tiles, created_at, token_sha256, region_polygon FROM users "
                "WHERE token_sha256 = ? AND revoked_at IS NULL", (digest,),
            ).fetchone()
        if row is None or not hmac.compare_digest(row[4], digest):
            return None
        user = User(row[0], Role(row[1]), frozenset(json.loads(row[2])), datetime.fromisoformat(row[3]), polygon=row[5])
        with self._lock:
            if len(self._verified) >= AUTH_CACHE_MAX:
                self._verified.clear()
            self._verified[digest] = (now + AUTH_TTL_S, user)
        return user

    def close(self) -> None:
        with self._lock:
            self._conn.close()
