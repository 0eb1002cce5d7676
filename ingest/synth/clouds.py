"""Clouds, cirrus and cloud shadows as spatially coherent fields.

A periodic fractal noise field (power spectrum ~ k^-3.8 above the cloud scale) is thresholded at the
quantile that gives the acquisition's cloud cover; a soft ramp above the threshold gives the cloud
opacity ``alpha`` (0-1). The shadow is the same opacity moved away from the sun by
``cloud height / tan(sun elevation)``; the field being periodic, clouds just outside the tile cast their
shadows into it, as they do in reality.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft
from scipy import ndimage

__all__ = ["CloudLayer", "periodic_noise", "draw_clouds", "CLEAR"]

#: Opacity under which a pixel counts as clear (SCL keeps its surface class).
CLEAR = 0.08


def periodic_noise(
    rng: np.random.Generator, shape: tuple[int, int], scale_px: float, coarse: int = 2
) -> np.ndarray:
    """Standardised periodic noise (H, W) float32 with correlation length ~``scale_px`` and fractal detail."""
    h, w = max(shape[0] // coarse, 4), max(shape[1] // coarse, 4)
    white = rng.standard_normal((h, w)).astype(np.float32)
    spec = scipy.fft.rfft2(white, workers=1)
    ky = np.fft.fftfreq(h)[:, None] / coarse
    kx = np.fft.rfftfreq(w)[None, :] / coarse
    k2 = kx * kx + ky * ky
    k0 = 1.0 / max(scale_px, 1.0)
    spec *= ((k2 + k0 * k0) ** -0.95).astype(np.float32)
    field = scipy.fft.irfft2(spec, s=(h, w), workers=1).astype(np.float32)
    field -= field.mean()
    field /= field.std() + 1e-12
    while field.shape[0] * 2 <= shape[0] and field.shape[1] * 2 <= shape[1]:
        field = _upsample2_wrap(field)
    if field.shape != tuple(shape):
        field = ndimage.zoom(
            field,
            (shape[0] / field.shape[0], shape[1] / field.shape[1]),
            order=1,
            mode="grid-wrap",
            grid_mode=True,
        )
    return field[: shape[0], : shape[1]].astype(np.float32)


def _upsample2_wrap(f: np.ndarray) -> np.ndarray:
    """Bilinear 2x upsampling of a periodic field (H, W) -> (2H, 2W)."""
    right = np.roll(f, -1, axis=1)
    down = np.roll(f, -1, axis=0)
    diag = np.roll(right, -1, axis=0)
    out = np.empty((2 * f.shape[0], 2 * f.shape[1]), np.float32)
    out[::2, ::2] = f
    out[::2, 1::2] = 0.5 * (f + right)
    out[1::2, ::2] = 0.5 * (f + down)
    out[1::2, 1::2] = 0.25 * (f + right + down + diag)
    return out


@dataclass(frozen=True, slots=True)
class CloudLayer:
    """Opacities (H, W) float32 of one acquisition: thick cloud, cirrus and cloud shadow."""

    alpha: np.ndarray
    cirrus: np.ndarray
    shadow: np.ndarray
    brightness: float

    def __post_init__(self) -> None:
        if not (self.alpha.shape == self.cirrus.shape == self.shadow.shape):
            raise ValueError(
                f"cloud fields differ in shape: {self.alpha.shape}, {self.cirrus.shape}, {self.shadow.shape}"
            )


def shadow_shift_px(
    sun_azimuth: float, sun_elevation: float, cloud_height_m: float, resolution: float
) -> tuple[int, int]:
    """(rows, cols) by which the cloud field moves to give its shadow (north up, rows grow southwards)."""
    d = cloud_height_m / math.tan(math.radians(max(sun_elevation, 10.0)))
    az = math.radians(sun_azimuth)
    east, north = -d * math.sin(az), -d * math.cos(az)
    return int(round(-north / resolution)), int(round(east / resolution))


def draw_clouds(
    rng: np.random.Generator,
    shape: tuple[int, int],
    cover: float,
    sun_azimuth: float,
    sun_elevation: float,
    resolution: float,
) -> CloudLayer:
    """Cloud layer of one acquisition whose share of cloudy pixels (alpha > 0) is about ``cover``."""
    zeros = np.zeros(shape, np.float32)
    cirrus = zeros
    if rng.random() < 0.2:
        c2 = periodic_noise(rng, shape, 4000.0 / resolution, coarse=4)
        q = np.quantile(c2[::4, ::4], rng.uniform(0.2, 0.7))
        cirrus = (0.12 * np.clip((c2 - q) / 1.0, 0.0, 1.0)).astype(np.float32)
    if cover <= 0.0:
        return CloudLayer(zeros, cirrus, zeros, 1.0)
    field = periodic_noise(rng, shape, rng.uniform(2500.0, 7000.0) / resolution, coarse=2)
    if cover >= 0.999:
        alpha = np.clip(0.75 + 0.25 * field, 0.5, 1.0).astype(np.float32)
    else:
        thr = np.quantile(field[::4, ::4], 1.0 - cover)
        alpha = np.clip((field - thr) / 0.45, 0.0, 1.0).astype(np.float32)
    height = rng.uniform(800.0, 2500.0)
    dr, dc = shadow_shift_px(sun_azimuth, sun_elevation, height, resolution)
    shadow = np.roll(alpha, (dr, dc), axis=(0, 1))
    return CloudLayer(alpha, cirrus, shadow, float(rng.uniform(0.85, 1.1)))
