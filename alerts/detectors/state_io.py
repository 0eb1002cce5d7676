"""Persistence of the per-parcel (reference) detector states: a dict for JSON, columns for Zarr.

State types are found through the registry (``alerts.detectors.registry.state_class``), never by
importing the detectors here. Floats stay floats: ``-inf`` (nothing seen yet) is a plain float64
in the Zarr arrays and ``-Infinity`` in Python's JSON, so no codec is needed. The vectorised
kernels keep their own array layout (``alerts.detectors.batch``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields
from typing import Any

import numpy as np

from alerts.detectors.base import DetectorState, Watermark
from alerts.detectors.registry import state_class
from alerts.errors import SeriesError

STATE_SCHEMA = "sitsmon-detector-state/2"
SENSOR_BITS = {"S2": 1, "S1": 2}


def _plain(value: Any) -> Any:
    if isinstance(value, Watermark):
        return {"t_last": value.t_last, "sensors_at_last": sorted(value.sensors_at_last)}
    if isinstance(value, frozenset | set):
        return sorted(value)
    return value


def _untuple(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_untuple(v) for v in value)
    return value


def _row_types(f) -> list[str]:
    """Column types of a series field annotated ``tuple[tuple[float, float, int], ...]``."""
    inner = str(f.type).split("tuple[tuple[", 1)[1].split("]", 1)[0]
    return [t.strip() for t in inner.split(",") if t.strip() != "..."]


def _type_of(name: Any) -> type[DetectorState]:
    try:
        return state_class(str(name))
    except KeyError:
        raise SeriesError(f"unknown detector state type {name!r}") from None


def state_to_dict(state: DetectorState) -> dict[str, Any]:
    """A dict of a detector state (``json.dumps``-able), with the schema version and the state type."""
    body = {f.name: _plain(getattr(state, f.name)) for f in fields(state)}
    return {"schema": STATE_SCHEMA, "type": type(state).__name__, "state": body}


def state_from_dict(data: dict[str, Any]) -> DetectorState:
    """Inverse of ``state_to_dict``; refuses another schema version or an unknown state type.
    Fields missing from ``data`` (written before they existed) take their defaults."""
    if data.get("schema") != STATE_SCHEMA:
        raise SeriesError(f"detector state schema {data.get('schema')!r} is not {STATE_SCHEMA!r}")
    cls = _type_of(data.get("type", ""))
    body = dict(data["state"])
    mark = body.pop("mark")
    names = {f.name for f in fields(cls)}
    kw = {k: _untuple(v) for k, v in body.items() if k in names}
    return cls(mark=Watermark(float(mark["t_last"]), frozenset(mark["sensors_at_last"])), **kw)


def states_to_arrays(states: list[DetectorState]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Columns of states of one type: a scalar field is an ``[N]`` array; a series field (tuple of
    tuples) its rows concatenated ``[sum, C]`` with ``<field>.offsets`` ``[N+1]``; the watermark
    ``mark.t_last`` and ``mark.sensors`` (bits, ``SENSOR_BITS``). Strings go to the attributes."""
    types = {type(s) for s in states}
    if len(types) > 1:
        raise SeriesError(f"states of one type per group, got {sorted(t.__name__ for t in types)}")
    cls = types.pop() if types else DetectorState
    arrays: dict[str, np.ndarray] = {
        "mark.t_last": np.asarray([s.mark.t_last for s in states], dtype=np.float64),
        "mark.sensors": np.asarray(
            [sum(SENSOR_BITS[x] for x in s.mark.sensors_at_last) for s in states], dtype=np.int8
        ),
    }
    attrs: dict[str, Any] = {"schema": STATE_SCHEMA, "type": cls.__name__, "n": len(states)}
    for f in fields(cls):
        if f.name == "mark":
            continue
        vals = [getattr(s, f.name) for s in states]
        if f.name in ("parcel_id", "land_use"):
            attrs[f.name] = [str(v) for v in vals]
        elif isinstance(f.default, tuple):
            # the row width from the data (an annotation may say ``tuple[float, ...]``)
            width = next((len(v[0]) for v in vals if len(v)), len(_row_types(f)))
            rows = [np.asarray(v, dtype=np.float64).reshape(-1, width) for v in vals]
            arrays[f.name] = np.concatenate(rows) if rows else np.zeros((0, width))
            arrays[f"{f.name}.offsets"] = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(
                np.int64
            )
        else:
            arrays[f.name] = np.asarray(vals)
    return arrays, attrs


def states_from_arrays(arrays: dict[str, np.ndarray], attrs: dict[str, Any]) -> list[DetectorState]:
    if attrs.get("schema") != STATE_SCHEMA:
        raise SeriesError(f"detector state schema {attrs.get('schema')!r} is not {STATE_SCHEMA!r}")
    cls = _type_of(attrs.get("type"))
    n = int(attrs["n"])
    bits = arrays["mark.sensors"]
    out = []
    for i in range(n):
        kw: dict[str, Any] = {"parcel_id": attrs["parcel_id"][i], "land_use": attrs["land_use"][i]}
        sensors = frozenset(s for s, b in SENSOR_BITS.items() if int(bits[i]) & b)
        kw["mark"] = Watermark(float(arrays["mark.t_last"][i]), sensors)
        for f in fields(cls):
            if f.name in kw or f.name not in arrays:
                continue
            if f"{f.name}.offsets" in arrays:
                off = arrays[f"{f.name}.offsets"]
                rows = arrays[f.name][off[i] : off[i + 1]]
                ints = [j for j, t in enumerate(_row_types(f)) if t == "int"]
                kw[f.name] = tuple(
                    tuple(int(x) if j in ints else float(x) for j, x in enumerate(r)) for r in rows
                )
            else:
                v = arrays[f.name][i]
                kw[f.name] = v.item() if hasattr(v, "item") else v
        out.append(cls(**kw))
    return out


def states_to_zarr(states: Iterable[DetectorState], path: str) -> None:
    """Write detector states of one type to a Zarr group: one array per field, schema versioned."""
    import zarr

    arrays, attrs = states_to_arrays(list(states))
    group = zarr.open_group(path, mode="w")
    for name, a in arrays.items():
        group.create_array(name, data=a)
    group.attrs.update(attrs)


def states_from_zarr(path: str) -> list[DetectorState]:
    import zarr

    group = zarr.open_group(path, mode="r")
    attrs = dict(group.attrs)
    if attrs.get("schema") != STATE_SCHEMA:
        raise SeriesError(f"{path}: detector state schema {attrs.get('schema')!r} is not {STATE_SCHEMA!r}")
    arrays = {name: np.asarray(a[...]) for name, a in group.arrays()}
    return states_from_arrays(arrays, attrs)
