"""Encoder state: Zarr and torch round trips with a schema version, equality, select/concat."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sits import EncoderConfig, EncoderState, SitsEncoder
from sits.errors import CheckpointVersionError, StateShapeError
from sits.testing import synthetic_series


@pytest.fixture
def state(rng):
    torch.manual_seed(0)
    model = SitsEncoder(EncoderConfig(d_model=16, n_heads=2, n_layers=2)).eval()
    return model.encode([synthetic_series(rng, 30, pid=str(i)) for i in range(3)]).state


def test_zarr_round_trip(state, tmp_path):
    state.to_zarr(tmp_path / "state.zarr")
    back = EncoderState.from_zarr(tmp_path / "state.zarr")
    assert back.equals(state)
    assert back.model_id == state.model_id and back.n == 3
    assert (back.t_last_datetime() == state.t_last_datetime()).all()


def test_torch_round_trip(state, tmp_path):
    state.save(tmp_path / "state.pt")
    assert EncoderState.load(tmp_path / "state.pt").equals(state)


def test_equality_and_select(state):
    assert state.equals(state.select(slice(0, 3)))
    assert not state.equals(state.select(slice(0, 2)))
    changed = state.clone()
    changed.layers[0][1, 0, 0, 0] += 1e-3
    assert not state.equals(changed) and state.equals(changed, atol=1e-2)
    both = EncoderState.concat([state.select(slice(0, 1)), state.select(slice(1, 3))])
    assert both.equals(state)
    assert state.nbytes_per_item == 2 * 2 * 8 * 8 * 4 + 16 * 4 + 16 + 11 * 4 + 8


def test_schema_and_shapes_checked(state, tmp_path):
    state.to_zarr(tmp_path / "s.zarr")
    import zarr

    zarr.open_group(str(tmp_path / "s.zarr"), mode="r+").attrs["schema"] = "sits-state/0"
    with pytest.raises(CheckpointVersionError):
        EncoderState.from_zarr(tmp_path / "s.zarr")
    parts = dict(layers=state.layers, h_last=state.h_last, t_last=state.t_last, count=state.count,
                 last_clear=state.last_clear, t_last_clear=state.t_last_clear, model_id=state.model_id)
    assert EncoderState(**parts).equals(state)
    with pytest.raises(StateShapeError, match="h_last"):
        EncoderState(**{**parts, "h_last": state.h_last[:2]})
    with pytest.raises(StateShapeError, match="last_clear"):  # None is refused, no longer a zero-width tensor
        EncoderState(**{**parts, "last_clear": None})
    with pytest.raises(TypeError):  # fields are keyword-only
        EncoderState(state.layers, state.h_last, state.t_last, state.count, state.last_clear, state.t_last_clear)
    with pytest.raises(TypeError):  # and required
        EncoderState(layers=state.layers, h_last=state.h_last, t_last=state.t_last, count=state.count)


def test_row_operations_carry_every_field(state):
    """to / clone / select / concat (one tensor-mapping helper) against plain indexing of each field."""
    from sits.state import ROW_FIELDS

    idx = torch.tensor([2, 0])
    picked = state.select(idx)
    for name in ROW_FIELDS:
        assert torch.equal(getattr(picked, name), getattr(state, name)[idx]), name
    assert all(torch.equal(a, b[idx]) for a, b in zip(picked.layers, state.layers, strict=True))
    mask = state.select(np.array([True, False, True]))
    assert mask.equals(EncoderState.concat([state.select(slice(0, 1)), state.select(slice(2, 3))]))
    copy = state.clone()
    assert copy.equals(state) and all(a.data_ptr() != b.data_ptr() for a, b in zip(copy.tensors(), state.tensors(), strict=True))
    moved = state.to("cpu")
    assert moved.equals(state) and moved.model_id == state.model_id
    assert len(state.tensors()) == len(state.layers) + len(ROW_FIELDS)
    assert state.t_last_s().dtype == np.int64
    other = EncoderState.map_tensors(torch.clone, state)
    object.__setattr__(other, "model_id", "another")
    with pytest.raises(StateShapeError, match="different models"):
        EncoderState.concat([state, other])
