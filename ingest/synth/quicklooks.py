"""PNG quicklooks a person can look at: true colour, NDVI and S1 VV (dB) per tile and date."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from PIL import Image

from contracts.indices import ndvi

__all__ = ["truecolor_png", "ndvi_png", "vv_png"]


#: Quicklooks larger than this many pixels per side are shown at half resolution (2x2 means).
MAX_SIDE = 512


def _shrink(a: np.ndarray) -> np.ndarray:
    while a.shape[0] > MAX_SIDE and a.shape[0] % 2 == 0 and a.shape[1] % 2 == 0:
        a = 0.25 * (a[::2, ::2] + a[1::2, ::2] + a[::2, 1::2] + a[1::2, 1::2])
    return a


def _save(rgb: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, format="PNG", compress_level=1)


def truecolor_png(b04: np.ndarray, b03: np.ndarray, b02: np.ndarray, path: Path) -> None:
    """True colour from reflectance (H, W) arrays: gain 3.5, gamma 1/1.2."""
    rgb = np.stack([_shrink(b04), _shrink(b03), _shrink(b02)], axis=-1)
    rgb = np.clip(rgb * 3.5, 0.0, 1.0) ** (1 / 1.2)
    _save((rgb * 255 + 0.5).astype(np.uint8), path)


def ndvi_png(b08: np.ndarray, b04: np.ndarray, path: Path) -> None:
    """NDVI on the RdYlGn colormap from -0.2 (red) to 0.9 (green)."""
    b08, b04 = _shrink(b08), _shrink(b04)
    nd = np.nan_to_num(ndvi(b04, b08), nan=0.0)  # no signal (or a negative band): drawn as NDVI 0
    scaled = np.clip((nd + 0.2) / 1.1, 0.0, 1.0)
    _save(colormaps["RdYlGn"](scaled, bytes=True)[..., :3], path)


def vv_png(vv_linear: np.ndarray, path: Path) -> None:
    """VV backscatter in dB, grey from -22 dB (black) to -2 dB (white)."""
    db = 10.0 * np.log10(np.maximum(_shrink(vv_linear), 1e-6))
    scaled = np.clip((db + 22.0) / 20.0, 0.0, 1.0)
    _save(colormaps["gray"](scaled, bytes=True)[..., :3], path)
