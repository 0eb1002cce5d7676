"""The tile quicklook of a large textured tile is served small (long side and bytes bounded) and still
sits where the tile is: its bounds are the tile's extent, and a sharp edge in the cube's clear mask
appears in the column that covers it."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import numpy as np
from PIL import Image
from pyproj import Transformer

from dashboards.chips import QUICKLOOK_MAX_BYTES, QUICKLOOK_MAX_PX, Chips

TILE, EPSG, X0, Y0, RES = "33UXP", 32633, 600000.0, 5300000.0, 10.0
SIDE_PX, EDGE_PX = 2100, 733  # columns left of EDGE_PX are never clear


def _cube(root):
    from ingest.cube import CubeWriter, cube_path
    from ingest.types import Sensor, TileGrid

    grid = TileGrid(TILE, EPSG, RES, (X0, Y0, X0 + SIDE_PX * RES, Y0 + SIDE_PX * RES))
    w = CubeWriter(cube_path(root, TILE), grid, chunk=700)
    rng = np.random.default_rng(4)
    for k, day in enumerate((5, 10)):
        slot = f"202406{day:02d}"
        idx, new = w.begin_slot(Sensor.S2, slot)
        for win in w.blocks():
            y0, y1, x0, x1 = win
            data = rng.integers(200, 3500, (10, y1 - y0, x1 - x0), dtype=np.uint16)  # texture: PNG's worst case
            clear = np.broadcast_to((np.arange(x0, x1) >= EDGE_PX).astype(np.uint8), (y1 - y0, x1 - x0)).copy()
            w.write_block(Sensor.S2, idx, win, data, clear)
        ts = int(datetime(2024, 6, day, 10, tzinfo=UTC).timestamp())
        w.commit_slot(Sensor.S2, idx, new, slot, ts, (f"item-{k}",), {"baseline": "05.10"})


def test_a_large_tile_quicklook_is_bounded_and_georeferenced(tmp_path):
    _cube(tmp_path)
    png, bounds, day = Chips(tmp_path).quicklook(TILE)
    assert day == "2024-06-10"
    assert len(png) <= QUICKLOOK_MAX_BYTES  # a full-colour PNG of it would be ~2 MB
    img = Image.open(io.BytesIO(png)).convert("RGBA")
    w, h = img.size
    assert max(w, h) <= QUICKLOOK_MAX_PX and min(w, h) >= 256
    step = -(-SIDE_PX // w)  # the cube pixels per quicklook pixel
    # bounds: the tile's extent (as far as whole blocks of `step` pixels reach), in WGS84
    to_wgs = Transformer.from_crs(EPSG, 4326, always_xy=True)
    e_m, s_m = X0 + w * step * RES, Y0 + SIDE_PX * RES - h * step * RES
    assert SIDE_PX * RES - w * step * RES < step * RES  # at most one block short of the tile's edge
    lon, lat = to_wgs.transform([X0, e_m, X0, e_m], [s_m, s_m, Y0 + SIDE_PX * RES, Y0 + SIDE_PX * RES])
    np.testing.assert_allclose(bounds, [min(lat), min(lon), max(lat), max(lon)], atol=2e-6)
    # the never-clear strip is transparent exactly up to the block whose centre pixel is past the edge
    alpha = np.asarray(img)[..., 3]
    first_opaque = int(np.argmax(alpha[h // 2] > 0))
    assert first_opaque == -(-(EDGE_PX - step // 2) // step)
    assert (alpha[:, :first_opaque] == 0).all() and (alpha[:, first_opaque:] == 255).all()
    # the opaque edge in map units lies within one block of the cube's edge
    edge_m = X0 + first_opaque * step * RES
    assert abs(edge_m - (X0 + EDGE_PX * RES)) <= step * RES
