"""The numba zonal kernel against the numpy reference (fixed seeds, awkward shapes)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.zonal import zonal_sums, zonal_sums_reference


@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (64, 33), (200, 150)])
@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_zonal_sums(shape, dtype):
    rng = np.random.default_rng(11)
    n = 17
    labels = rng.integers(0, n + 1, shape).astype(np.int32)
    values = (rng.random((3, *shape)) * 1000).astype(dtype)
    valid = rng.random(shape) > 0.4
    got = zonal_sums(labels, values, valid, n)
    want = zonal_sums_reference(labels, values, valid, n)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-12)
    assert got[2].sum() == np.count_nonzero(labels)


def test_labels_without_pixels_and_all_invalid():
    labels = np.zeros((4, 4), np.int32)
    labels[0, 0] = 2
    values = np.ones((1, 4, 4), np.float32)
    sums, valid_count, pixel_count = zonal_sums(labels, values, np.zeros((4, 4), bool), 3)
    assert pixel_count.tolist() == [0, 1, 0]
    assert valid_count.tolist() == [0, 0, 0]
    assert sums.shape == (3, 1) and not sums.any()


def test_bad_inputs_are_refused():
    labels = np.zeros((4, 4), np.int32)
    with pytest.raises(ValueError, match="labels must lie in 0..2"):
        zonal_sums(labels + 3, np.ones((1, 4, 4)), np.ones((4, 4), bool), 2)
    with pytest.raises(ValueError, match=r"values must be \(c, y, x\)"):
        zonal_sums(labels, np.ones((1, 4, 5)), np.ones((4, 4), bool), 2)


@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 20), w=st.integers(1, 20), n=st.integers(0, 6), seed=st.integers(0, 2**16))
def test_kernel_equals_reference_property(h, w, n, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n + 1, (h, w)).astype(np.int32)
    values = rng.integers(0, 65535, (2, h, w)).astype(np.uint16)
    valid = rng.random((h, w)) > 0.5
    for g, w_ in zip(zonal_sums(labels, values, valid, n), zonal_sums_reference(labels, values, valid, n), strict=True):
        np.testing.assert_array_equal(g, w_)
