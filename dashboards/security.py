"""Users, roles, regions and bearer tokens (no HTTP here).

A token is 32 random bytes (``secrets.token_urlsafe``) shown once when the user is added; the users
table keeps only its SHA-256. A slow password hash is not needed: the token has 256 bits of
entropy, so the digest cannot be searched, and a fast digest keeps every request cheap. Lookups
compare digests with ``hmac.compare_digest``.

Roles: ``viewer`` reads; ``controller`` reads and changes alert statuses; ``operator`` reads and
sees the ingest and monitor pages; ``admin`` does everything. A region is a set of tile ids;
``*`` grants every tile.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from dashboards.errors import UserStoreError

ALL_TILES = "*"
TOKEN_PREFIX = "smk_"
NAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
TILE_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


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

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.name):
            raise ValueError(f"user name must match {NAME_RE.pattern}, got {self.name!r}")
        for t in self.tiles:
            if t != ALL_TILES and not TILE_RE.match(t):
                raise ValueError(f"region tile id must match {TILE_RE.pattern}, got {t!r}")

    @property
    def all_tiles(self) -> bool:
        return ALL_TILES in self.tiles

    def may_see(self, tile_id: str) -> bool:
        return self.all_tiles or tile_id in self.tiles

    def visible(self, tiles: list[str]) -> list[str]:
        return [t for t in tiles if self.may_see(t)]

    def as_dict(self) -> dict:
        return {"name": self.name, "role": self.role.value, "tiles": sorted(self.tiles),
                "created_at": self.created_at.isoformat(), "revoked": self.revoked}


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


_DDL = """CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, role TEXT NOT NULL, tiles TEXT NOT NULL, token_sha256 TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL, revoked_at TEXT)"""


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
        except (sqlite3.Error, OSError) as e:
            raise UserStoreError(f"cannot open users database {self.path}: {e}") from e

    def add(self, name: str, role: Role | str, tiles: list[str] | frozenset[str], token: str | None = None) -> str:
        """Add a user; returns the token (shown once). A revoked name may be added again."""
        user = User(name, Role(role), frozenset(tiles), datetime.now(UTC))
        if not user.tiles:
            raise ValueError(f"user {name!r} needs at least one region tile (or '{ALL_TILES}')")
        token = token or new_token()
        with self._lock:
            row = self._conn.execute("SELECT revoked_at FROM users WHERE name = ?", (name,)).fetchone()
            if row is not None and row[0] is None:
                raise ValueError(f"user {name!r} exists; revoke it first")
            try:
                self._conn.execute(
                    "INSERT OR REPLACE INTO users (name, role, tiles, token_sha256, created_at, revoked_at) "
                    "VALUES (?, ?, ?, ?, ?, NULL)",
                    (name, user.role.value, json.dumps(sorted(user.tiles)), hash_token(token),
                     user.created_at.isoformat()),
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
            cur = self._conn.execute(
                "UPDATE users SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
                (datetime.now(UTC).isoformat(), name),
            )
        if cur.rowcount == 0:
            raise KeyError(f"no active user {name!r} in {self.path}")

    def list(self) -> list[User]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT name, role, tiles, created_at, revoked_at FROM users ORDER BY name"
            ).fetchall()
        return [User(n, Role(r), frozenset(json.loads(t)), datetime.fromisoformat(c), v is not None)
                for n, r, t, c, v in rows]

    def authenticate(self, token: str) -> User | None:
        """The active user holding ``token``, else None."""
        if not token or len(token) > 200:
            return None
        digest = hash_token(token)
        with self._lock:
            row = self._conn.execute(
                "SELECT name, role, tiles, created_at, token_sha256 FROM users "
                "WHERE token_sha256 = ? AND revoked_at IS NULL", (digest,),
            ).fetchone()
        if row is None or not hmac.compare_digest(row[4], digest):
            return None
        return User(row[0], Role(row[1]), frozenset(json.loads(row[2])), datetime.fromisoformat(row[3]))

    def close(self) -> None:
        with self._lock:
            self._conn.close()
