"""The streaming step: one acquisition folded into the state of ``N`` parcels/pixels.

Every :meth:`SitsEncoder.step` (and :meth:`~SitsEncoder.reconstruct`) takes this one route:

1. **where the new state goes** (:func:`resolve_target`), decided by whoever owns the buffers (the
   monitor's state store): ``out=None`` a new state; ``out=state`` in place (``inplace=True`` is the
   older spelling); ``out=spare``, another state of the same model and size, there, with ``state``
   only read (double buffering: the previous state stays a rewind point, nothing is allocated);
2. **rows in blocks** of :data:`RECURRENT_ROW_CHUNK` on CPU, so that the activations stay in cache (all
   rows at once on a device);
3. per row block: the token embedding, each :meth:`sits.layers.Block.step` (which chooses, in one
   line, the fused retention block op or the block's plain recurrent form), the final norm;
4. the per-row fields (``h_last``, ``t_last``, ``count``, ``last_clear``, ``t_last_clear``) written into
   the target: the new value where the row had a token (a clear anchor, for the last two), else the
   old one.

The result equals the plain recurrent form of the whole model, ``SitsEncoder.run(mode="recurrent")``
(tested, with the reference ops, in every target mode and ragged row blocks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from sits.errors import ConfigError, StateShapeError
from sits.models.priors import clear_anchor
from sits.state import ROW_FIELDS, EncoderState
from sits.tokens import TokenBatch

if TYPE_CHECKING:
    from sits.models.encoder import SitsEncoder

RECURRENT_ROW_CHUNK = 8192  # rows per block on CPU (the intermediates of a block stay in cache)


def resolve_target(model: SitsEncoder, state: EncoderState, out: EncoderState | None,
                   inplace: bool = False) -> EncoderState:
    """The state :func:`recurrent_step` writes into: a new one (``out=None``), ``state`` itself
    (``out=state`` or ``inplace=True``) or ``out`` (checked: this model, ``state.n`` rows, contiguous
    tensors of the state's dtypes and device, no memory overlapping ``state``'s)."""
    if inplace:
        if out is not None and out is not state:
            raise ConfigError("step: give inplace=True or out=, not both (inplace=True is out=state)")
        out = state
    if out is None:
        return EncoderState.map_tensors(lambda t: torch.empty_like(t, memory_format=torch.contiguous_format), state)
    if out is not state:
        model.check_state(out, state.n)
    for a, b in zip(out.tensors(), state.tensors(), strict=True):
        if a.dtype != b.dtype or a.device != b.device or not a.is_contiguous():
            raise StateShapeError("out must hold contiguous tensors of the state's dtypes and device "
                                  "(clone() a state to get one)")
        if out is not state and _overlap(a, b):
            raise StateShapeError("out shares memory with state: pass out=state (in place) instead")
    return out


def _overlap(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether the memory spans of two tensors intersect (``a`` contiguous; two row ranges of one
    buffer, as a state store may hand out, do not)."""
    if a.device != b.device or a.numel() == 0 or b.numel() == 0:
        return False
    a0, b0 = a.data_ptr(), b.data_ptr()
    b_span = (1 + sum((n - 1) * abs(st) for n, st in zip(b.shape, b.stride(), strict=True))) * b.element_size()
    return a0 < b0 + b_span and b0 < a0 + a.numel() * a.element_size()


@torch.no_grad()
def recurrent_step(model: SitsEncoder, tb: TokenBatch, state: EncoderState,
                   target: EncoderState) -> tuple[torch.Tensor, EncoderState]:
    """Fold the ``[N, 1]`` token batch ``tb`` (validated by the caller) into ``state``, writing the new
    state into ``target`` (from :func:`resolve_target`; may be ``state``). Returns ``(h [N, 1, d],
    target)``."""
    B = tb.shape[0]
    dt = model._dt(tb, state)  # from the old t_last: computed before any in-place write
    rows_per_block = RECURRENT_ROW_CHUNK if model.device.type == "cpu" else max(B, 1)
    in_place = target is state
    h = torch.empty(B, 1, model.config.d_model, device=model.device)
    for a in range(0, B, rows_per_block):
        rows = slice(a, min(B, a + rows_per_block))
        x = model.embed(tb.rows(rows), dt[rows])
        for block, S_in, S_out in zip(model.blocks, state.layers, target.layers, strict=True):
            dst = S_out[rows]
            x, _ = block.step(x, dt[rows], tb.t_days[rows], tb.valid[rows], dst if in_place else S_in[rows], S_out=dst)
        h[rows] = model.final_norm(x)
    valid = tb.valid[:, 0]
    anchor = clear_anchor(tb, model.bands.n_s2c)[:, 0]
    new = {"h_last": (valid, h[:, 0]), "t_last": (valid, tb.t_days[:, 0]),
           "last_clear": (anchor, tb.values[:, 0, : model.bands.n_s2c]), "t_last_clear": (anchor, tb.t_days[:, 0])}
    for name in ROW_FIELDS:
        if name == "count":
            torch.add(state.count, valid, out=target.count)
            continue
        cond, value = new[name]
        torch.where(cond if value.dim() == 1 else cond[:, None], value, getattr(state, name), out=getattr(target, name))
    return h, target
