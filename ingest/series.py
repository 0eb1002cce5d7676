"""The per-tile parcel-series store: Parquet, written per acquisition, compacted for fast parcel reads.

    <series>/<tile_id>/<S2|S1>/<slot>.parquet      one acquisition (slot), rows sorted by parcel_id
    <series>/<tile_id>/compact.parquet             many slots, sorted by parcel_id then time, small row groups

A slot file overrides the compacted rows of the same (sensor, slot), so a slot rewritten after a
compaction is read in its new version. :func:`compact_series` folds slot files into the compacted
file (written atomically, then the folded slot files are removed; a crash in between leaves
duplicates that the override rule hides).

Columns follow the interchange format of docs/data-contracts.md (``parcel_id, time, sensor, B02..B12, clear, VV, VH,
orbit``) plus ``tile_id``, ``clear_fraction``, ``pixel_count``, ``valid_count``, ``pass``, ``item_ids``, ``slot``
and ``campaign``: the campaign whose parcel layer (outlines) the row was reduced with. A parcel id reused
by the next campaign with a new outline has rows of both campaigns; readers key a parcel's series by
(campaign, parcel) (``read_series(..., campaign=)``). Rows written before the column existed read as
null there and are given the campaign of their date (:func:`with_campaigns`, the reader's calendar).
A slot file is replaced atomically (write to a temporary name, then rename), so a re-ingested or
rewritten slot leaves exactly one version. Reading some parcels' series reads only the compacted
file's row groups whose ``parcel_id`` statistics span them: the file's footer and its row groups'
id ranges are parsed once per file version (:func:`compact_index`, keyed by device, inode, mtime
and size, so a re-compaction, which renames a new file into place, is seen at the next read). A temporary is named ``.<name>.<pid>-<hex>.tmp`` after the process writing
it; one left by a killed writer is removed by :func:`remove_orphan_temporaries` (the poller calls it
at the start of each run), never one of a live process.

On object storage (``s3://``, :mod:`contracts.storage`) a file is one object written by one upload, which
becomes visible whole when it completes: no temporary, no rename, nothing left by a killed writer. A
compacted file's version is told by its ETag and size instead of its inode.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from contracts import storage
from contracts.campaigns import CALENDAR_YEAR, CampaignCalendar
from ingest.errors import IngestError
from ingest.types import REFLECTANCE_SCALE, S1_POLS, S2_BANDS, Sensor

logger = logging.getLogger(__name__)

_STARTED_S = time.time()  # temporaries without a PID in their name (older versions) older than this are orphans
CLEAR_SHARE = 0.9  # a parcel observation is clear when at least this share of its pixels is clear
ROW_GROUP = 4096

SCHEMA = pa.schema(
    [
        ("parcel_id", pa.string()),
        ("time", pa.timestamp("s", tz="UTC")),
        ("sensor", pa.string()),
        *[(b, pa.float32()) for b in S2_BANDS],
        ("clear", pa.float32()),
        *[(p, pa.float32()) for p in S1_POLS],
        ("orbit", pa.int16()),
        ("tile_id", pa.string()),
        ("clear_fraction", pa.float32()),
        ("pixel_count", pa.int32()),
        ("valid_count", pa.int32()),
        ("pass", pa.string()),
        ("item_ids", pa.string()),
        ("slot", pa.string()),
        ("campaign", pa.int16()),  # null in stores written before campaigns were recorded
    ]
)
COMPACT = "compact.parquet"


def slot_file(root: storage.Location, tile_id: str, sensor: Sensor | str, slot: str) -> storage.Location:
    return storage.join(storage.location(root), tile_id, Sensor(sensor).value, f"{slot}.parquet")


def _open(path: storage.Location):
    """A binary reader of a local file or an object."""
    return storage.filesystem().open(storage.fs_path(path), "rb") if storage.is_url(path) else open(path, "rb")


def _dataset(source: storage.Location | list) -> pads.Dataset:
    """A Parquet dataset of one file or a list of files, local or on object storage."""
    files = source if isinstance(source, list) else [source]
    if files and storage.is_url(files[0]):
        return pads.dataset([storage.fs_path(f) for f in files], schema=SCHEMA, format="parquet",
                            filesystem=storage.filesystem())
    return pads.dataset([str(f) for f in source] if isinstance(source, list) else str(source), schema=SCHEMA,
                        format="parquet")


def stats_table(
    parcel_ids: Sequence[str], sensor: Sensor, time_s: int, tile_id: str, sums: np.ndarray, valid_count: np.ndarray,
    pixel_count: np.ndarray, item_ids: Sequence[str], orbit: int = -1, pass_: str = "", slot: str = "",
    campaign: int | None = None,
) -> pa.Table:
    """Zonal sums of one acquisition as series rows; parcels without pixels on the tile are left out.

    ``campaign``: the campaign of the parcel layer the sums were made with (None: not recorded).

    S2 ``sums`` are of stored uint16 values (reflectance / 1e-4) over clear pixels; S1 of linear power.
    """
    n = len(parcel_ids)
    keep = pixel_count > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (sums / valid_count[:, None]).astype(np.float64)
        fraction = (valid_count / pixel_count).astype(np.float32)
    means[valid_count == 0] = np.nan
    cols: dict[str, np.ndarray | list] = {}
    nan = np.full(n, np.nan, dtype=np.float32)
    if sensor is Sensor.S2:
        for i, b in enumerate(S2_BANDS):
            cols[b] = (means[:, i] * REFLECTANCE_SCALE).astype(np.float32)
        cols["clear"] = (fraction >= CLEAR_SHARE).astype(np.float32)
        for p in S1_POLS:
            cols[p] = nan
    else:
        for b in S2_BANDS:
            cols[b] = nan
        cols["clear"] = nan
        for i, p in enumerate(S1_POLS):
            cols[p] = means[:, i].astype(np.float32)
    ids = np.asarray(parcel_ids, dtype=object)
    order = np.argsort(ids[keep], kind="stable")
    data = {
        "parcel_id": pa.array(ids[keep][order], pa.string()),
        "time": pa.array(np.full(int(keep.sum()), time_s, dtype="datetime64[s]"), pa.timestamp("s", tz="UTC")),
        "sensor": pa.array([sensor.value] * int(keep.sum()), pa.string()),
    }
    for name in (*S2_BANDS, "clear", *S1_POLS):
        data[name] = pa.array(np.asarray(cols[name])[keep][order], pa.float32())
    m = int(keep.sum())
    data["orbit"] = pa.array(np.full(m, orbit, dtype=np.int16), pa.int16())
    data["tile_id"] = pa.array([tile_id] * m, pa.string())
    data["clear_fraction"] = pa.array(fraction[keep][order], pa.float32())
    data["pixel_count"] = pa.array(pixel_count[keep][order].astype(np.int32), pa.int32())
    data["valid_count"] = pa.array(valid_count[keep][order].astype(np.int32), pa.int32())
    data["pass"] = pa.array([pass_] * m, pa.string())
    data["item_ids"] = pa.array([",".join(item_ids)] * m, pa.string())
    data["slot"] = pa.array([slot] * m, pa.string())
    data["campaign"] = pa.array([campaign] * m, pa.int16())
    return pa.table(data, schema=SCHEMA)


def with_campaigns(table: pa.Table, calendar: CampaignCalendar | None = None) -> pa.Table:
    """``table`` with every null ``campaign`` (a row written before campaigns were recorded) set to the
    campaign of its date under ``calendar`` (default: calendar years); a date in no configured
    campaign stays null."""
    col = table["campaign"]
    if col.null_count == 0:
        return table
    times = table["time"].cast(pa.int64()).to_numpy(zero_copy_only=False)
    derived = (calendar or CALENDAR_YEAR).campaigns_of(times, strict=False)
    fill = pa.array(derived, pa.int16(), mask=derived < 0)
    return table.set_column(table.schema.get_field_index("campaign"), "campaign",
                            pa.compute.coalesce(col.combine_chunks(), fill))


def parcel_row_groups(parcel_ids: pa.Array | pa.ChunkedArray, size: int | None = None) -> list[tuple[int, int]]:
    """``(offset, length)`` of row groups of about ``size`` rows (default :data:`ROW_GROUP`) that start
    at a parcel's first row, for rows sorted by parcel: a parcel's series is then read from one group
    (one with more rows than ``size`` gets a group of its own) instead of the two its rows straddle."""
    size = ROW_GROUP if size is None else size
    n = len(parcel_ids)
    if n == 0:
        return []
    ids = parcel_ids.combine_chunks() if isinstance(parcel_ids, pa.ChunkedArray) else parcel_ids
    changed = pa.compute.not_equal(ids.slice(1), ids.slice(0, n - 1)).fill_null(True).to_numpy(zero_copy_only=False)
    starts = np.concatenate([[0], np.flatnonzero(changed) + 1, [n]])
    groups, at = [], 0
    while at < n:
        # the last parcel start that keeps the group within size rows; at least one whole parcel
        cut = int(starts[np.searchsorted(starts, at + size, side="right") - 1])
        if cut <= at:
            cut = int(starts[np.searchsorted(starts, at, side="right")])
        groups.append((at, cut - at))
        at = cut
    return groups


# The compacted file is read a parcel at a time: LZ4 decompresses a 4 096-row group of the store's
# columns in half the time zstd takes (whose per-column context set-up dominates at this size), and
# float columns are stored plain (a dictionary of distinct reflectances is pure overhead). Statistics
# are kept for parcel_id only, the one column whose ranges a read uses: a third less footer to parse.
COMPACT_OPTIONS = dict(compression="lz4", write_statistics=["parcel_id"])


def _compact_dictionary(schema: pa.Schema) -> list[str]:
    return [f.name for f in schema if pa.types.is_string(f.type)]


class CompactWriter:
    """Writes rows sorted by parcel (whole parcels per :meth:`write`) in the compacted layout: row
    groups cut at parcel starts (:func:`parcel_row_groups`), :data:`COMPACT_OPTIONS`."""

    def __init__(self, where, schema: pa.Schema = SCHEMA) -> None:
        self._writer = pq.ParquetWriter(where, schema, use_dictionary=_compact_dictionary(schema), **COMPACT_OPTIONS)

    def write(self, table: pa.Table) -> None:
        for offset, length in parcel_row_groups(table["parcel_id"]):
            self._writer.write_table(table.slice(offset, length), row_group_size=length)

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> CompactWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _write_parquet(table: pa.Table, where, compact: bool) -> None:
    if compact:
        with CompactWriter(where, table.schema) as w:
            w.write(table)
    else:
        pq.write_table(table, where, row_group_size=ROW_GROUP, compression="zstd")


def _atomic_write(table: pa.Table, path: storage.Location) -> None:
    compact = storage.name(path) == COMPACT
    if storage.is_url(path):  # one upload: the object appears whole when it completes, or not at all
        with storage.filesystem().open(storage.fs_path(path), "wb") as f:
            _write_parquet(table, f, compact)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex}.tmp")
    _write_parquet(table, tmp, compact)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_slot(root: str | Path, tile_id: str, sensor: Sensor | str, slot: str, table: pa.Table) -> Path:
    """Atomically write (or replace) one slot's rows."""
    path = slot_file(root, tile_id, sensor, slot)
    table = table.cast(SCHEMA)
    if table.num_rows:
        table = table.set_column(table.schema.get_field_index("slot"), "slot",
                                 pa.array([slot] * table.num_rows, pa.string()))
    _atomic_write(table, path)
    return path


