"""Checkpoints: round trip, version and band-set checks, the packaged default."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sits import (
    DEFAULT_CHECKPOINT,
    BandSet,
    BandSetError,
    CheckpointError,
    CheckpointVersionError,
    EncoderConfig,
    Observation,
    SitsEncoder,
    load_model,
    save_checkpoint,
)
from sits.testing import synthetic_series


def test_round_trip(tmp_path, rng):
    torch.manual_seed(0)
    model = SitsEncoder(EncoderConfig(d_model=16, n_heads=2, n_layers=1, bidirectional=True)).eval()
    model.version = "test-1"
    path = save_checkpoint(model, tmp_path / "m.pt", {"note": "unit test"})
    back = load_model(path, device="cpu")
    assert back.config == model.config and back.version == "test-1" and back.bands == model.bands
    assert back.normalization == model.normalization
    s = synthetic_series(rng, 40)
    torch.testing.assert_close(back.encode([s]).embeddings[0], model.encode([s]).embeddings[0])
    assert back.encode([s]).state.model_id == model.encode([s]).state.model_id


def test_refuses_other_version_and_bands(tmp_path):
    model = SitsEncoder(EncoderConfig(d_model=16, n_heads=2, n_layers=1))
    path = save_checkpoint(model, tmp_path / "m.pt")
    blob = torch.load(path, weights_only=True)
    blob["format_version"] = 99
    torch.save(blob, tmp_path / "v99.pt")
    with pytest.raises(CheckpointVersionError):
        load_model(tmp_path / "v99.pt")
    with pytest.raises(BandSetError):
        load_model(path, bands=BandSet(("B04", "B08")))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_model(tmp_path / "junk.pt")
    with pytest.raises(CheckpointError):
        load_model(tmp_path / "missing.pt")


def test_packaged_default_loads_and_steps():
    assert DEFAULT_CHECKPOINT.is_file() and DEFAULT_CHECKPOINT.stat().st_size < 2 * 1024 * 1024
    model = load_model(device="cpu")
    assert model.version.startswith("sha-")
    assert "B04" in model.bands.s2 and model.bands.s1 == ("VV", "VH")
    state = model.init_state(3)
    values = np.full((3, model.bands.n_s2), 0.1, np.float32)
    values[:, model.bands.s2.index("B08")] = 0.4
    state, out = model.step(state, Observation("2023-06-01T10:00:00Z", "S2", values))
    assert out.updated.all() and int(state.count[0]) == 1
    pred = model.forecast(state, "2023-06-06T10:00:00Z")
    assert np.isfinite(pred.mean).all() and (pred.std > 0).all()
