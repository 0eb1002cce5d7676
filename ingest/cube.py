"""Per-tile Zarr cubes (``<cubes>/<tile_id>.zarr``) following docs/data-contracts.md "Tile cube".

Layout (zarr v3, readable with ``xarray.open_zarr(path, group="s2")``)::

    /                 attrs: schema, grid (tile_id, epsg, resolution, bounds, shape)
    /s2  time (time,) int64 seconds since epoch          <- the commit record, written last
         reflectance (time, band, y, x) uint16, scale_factor 1e-4, _FillValue 0
         clear (time, y, x) uint8: 1 clear (SCL 4-7), 0 cloud/shadow/cirrus/snow/saturated/no data
         band, x, y coordinates; per time: slot, item_ids, baseline, ingested_at
    /s1  time; backscatter (time, pol, y, x) float32 linear power, NaN fill; per time: orbit, pass,
         slot, item_ids, ingested_at; pol, x, y coordinates

Writing a time step (a *slot*: one tile, sensor, UTC day, and pass for S1; same-slot items are
mosaicked) goes: data arrays first, then per-time provenance, then ``slot`` and ``time`` last. The
number of committed steps is ``len(time)``; arrays longer than that hold an unfinished write and are
trimmed by :func:`open_cube` (readers) and by :class:`CubeWriter` (on open). A slot being rewritten
has an empty ``item_ids`` until its write completes.

A new cube is built under a temporary name beside its final one (``.<tile>.zarr.creating-<pid>-<hex>``)
and renamed into place when its layout is complete, so a kill during creation leaves no half cube
under the real name; the orphan folder is removed by the next writer (when its PID is gone).
:func:`check_cube` says what is missing in a cube that is not whole (one made before this rule, or
damaged by hand); the writer rebuilds such a cube when it holds no committed step yet and refuses it
otherwise (data is never deleted).

On object storage (``s3://``, see :mod:`contracts.storage`) there is no rename: the layout is built
in memory and uploaded with the root ``zarr.json`` last, and a cube exists only once that object does. Each ``zarr.json`` (an array's shape) is one atomic PUT, so the order of
the writes above gives the same guarantees as on disk.
"""

from __future__ import annotations

import logging
import os
import shutil
import time as _time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr

from contracts import storage
from ingest.errors import CubeError
from ingest.types import MASK_DIMS, REFLECTANCE_SCALE, S1_DIMS, S1_POLS, S2_BANDS, S2_DIMS, Sensor, TileGrid

logger = logging.getLogger(__name__)

SCHEMA = "sitsmon-cube/1"
TIME_ATTRS = {"units": "seconds since 1970-01-01", "calendar": "proleptic_gregorian"}
DEFAULT_CHUNK = 1024

# per-time provenance arrays per sensor: name -> dtype
_PER_TIME = {
    Sensor.S2: {"slot": str, "item_ids": str, "baseline": str, "ingested_at": np.int64},
    Sensor.S1: {"slot": str, "item_ids": str, "orbit": np.int16, "pass": str, "ingested_at": np.int64},
}


def cube_path(cubes_root: storage.Location, tile_id: str) -> storage.Location:
    return storage.join(storage.location(cubes_root), f"{tile_id}.zarr")


def cube_exists(path: storage.Location) -> bool:
    """A local cube folder exists; an object-storage cube exists once its root ``zarr.json`` was copied
    into place (the last object of its creation)."""
    if storage.is_url(path):
        return storage.exists(storage.join(path, "zarr.json"))
    return Path(path).exists()


def _remove_tree(path: storage.Location) -> None:
    if storage.is_url(path):
        storage.remove_tree(path)
    else:
        shutil.rmtree(path)


@dataclass(frozen=True, slots=True)
class SlotInfo:
    """Provenance of one committed time step."""

    index: int
    time_s: int
    slot: str
    item_ids: tuple[str, ...]


