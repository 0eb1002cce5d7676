"""A calibrated probability that a parcel-year saw the rule's activity (mowing), for the lights.

The mowing detector's own confidence grows with the drop in units of its threshold; on
grassland-sk-dev it separates plot-years with a recorded mowing from those without poorly (AUC
0.70 among plot-years with a detection). The evidence the lights already compute separates better:
the largest NDVI drop of the window, held on the next view or on one view only
(``alerts.decisions``), the detected event's confidence and drop, the coverage. This module turns
those numbers into one probability with an L2-regularised logistic regression (a small numpy
Newton fit: no scikit-learn in the environment), fitted inside each cross-validation fold by
``alerts.confidence_cv`` and shipped, fitted on the whole dev set after the CV figures were recorded,
as a small JSON file (``alerts/confidence_mowing.json``, with its provenance).

Features of one parcel-year (``FEATURES``; names carry their units):

- ``event_confidence``: the highest confidence of the counted events (0: none);
- ``event_drop_ndvi``: that event's NDVI drop below its envelope (0: none, or seen by S1 only);
- ``max_drop_ndvi``, ``max_dip_ndvi``: ``WindowEvidence.max_drop`` / ``max_dip``;
- ``n_clear_s2``, ``max_s2_gap_days``: the coverage of the rule's coverage window;
- ``max_step_drop_ndvi``, ``regrowth_ndvi``, ``max_swir_rise``: the shape of the largest fall
  between two close views (``WindowEvidence``: how far, whether it regrew, whether SWIR rose);
- with the encoder: ``min_residual_z`` (the lowest persistent residual of the window) and
  ``event_residual_z`` (at the first clear view after the best event), clipped to [-10, 3], 0
  where unknown (no model, no view).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np

from alerts.decisions import Coverage, WindowEvidence
from alerts.types import Event

SHAPE_FEATURES = ("max_step_drop_ndvi", "regrowth_ndvi", "max_swir_rise")
RULE_FEATURES = ("event_confidence", "event_drop_ndvi", "max_drop_ndvi", "max_dip_ndvi", "n_clear_s2",
                 "max_s2_gap_days", *SHAPE_FEATURES)
ENCODER_FEATURES = ("min_residual_z", "event_residual_z")
FEATURES = (*RULE_FEATURES, *ENCODER_FEATURES)
Z_RANGE = (-10.0, 3.0)  # a residual beyond -10 std says no more than -10 (clouds, a bad forecast)
PACKAGED = Path(__file__).with_name("confidence_mowing.json")


def _z(x: float) -> float:
    return float(min(max(x, Z_RANGE[0]), Z_RANGE[1])) if math.isfinite(x) else 0.0


def features(ev: WindowEvidence, counted: Sequence[Event], cov: Coverage) -> dict[str, float]:
    """The parcel-year's features (``FEATURES``) from its evidence, counted events and coverage."""
    best = max(counted, key=lambda e: e.confidence, default=None)
    drop = float((best.evidence or {}).get("ndvi_drop") or 0.0) if best is not None else 0.0
    gap = cov.max_s2_gap_days if math.isfinite(cov.max_s2_gap_days) else 366.0
    return {
        "event_confidence": float(best.confidence) if best is not None else 0.0,
        "event_drop_ndvi": drop if math.isfinite(drop) else 0.0,
        "max_drop_ndvi": float(ev.max_drop),
        "max_dip_ndvi": float(ev.max_dip),
        "n_clear_s2": float(cov.n_clear_s2),
        "max_s2_gap_days": float(gap),
        "max_step_drop_ndvi": float(ev.max_step_drop_ndvi),
        "regrowth_ndvi": float(ev.regrowth_ndvi),
        "max_swir_rise": float(ev.max_swir_rise),
        "min_residual_z": _z(ev.min_residual_z),
        "event_residual_z": _z(ev.residual_after(best.date)) if best is not None else 0.0,
    }


@dataclass(frozen=True, slots=True)
class LogisticModel:
    """``p = 1 / (1 + exp(-(bias + sum(w * (x - mean) / scale))))`` over ``names``."""

    names: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float
    l2: float = 1.0
    provenance: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        n = len(self.names)
        if not (len(self.mean) == len(self.scale) == len(self.weights) == n):
            raise ValueError(f"LogisticModel: {n} names but {len(self.mean)} means, {len(self.scale)} scales, "
                             f"{len(self.weights)} weights")
        if any(not s > 0 for s in self.scale):
            raise ValueError("LogisticModel.scale must be > 0")

    def matrix(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
        """``[N, F]`` float64 of ``rows`` in the order of ``names``."""
        return np.asarray([[float(r[k]) for k in self.names] for r in rows], float).reshape(len(rows), len(self.names))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Probabilities for ``x`` ``[N, F]`` (columns as ``names``)."""
        z = (np.asarray(x, float) - np.asarray(self.mean)) / np.asarray(self.scale)
        return 1.0 / (1.0 + np.exp(-(self.bias + z @ np.asarray(self.weights))))

    def probability(self, row: Mapping[str, float]) -> float:
        return float(self.predict(self.matrix([row]))[0])

    def as_dict(self) -> dict:
        return {"names": list(self.names), "mean": list(self.mean), "scale": list(self.scale),
                "weights": list(self.weights), "bias": self.bias, "l2": self.l2, "provenance": self.provenance}

    @classmethod
    def from_dict(cls, d: Mapping, source: str = "model") -> LogisticModel:
        try:
            return cls(tuple(d["names"]), tuple(map(float, d["mean"])), tuple(map(float, d["scale"])),
                       tuple(map(float, d["weights"])), float(d["bias"]), float(d.get("l2", 1.0)),
                       dict(d.get("provenance", {})))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{source}: not a logistic model ({e})") from e


def fit_logistic(x: np.ndarray, y: np.ndarray, names: Sequence[str], l2: float = 1.0,
                 iterations: int = 50) -> LogisticModel:
    """L2-regularised logistic regression by Newton's method on standardised columns (the bias is
    not penalised). ``x`` ``[N, F]``, ``y`` ``[N]`` in {0, 1}."""
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    if x.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[1] != len(names):
        raise ValueError(f"fit_logistic: x {x.shape}, y {y.shape}, {len(names)} names")
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)  # a constant column carries no information
    z = np.c_[np.ones(len(x)), (x - mean) / scale]
    w = np.zeros(z.shape[1])
    penalty = l2 * np.eye(z.shape[1])
    penalty[0, 0] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(z @ w)))
        hess = z.T @ (z * (p * (1.0 - p))[:, None]) + penalty
        step = np.linalg.solve(hess + 1e-9 * np.eye(len(w)), z.T @ (p - y) + penalty @ w)
        w -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    return LogisticModel(tuple(names), tuple(map(float, mean)), tuple(map(float, scale)),
                         tuple(map(float, w[1:])), float(w[0]), float(l2))


@cache
def _read(path: str) -> LogisticModel:
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError as e:
        raise ValueError(f"calibration file not found: {p}") from e
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}: not valid JSON ({e})") from e
    return LogisticModel.from_dict(data.get("model", data), str(p))


def load_calibration(name: str | Path | None = None) -> LogisticModel:
    """The packaged mowing calibration (``name`` None or "mowing-sk-dev") or a JSON file's model."""
    if name is None or str(name) == "mowing-sk-dev":
        return _read(str(PACKAGED))
    return _read(str(Path(name)))
