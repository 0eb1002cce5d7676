"""Encoder state: per layer the retention / linear-attention state, the last output, ``t_last``.

An :class:`EncoderState` is immutable: ``model.step`` returns a new one, so keeping an old one is a
checkpoint for rewinding on a late arrival. Round trips: Zarr (:meth:`to_zarr`/:meth:`from_zarr`) and
torch (:meth:`save`/:meth:`load`), both carrying :data:`STATE_SCHEMA`.

Layout per item ``n``: ``layers[l][n]`` ``[H, K, V]`` (retention: ``V = K``; linear attention ``V = K + 1``,
the last column the normaliser), ``h_last[n]`` ``[d_model]``, ``t_last[n]`` float64 days since
:data:`sits.tokens.EPOCH` (meaningful where ``count[n] > 0``), ``count[n]`` tokens folded in,
``last_clear[n]`` ``[n_s2c]`` the last clear S2 token's normalised channels (the forecast's persistence
prior) and ``t_last_clear[n]`` its time (−inf when none).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sits.errors import CheckpointVersionError, SitsError, StateShapeError
from sits.tokens import EPOCH, SECONDS_PER_DAY

STATE_SCHEMA = "sits-state/1"


@dataclass(frozen=True, slots=True, eq=False)
class EncoderState:
    layers: tuple[torch.Tensor, ...]
    h_last: torch.Tensor
    t_last: torch.Tensor
    count: torch.Tensor
    model_id: str = ""
    schema: str = STATE_SCHEMA
    last_clear: torch.Tensor | None = None
    t_last_clear: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.schema != STATE_SCHEMA:
            raise CheckpointVersionError(f"state schema {self.schema!r} is not {STATE_SCHEMA!r}")
        object.__setattr__(self, "layers", tuple(self.layers))
        n = int(self.t_last.shape[0]) if self.t_last.dim() == 1 else -1
        if self.last_clear is None:
            object.__setattr__(self, "last_clear", self.h_last.new_zeros(max(n, 0), 0))
        if self.t_last_clear is None:
            object.__setattr__(self, "t_last_clear", torch.full((max(n, 0),), -math.inf, dtype=torch.float64,
                                                                device=self.t_last.device))
        if self.last_clear.dim() != 2 or self.last_clear.shape[0] != n or tuple(self.t_last_clear.shape) != (n,):
            raise StateShapeError(f"state last_clear {tuple(self.last_clear.shape)} / t_last_clear "
                                  f"{tuple(self.t_last_clear.shape)} do not match {n} items")
        if n < 0 or tuple(self.count.shape) != (n,) or self.h_last.dim() != 2 or self.h_last.shape[0] != n:
            raise StateShapeError(
                f"state parts disagree: t_last {tuple(self.t_last.shape)}, count {tuple(self.count.shape)}, "
                f"h_last {tuple(self.h_last.shape)}"
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
        """Bytes per parcel/pixel (all layers, h_last, t_last, count)."""
        total = sum(S.element_size() * S[0].numel() for S in self.layers) if self.n else 0
        return total + self.h_last.element_size() * self.h_last.shape[1] + 8 + 8 + 4 * self.last_clear.shape[1] + 8

    def t_last_datetime(self) -> np.ndarray:
        """``[N]`` datetime64[s] of ``t_last`` (NaT where nothing was folded in)."""
        secs = np.round(self.t_last.cpu().numpy() * SECONDS_PER_DAY).astype(np.int64) + EPOCH.astype(np.int64)
        out = secs.astype("datetime64[s]")
        out[self.count.cpu().numpy() == 0] = np.datetime64("NaT")
        return out

    def to(self, device) -> EncoderState:
        return EncoderState(tuple(S.to(device) for S in self.layers), self.h_last.to(device), self.t_last.to(device),
                            self.count.to(device), self.model_id, STATE_SCHEMA, self.last_clear.to(device),
                            self.t_last_clear.to(device))

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """Every tensor of the state: the per-layer states, then h_last, t_last, count, last_clear, t_last_clear."""
        return (*self.layers, self.h_last, self.t_last, self.count, self.last_clear, self.t_last_clear)

    def clone(self) -> EncoderState:
        """A copy with its own tensors (a rewind point, or the spare of a double-buffered ``step``)."""
        return EncoderState(tuple(S.clone() for S in self.layers), self.h_last.clone(), self.t_last.clone(),
                            self.count.clone(), self.model_id, self.schema, self.last_clear.clone(),
                            self.t_last_clear.clone())

    def select(self, index) -> EncoderState:
        """Rows ``index`` (slice, int array or bool mask) as a new state."""
        if isinstance(index, np.ndarray):
            index = torch.from_numpy(index)
        if isinstance(index, torch.Tensor):
            index = index.to(self.t_last.device)
        return EncoderState(tuple(S[index] for S in self.layers), self.h_last[index], self.t_last[index],
                            self.count[index], self.model_id, STATE_SCHEMA, self.last_clear[index],
                            self.t_last_clear[index])

    @staticmethod
    def concat(states: list[EncoderState]) -> EncoderState:
        if not states:
            raise SitsError("nothing to concatenate")
        ids = {s.model_id for s in states}
        if len(ids) != 1:
            raise StateShapeError(f"states from different models: {sorted(ids)}")
        return EncoderState(
            tuple(torch.cat(parts) for parts in zip(*(s.layers for s in states), strict=True)),
            torch.cat([s.h_last for s in states]), torch.cat([s.t_last for s in states]),
            torch.cat([s.count for s in states]), states[0].model_id, STATE_SCHEMA,
            torch.cat([s.last_clear for s in states]), torch.cat([s.t_last_clear for s in states]),
        )

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
        arrays.update(h_last=self.h_last.detach().cpu().numpy(), t_last=self.t_last.detach().cpu().numpy(),
                      count=self.count.detach().cpu().numpy(), last_clear=self.last_clear.detach().cpu().numpy(),
                      t_last_clear=self.t_last_clear.detach().cpu().numpy())
        return arrays

    @classmethod
    def _from_arrays(cls, arrays: dict[str, np.ndarray], attrs: dict) -> EncoderState:
        schema = attrs.get("schema")
        if schema != STATE_SCHEMA:
            raise CheckpointVersionError(f"saved state schema {schema!r} is not {STATE_SCHEMA!r}")
        n_layers = int(attrs["n_layers"])
        layers = tuple(torch.from_numpy(np.array(arrays[f"layer_{i}"])) for i in range(n_layers))
        return cls(layers, torch.from_numpy(np.array(arrays["h_last"])), torch.from_numpy(np.array(arrays["t_last"])),
                   torch.from_numpy(np.array(arrays["count"])), str(attrs.get("model_id", "")), STATE_SCHEMA,
                   torch.from_numpy(np.array(arrays["last_clear"])), torch.from_numpy(np.array(arrays["t_last_clear"])))

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
