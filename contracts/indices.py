"""Spectral indices. One NDVI for scalars and arrays, with one zero guard."""

from __future__ import annotations

import math

import numpy as np


def ndvi(red, nir):
    """NDVI = (NIR − red) / (NIR + red) of reflectances (B08, B04).

    The one guard: NaN wherever either input is missing or not finite, or ``red + nir <= 0`` (no signal,
    and a negative sum from L2A offsets would flip the sign). Python floats in → float out (the
    detectors' per-observation path, kept free of numpy overhead); arrays in → float64 array out.
    """
    if isinstance(red, float | int) and isinstance(nir, float | int):
        s = nir + red
        if not (math.isfinite(red) and math.isfinite(nir)) or s <= 0:
            return math.nan
        return (nir - red) / s
    r = np.asarray(red, dtype=np.float64)
    n = np.asarray(nir, dtype=np.float64)
    s = n + r
    with np.errstate(invalid="ignore", divide="ignore"):
        v = (n - r) / s
    return np.where(np.isfinite(r) & np.isfinite(n) & (s > 0), v, np.nan)
