"""Numba kernel for zonal statistics; checked against :mod:`ingest.zonal.reference` in the tests."""

from __future__ import annotations

import numba
import numpy as np

from ingest.zonal.reference import check_inputs


@numba.njit(cache=True, nogil=True)
def _zonal_sums(labels, values, valid, n_labels):  # pragma: no cover - compiled
    n_c, ny, nx = values.shape
    sums = np.zeros((n_labels, n_c), dtype=np.float64)
    valid_count = np.zeros(n_labels, dtype=np.int64)
    pixel_count = np.zeros(n_labels, dtype=np.int64)
    for y in range(ny):
        for x in range(nx):
            lab = labels[y, x]
            if lab <= 0:
                continue
            i = lab - 1
            pixel_count[i] += 1
            if valid[y, x]:
                valid_count[i] += 1
                for c in range(n_c):
                    sums[i, c] += values[c, y, x]
    return sums, valid_count, pixel_count


def zonal_sums(
    labels: np.ndarray, values: np.ndarray, valid: np.ndarray, n_labels: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Same contract as :func:`ingest.zonal.reference.zonal_sums`, in one pass over the pixels."""
    check_inputs(labels, values, valid, n_labels)
    return _zonal_sums(
        np.ascontiguousarray(labels, dtype=np.int32),
        np.ascontiguousarray(values),
        np.ascontiguousarray(valid, dtype=np.bool_),
        int(n_labels),
    )