def remove_orphan_temporaries(root: str | Path, tile_id: str | None = None) -> list[Path]:
    """Remove the temporaries of :func:`_atomic_write` left by killed writers (under one tile or all).

    A temporary whose PID is this process or a live one is kept (a write in flight); one without a PID
    in its name is removed only when older than this process.
    """
    from ingest.locks import pid_alive

    if storage.is_url(root):
        return []  # object storage holds no temporaries (an unfinished upload is no object)
    base = Path(root) / tile_id if tile_id is not None else Path(root)
    removed = []
    for tmp in [*base.glob("**/.*.parquet.*.tmp")]:
        owner = tmp.name[: -len(".tmp")].rsplit(".", 1)[-1]
        pid_text = owner.split("-", 1)[0] if "-" in owner else ""
        try:
            if pid_text.isdigit():
                if int(pid_text) == os.getpid() or pid_alive(int(pid_text)):
                    continue
            elif tmp.stat().st_mtime >= _STARTED_S:
                continue
            tmp.unlink()
        except FileNotFoundError:
            continue  # renamed into place or removed meanwhile
        logger.warning("removed %s left by an interrupted write", tmp)
        removed.append(tmp)
    return removed


def _slot_files(tile_dir: storage.Location, sensor: Sensor | None = None) -> list[storage.Location]:
    pattern = f"{sensor.value}/*.parquet" if sensor is not None else "S[12]/*.parquet"
    return [p for p in storage.glob(tile_dir, pattern) if not storage.name(p).startswith(".")]


