"""Sentinel-1 rendering: per-unit backscatter through the unit raster, static texture, gamma speckle."""

from __future__ import annotations

import numpy as np

__all__ = ["render_s1", "LOOKS", "quantize_float"]

#: Equivalent number of looks of a GRD/RTC pixel at 10 m.
LOOKS = 4.4


def quantize_float(a: np.ndarray, keep_bits: int = 10) -> np.ndarray:
    """Zero the low mantissa bits of float32 (relative error < 2^-keep_bits) so deflate compresses them."""
    bits = a.astype(np.float32).view(np.uint32)
    mask = np.uint32((0xFFFFFFFF << (23 - keep_bits)) & 0xFFFFFFFF)
    return (bits & mask).view(np.float32)


def render_s1(
    unit_raster: np.ndarray,
    vv_db: np.ndarray,
    vh_db: np.ndarray,
    texture_db: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """(VV, VH) linear power (H, W) float32 with multiplicative gamma speckle of LOOKS looks.

    ``vv_db``, ``vh_db`` (U,) per unit; ``texture_db`` (H, W) static spatial variation in dB.
    """
    out = []
    tex = (10.0 ** (texture_db / 10.0)).astype(np.float32)
    for per_unit in (vv_db, vh_db):
        lin = (10.0 ** (per_unit / 10.0)).astype(np.float32)
        img = lin[unit_raster] * tex
        img *= rng.standard_gamma(LOOKS, size=img.shape, dtype=np.float32) * np.float32(1.0 / LOOKS)
        out.append(quantize_float(img))
    return out[0], out[1]
