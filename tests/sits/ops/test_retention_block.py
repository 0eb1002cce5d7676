"""The retention block's streaming step: the fused op (``sits/ops/retention_block/fused.py``) against its
reference (``naive.py``) and against the block's plain recurrent and parallel forms
(:meth:`sits.layers.Block.forward`), and :meth:`Block.step` choosing the op in the right cases only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sits.errors import StateShapeError, UnsortedTimesError
from sits.layers import Block, make_mixer
from sits.ops.dispatch import force_reference
from sits.ops.retention_block import fused as fused_module
from sits.ops.retention_block import fused_retention_block_step, naive_retention_block_step

D, H = 32, 4
K = D // H


def close(a, b):
    torch.testing.assert_close(a, b, atol=2e-5, rtol=2e-4)


def block_and_inputs(B, seed=1, **mixer_kw):
    """A retention block with non-trivial norms and biases; ``B`` rows with irregular gaps (same-day
    tokens included), about a third of the rows without a token."""
    torch.manual_seed(seed)
    block = Block(make_mixer("retention", D, H, **mixer_kw), D).eval()
    with torch.no_grad():
        for p in (block.norm1.weight, block.norm1.bias, block.norm2.weight, block.norm2.bias):
            p.add_(0.3 * torch.randn_like(p))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, 1, D, generator=g)
    dt = torch.from_numpy(np.random.default_rng(seed).choice([0.0, 0.0, 1.0, 5.0, 130.0], size=(B, 1))).float()
    t = torch.full((B, 1), 3000.0, dtype=torch.float64) + dt.double()
    valid = torch.rand(B, 1, generator=g) > 0.3
    S0 = torch.randn(B, H, K, K, generator=g)
    return block, x, dt, t, valid, S0


@pytest.mark.parametrize("B", [1, 63, 300])  # serial and threaded numba kernels
@pytest.mark.parametrize("into", ["new", "inplace", "spare"])
def test_fused_step(B, into):
    """Fused op == reference op, in every target mode; rows without a token keep their state."""
    block, x, dt, _, valid, S0 = block_and_inputs(B)
    w = block.retention_weights()
    ref_y, ref_S = naive_retention_block_step(x, dt, valid, S0, w)
    S = S0.clone()
    S_out = {"new": None, "inplace": S, "spare": torch.full_like(S0, np.nan)}[into]
    y, got = fused_retention_block_step(x, dt, valid, S, w, S_out=S_out)
    close(y, ref_y)
    close(got, ref_S)
    assert (got is S) == (into == "inplace") and (into == "inplace" or torch.equal(S, S0))
    if into == "spare":
        assert got is S_out
    assert torch.equal(got[~valid[:, 0]], S0[~valid[:, 0]])


def test_reference_op_equals_block_plain_forms():
    """The op's reference (functional, from the weights) against the block's modules: its recurrent form
    with the reference ops, and its parallel form."""
    block, x, dt, t, valid, S0 = block_and_inputs(40)
    ref_y, ref_S = naive_retention_block_step(x, dt, valid, S0, block.retention_weights())
    with torch.no_grad():
        with force_reference():
            y_rec, S_rec = block(x, dt, t, valid, S0.clone(), True, "recurrent")
        y_par, S_par = block(x, dt, t, valid, S0.clone(), True, "parallel")
    close(ref_y, y_rec)
    close(ref_S, S_rec)
    close(ref_y, y_par)
    close(ref_S, S_par)


@pytest.mark.parametrize("into", ["new", "inplace", "spare"])
def test_block_step_equals_plain_recurrent_form(into, monkeypatch):
    """``Block.step`` takes the fused op for a CPU retention block and gives the block's plain recurrent
    form (reference ops, ``Block.forward``), writing the state where it is told."""
    calls = []
    original = fused_retention_block_step
    monkeypatch.setattr("sits.layers.block.fused_retention_block_step",
                        lambda *a, **kw: calls.append(1) or original(*a, **kw))
    block, x, dt, t, valid, S0 = block_and_inputs(70)
    with torch.no_grad(), force_reference():
        ref_y, ref_S = block(x, dt, t, valid, S0.clone(), True, "recurrent")
    S = S0.clone()
    S_out = {"new": None, "inplace": S, "spare": torch.empty_like(S0)}[into]
    y, got = block.step(x, dt, t, valid, S, S_out=S_out)
    assert calls == [1]
    close(y, ref_y)
    close(got, ref_S)
    assert (got is S) == (into == "inplace") and (into != "spare" or got is S_out)
    with pytest.raises(UnsortedTimesError):
        block.step(x, -dt - 1, t, torch.ones_like(valid), S0.clone())


@pytest.mark.parametrize("case", ["rotation", "linear", "reference", "tanh_gelu"])
def test_block_step_plain_where_the_op_does_not_apply(case, monkeypatch):
    """Where the fused op does not compute the block (rotation, linear attention, approximate GELU) or
    the reference is forced, ``Block.step`` runs the plain recurrent form, with the same results and
    the same target semantics."""
    monkeypatch.setattr("sits.layers.block.fused_retention_block_step",
                        lambda *a, **kw: pytest.fail("the fused op must not run here"))
    torch.manual_seed(0)
    if case == "linear":
        block = Block(make_mixer("linear", D, H), D).eval()
        V = K + 1
    else:
        block = Block(make_mixer("retention", D, H, rotation=case == "rotation"), D).eval()
        V = K
    if case == "tanh_gelu":
        block.ffn[1].approximate = "tanh"
    _, x, dt, t, valid, _ = block_and_inputs(9)
    S0 = torch.rand(9, H, K, V)
    with torch.no_grad(), force_reference():
        ref_y, ref_S = block(x, dt, t, valid, S0.clone(), True, "recurrent")
    spare = torch.empty_like(S0)
    with force_reference(case == "reference"):
        assert not block.has_fused_step(x, S0)
        y, got = block.step(x, dt, t, valid, S0.clone(), S_out=spare)
    assert got is spare
    close(y, ref_y)
    close(got, ref_S)


def test_fused_op_refuses_bad_targets():
    block, x, dt, _, valid, S0 = block_and_inputs(6)
    w = block.retention_weights()
    with pytest.raises(StateShapeError, match="contiguous"):
        fused_retention_block_step(x, dt, valid, S0, w, S_out=torch.empty(6, H, K, 2 * K)[..., :K])
    with pytest.raises(StateShapeError):
        fused_retention_block_step(x, dt, valid, S0[:5], w)
    assert not fused_module.supports(x.double(), S0) and not fused_module.supports(x, None)
