"""A tile's fitted gap-fill model, persisted next to its series so that it is fitted once, not once
per server worker.

The fit (``alerts.gapfill.fit`` on a sample of the tile's parcels) takes seconds; with N uvicorn
workers each fitted it on its first gap-filled request, so the first requests of every worker queued
behind N fits on 2 cores (18 client timeouts of 50 in a 20 000-parcel bench). Now the first process
to need the model takes an exclusive file lock on the tile, fits, and writes
``<series>/<tile>/.gapfill-model.npz``; the others wait on the lock and load the file.

The file carries a fingerprint: the series files' stamp (so it is stale as soon as the series grows
or is re-compacted), the fit's parameters and sample size, and the gap filler's own source text (a
change of its maths invalidates every stored fit). A stale, unreadable or foreign file is refitted
over, never trusted. A tile whose fit fails is stored as "no model" with the same fingerprint, so the
workers do not each retry a fit that cannot succeed.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import inspect
import io
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

MODEL_FILE = ".gapfill-model.npz"
LOCK_FILE = ".gapfill-model.lock"
FORMAT = 1


def _code_hash() -> str:
    from alerts import gapfill, gapfill_boost

    try:  # the filler and its trees: a change of either's maths invalidates every stored fit
        source = inspect.getsource(gapfill) + inspect.getsource(gapfill_boost)
        return hashlib.sha256(source.encode()).hexdigest()[:16]
    except (OSError, TypeError):  # no source (a frozen build): the version of the package instead
        return str(getattr(gapfill, "__version__", "unknown"))


def fingerprint(stamp: tuple, fit_spec: dict[str, Any]) -> str:
    """What a stored fit must match: the series' stamp, the fit's spec and the gap filler's code."""
    text = json.dumps({"format": FORMAT, "stamp": [list(s) for s in stamp], "fit": fit_spec, "code": _code_hash()},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _encode(model: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A GapFillModel as arrays (its numpy fields) and JSON (the rest; ``params`` as a dict)."""
    arrays, plain = {}, {}
    for f in dataclasses.fields(model):
        v = getattr(model, f.name)
        if isinstance(v, np.ndarray):
            arrays[f.name] = v
        elif dataclasses.is_dataclass(v):
            plain[f.name] = {"__params__": dataclasses.asdict(v)}
        else:
            plain[f.name] = v
    return arrays, plain


def _decode(arrays: dict[str, np.ndarray], plain: dict[str, Any]) -> Any:
    from alerts import gapfill

    values: dict[str, Any] = dict(arrays)
    for name, v in plain.items():
        if isinstance(v, dict) and "__params__" in v:
            v = gapfill.GapFillParams(**v["__params__"])
        elif isinstance(v, list):  # JSON has no tuples: k_horizon's rows come back as lists too
            v = tuple(tuple(x) if isinstance(x, list) else x for x in v)
        values[name] = v
    return gapfill.GapFillModel(**values)


def _read(path: Path, want: str) -> tuple[bool, Any]:
    """``(found, model)`` from ``path`` when its fingerprint is ``want``; ``(False, None)`` otherwise."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["__meta__"]).decode())
            if meta.get("fingerprint") != want:
                return False, None
            if meta.get("model") is None:
                return True, None
            return True, _decode({k: z[k] for k in meta["arrays"]}, meta["model"])
    except FileNotFoundError:
        return False, None
    except Exception as e:  # noqa: BLE001 - a torn or foreign file is refitted over, never trusted
        logger.warning("stored gap-fill model %s unreadable, refitting: %s", path, e)
        return False, None


def _write(path: Path, want: str, model: Any) -> None:
    arrays, plain = _encode(model) if model is not None else ({}, None)
    meta = {"fingerprint": want, "model": plain, "arrays": sorted(arrays)}
    try:
        text = json.dumps(meta, default=float)
    except (TypeError, ValueError):  # ``info`` is a free dict: drop it rather than fail the store
        plain = {k: v for k, v in (plain or {}).items() if k != "info"}
        meta["model"] = plain
        text = json.dumps(meta, default=float)
    buf = io.BytesIO()
    np.savez(buf, __meta__=np.frombuffer(text.encode(), np.uint8), **arrays)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)  # readers see the old file or the new one, never half of one


def load_or_fit(tile_dir: Path, stamp: tuple, fit_spec: dict[str, Any], fit: Callable[[], Any]) -> Any:
    """The tile's model for ``stamp``: read from ``tile_dir`` when a process stored it already, else
    fitted by ``fit()`` under the tile's file lock (other processes wait, then read) and stored.
    ``fit`` returns the model or None (no model can be fitted). A read-only series dir still works:
    the model is fitted and used, only not stored."""
    want = fingerprint(stamp, fit_spec)
    path = tile_dir / MODEL_FILE
    found, model = _read(path, want)
    if found:
        return model
    try:
        lock = open(tile_dir / LOCK_FILE, "a")  # noqa: SIM115 - held across the fit
    except OSError as e:
        logger.warning("cannot lock %s (%s): fitting without storing", tile_dir, e)
        return fit()
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        found, model = _read(path, want)  # another process may have fitted while we waited
        if found:
            return model
        model = fit()
        try:
            _write(path, want, model)
        except OSError as e:
            logger.warning("cannot store the gap-fill model in %s: %s", tile_dir, e)
        return model