def _sensor_slot(path: storage.Location) -> str:
    """``S2/<slot>`` of a slot file."""
    p = PurePosixPath(str(path))
    return f"{p.parent.name}/{p.stem}"


@dataclass(frozen=True, slots=True)
class CompactIndex:
    """One version of a compacted file: its footer and the ``parcel_id`` range of each row group.

    ``lo``/``hi`` are object arrays of the groups' min/max ids (None where a group has no
    statistics); ``ordered``: the ranges ascend (a file sorted by parcel id), so a parcel's groups
    are found by bisection instead of a scan over every group.
    """

    identity: tuple
    metadata: pq.FileMetaData
    lo: np.ndarray
    hi: np.ndarray
    ordered: bool
    same_schema: bool  # the store's columns (the rows of a group are cast to SCHEMA)

    def groups_of(self, ids: Sequence[str]) -> list[int]:
        """The row groups that may hold any of ``ids``, ascending."""
        n = len(self.lo)
        if self.ordered:
            found: set[int] = set()
            for pid in ids:
                first = int(np.searchsorted(self.hi, pid, side="left"))
                last = int(np.searchsorted(self.lo, pid, side="right"))
                found.update(range(first, min(last, n)))
            return sorted(found)
        unknown = np.array([a is None or b is None for a, b in zip(self.lo, self.hi, strict=True)], dtype=bool)
        lo, hi = np.where(unknown, "", self.lo), np.where(unknown, "", self.hi)
        keep = unknown.copy()  # a group without statistics may hold anything
        for pid in ids:
            keep |= (lo <= pid) & (hi >= pid)
        return np.flatnonzero(keep).tolist()


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def _build_index(identity: tuple, metadata: pq.FileMetaData) -> CompactIndex:
    schema = metadata.schema.to_arrow_schema()
    col = schema.get_field_index("parcel_id")
    n = metadata.num_row_groups
    lo = np.empty(n, dtype=object)
    hi = np.empty(n, dtype=object)
    for i in range(n):
        stats = metadata.row_group(i).column(col).statistics if col >= 0 else None
        if stats is not None and stats.has_min_max:
            lo[i], hi[i] = stats.min, stats.max
    known = n == 0 or not any(v is None for v in lo)
    ordered = known and all(lo[i] <= hi[i] and (i == 0 or (lo[i - 1] <= lo[i] and hi[i - 1] <= hi[i]))
                            for i in range(n))
    # Parquet keeps second timestamps as milliseconds: same columns and types but for that unit
    return CompactIndex(identity, metadata, lo, hi, ordered, schema.names == SCHEMA.names)


