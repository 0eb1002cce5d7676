"""Sentinel-2 L2A rendering: per-unit spectra broadcast through the unit raster, texture, noise, clouds, SCL."""

from __future__ import annotations

from enum import IntEnum

import numpy as np

from ingest.synth.clouds import CLEAR, CloudLayer
from ingest.synth.phenology import ENDMEMBERS

__all__ = ["SCL", "render_s2", "to_dn", "downsample2", "SCALE", "OFFSET", "PROCESSING_BASELINE"]

SCALE = 1e-4
OFFSET = -0.1  # processing baseline >= 04.00: DN = reflectance / SCALE + 1000
PROCESSING_BASELINE = "05.10"


class SCL(IntEnum):
    """ESA scene classification classes."""

    NO_DATA = 0
    SATURATED = 1
    DARK = 2
    CLOUD_SHADOW = 3
    VEGETATION = 4
    NOT_VEGETATED = 5
    WATER = 6
    UNCLASSIFIED = 7
    CLOUD_MEDIUM = 8
    CLOUD_HIGH = 9
    THIN_CIRRUS = 10
    SNOW = 11


def render_s2(
    unit_raster: np.ndarray,
    spectra: np.ndarray,
    texture: np.ndarray,
    water_unit: np.ndarray,
    clouds: CloudLayer,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-of-canopy-with-clouds reflectance (10, H, W) float32 and SCL (H, W) uint8 at 10 m.

    ``spectra`` (U, 10) surface reflectance per unit; ``texture`` (H, W) static multiplicative
    within-field variation (mean ~1); ``water_unit`` (U,) bool.
    """
    h, w = unit_raster.shape
    nb = spectra.shape[1]
    surf = np.empty((nb, h, w), np.float32)
    gain = (1.0 + rng.normal(0.0, 0.015, nb)).astype(np.float32)  # residual atmospheric correction error
    spec_t = np.ascontiguousarray((spectra * gain[None, :]).T.astype(np.float32))
    # Sensor noise: one white field per date, shifted per band so bands do not share a pixel's noise.
    noise = rng.standard_normal((h, w), dtype=np.float32) * np.float32(0.002)
    for b in range(nb):
        np.take(spec_t[b], unit_raster, out=surf[b])
        surf[b] *= texture
        surf[b] += np.roll(noise, (b * 7, b * 13), axis=(0, 1))
    red, nir = surf[2], surf[6]
    vegetated = (nir - red) > 0.35 * (nir + red)
    scl = np.where(vegetated, np.uint8(SCL.VEGETATION), np.uint8(SCL.NOT_VEGETATED))
    scl[water_unit[unit_raster]] = SCL.WATER
    a, cir, sh = clouds.alpha, clouds.cirrus, clouds.shadow
    if sh.any():
        surf *= (1.0 - 0.7 * sh * (1.0 - a))[None]
        scl[(sh > 0.35) & (a < CLEAR)] = SCL.CLOUD_SHADOW
    if cir.any():
        surf *= (1.0 - cir)[None]
        surf += (0.35 * cir)[None]
        scl[(cir > 0.06) & (a < CLEAR)] = SCL.THIN_CIRRUS
    if a.any():
        cloudy = a > 0
        rows = np.flatnonzero(cloudy.any(axis=1))
        r0, r1 = rows[0], rows[-1] + 1
        ab = a[r0:r1]
        level = (0.85 + 0.15 * ab) * ab
        for b in range(nb):
            blk = surf[b, r0:r1]
            blk *= 1.0 - ab
            blk += np.float32(ENDMEMBERS["cloud"][b] * clouds.brightness) * level
        scl[a >= CLEAR] = SCL.CLOUD_MEDIUM
        scl[a >= 0.5] = SCL.CLOUD_HIGH
    return surf.astype(np.float32, copy=False), scl


def downsample2(a: np.ndarray) -> np.ndarray:
    """2x2 block mean of (..., H, W) with even H, W."""
    out = a[..., ::2, ::2] + a[..., 1::2, ::2]
    out += a[..., ::2, 1::2]
    out += a[..., 1::2, 1::2]
    out *= np.float32(0.25)
    return out.astype(np.float32, copy=False)


def to_dn(reflectance: np.ndarray) -> np.ndarray:
    """uint16 DN = round(reflectance / 1e-4) + 1000, kept within 1..65535 (0 is nodata)."""
    dn = np.rint(reflectance * (1.0 / SCALE)) - OFFSET / SCALE
    return np.clip(dn, 1, 65535).astype(np.uint16)
