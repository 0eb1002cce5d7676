"""Training is deterministic for a seed and learns; `sitsmon train` runs end to end on interchange CSV."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch

from sits import EncoderConfig, load_model
from sits.testing import synthetic_series
from sits.tokens import S2
from sits.train import TrainConfig, fit

SMALL = EncoderConfig(d_model=16, n_heads=2, n_layers=1, head_hidden=16, bidirectional=True)
TRAIN = TrainConfig(epochs=3, batch_size=4, window=32, device="cpu", seed=7)


def test_fit_deterministic_and_learning(rng):
    series = [synthetic_series(np.random.default_rng(i), 60, pid=str(i)) for i in range(6)]
    m1, h1 = fit(series, SMALL, TRAIN)
    m2, h2 = fit(series, SMALL, TRAIN)
    strip = [{k: v for k, v in r.items() if k != "elapsed_s"} for r in h1]
    assert strip == [{k: v for k, v in r.items() if k != "elapsed_s"} for r in h2]
    for (n1, p1), (_, p2) in zip(m1.state_dict().items(), m2.state_dict().items(), strict=True):
        assert torch.equal(p1, p2), n1
    assert m1.version == m2.version and m1.version.startswith("sha-")
    m3, _ = fit(series, SMALL, TrainConfig(epochs=3, batch_size=4, window=32, device="cpu", seed=8))
    assert m3.version != m1.version
    assert all(np.isfinite(r["recon_nll"]) and np.isfinite(r["forecast_nll"]) for r in h1)
    assert h1[-1]["forecast_nll"] < h1[0]["forecast_nll"]


def interchange_frame(series) -> pd.DataFrame:
    rows = []
    bands = series[0].bands
    for s in series:
        for i in range(len(s)):
            row = {"parcel_id": s.id, "time": str(np.datetime64(int(s.times[i]), "s")) + "Z",
                   "sensor": "S2" if s.sensor[i] == S2 else "S1", "clear": float(s.clear[i]) if s.sensor[i] == S2 else None,
                   "orbit": int(s.orbit[i]) if s.sensor[i] != S2 else None}
            row.update({b: (None if np.isnan(s.values[i, j]) else float(s.values[i, j])) for j, b in enumerate(bands.all)})
            rows.append(row)
    return pd.DataFrame(rows)


def test_train_command(tmp_path, capsys):
    from sitsmon.cli import main

    series = [synthetic_series(np.random.default_rng(i), 50, pid=f"P{i}") for i in range(6)]
    csv = tmp_path / "observations.csv"
    interchange_frame(series).to_csv(csv, index=False)
    out = tmp_path / "enc.pt"
    argv = ["train", "--data", str(tmp_path), "--out", str(out), "--epochs", "1", "--d-model", "16", "--heads", "2",
            "--layers", "1", "--window", "32", "--batch-size", "4", "--val-frac", "0.34", "--evaluate",
            "--device", "cpu", "--bands", "B02,B03,B04,B08"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["train_parcels"] == 4 and summary["val_parcels"] == 2
    assert set(summary["evaluation"]["gapfill_all"]) == {"n", "model", "persist", "interp"}
    model = load_model(out, device="cpu")
    assert model.bands.s2 == ("B02", "B03", "B04", "B08") and model.version == summary["model_version"]
    assert torch.count_nonzero(model.clim_coef) > 0  # the seasonal prior travels in the checkpoint
    held_out = set(torch.load(out, weights_only=True)["train"]["val_parcels"])
    # --tune-split: validation carved out of the training parcels; the held-out parcels are not touched
    tuned = tmp_path / "tuned.pt"
    assert main(argv[:4] + [str(tuned)] + argv[5:] + ["--tune-split", "--no-seasonal-prior"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["train_parcels"] == 3 and summary["val_parcels"] == 1 and summary["split"].startswith("tuning")
    tune_val = set(torch.load(tuned, weights_only=True)["train"]["val_parcels"])
    assert len(tune_val) == 1 and not tune_val & held_out
    assert torch.count_nonzero(load_model(tuned, device="cpu").clim_coef) == 0
    assert main(["train", "--data", str(tmp_path / "nope.csv")]) == 1
    assert "error:" in capsys.readouterr().err