class _IndexCache:
    """Indexes of the compacted files read last, within :data:`INDEX_CACHE_BYTES` (a long-lived reader,
    the dashboard, reads the same tiles over and over; a batch job reads each once).

    The bound is on memory, not files: a parsed footer holds ~830 B per column chunk (measured: 332 MB
    for a tile of 100 000 parcels × 5 years, 16 751 row groups × 24 columns; parsing it takes ~0.7 s),
    so a count of files says nothing about what they hold."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._items: OrderedDict[str, CompactIndex] = OrderedDict()

    @staticmethod
    def cost(index: CompactIndex) -> int:
        return INDEX_BYTES_PER_CHUNK * index.metadata.num_row_groups * max(1, index.metadata.num_columns)

    def get(self, path: storage.Location, f) -> CompactIndex:
        """The index of the file version open as ``f`` (parsed now when not cached)."""
        # an open object stays the version it was opened at (s3fs pins its ETag), as a local handle does
        identity = (f.details.get("ETag", ""), f.size) if storage.is_url(path) else _identity(os.fstat(f.fileno()))
        key = str(path)
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and hit.identity == identity:
                self._items.move_to_end(key)
                return hit
        index = _build_index(identity, pq.ParquetFile(f).metadata)
        with self._lock:
            self._items[key] = index
            self._items.move_to_end(key)
            # the newest stays even when it alone is over the bound: it is being read
            while len(self._items) > 1 and sum(map(self.cost, self._items.values())) > self.max_bytes:
                self._items.popitem(last=False)
        return index

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


INDEX_BYTES_PER_CHUNK = 830
INDEX_CACHE_BYTES = 4 << 30
_INDEX_CACHE = _IndexCache(INDEX_CACHE_BYTES)


def compact_index(path: storage.Location) -> CompactIndex:
    """The cached index of the compacted file at ``path`` (re-parsed when the file was replaced)."""
    path = storage.location(path)
    with _open(path) as f:
        return _INDEX_CACHE.get(path, f)


def _read_compact(compact: storage.Location, flt, ids: list[str] | None) -> pa.Table:
    """The compacted file's rows matching ``flt``; for some parcels (``ids``) only the row groups
    whose id range spans them are read, located with the cached index of this file version."""
    if ids is not None:
        with _open(compact) as f:  # one handle: the index and the rows are of the same version
            index = _INDEX_CACHE.get(compact, f)
            if index.same_schema:
                groups = index.groups_of(ids)
                if not groups:
                    return SCHEMA.empty_table()
                t = pq.ParquetFile(f, metadata=index.metadata).read_row_groups(groups, use_threads=False)
                t = t.cast(SCHEMA)  # what the dataset scan gives (the time unit back to seconds)
                return t.filter(pa.compute.is_in(t["parcel_id"], pa.array(ids, pa.string())))
    return _dataset(compact).to_table(filter=flt)


def _read_tile(tile_dir: storage.Location, flt, sensor: Sensor | None, ids: list[str] | None = None) -> pa.Table:
    slot_files = _slot_files(tile_dir, sensor)
    parts = []
    compact = storage.join(tile_dir, COMPACT)
    if storage.exists(compact):
        t = _read_compact(compact, flt, ids)
        if sensor is not None:
            t = t.filter(pa.compute.equal(t["sensor"], sensor.value))
        overridden = {_sensor_slot(p) for p in _slot_files(tile_dir)}
        if overridden and t.num_rows:
            key = pa.compute.binary_join_element_wise(t["sensor"], t["slot"], "/")
            t = t.filter(pa.compute.invert(pa.compute.is_in(key, pa.array(sorted(overridden)))))
        parts.append(t)
    if slot_files:
        parts.append(_dataset(slot_files).to_table(filter=flt))
    return pa.concat_tables(parts) if parts else SCHEMA.empty_table()


def compact_series(root: str | Path, tile_id: str, min_files: int = 1) -> int:
    """Fold a tile's slot files into its compacted file; returns how many were folded (0 below ``min_files``)."""
    tile_dir = storage.join(storage.location(root), tile_id)
    files = _slot_files(tile_dir)
    if len(files) < max(1, min_files):
        return 0
    stamps = {f: _stamp(f) for f in files}
    table = _read_tile(tile_dir, None, None)
    table = table.sort_by([("parcel_id", "ascending"), ("time", "ascending"), ("sensor", "ascending")])
    _atomic_write(table, storage.join(tile_dir, COMPACT))
    for f in files:
        if storage.exists(f) and _stamp(f) == stamps[f]:  # a slot rewritten meanwhile stays
            if storage.is_url(f):
                storage.remove(f)
            else:
                f.unlink()
    return len(files)


