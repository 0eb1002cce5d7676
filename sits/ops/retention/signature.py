"""The one signature every retention form shares, declared once:
``(q, k, v, dt, log_decay, initial_state=None, output_final_state=False, *options) -> (out, final_state)``.

:func:`retention_form` wraps a form's body with it: the inputs are checked (:func:`sits.ops.utils.check_inputs`),
the body gets ``log_decay`` as float32 ``lam`` and the inputs as they came, and what it returns is put
in ``q``'s dtype, the final state kept only when ``output_final_state`` asks for it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from sits.ops.utils import check_inputs

Result = tuple[torch.Tensor, torch.Tensor | None]


def retention_form(body: Callable[..., Result]) -> Callable[..., Result]:
    """``body(q, k, v, dt, lam, initial_state, output_final_state, *options) -> (out, state)`` as a
    retention op with the shared signature (``options``: the form's own, positional or keyword)."""

    def op(
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        dt: torch.Tensor,
        log_decay: torch.Tensor,
        initial_state: torch.Tensor | None = None,
        output_final_state: bool = False,
        *options,
        **named_options,
    ) -> Result:
        check_inputs(q, k, v, dt, log_decay, initial_state)
        out, state = body(q, k, v, dt, log_decay.float(), initial_state, output_final_state, *options, **named_options)
        return out.to(q.dtype), (state if output_final_state else None)

    functools.update_wrapper(op, body)
    del op.__wrapped__  # help() and inspect show the shared signature above, not the body's
    return op
