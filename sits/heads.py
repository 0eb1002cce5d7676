"""Heads: Gaussian predictions (mean and per-band log-variance) trained with the Gaussian NLL.

- forecast head: from the representation after token n and a query (time, sensor, orbit of the next
  acquisition) → every band of the next token;
- reconstruction head (cloud-gap filling): from the representation at a hidden S2 token (history plus
  concurrent S1) → its S2 bands.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from contracts.indices import ndvi
from sits.errors import ShapeError

LOGVAR_MIN, LOGVAR_MAX = -9.0, 5.0


class GaussianHead(nn.Module):
    """``[..., d_in]`` → ``(mean [..., n_out], logvar [..., n_out])`` in normalised model space."""

    def __init__(self, d_in: int, hidden: int, n_out: int) -> None:
        super().__init__()
        self.n_out = n_out
        self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, 2 * n_out))

    @torch.no_grad()
    def zero_mean_output(self) -> None:
        """Zero the last layer's mean outputs (a residual head then starts at exactly its prior)."""
        last = self.net[-1]
        last.weight[: self.n_out].zero_()
        last.bias[: self.n_out].zero_()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.net(x).split(self.n_out, dim=-1)
        return mean, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)


def gaussian_nll(mean, logvar, target, weight) -> torch.Tensor:
    """Weighted mean of ``0.5·(logvar + (target − mean)² / exp(logvar))`` (``weight`` 0 drops an entry)."""
    w = weight.to(mean.dtype)
    nll = 0.5 * (logvar + (target - mean) ** 2 * torch.exp(-logvar))
    return (nll * w).sum() / w.sum().clamp_min(1.0)


@dataclass(frozen=True, slots=True, eq=False)
class Prediction:
    """Predicted values in physical units: ``mean``/``std`` ``[N, C]`` numpy float32 for ``bands``
    (S2 reflectance, the NDVI channel when the model has one; S1 linear power, std by the delta method
    from the dB model space)."""

    mean: np.ndarray
    std: np.ndarray
    bands: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.mean.shape != self.std.shape or self.mean.shape[-1] != len(self.bands):
            raise ShapeError(f"prediction mean {self.mean.shape} / std {self.std.shape} do not match bands {self.bands}")

    def band(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        i = self.bands.index(name)
        return self.mean[..., i], self.std[..., i]

    def ndvi(self) -> tuple[np.ndarray, np.ndarray]:
        """NDVI mean and std: the model's own NDVI channel when present, else (B08 − B04)/(B08 + B04)
        with first-order propagation (bands independent)."""
        if "NDVI" in self.bands:
            return self.band("NDVI")
        r, sr = self.band("B04")
        n, sn = self.band("B08")
        s = np.maximum(n + r, 1e-6)  # the derivatives only: the value's guard is ndvi's
        dn, dr = 2 * r / s**2, -2 * n / s**2
        return ndvi(r, n).astype(np.float32), np.sqrt((dn * sn) ** 2 + (dr * sr) ** 2).astype(np.float32)
