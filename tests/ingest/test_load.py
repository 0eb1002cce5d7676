"""Reflectance harmonisation per processing baseline, the SCL clear mask, mosaicking rules."""

from __future__ import annotations

import numpy as np
import pytest

from ingest.items import parse_item
from ingest.load import _scale_offset, mosaic_s1, mosaic_s2, s1_values, s2_values
from ingest.types import SCL_CLEAR


def raw(dn: int, scl: int, shape=(2, 3)) -> np.ndarray:
    r = np.full((11, *shape), dn, dtype=np.uint16)
    r[10] = scl
    return r


def test_offset_per_baseline_gives_the_same_reflectance():
    # reflectance 0.25: DN 2500 before baseline 04.00 (offset 0), DN 3500 from 04.00 on (offset -0.1)
    old, _ = s2_values(raw(2500, 4), [1e-4] * 10, [0.0] * 10)
    new, _ = s2_values(raw(3500, 4), [1e-4] * 10, [-0.1] * 10)
    np.testing.assert_array_equal(old, 2500)
    np.testing.assert_array_equal(new, 2500)
    other, _ = s2_values(raw(1250, 4), [2e-4] * 10, [0.0] * 10)  # another scale: float path
    np.testing.assert_array_equal(other, 2500)


def test_nodata_negative_and_clear_mask():
    r = raw(900, 4)  # reflectance -0.01 with offset -0.1: clipped to the smallest stored value
    r[:, 0, 0] = 0  # no data
    r[10, 1, :] = [3, 8, 10]  # cloud shadow, cloud, cirrus
    vals, clear = s2_values(r, [1e-4] * 10, [-0.1] * 10)
    assert vals[0, 0, 0] == 0 and vals[0, 0, 1] == 1
    assert clear.tolist() == [[0, 1, 1], [0, 0, 0]]
    for scl in range(12):
        assert s2_values(raw(3000, scl, (1, 1)), [1e-4] * 10, [0.0] * 10)[1][0, 0] == (scl in SCL_CLEAR)


def test_scale_offset_fallback_from_baseline():
    item = {"id": "x", "collection": "sentinel-2-l2a", "bbox": [0, 0, 1, 1],
            "properties": {"datetime": "2024-01-01T00:00:00Z", "grid:code": "MGRS-33UXP",
                           "s2:processing_baseline": "03.01"},
            "assets": {b: {"href": "x.tif"} for b in ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A",
                                                      "B11", "B12", "SCL")}}
    assert _scale_offset(parse_item(item), item["assets"]["B02"]) == (1e-4, 0.0)
    item["properties"]["s2:processing_baseline"] = "05.10"
    assert _scale_offset(parse_item(item), item["assets"]["B02"]) == (1e-4, -0.1)
    asset = {"raster:bands": [{"scale": 2e-4, "offset": 0.05}]}
    assert _scale_offset(parse_item(item), asset) == (2e-4, 0.05)


def test_mosaic_prefers_clear_then_data():
    a = (np.array([[[0, 10, 20]]], np.uint16), np.array([[0, 0, 1]], np.uint8))  # nodata, cloudy, clear
    b = (np.array([[[5, 15, 25]]], np.uint16), np.array([[1, 1, 1]], np.uint8))
    values, clear, counts = mosaic_s2([a, b])
    assert values.tolist() == [[[5, 15, 20]]] and clear.tolist() == [[1, 1, 1]] and counts == [2, 3]
    v1 = s1_values(np.array([[[np.nan, 0.1, -1.0]], [[0.2, 0.2, 0.2]]], np.float32))
    v2 = np.array([[[0.3, 0.4, 0.5]], [[0.3, 0.4, 0.5]]], np.float32)
    values, counts = mosaic_s1([v1, v2])
    assert values[0, 0].tolist() == pytest.approx([0.3, 0.1, 0.5]) and counts == [1, 3]
