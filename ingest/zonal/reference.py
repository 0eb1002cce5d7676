"""The specification of zonal statistics: plain numpy, never optimised."""

from __future__ import annotations

import numpy as np


def check_inputs(labels: np.ndarray, values: np.ndarray, valid: np.ndarray, n_labels: int) -> None:
    if labels.ndim != 2:
        raise ValueError(f"labels must be (y, x), got shape {labels.shape}")
    if values.ndim != 3 or values.shape[1:] != labels.shape:
        raise ValueError(f"values must be (c, y, x) with (y, x) = {labels.shape}, got {values.shape}")
    if valid.shape != labels.shape:
        raise ValueError(f"valid must be {labels.shape}, got {valid.shape}")
    if n_labels < 0:
        raise ValueError(f"n_labels must be >= 0, got {n_labels}")
    if labels.size and (labels.min() < 0 or labels.max() > n_labels):
        raise ValueError(f"labels must lie in 0..{n_labels}, got {labels.min()}..{labels.max()}")


def zonal_sums(
    labels: np.ndarray, values: np.ndarray, valid: np.ndarray, n_labels: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sums of values over valid pixels, valid and total pixel counts per label 1..n_labels."""
    check_inputs(labels, values, valid, n_labels)
    lab = labels.ravel().astype(np.int64)
    ok = valid.ravel().astype(bool)
    pixel_count = np.bincount(lab, minlength=n_labels + 1)[1:].astype(np.int64)
    valid_count = np.bincount(lab[ok], minlength=n_labels + 1)[1:].astype(np.int64)
    sums = np.zeros((n_labels, values.shape[0]), dtype=np.float64)
    for c in range(values.shape[0]):
        band = values[c].ravel()[ok].astype(np.float64)
        sums[:, c] = np.bincount(lab[ok], weights=band, minlength=n_labels + 1)[1:]
    return sums, valid_count, pixel_count
