"""Quality on real series: gap filling and forecasting of held-out clear S2 observations against
persistence and linear interpolation (MAE per band and of NDVI).

For every series a fixed share (``holdout_frac``) of the clear S2 observations is withheld. The model
reconstructs them with :meth:`SitsEncoder.gapfill` (bidirectional smoothing head when the model has one,
else causal: history plus concurrent S1); cloudy S2 tokens stay visible with their clear flag 0. Baselines use only the remaining clear S2 observations: persistence (the last one
before, else the first after) and linear interpolation in time (bands and NDVI; one-sided → persistence).
Also reported: the subset whose surrounding clear gap is at least ``long_gap_days``, and the one-step
forecast of every clear S2 observation from the history before it, against persistence.
"""

from __future__ import annotations

import numpy as np
import torch

from contracts.indices import ndvi
from sits.errors import EmptySeriesError
from sits.models import SitsEncoder
from sits.tokens import S2, Series, batch_series


def _baselines(t: np.ndarray, y: np.ndarray, known: np.ndarray, query: np.ndarray):
    """Persistence and linear interpolation at ``query`` indices from ``known`` indices.
    ``t [T]`` days, ``y [T, C]``; returns (persist [Q, C], interp [Q, C], gap_days [Q])."""
    tk, yk = t[known], y[known]
    tq = t[query]
    pos = np.searchsorted(tk, tq, side="right")  # first known strictly after (ties: known before)
    prev = np.clip(pos - 1, 0, len(tk) - 1)
    nxt = np.clip(pos, 0, len(tk) - 1)
    has_prev, has_next = pos - 1 >= 0, pos < len(tk)
    persist = np.where(has_prev[:, None], yk[prev], yk[nxt])
    w = np.where(has_prev & has_next, (tq - tk[prev]) / np.maximum(tk[nxt] - tk[prev], 1e-9), 0.0)
    w = np.where(~has_prev, 1.0, w)
    w = np.clip(w, 0.0, 1.0)
    interp = (1 - w)[:, None] * yk[prev] + w[:, None] * yk[nxt]
    gap = np.where(has_prev & has_next, tk[nxt] - tk[prev], np.inf)
    return persist, interp, gap


