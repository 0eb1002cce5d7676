"""Encoder state: per layer the retention / linear-attention state, the last output, ``t_last``.

An :class:`EncoderState` is immutable: ``model.step`` returns a new one, so keeping an old one is a
checkpoint for rewinding on a late arrival (``step(state, obs, out=spare)`` writes the new state into a
spare the caller owns instead: double buffering). Round trips: Zarr (:meth:`to_zarr`/:meth:`from_zarr`)
and torch (:meth:`save`/:meth:`load`), both carrying :data:`STATE_SCHEMA`.

Layout per item ``n`` (every field is required and keyword-only; :meth:`SitsEncoder.init_state` builds
an empty one): ``layers[l][n]`` ``[H, K, V]`` float32 (retention: ``V = K``; linear attention
``V = K + 1``, the last column the normaliser), ``h_last[n]`` ``[d_model]`` float32, ``t_last[n]``
float64 days since :data:`sits.tokens.EPOCH` (meaningful where ``count[n] > 0``; :meth:`t_last_s` gives
int64 seconds since 1970), ``count[n]`` int64 tokens folded in, ``last_clear[n]`` ``[n_s2c]`` float32
the last clear S2 token's normalised channels (the forecast's persistence prior) and
``t_last_clear[n]`` float64 its time in days since the epoch (−inf when none).

Every row-wise operation (:meth:`to`, :meth:`clone`, :meth:`select`, :meth:`concat`) is one call of
:meth:`map_tensors`, which applies a function to the matching tensors of one or more states, field by
field: a new field is added in :data:`ROW_FIELDS` once and every operation carries it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sits.errors import CheckpointVersionError, SitsError, StateShapeError
from sits.tokens import EPOCH, SECONDS_PER_DAY

STATE_SCHEMA = "sits-state/1"
ROW_FIELDS = ("h_last", "t_last", "count", "last_clear", "t_last_clear")
"""The per-row tensor fields besides ``layers`` (in :meth:`EncoderState.tensors` order)."""
_DIMS = {"h_last": 2, "t_last": 1, "count": 1, "last_clear": 2, "t_last_clear": 1}


@dataclass(frozen=True, slots=True, eq=False, kw_only=True)
class EncoderState:
    """The streaming state of ``n`` parcels/pixels (layout in the module docstring)."""

    layers: tuple[torch.Tensor, ...]
    h_last: torch.Tensor
    t_last: torch.Tensor
    count: torch.Tensor
    last_clear: torch.Tensor
    t_last_clear: torch.Tensor
    model_id: str = ""
    schema: str = STATE_SCHEMA

    def __post_init__(self) -> None:
        if self.schema != STATE_SCHEMA:
            raise CheckpointVersionError(f"state schema {self.schema!r} is not {STATE_SCHEMA!r}")
        object.__setattr__(self, "layers", tuple(self.layers))
        for name in ("layers", *ROW_FIELDS):
            if getattr(self, name) is None:
                raise StateShapeError(f"state field {name!r} is None; every field is required "
                                      f"(model.init_state(n) builds an empty state)")
        n = int(self.t_last.shape[0]) if self.t_last.dim() == 1 else -1
        for name in ROW_FIELDS:
            t = getattr(self, name)
            if t.dim() != _DIMS[name] or t.shape[0] != n:
                raise StateShapeError(
                    f"state parts disagree: {name} {tuple(t.shape)} for t_last {tuple(self.t_last.shape)} "
                    f"(every part needs one row per item)"
                )
        for i, S in enumerate(self.layers):
            if S.dim() != 4 or S.shape[0] != n:
                raise StateShapeError(f"state layer {i} must be [N, H, K, V] with N = {n}; got {tuple(S.shape)}")

    @property
    def n(self) -> int:
        return int(self.t_last.shape[0])

    def __len__(self) -> int:
        return self.n

    @property
    def nbytes_per_item(self) -> int:
        """Bytes per parcel/pixel (all layers and every per-row field)."""
        return sum(t.element_size() * math.prod(t.shape[1:]) for t in self.tensors())

    def t_last_s(self) -> np.ndarray:
        """``[N]`` int64 seconds since 1970 UTC of ``t_last`` (the unit of ingest's ``time_s``),
        rounded to the second; meaningful where ``count > 0``."""
        return np.round(self.t_last.cpu().numpy() * SECONDS_PER_DAY).astype(np.int64) + EPOCH.astype(np.int64)

    def t_last_datetime(self) -> np.ndarray:
        """``[N]`` datetime64[s] of ``t_last`` (NaT where nothing was folded in)."""
        out = self.t_last_s().astype("datetime64[s]")
        out[self.count.cpu().numpy() == 0] = np.datetime64("NaT")
        return out

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """Every tensor of the state: the per-layer states, then the :data:`ROW_FIELDS`."""
        return (*self.layers, *(getattr(self, name) for name in ROW_FIELDS))

    @staticmethod
    def map_tensors(fn: Callable[..., torch.Tensor], *states: EncoderState) -> EncoderState:
        """A new state whose every tensor is ``fn`` of the matching tensors of ``states`` (one state:
        ``fn(t)``; several: ``fn(t_1, t_2, …)``). The model id is the first state's."""
        if not states:
            raise SitsError("map_tensors needs at least one state")
        layers = tuple(fn(*parts) for parts in zip(*(s.layers for s in states), strict=True))
        rows = {name: fn(*(getattr(s, name) for s in states)) for name in ROW_FIELDS}
        return EncoderState(layers=layers, **rows, model_id=states[0].model_id)

    def to(self, device) -> EncoderState:
        return EncoderState.map_tensors(lambda t: t.to(device), self)

    def clone(self) -> EncoderState:
        """A copy with its own tensors (a rewind point, or the spare of a double-buffered ``step``)."""
        return EncoderState.map_tensors(torch.clone, self)

    def select(self, index) -> EncoderState:
        """Rows ``index`` (slice, int array or bool mask) as a new state (a slice gives views)."""
        if isinstance(index, np.ndarray):
            index = torch.from_numpy(index)
        if isinstance(index, torch.Tensor):
            index = index.to(self.t_last.device)
        return EncoderState.map_tensors(lambda t: t[index], self)

    @staticmethod
    def concat(states: list[EncoderState]) -> EncoderState:
        """The rows of ``states`` one after the other (all from one model)."""
        if not states:
            raise SitsError("nothing to concatenate")
        ids = {s.model_id for s in states}
        if len(ids) != 1:
            raise StateShapeError(f"states from different models: {sorted(ids)}")
        return EncoderState.map_tensors(lambda *parts: torch.cat(parts), *states)

    def equals(self, other: object, atol: float = 0.0) -> bool:
        """Same model, shapes, counts and times, and values within ``atol`` (0: bit-identical)."""
        if not isinstance(other, EncoderState):
            return False
        if (self.model_id, self.schema, len(self.layers)) != (other.model_id, other.schema, len(other.layers)):
            return False
        pairs = list(zip(self.layers, other.layers, strict=True)) + [(self.h_last, other.h_last),
                                                                      (self.last_clear, other.last_clear)]
        if any(a.shape != b.shape for a, b in pairs):
            return False
        if (not torch.equal(self.count.cpu(), other.count.cpu()) or not torch.equal(self.t_last.cpu(), other.t_last.cpu())
                or not torch.equal(self.t_last_clear.cpu(), other.t_last_clear.cpu())):
            return False
        if atol == 0.0:
            return all(torch.equal(a.cpu(), b.cpu()) for a, b in pairs)
        return all(torch.allclose(a.cpu().float(), b.cpu().float(), atol=atol, rtol=0) for a, b in pairs)

    # ---- round trips -------------------------------------------------------------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {f"layer_{i}": S.detach().cpu().numpy() for i, S in enumerate(self.layers)}
        arrays.update({name: getattr(self, name).detach().cpu().numpy() for name in ROW_FIELDS})
        return arrays

    @classmethod
    def _from_arrays(cls, arrays: dict[str, np.ndarray], attrs: dict) -> EncoderState:
        schema = attrs.get("schema")
        if schema != STATE_SCHEMA:
            raise CheckpointVersionError(f"saved state schema {schema!r} is not {STATE_SCHEMA!r}")
        missing = [name for name in ROW_FIELDS if name not in arrays]
        if missing:
            raise SitsError(f"saved state lacks {missing}")
        n_layers = int(attrs["n_layers"])
        layers = tuple(torch.from_numpy(np.array(arrays[f"layer_{i}"])) for i in range(n_layers))
        return cls(layers=layers, **{name: torch.from_numpy(np.array(arrays[name])) for name in ROW_FIELDS},
                   model_id=str(attrs.get("model_id", "")))

    def _attrs(self) -> dict:
        return {"schema": self.schema, "model_id": self.model_id, "n_layers": len(self.layers), "n": self.n}

    def to_zarr(self, path: str | Path) -> None:
        """Write a Zarr group at ``path`` (overwritten): one array per part, attributes with the schema."""
        import zarr

        group = zarr.open_group(str(path), mode="w")
        for name, arr in self._arrays().items():
            chunks = (max(1, min(arr.shape[0], 65536)),) + tuple(max(1, c) for c in arr.shape[1:])
            a = group.create_array(name, shape=arr.shape, dtype=arr.dtype, chunks=chunks)
            a[...] = arr
        group.attrs.update(self._attrs())

    @classmethod
    def from_zarr(cls, path: str | Path) -> EncoderState:
        import zarr

        try:
            group = zarr.open_group(str(path), mode="r")
        except Exception as e:  # noqa: BLE001 - any store error is a bad input here
            raise SitsError(f"cannot open encoder state at {path}: {e}") from e
        attrs = dict(group.attrs)
        names = [n for n in group.array_keys()]
        return cls._from_arrays({n: group[n][...] for n in names}, attrs)

    def save(self, path: str | Path) -> None:
        """torch round trip: one ``.pt`` file."""
        torch.save({"attrs": self._attrs(), "arrays": {k: torch.from_numpy(v) for k, v in self._arrays().items()}}, str(path))

    @classmethod
    def load(cls, path: str | Path) -> EncoderState:
        try:
            blob = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001
            raise SitsError(f"cannot read encoder state {path}: {e}") from e
        return cls._from_arrays({k: v.numpy() for k, v in blob["arrays"].items()}, blob["attrs"])

    def describe(self) -> str:
        return json.dumps(self._attrs())