def _stamp(path: storage.Location):
    return storage.identity(path) if storage.is_url(path) else path.stat().st_mtime_ns


def read_slot(root: str | Path, tile_id: str, sensor: Sensor | str, slot: str,
              calendar: CampaignCalendar | None = None) -> pa.Table:
    """One acquisition's rows (tile, sensor, slot), sorted by parcel_id, from its slot file or, once
    folded, from the compacted file: what an acquisition event's ``extra["slot"]`` points at. Rows
    without a recorded campaign get the campaign of their date under ``calendar``.

    Safe against a concurrent compaction: the compacted file is written before a slot file is removed,
    so a slot file that vanishes while being read is found in the compacted file.
    """
    sens = Sensor(sensor)
    tile_dir = storage.join(storage.location(root), tile_id)
    path = slot_file(root, tile_id, sens, slot)
    try:
        for _ in range(3):
            if storage.exists(path):
                try:
                    table = _read_file(path)
                except FileNotFoundError:
                    continue  # folded meanwhile: read the compacted file
            elif storage.exists(storage.join(tile_dir, COMPACT)):
                flt = (pads.field("sensor") == sens.value) & (pads.field("slot") == slot)
                table = _dataset(storage.join(tile_dir, COMPACT)).to_table(filter=flt)
                if not table.num_rows and storage.exists(path):
                    continue  # rewritten meanwhile
            else:
                table = SCHEMA.empty_table()
            return with_campaigns(table.sort_by([("parcel_id", "ascending")]), calendar)
    except (OSError, pa.ArrowInvalid) as e:
        raise IngestError(f"cannot read slot {sens.value}/{slot} of tile {tile_id} under {root}: {e}") from e
    raise IngestError(f"slot {sens.value}/{slot} of tile {tile_id} under {root} kept changing while being read")


