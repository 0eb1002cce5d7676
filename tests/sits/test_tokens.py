"""Streaming input: :class:`sits.AcquisitionBatch` (times in int64 seconds, ``time_s``) and its former
name ``sits.Observation``, which the other stages still call with ``time=``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sits
from sits.tokens import EPOCH, batch_observation, seconds_to_days


def test_acquisition_batch_and_its_former_name_tokenise_alike():
    model = sits.SitsEncoder(sits.EncoderConfig(d_model=8, n_heads=2, n_layers=1)).eval()
    t_s = int(np.datetime64("2024-05-01T10:30:00", "s").astype(np.int64))
    values = np.random.default_rng(0).random((3, 10), dtype=np.float32)
    values[1] = np.nan
    new = sits.AcquisitionBatch(time_s=t_s, sensor="s2", values=values, clear=[1, 0, 1], orbit=22)
    old = sits.Observation(time=np.datetime64("2024-05-01T10:30:00"), sensor="S2", values=values, clear=[1, 0, 1],
                           orbit=22)
    assert isinstance(old, sits.AcquisitionBatch) and new.sensor == "S2"
    assert new.time_s.dtype == np.int64 and (new.time_s == t_s).all() and (old.time == new.time_s).all()
    a, b = batch_observation(new, model.normalization), batch_observation(old, model.normalization)
    for name in ("values", "mask", "clear", "sensor", "orbit", "t_days", "valid", "hidden"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.valid[:, 0].tolist() == [True, False, True]
    # days since sits's own epoch, float64: a minute is resolved exactly enough
    assert float(a.t_days[0, 0]) == pytest.approx((t_s - EPOCH.astype(np.int64)) / 86400.0, abs=1e-9)
    assert seconds_to_days(np.array([t_s + 60]))[0] - float(a.t_days[0, 0]) == pytest.approx(60 / 86400, rel=1e-9)
    with pytest.raises(TypeError):  # keyword-only: the unit is in the name at every call
        sits.AcquisitionBatch(t_s, "S2", values)
    with pytest.raises(sits.ShapeError):
        sits.AcquisitionBatch(time_s=[t_s, t_s], sensor="S2", values=values)