class CubeWriter:
    """Creates or opens one tile cube and writes time steps into it (one writer per tile at a time)."""

    def __init__(self, path: str | Path, grid: TileGrid, chunk: int = DEFAULT_CHUNK):
        self.path = storage.location(path)
        self.grid = grid
        self.chunk = (min(chunk, grid.shape[0]), min(chunk, grid.shape[1]))
        if cube_exists(self.path):
            problem = check_cube(self.path)
            if problem is not None:
                if committed_steps(self.path) > 0:
                    raise CubeError(f"cube {self.path} is damaged ({problem}) but holds committed data: "
                                    "move it away to rebuild it")
                if not _own_empty_layout(self.path):
                    raise CubeError(f"{self.path} is not a sitsmon cube ({problem}): move it away")
                logger.warning("cube %s: rebuilding an empty cube left incomplete by an interrupted creation (%s)",
                               self.path, problem)
                _remove_tree(self.path)
        if cube_exists(self.path):
            try:
                self.root = zarr.open_group(storage.zarr_store(self.path), mode="r+")
            except Exception as e:  # noqa: BLE001 - zarr raises many kinds
                raise CubeError(f"cannot open cube {self.path}: {e}") from e
            try:
                stored = TileGrid.from_dict(dict(self.root.attrs["grid"]))
            except (KeyError, ValueError) as e:
                raise CubeError(f"{self.path} is not a sitsmon cube (no valid grid attribute)") from e
            if stored != grid:
                raise CubeError(f"cube {self.path} has grid {stored}, not {grid}")
            stored_chunk = self.root.attrs.get("chunk")
            if stored_chunk:
                self.chunk = tuple(stored_chunk)
            for sensor in Sensor:
                self._repair(sensor)
        else:
            self._create()

    # ----------------------------------------------------------------- layout
    def _create(self) -> None:
        """Build the layout under a temporary name, then rename it into place (crash-safe)."""
        if storage.is_url(self.path):
            self._create_remote()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_orphan_creations(self.path.parent)
        tmp = self.path.with_name(f".{self.path.name}.creating-{os.getpid()}-{uuid.uuid4().hex[:12]}")
        try:
            self._build(tmp)
            os.rename(tmp, self.path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.root = zarr.open_group(str(self.path), mode="r+")

    def _create_remote(self) -> None:
        """Object storage: build the layout in memory, upload it with the root ``zarr.json`` last."""
        store, objects = storage.memory_zarr()
        self._build(store)
        storage.put_tree(self.path, objects, last="zarr.json")
        self.root = zarr.open_group(storage.zarr_store(self.path), mode="r+")

    def _build(self, where: Any) -> None:
        root = zarr.open_group(storage.zarr_store(where) if isinstance(where, str | Path) else where, mode="w")
        root.attrs.update({"schema": SCHEMA, "grid": self.grid.to_dict(), "chunk": list(self.chunk)})
        h, w = self.grid.shape
        xmin, _, _, ymax = self.grid.bounds
        res = self.grid.resolution
        xs = xmin + res * (np.arange(w) + 0.5)
        ys = ymax - res * (np.arange(h) + 0.5)
        cy, cx = self.chunk
        for sensor in Sensor:
            g = root.create_group(sensor.value.lower())
            g.attrs.update({"schema": SCHEMA, "sensor": sensor.value, "epsg": self.grid.epsg})
            _array(g, "x", xs, ("x",), {"units": "m", "crs": f"EPSG:{self.grid.epsg}"})
            _array(g, "y", ys, ("y",), {"units": "m", "crs": f"EPSG:{self.grid.epsg}"})
            g.create_array("time", shape=(0,), dtype="int64", chunks=(4096,), fill_value=0,
                           dimension_names=["time"], attributes=dict(TIME_ATTRS))
            for name, dtype in _PER_TIME[sensor].items():
                # ingested_at stays a plain integer (no CF units, so xarray does not decode it): provenance
                attrs = {"description": "UTC seconds since epoch"} if name == "ingested_at" else {}
                g.create_array(name, shape=(0,), dtype=dtype, chunks=(4096,), dimension_names=["time"],
                               attributes=attrs, **({} if dtype is str else {"fill_value": 0}))
            if sensor is Sensor.S2:
                _array(g, "band", np.array(S2_BANDS), ("band",))
                g.create_array(
                    "reflectance", shape=(0, len(S2_BANDS), h, w), dtype="uint16", chunks=(1, 1, cy, cx),
                    fill_value=0, dimension_names=list(S2_DIMS),
                    attributes={"scale_factor": REFLECTANCE_SCALE, "add_offset": 0.0, "_FillValue": 0,
                                "units": "1", "long_name": "surface reflectance"},
                )
                g.create_array("clear", shape=(0, h, w), dtype="uint8", chunks=(1, cy, cx), fill_value=0,
                               dimension_names=list(MASK_DIMS),
                               attributes={"flag_values": [0, 1], "flag_meanings": "not_clear clear"})
            else:
                _array(g, "pol", np.array(S1_POLS), ("pol",))
                g.create_array("backscatter", shape=(0, len(S1_POLS), h, w), dtype="float32",
                               chunks=(1, 1, cy, cx), fill_value=np.nan, dimension_names=list(S1_DIMS),
                               attributes={"units": "1", "long_name": "backscatter, linear power"})

    def group(self, sensor: Sensor) -> zarr.Group:
        return self.root[sensor.value.lower()]

    def _time_arrays(self, sensor: Sensor) -> list[zarr.Array]:
        g = self.group(sensor)
        names = ["reflectance", "clear"] if sensor is Sensor.S2 else ["backscatter"]
        return [g[n] for n in (*names, *_PER_TIME[sensor])]

    def _repair(self, sensor: Sensor) -> None:
        """Trim arrays left longer than ``time`` by a write that did not finish."""
        n = self.group(sensor)["time"].shape[0]
        for arr in self._time_arrays(sensor):
            if arr.shape[0] != n:
                logger.warning("cube %s/%s: trimming unfinished write of %s (%d -> %d)", self.path, sensor, arr.name,
                               arr.shape[0], n)
                arr.resize((n, *arr.shape[1:]))

    # ----------------------------------------------------------------- queries
    def slots(self, sensor: Sensor) -> list[SlotInfo]:
        g = self.group(sensor)
        n = g["time"].shape[0]
        if n == 0:
            return []
        times = g["time"][:]
        slots = g["slot"][:n]
        ids = g["item_ids"][:n]
        return [SlotInfo(i, int(times[i]), str(slots[i]), tuple(s for s in str(ids[i]).split(",") if s))
                for i in range(n)]

    def find_slot(self, sensor: Sensor, slot: str) -> int | None:
        g = self.group(sensor)
        n = g["time"].shape[0]
        if n == 0:
            return None
        hits = np.flatnonzero(_strs(g["slot"][:n]) == slot)
        return int(hits[0]) if hits.size else None

    # ----------------------------------------------------------------- writing
    def begin_slot(self, sensor: Sensor, slot: str) -> tuple[int, bool]:
        """Index to write ``slot`` into and whether it is new. A new index lies past the committed length."""
        existing = self.find_slot(sensor, slot)
        g = self.group(sensor)
        if existing is not None:
            g["item_ids"][existing] = ""  # being rewritten
            return existing, False
        n = g["time"].shape[0]
        for arr in self._time_arrays(sensor):
            if arr.name.rsplit("/", 1)[-1] in ("slot",):
                continue
            arr.resize((n + 1, *arr.shape[1:]))
        return n, True

    def write_block(self, sensor: Sensor, index: int, window: tuple[int, int, int, int], data: np.ndarray,
                    clear: np.ndarray | None = None) -> None:
        """Write one spatial block (y0, y1, x0, x1) of a time step: data (c, h, w), clear (h, w) for S2."""
        y0, y1, x0, x1 = window
        g = self.group(sensor)
        if sensor is Sensor.S2:
            g["reflectance"][index, :, y0:y1, x0:x1] = data
            g["clear"][index, y0:y1, x0:x1] = clear
        else:
            g["backscatter"][index, :, y0:y1, x0:x1] = data

    def commit_slot(self, sensor: Sensor, index: int, new: bool, slot: str, time_s: int, item_ids: tuple[str, ...],
                    meta: dict[str, Any]) -> None:
        """Provenance, then slot, then time: after this the time step is visible to readers."""
        g = self.group(sensor)
        g["ingested_at"][index] = int(_time.time())
        for key, value in meta.items():
            g[key][index] = value
        if new:
            g["slot"].resize((index + 1,))
        g["slot"][index] = slot
        g["item_ids"][index] = ",".join(item_ids)
        if new:
            g["time"].resize((index + 1,))
        g["time"][index] = int(time_s)

    def abort_slot(self, sensor: Sensor, index: int, new: bool) -> None:
        """Forget an unfinished new time step (an existing one is left for the re-ingest to rewrite)."""
        if new:
            self._repair(sensor)

    def blocks(self) -> Iterator[tuple[int, int, int, int]]:
        """Spatial windows aligned with the chunks, row by row."""
        h, w = self.grid.shape
        cy, cx = self.chunk
        for y0 in range(0, h, cy):
            for x0 in range(0, w, cx):
                yield (y0, min(y0 + cy, h), x0, min(x0 + cx, w))


def _array(g: zarr.Group, name: str, values: np.ndarray, dims: tuple[str, ...], attrs: dict | None = None) -> None:
    kwargs = {} if values.dtype.kind in "UO" else {"fill_value": 0}
    a = g.create_array(name, shape=values.shape, dtype=str if values.dtype.kind in "UO" else values.dtype,
                       chunks=values.shape, dimension_names=list(dims), attributes=attrs or {}, **kwargs)
    a[:] = values


def _strs(values: Any) -> np.ndarray:
    """zarr string arrays (numpy StringDType or object) as a plain unicode array."""
    return np.array([str(v) for v in np.asarray(values).tolist()], dtype=str)


_CREATING = ".creating-"


def remove_orphan_creations(cubes_root: str | Path) -> list[Path]:
    """Remove cube folders left under a temporary name by a creation that was killed (owner PID gone)."""
    from ingest.locks import pid_alive

    removed = []
    if storage.is_url(cubes_root):
        return removed  # a cube on object storage is built in memory: no temporary prefix to leave behind
    for p in Path(cubes_root).glob(f".*.zarr{_CREATING}*"):
        pid_text = p.name.rsplit(_CREATING, 1)[-1].split("-", 1)[0]
        pid = int(pid_text) if pid_text.isdigit() else 0
        if pid == os.getpid() or pid_alive(pid):
            continue  # a creation in flight (another thread of this process, or a live process)
        logger.warning("removing %s left by an interrupted cube creation", p)
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed


def _expected_arrays(sensor: Sensor) -> list[str]:
    data = ["band", "reflectance", "clear"] if sensor is Sensor.S2 else ["pol", "backscatter"]
    return ["x", "y", "time", *_PER_TIME[sensor], *data]


def check_cube(path: storage.Location) -> str | None:
    """What is wrong with the cube at ``path`` (one short phrase), or None when its layout is whole."""
    p = storage.location(path)
    if not storage.exists(storage.join(p, "zarr.json")):
        return "no zarr.json"
    try:
        root = zarr.open_group(storage.zarr_store(p, read_only=True), mode="r")
        attrs = dict(root.attrs)
    except Exception as e:  # noqa: BLE001 - zarr raises many kinds
        return f"unreadable root ({' '.join(str(e).split())[:120]})"
    if attrs.get("schema") != SCHEMA or "grid" not in attrs:
        return "no sitsmon schema/grid attributes"
    for sensor in Sensor:
        name = sensor.value.lower()
        try:
            g = root[name]
            members = set(g.array_keys())
        except Exception:  # noqa: BLE001
            return f"no {name} group"
        missing = [a for a in _expected_arrays(sensor) if a not in members]
        if missing:
            return f"no array {name}/{missing[0]}"
        n = g["time"].shape[0]
        stepped = ["reflectance", "clear"] if sensor is Sensor.S2 else ["backscatter"]
        for a in (*stepped, *_PER_TIME[sensor]):
            if g[a].shape[0] < n:
                return f"array {name}/{a} is shorter ({g[a].shape[0]}) than its time index ({n})"
    return None


def remedy(path: str | Path) -> str:
    """What a writer does with a cube :func:`check_cube` finds fault with (the words `ingest status` shows)."""
    if committed_steps(path) > 0:
        return "it holds committed steps: move it away to rebuild it"
    if not _own_empty_layout(storage.location(path)):
        return "not a sitsmon cube: move it away"
    return "no committed step: the next poll rebuilds it"


def _own_empty_layout(path: storage.Location) -> bool:
    """Whether ``path`` is an empty folder or a zarr group this module began (no foreign attributes):
    only such a folder is deleted and rebuilt, never someone else's store."""
    if not storage.list_names(path):
        return True
    try:
        attrs = dict(zarr.open_group(storage.zarr_store(path, read_only=True), mode="r").attrs)
    except Exception:  # noqa: BLE001 - not a zarr v3 group: not ours
        return False
    return not attrs or attrs.get("schema") == SCHEMA


def committed_steps(path: str | Path) -> int:
    """Committed time steps of a cube that may be incomplete (0 where a time index cannot be read)."""
    total = 0
    for sensor in Sensor:
        try:
            where = storage.join(storage.location(path), sensor.value.lower(), "time")
            total += zarr.open_array(storage.zarr_store(where, read_only=True), mode="r").shape[0]
        except Exception:  # noqa: BLE001 - a missing or unreadable index holds nothing
            continue
    return total


def open_cube(path: storage.Location, sensor: Sensor | str, sort: bool = True) -> xr.Dataset:
    """Read one sensor group of a cube as an xarray Dataset of its committed time steps (sorted by time).

    Safe while a writer is active or after a crash: only ``len(time)`` steps are returned, and steps
    being rewritten (empty ``item_ids``) or not yet given their time (0, the fill value) are dropped.
    """
    sensor = Sensor(sensor)
    p = storage.location(path)
    if not storage.exists(storage.join(p, "zarr.json")):
        raise CubeError(f"no cube at {p}")
    problem = check_cube(p)
    if problem is not None:
        raise CubeError(f"cube {p} is incomplete: {problem}")
    try:
        root = zarr.open_group(storage.zarr_store(p, read_only=True), mode="r")
        g = root[sensor.value.lower()]
    except Exception as e:  # noqa: BLE001
        raise CubeError(f"cannot open cube {p}: {e}") from e
    n = g["time"].shape[0]
    times_s = np.asarray(g["time"][:n])
    data_vars: dict[str, Any] = {}
    coords: dict[str, Any] = {
        "time": ("time", times_s.astype("datetime64[s]")),
        "x": ("x", g["x"][:]),
        "y": ("y", g["y"][:]),
    }
    import dask.array as da

    if sensor is Sensor.S2:
        coords["band"] = ("band", _strs(g["band"][:]))
        refl = da.from_zarr(g["reflectance"])[:n]
        data_vars["reflectance"] = (S2_DIMS, refl)
        data_vars["clear"] = (MASK_DIMS, da.from_zarr(g["clear"])[:n])
    else:
        coords["pol"] = ("pol", _strs(g["pol"][:]))
        data_vars["backscatter"] = (S1_DIMS, da.from_zarr(g["backscatter"])[:n])
    for name in _PER_TIME[sensor]:
        values = np.asarray(g[name][:n])
        data_vars[name] = ("time", _strs(values) if values.dtype.kind in "OUT" else values)
    ds = xr.Dataset(data_vars, coords=coords, attrs=dict(root.attrs))
    if sensor is Sensor.S2:
        ds["reflectance"].attrs.update(scale_factor=REFLECTANCE_SCALE, _FillValue=0)
    # a step whose time is still the fill value is the one commit_slot has grown the index for, not yet set
    done = np.array([bool(s) for s in ds["item_ids"].values], dtype=bool) & (times_s != 0)
    if not done.all():
        ds = ds.isel(time=np.flatnonzero(done))
    if sort and ds.sizes["time"] > 1:
        ds = ds.sortby("time")
    return ds


def reflectance(ds: xr.Dataset) -> xr.DataArray:
    """S2 reflectance as float32 (NaN where no data) from a Dataset of :func:`open_cube`."""
    raw = ds["reflectance"]
    return xr.where(raw == 0, np.float32(np.nan), raw.astype(np.float32) * np.float32(REFLECTANCE_SCALE))
