"""Read a synthetic archive folder (the layout of ``docs/archive-format.md``).

The archive is what ``sitsmon synth`` writes: STAC Collections, Items as NDJSON with asset hrefs
relative to the archive root, the COGs, the parcel layer and the ground truth. This module checks
the layout and hands the STAC JSON to whoever serves it (the rustac API, pgstac, tests), rewriting
asset hrefs to where the COGs are reachable from the reader: an HTTP base URL or absolute paths.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ARCHIVE_SCHEMA = "sitsmon-archive/1"
COLLECTIONS = ("sentinel-2-l2a", "sentinel-1-grd")


class ArchiveError(ValueError):
    """The archive folder is missing, incomplete or corrupt."""


@dataclass(frozen=True, slots=True)
class TileGrid:
    """A tile's fixed grid: UTM CRS, bounds in metres ``(xmin, ymin, xmax, ymax)``, shape ``(h, w)``."""

    tile_id: str
    epsg: int
    resolution: float
    bounds: tuple[float, float, float, float]
    shape: tuple[int, int]

    def __post_init__(self) -> None:
        xmin, ymin, xmax, ymax = self.bounds
        if not (xmax > xmin and ymax > ymin):
            raise ArchiveError(f"tile {self.tile_id}: empty bounds {self.bounds}")
        if self.resolution <= 0 or min(self.shape) <= 0:
            raise ArchiveError(f"tile {self.tile_id}: bad resolution {self.resolution} or shape {self.shape}")


@dataclass(frozen=True, slots=True)
class Archive:
    """An archive on disk, checked for the files every reader relies on."""

    root: Path
    manifest: dict[str, Any]

    @property
    def tiles(self) -> list[TileGrid]:
        return [
            TileGrid(
                tile_id=t["tile_id"],
                epsg=int(t["epsg"]),
                resolution=float(t["resolution"]),
                bounds=tuple(float(v) for v in t["bounds"]),  # type: ignore[arg-type]
                shape=tuple(int(v) for v in t["shape"]),  # type: ignore[arg-type]
            )
            for t in self.manifest["tiles"]
        ]

    @property
    def collection_ids(self) -> tuple[str, ...]:
        """The archive's collections: the manifest's ``collections`` (a republished dialect), else the two defaults."""
        return tuple(self.manifest.get("collections") or COLLECTIONS)

    def collection_path(self, collection_id: str) -> Path:
        return self.root / "collections" / f"{collection_id}.json"

    def items_path(self, collection_id: str) -> Path:
        return self.root / "items" / f"{collection_id}.ndjson"

    @property
    def parcels_path(self) -> Path:
        return self.root / "parcels" / "parcels.parquet"

    @property
    def truth_dir(self) -> Path:
        return self.root / "truth"

    def collections(self) -> list[dict[str, Any]]:
        """The STAC Collections, without links (a server adds its own)."""
        out = []
        for cid in self.collection_ids:
            collection = _read_json(self.collection_path(cid))
            collection["links"] = [link for link in collection.get("links", []) if link.get("rel") == "license"]
            out.append(collection)
        return out

    def iter_items(self, collection_id: str, href_base: str | None = None) -> Iterator[dict[str, Any]]:
        """Items of one collection in the order they were published.

        ``href_base``: asset hrefs become ``href_base + relative href`` (e.g. an HTTP server's URL
        ending in ``/``); ``None`` makes them absolute local paths.
        """
        path = self.items_path(collection_id)
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    item = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ArchiveError(f"{path}:{number}: not a JSON item ({e.msg})") from e
                if not isinstance(item, dict) or item.get("type") != "Feature" or "id" not in item:
                    raise ArchiveError(f"{path}:{number}: not a STAC Item (no type Feature or no id)")
                yield _rewrite_hrefs(item, self.root, href_base)

    def items(self, href_base: str | None = None) -> list[dict[str, Any]]:
        """Items of every collection (see :meth:`iter_items`)."""
        return [item for cid in self.collection_ids for item in self.iter_items(cid, href_base)]


def open_archive(path: str | Path) -> Archive:
    """Open and check an archive folder; raise :class:`ArchiveError` naming what is wrong."""
    root = Path(path).expanduser().resolve()
    if not root.exists():
        raise ArchiveError(f"archive not found: {root}")
    if not root.is_dir():
        raise ArchiveError(f"archive is not a folder: {root}")
    manifest_path = root / "archive.json"
    if not manifest_path.is_file():
        raise ArchiveError(f"not a sitsmon archive (no archive.json): {root}")
    manifest = _read_json(manifest_path)
    if manifest.get("schema") != ARCHIVE_SCHEMA:
        raise ArchiveError(
            f"{manifest_path}: unsupported schema {manifest.get('schema')!r}, expected {ARCHIVE_SCHEMA!r}"
        )
    if not isinstance(manifest.get("tiles"), list) or not manifest["tiles"]:
        raise ArchiveError(f"{manifest_path}: no tiles listed")
    for cid in manifest.get("collections") or COLLECTIONS:
        for needed in (root / "collections" / f"{cid}.json", root / "items" / f"{cid}.ndjson"):
            if not needed.is_file():
                raise ArchiveError(f"archive incomplete: missing {needed.relative_to(root)}")
    archive = Archive(root=root, manifest=manifest)
    try:
        archive.tiles  # noqa: B018 - validates every tile entry
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, ArchiveError):
            raise
        raise ArchiveError(f"{manifest_path}: malformed tile entry ({e})") from e
    return archive


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ArchiveError(f"archive incomplete: missing {path}") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArchiveError(f"{path}: corrupt JSON ({e})") from e
    if not isinstance(value, dict):
        raise ArchiveError(f"{path}: expected a JSON object")
    return value


def _rewrite_hrefs(item: dict[str, Any], root: Path, href_base: str | None) -> dict[str, Any]:
    for asset in item.get("assets", {}).values():
        href = asset.get("href", "")
        if "://" in href or href.startswith("/"):
            continue  # already absolute
        asset["href"] = str(root / href) if href_base is None else href_base.rstrip("/") + "/" + href
    return item
