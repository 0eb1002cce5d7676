"""Fold a block of acquisitions at once: ``T`` tokens per row in the parallel or chunkwise form (backfill).

The streaming step (:mod:`sits.models.streaming`) folds one acquisition into ``N`` rows; a replay of a
period knows the next ``T`` acquisitions already, so :func:`fold_block` folds them in one call of the
plain forms (:meth:`SitsEncoder.run`, ``mode="chunk"`` or ``"parallel"``) from the state, and returns:

- the new state: what ``T`` streaming steps give, to fp32 tolerance (the same sums in another order:
  intra-chunk ``(Q Kᵀ ⊙ D) V`` plus the decayed carried state, instead of one rank-one update per step);
- ``h [N, T, d]``, the representation after each token;
- :class:`FieldsBefore`: the row fields of the state *before* each token (``h_last``, ``t_last``,
  ``count``, ``last_clear``, ``t_last_clear``, each ``[N, T, ...]``). The forecast the stream makes before
  folding token ``j`` in reads only these fields of the state after token ``j − 1``
  (:meth:`SitsEncoder.forecast_fields`), and they are the intra-block outputs: ``h`` at the last valid
  token before ``j`` (else the state's), the last clear anchor before ``j`` (else the state's).

Tokens that are not valid (a row without an observation at that acquisition) fold nothing in, as in
the streaming step; their times need not be ordered. Valid tokens must be in time order, at or after
the state's ``t_last``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from sits.errors import UnsortedTimesError
from sits.models.priors import clear_anchor
from sits.state import EncoderState
from sits.tokens import TokenBatch

if TYPE_CHECKING:
    from sits.heads import Prediction
    from sits.models.encoder import SitsEncoder


@dataclass(frozen=True, slots=True, eq=False)
class FieldsBefore:
    """The state's row fields before each token of a block, ``[N, T, ...]`` (see the module docstring)."""

    h_last: torch.Tensor
    t_last: torch.Tensor
    count: torch.Tensor
    last_clear: torch.Tensor
    t_last_clear: torch.Tensor


def _last_before(flag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per position ``n`` of ``flag [N, T]``: the index of the last True strictly before ``n`` (clamped to 0)
    and whether there is one."""
    N, T = flag.shape
    idx = torch.arange(T, device=flag.device).expand(N, T)
    upto = torch.cummax(torch.where(flag, idx, torch.full_like(idx, -1)), dim=1).values
    before = torch.cat([torch.full((N, 1), -1, dtype=upto.dtype, device=flag.device), upto[:, :-1]], dim=1)
    return before.clamp_min(0), before >= 0


def _pick(values: torch.Tensor, at: torch.Tensor, has: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """``values[n, at[n, j]]`` where ``has``, else the state's ``old[n]`` (``values [N, T, ...]``)."""
    if values.dim() == 2:
        return torch.where(has, values.gather(1, at), old[:, None])
    got = values.gather(1, at[..., None].expand(*at.shape, values.shape[-1]))
    return torch.where(has[..., None], got, old[:, None, :])


def fields_before(state: EncoderState, tb: TokenBatch, h: torch.Tensor, n_s2c: int) -> FieldsBefore:
    """The row fields of the state before each token of ``tb`` (``h``: the block's outputs)."""
    at, has = _last_before(tb.valid)
    anchor_at, has_anchor = _last_before(clear_anchor(tb, n_s2c))
    seen = torch.cumsum(tb.valid.to(torch.int64), dim=1) - tb.valid.to(torch.int64)
    return FieldsBefore(h_last=_pick(h, at, has, state.h_last), t_last=_pick(tb.t_days, at, has, state.t_last),
                        count=state.count[:, None] + seen,
                        last_clear=_pick(tb.values[..., :n_s2c], anchor_at, has_anchor, state.last_clear),
                        t_last_clear=_pick(tb.t_days, anchor_at, has_anchor, state.t_last_clear))


def _check_order(state: EncoderState, tb: TokenBatch) -> None:
    t = torch.where(tb.valid, tb.t_days, torch.full_like(tb.t_days, -torch.inf))
    running = torch.cummax(t, dim=1).values
    start = torch.where(state.count > 0, state.t_last, torch.full_like(state.t_last, -torch.inf))
    behind = tb.valid & (tb.t_days < torch.maximum(running, start[:, None]))
    if bool(behind.any()):
        row, col = (int(i) for i in torch.nonzero(behind)[0])
        raise UnsortedTimesError(f"row {row}: token {col} at day {float(tb.t_days[row, col]):.4f} is before an earlier "
                                 f"token or the state's t_last (days since epoch); a block must be in time order")


@torch.no_grad()
def fold_block(model: SitsEncoder, state: EncoderState, tb: TokenBatch, mode: str = "chunk"
               ) -> tuple[EncoderState, torch.Tensor, FieldsBefore]:
    """Fold the ``[N, T]`` tokens of ``tb`` into ``state`` in one call of the ``mode`` form ("chunk" or
    "parallel"). Returns ``(new state, h [N, T, d], fields before each token)``; ``state`` is not changed."""
    model.check_state(state, tb.shape[0])
    _check_order(state, tb)
    h, new = model.run(tb, state, mode=mode, output_final_state=True)
    return new, h, fields_before(state, tb, h, model.bands.n_s2c)


@torch.no_grad()
def forecast_before(model: SitsEncoder, before: FieldsBefore, rows: torch.Tensor, steps: torch.Tensor,
                    t_days: torch.Tensor, sensor: str = "S2") -> Prediction:
    """The forecast the stream makes before folding token ``steps[m]`` of row ``rows[m]`` in, for an
    acquisition at ``t_days[m]`` (float64 days since the epoch): ``[M, …]`` channels of ``sensor``."""
    return model.forecast_fields(before.h_last[rows, steps], before.t_last[rows, steps], before.count[rows, steps],
                                 before.last_clear[rows, steps], before.t_last_clear[rows, steps], t_days, sensor)
