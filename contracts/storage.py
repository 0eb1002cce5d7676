"""Where a store lives: a local folder (the default) or S3-compatible object storage (``s3://bucket/prefix``).

Every stage opens its stores (cubes, parcel series, monitor states) through these few functions, so a
configured location may be either. A local location stays a :class:`~pathlib.Path` and is handled
exactly as before (write to a temporary, fsync, rename); a URL is opened with fsspec (s3fs), and its
Zarr stores with zarr's :class:`~zarr.storage.FsspecStore`.

Object storage has no rename and no append, but a PUT is atomic: an object is visible whole or not at
all (an upload killed half-way leaves nothing under its key). The stores' crash safety on S3 rests on
that: the data objects of a write go first and one small object written last commits them (a cube's
``time`` index and its root ``zarr.json``, a state's ``CURRENT``, a series slot file that is itself a
single object). Readers look only at what the commit object names. docs/storage.md says more.

Endpoint and region come from the ``[storage]`` settings, which the command line passes to
:func:`configure`; credentials come from the environment (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY`` or any source botocore reads), never from a file of the repository.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

Location = str | Path
"""A local path (``Path`` or plain string) or an object-storage URL (``s3://bucket/prefix``)."""

SCHEMES = ("s3://",)


@dataclass(frozen=True)
class StorageOptions:
    """How to reach object storage (the ``[storage]`` settings); empty values: botocore's defaults."""

    endpoint_url: str = ""  # e.g. http://minio:9000; empty: AWS
    region: str = ""
    anon: bool = False  # unsigned requests (a public bucket)


_options = StorageOptions()
_lock = threading.Lock()
_filesystems: dict[StorageOptions, Any] = {}


def configure(endpoint_url: str = "", region: str = "", anon: bool = False) -> None:
    """Set the object-storage options of this process (the command line calls it from ``[storage]``)."""
    global _options
    _options = StorageOptions(endpoint_url, region, anon)


def is_url(location: Location | None) -> bool:
    """Whether ``location`` names object storage rather than a local path."""
    return isinstance(location, str) and location.startswith(SCHEMES)


def location(value: Location) -> Location:
    """A configured value as a location: a URL stays a string (``Path`` would fold its ``//``), else a Path."""
    return value if is_url(value) else Path(value)


def join(root: Location, *parts: str) -> Location:
    """``root / parts``: a Path for a local root, a URL for an object-storage root."""
    if is_url(root):
        return "/".join([str(root).rstrip("/"), *(str(p).strip("/") for p in parts)])
    return Path(root).joinpath(*parts)


def name(loc: Location) -> str:
    """The last component of a location."""
    return PurePosixPath(str(loc).rstrip("/")).name


def parent(loc: Location) -> Location:
    if is_url(loc):
        return str(loc).rstrip("/").rsplit("/", 1)[0]
    return Path(loc).parent


def filesystem() -> Any:
    """The s3fs filesystem of the configured options (one per process and options).

    The listings cache is off: another process (the writer, a second worker) changes the bucket, and a
    cached listing would hide its commits."""
    import s3fs

    opts = _options
    with _lock:
        fs = _filesystems.get(opts)
        if fs is None:
            client = {"region_name": opts.region} if opts.region else {}
            fs = s3fs.S3FileSystem(anon=opts.anon, endpoint_url=opts.endpoint_url or None, client_kwargs=client,
                                   use_listings_cache=False, skip_instance_cache=True)
            _filesystems[opts] = fs
        return fs


def fs_path(loc: Location) -> str:
    """The path of ``loc`` as s3fs names it (``bucket/key``, no scheme)."""
    return str(loc).split("://", 1)[1].rstrip("/")


def zarr_store(loc: Location, read_only: bool = False) -> Any:
    """What ``zarr.open_group``/``open_array`` take for ``loc``: the path string for a local folder (as
    before), an :class:`~zarr.storage.FsspecStore` for a URL."""
    if not is_url(loc):
        return str(loc)
    from zarr.storage import FsspecStore

    opts = _options
    storage_options: dict[str, Any] = {"anon": opts.anon, "use_listings_cache": False}
    if opts.endpoint_url:
        storage_options["endpoint_url"] = opts.endpoint_url
    if opts.region:
        storage_options["client_kwargs"] = {"region_name": opts.region}
    return FsspecStore.from_url(str(loc).rstrip("/"), storage_options=storage_options, read_only=read_only)


# ---- object operations (URLs only; local code keeps its own file handling) -----------------------------
def exists(loc: Location) -> bool:
    if not is_url(loc):
        return Path(loc).exists()
    return bool(filesystem().exists(fs_path(loc)))


def read_bytes(loc: Location) -> bytes:
    if not is_url(loc):
        return Path(loc).read_bytes()
    return filesystem().cat_file(fs_path(loc))


def put_bytes(loc: str, data: bytes) -> None:
    """Write one object whole (a single PUT: readers see the old object or the new one, never a part)."""
    filesystem().pipe_file(fs_path(loc), data)


def list_names(loc: Location) -> list[str]:
    """Names directly under ``loc`` (objects and prefixes), sorted; none where it holds nothing."""
    if not is_url(loc):
        p = Path(loc)
        return sorted(c.name for c in p.iterdir()) if p.is_dir() else []
    fs = filesystem()
    try:
        return sorted(PurePosixPath(e.rstrip("/")).name for e in fs.ls(fs_path(loc), detail=False))
    except FileNotFoundError:
        return []


def glob(loc: Location, pattern: str) -> list[Location]:
    """Locations under ``loc`` matching ``pattern`` (``*``, ``**``), sorted."""
    if not is_url(loc):
        return sorted(Path(loc).glob(pattern))
    scheme = str(loc).split("://", 1)[0]
    found = filesystem().glob(f"{fs_path(loc)}/{pattern}")
    return sorted(f"{scheme}://{p}" for p in found)


def remove_tree(loc: Location) -> None:
    """Delete every object under ``loc`` (nothing where there is none)."""
    fs = filesystem()
    path = fs_path(loc)
    keys = fs.find(path)
    if keys:
        fs.rm(keys)


def remove(loc: Location) -> None:
    try:
        filesystem().rm_file(fs_path(loc))
    except FileNotFoundError:
        pass


def memory_zarr() -> tuple[Any, dict[str, Any]]:
    """A zarr store in memory and the dict of its objects (key -> zarr Buffer), to build a store whole
    before it is uploaded with :func:`put_tree` (one concurrent batch instead of a round trip per array)."""
    from zarr.storage import MemoryStore

    objects: dict[str, Any] = {}
    return MemoryStore(objects), objects


def put_tree(target: str, objects: dict[str, Any], last: str | None = None) -> None:
    """Upload ``objects`` (relative key -> bytes or zarr Buffer) under ``target``, concurrently; ``last``
    (a relative key) goes alone after all the others have landed: a kill part-way leaves no ``last``, so
    a reader that looks for it sees nothing (object storage's stand-in for renaming a folder into place)."""
    def payload(value: Any) -> bytes:
        return value if isinstance(value, bytes) else value.to_bytes()

    base = fs_path(target)
    fs = filesystem()
    first = {f"{base}/{k}": payload(v) for k, v in objects.items() if k != last}
    if first:
        fs.pipe(first)
    if last is not None and last in objects:
        fs.pipe_file(f"{base}/{last}", payload(objects[last]))


def total_bytes(loc: Location) -> int:
    """Bytes of every object under ``loc``."""
    return int(sum(filesystem().du(fs_path(loc), total=False).values())) if exists(loc) else 0


def identity(loc: str) -> tuple[str, int]:
    """What changes when the object at ``loc`` is replaced (its ETag and size): a cache key."""
    info = filesystem().info(fs_path(loc))
    return (str(info.get("ETag", "")), int(info.get("size", 0)))
