"""What the ops' tests share: the float32 tolerance, the forms and lengths every op is tested on, and the
check of a form against its reference."""

from __future__ import annotations

import pytest
import torch

ATOL, RTOL = 2e-4, 2e-4
LENGTHS = (1, 63, 500)  # one token; an odd length across chunks of 16; a long series
FORM_NAMES = ("chunk", "fused_recurrent", "parallel")
each_form_and_length = pytest.mark.parametrize(("form", "T"), [(f, T) for f in FORM_NAMES for T in LENGTHS])


def assert_form_matches(form, reference, inputs: tuple) -> None:
    """``form`` and ``reference`` (both ``(q, k, v, dt, log_decay, initial_state, output_final_state)``)
    give the same output and final state on ``inputs``, to the float32 tolerance."""
    ref_o, ref_S = reference(*inputs, output_final_state=True)
    o, S = form(*inputs, output_final_state=True)
    torch.testing.assert_close(o, ref_o, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(S, ref_S, atol=ATOL, rtol=RTOL)