def evaluate(model: SitsEncoder, series: list[Series], holdout_frac: float = 0.2, seed: int = 0,
             long_gap_days: float = 30.0, causal: bool | None = None, hide_cloudy: bool = False) -> dict:
    """Metrics as a JSON-able dict (see the module docstring). ``hide_cloudy``: also withhold the cloudy S2
    tokens from the model (by default they stay visible with their clear flag 0, as in streaming)."""
    if not series:
        raise EmptySeriesError("no series to evaluate")
    bands = model.bands
    s2 = list(bands.s2)
    i4, i8 = s2.index("B04"), s2.index("B08")
    rng = np.random.default_rng(seed)
    rows = {k: [] for k in ("truth", "model", "model_std", "persist", "interp", "gap")}
    nd = {k: [] for k in ("truth", "model", "persist", "interp")}
    fc = {k: [] for k in ("truth", "model", "persist")}
    for s in series:
        y = s.values[:, : bands.n_s2]
        t = s.days
        clear_ok = (s.sensor == S2) & (s.clear >= 0.5) & np.isfinite(y).all(axis=1)
        idx = np.nonzero(clear_ok)[0]
        if len(idx) < 3:
            continue
        n_hold = max(1, int(round(holdout_frac * len(idx))))
        held = np.sort(rng.choice(idx, n_hold, replace=False))
        known = np.setdiff1d(idx, held)
        hide = np.zeros(len(s), bool)
        hide[held] = True
        if hide_cloudy:
            hide |= (s.sensor == S2) & ~clear_ok
        g = model.gapfill(s, hide=hide, causal=causal)
        pos = np.searchsorted(g.index, held)
        persist, interp, gap = _baselines(t, y, known, held)
        ndvi_all = ndvi(y[:, i4], y[:, i8])
        nd_persist, nd_interp, _ = _baselines(t, ndvi_all[:, None], known, held)
        pm = g.prediction.mean[pos]
        for key, val in (("truth", y[held]), ("model", pm), ("model_std", g.prediction.std[pos]),
                         ("persist", persist), ("interp", interp), ("gap", gap)):
            rows[key].append(val)
        model_ndvi = g.prediction.ndvi()[0][pos]
        for key, val in (("truth", ndvi_all[held]), ("model", model_ndvi),
                         ("persist", nd_persist[:, 0]), ("interp", nd_interp[:, 0])):
            nd[key].append(val)
        # one-step forecast of every clear S2 observation (after the first) from its history
        with torch.no_grad():
            tb = batch_series([s], model.normalization, model.device)
            h, _ = model.run(tb, None, mode="parallel" if len(s) <= 256 else "chunk", output_final_state=False)
            pv, pt = model.persistence_prior(tb)
            fm, fl = model._forecast_raw(h[:, :-1], tb.t_days[:, :-1], tb.t_days[:, 1:], tb.sensor[:, 1:], tb.orbit[:, 1:],
                                         pv[:, :-1], pt[:, :-1])
            cols = bands.channel_columns(S2)
            pred = model.to_physical(fm[0, :, cols], fl[0, :, cols], cols)
            pred_ndvi = pred.ndvi()[0]
        targets = idx[idx > idx[0]]
        prev_clear = idx[np.searchsorted(idx, targets) - 1]
        fc["truth"].append(ndvi_all[targets])
        fc["model"].append(pred_ndvi[targets - 1])
        fc["persist"].append(ndvi_all[prev_clear])
    if not rows["truth"]:
        raise EmptySeriesError("no series has enough clear S2 observations to evaluate")
    cat = {k: np.concatenate(v) for k, v in rows.items()}
    ndc = {k: np.concatenate(v) for k, v in nd.items()}
    fcc = {k: np.concatenate(v) for k, v in fc.items()}

    def mae(a, b, sel=None):
        d = np.abs(a - b) if sel is None else np.abs(a[sel] - b[sel])
        return float(np.mean(d)) if d.size else float("nan")

    def block(sel=None):
        out = {"n": int(len(cat["truth"]) if sel is None else sel.sum())}
        for name in ("model", "persist", "interp"):
            out[name] = {"ndvi_mae": round(mae(ndc[name], ndc["truth"], sel), 4),
                         "band_mae": {b: round(mae(cat[name][:, j], cat["truth"][:, j], sel), 4) for j, b in enumerate(s2)}}
            out[name]["band_mae_mean"] = round(float(np.mean(list(out[name]["band_mae"].values()))), 4)
        return out

    n_s2 = bands.n_s2
    z = (cat["model"][:, :n_s2] - cat["truth"]) / np.maximum(cat["model_std"][:, :n_s2], 1e-6)
    long = cat["gap"] >= long_gap_days
    return {
        "holdout": {"frac": holdout_frac, "seed": seed, "series": len(rows["truth"]),
                    "gapfill": "causal" if (causal if causal is not None else not model.config.bidirectional) else "bidirectional",
                    "cloudy_s2_hidden": hide_cloudy},
        "gapfill_all": block(),
        f"gapfill_gap_ge_{int(long_gap_days)}d": block(long),
        "gapfill_calibration": {"mean_abs_z": round(float(np.mean(np.abs(z))), 3),
                                "share_within_1sd": round(float(np.mean(np.abs(z) <= 1)), 3),
                                "share_within_2sd": round(float(np.mean(np.abs(z) <= 2)), 3)},
        "forecast_next_clear_s2": {"n": int(len(fcc["truth"])),
                                   "model_ndvi_mae": round(mae(fcc["model"], fcc["truth"]), 4),
                                   "persist_ndvi_mae": round(mae(fcc["persist"], fcc["truth"]), 4)},
    }
