"""Encoder state: Zarr and torch round trips with a schema version, equality, select/concat."""

from __future__ import annotations

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
    changed = EncoderState(tuple(S.clone() for S in state.layers), state.h_last.clone(), state.t_last.clone(),
                           state.count.clone(), state.model_id, state.schema, state.last_clear.clone(),
                           state.t_last_clear.clone())
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
    with pytest.raises(StateShapeError):
        EncoderState(state.layers, state.h_last[:2], state.t_last, state.count, state.model_id)
