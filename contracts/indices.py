"""Spectral indices. One NDVI for scalars and arrays, with one zero guard."""

from __future__ import annotations

import math

import numpy as np


def ndvi(red, nir):
    """NDVI = (NIR − red) / (NIR + red) of reflectances (B08, B04).

    The one guard: NaN wherever either input is missing or not finite, negative (L2A's offset lets
    noise go below 0, and a negative band pushes NDVI outside [-1, 1]), or both are 0 (no signal); so
    every NDVI returned lies in [-1, 1]. Python floats in → float out (the
    detectors' per-observation path, kept free of numpy overhead); arrays in → float64 array out.
    """
    if isinstance(red, float | int) and isinstance(nir, float | int):
        s = nir + red
        if not (math.isfinite(red) and math.isfinite(nir)) or red < 0 or nir < 0 or s <= 0:
            return math.nan
        return (nir - red) / s
    r = np.asarray(red, dtype=np.float64)
    n = np.asarray(nir, dtype=np.float64)
    s = n + r
    with np.errstate(invalid="ignore", divide="ignore"):
        v = (n - r) / s
    return np.where(np.isfinite(r) & np.isfinite(n) & (r >= 0) & (n >= 0) & (s > 0), v, np.nan)