def _read_file(path: storage.Location) -> pa.Table:
    if storage.is_url(path):
        return pq.read_table(storage.fs_path(path), schema=SCHEMA, filesystem=storage.filesystem())
    return pq.read_table(path, schema=SCHEMA)


def series_tiles(root: storage.Location) -> list[storage.Location]:
    """The tile folders of a series store, sorted."""
    base = storage.location(root)
    if storage.is_url(base):
        return [storage.join(base, n) for n in storage.list_names(base) if not n.startswith(".")]
    return sorted(p for p in base.glob("*") if p.is_dir())


def read_series(root: storage.Location, tile_id: str | None = None, parcel_id: str | Sequence[str] | None = None,
                sensor: Sensor | str | None = None, campaign: int | None = None,
                calendar: CampaignCalendar | None = None) -> pa.Table:
    """Rows of the store (one tile or all), optionally for one parcel / some parcels, one sensor and one
    campaign, sorted by time. Every row carries its campaign (rows written before campaigns were
    recorded: the campaign of their date under ``calendar``, default calendar years); ``campaign``
    keeps only that campaign's rows, so a parcel id reused with a new outline never mixes the two."""
    base = storage.location(root)
    tiles = [storage.join(base, tile_id)] if tile_id is not None else series_tiles(base)
    flt = ids = None
    if parcel_id is not None:
        ids = [parcel_id] if isinstance(parcel_id, str) else list(parcel_id)
        flt = pads.field("parcel_id").isin(ids)
    sens = Sensor(sensor) if sensor is not None else None
    if ids is not None and not ids:
        return SCHEMA.empty_table()
    try:
        parts = [_read_tile(t, flt, sens, ids) for t in tiles if storage.is_url(t) or t.is_dir()]
    except (OSError, pa.ArrowInvalid) as e:
        raise IngestError(f"cannot read parcel series under {base}: {e}") from e
    table = with_campaigns(pa.concat_tables(parts) if parts else SCHEMA.empty_table(), calendar)
    if campaign is not None:
        table = table.filter(pa.compute.equal(table["campaign"], pa.scalar(int(campaign), pa.int16())))
    return table.sort_by([("parcel_id", "ascending"), ("time", "ascending"), ("sensor", "ascending")])


def campaigns_in(table: pa.Table) -> list[int]:
    """The campaigns of a series table's rows, ascending (nulls left out)."""
    if table.num_rows == 0:
        return []
    return sorted(int(c) for c in pa.compute.unique(table["campaign"]).drop_null().to_pylist())
