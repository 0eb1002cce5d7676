"""Image chips of one parcel at one acquisition, cut from the tile cube: true colour, NDVI, VV.

The window is the parcel's bounding box in the tile grid plus a margin, the parcel outline drawn on
top, scaled up (nearest neighbour) so that a small parcel is still visible. Rendering stretches are
fixed (not per chip) so that before/after chips compare honestly.
"""

from __future__ import annotations

import functools
import io
import threading
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from contracts.indices import ndvi as ndvi_of
from dashboards.errors import NotFoundError, UnavailableError

KINDS = ("true_color", "ndvi", "vv")
TRUE_COLOR_MAX = 0.3  # reflectance mapped to white
VV_DB_RANGE = (-25.0, 0.0)
NDVI_RANGE = (-0.2, 0.9)
QUICKLOOK_VIEWS = 12  # how far back a quicklook looks for a clear view of each pixel
QUICKLOOK_MAX_PX = 1024  # long side of the served quicklook (a 10 980 px S2 tile is read 1 pixel in 11)
# bytes of the served quicklook: a full-colour PNG of a textured 1024 px tile is ~2 MB, too much for a
# map layer; past this it is sent with a 256-colour palette, then at half the size, until it fits
QUICKLOOK_MAX_BYTES = 600_000


class _Steps:
    """Windows of one sensor group's arrays read straight from Zarr (no dask graph: building and
    scheduling it for a one- or two-chunk window cost ~8 ms of CPU of a chip). ``raw_step[i]``: the
    Zarr index of the Dataset's ``i``-th (committed, time-sorted) step."""

    def __init__(self, path, sensor: str, ds) -> None:
        import zarr

        from contracts import storage

        g = zarr.open_group(storage.zarr_store(path, read_only=True), mode="r")[sensor.lower()]
        n = g["time"].shape[0]
        raw_times = np.asarray(g["time"][:n]).astype(np.int64)
        done = np.array([bool(v) for v in np.asarray(g["item_ids"][:n]).tolist()], dtype=bool)
        at = {int(t): i for i, t in enumerate(raw_times.tolist()) if done[i]}
        times = ds["time"].values.astype("datetime64[s]").astype(np.int64).tolist()
        self.raw_step = np.array([at[t] for t in times], dtype=np.int64)
        self.arrays = {name: g[name] for name in ("reflectance", "backscatter") if name in g}

    def window(self, name: str, ti: int, *index) -> np.ndarray:
        return np.asarray(self.arrays[name][(int(self.raw_step[ti]), *index)])


@functools.lru_cache(maxsize=16)
def _to_grid(epsg: int):
    """WGS84 → the grid's CRS (a pyproj Transformer costs milliseconds to build; it is reused)."""
    from pyproj import Transformer

    return Transformer.from_crs(4326, epsg, always_xy=True)


class Chips:
    def __init__(self, cubes_dir: Path, max_px: int = 512, margin_px: int = 4) -> None:
        self.cubes_dir = cubes_dir
        self.max_px = max_px
        self.margin_px = margin_px
        self._lock = threading.Lock()
        self._cubes: dict[tuple[str, str], tuple[float, Any, _Steps | None]] = {}
        self._quicklooks: dict[str, tuple[tuple, tuple[bytes, list[float], str]]] = {}

    def _open(self, tile_id: str, sensor: str):
        return self._open_steps(tile_id, sensor, steps=False)[0]

    def _open_steps(self, tile_id: str, sensor: str, steps: bool = True) -> tuple[Any, _Steps | None]:
        """The sensor group as a Dataset and (``steps``) its Zarr windows, of the same cube version."""
        from ingest.cube import cube_path, open_cube

        path = cube_path(self.cubes_dir, tile_id)
        try:
            stamp = (path / sensor.lower() / "time" / "zarr.json").stat().st_mtime_ns
        except OSError:
            stamp = 0.0
        key = (tile_id, sensor)
        with self._lock:
            hit = self._cubes.get(key)
        if hit is not None and hit[0] == stamp and (hit[2] is not None or not steps):
            return hit[1], hit[2]
        if hit is not None and hit[0] == stamp:
            ds = hit[1]
        else:
            if not (path / "zarr.json").exists():
                raise UnavailableError(f"no cube for tile {tile_id!r}")
            ds = open_cube(path, sensor)
        windows = _Steps(path, sensor, ds) if steps else None
        with self._lock:
            self._cubes[key] = (stamp, ds, windows)
        return ds, windows

    def dates(self, tile_id: str, sensor: str) -> list[str]:
        ds = self._open(tile_id, sensor)
        return [str(t)[:10] for t in ds["time"].values]

    def acquisitions(self, tile_id: str, sensor: str) -> list[dict]:
        """Every committed acquisition: time, and for S1 the orbit and pass direction."""
        ds = self._open(tile_id, sensor)
        out = []
        for i, t in enumerate(ds["time"].values):
            row = {"date": str(t)[:10], "time": str(t) + "Z"}
            if sensor == "S1":
                row["orbit"] = int(ds["orbit"].values[i])
                row["pass"] = str(ds["pass"].values[i])
            out.append(row)
        return out

    def _time_index(self, ds, day: date, tile_id: str, sensor: str) -> int:
        days = np.array([str(t)[:10] for t in ds["time"].values])
        hits = np.flatnonzero(days == day.isoformat())
        if hits.size == 0:
            near = sorted(set(days.tolist()), key=lambda d: abs((date.fromisoformat(d) - day).days))[:3]
            raise NotFoundError(
                f"no {sensor} acquisition of tile {tile_id} on {day.isoformat()}; nearest: {', '.join(sorted(near)) or 'none'}"
            )
        return int(hits[-1])

    def render(self, tile_id: str, geometry_wgs84, day: date, kind: str) -> bytes:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        sensor = "S1" if kind == "vv" else "S2"
        ds, steps = self._open_steps(tile_id, sensor)
        ti = self._time_index(ds, day, tile_id, sensor)
        grid = ds.attrs.get("grid", {})
        epsg = int(grid.get("epsg", 0))
        if not epsg:
            raise UnavailableError(f"cube of tile {tile_id} has no grid CRS")
        import shapely

        tr = _to_grid(epsg)
        geom = shapely.transform(geometry_wgs84, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
        xs, ys = ds["x"].values, ds["y"].values
        res = abs(float(xs[1] - xs[0])) if len(xs) > 1 else float(grid.get("resolution", 10.0))
        minx, miny, maxx, maxy = geom.bounds
        pad = self.margin_px * res
        cols = np.flatnonzero((xs >= minx - pad) & (xs <= maxx + pad))
        rows = np.flatnonzero((ys >= miny - pad) & (ys <= maxy + pad))
        if cols.size == 0 or rows.size == 0:
            raise NotFoundError(f"parcel lies outside the cube of tile {tile_id}")
        r0, r1, c0, c1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
        if kind == "vv":
            pols = [str(p) for p in ds["pol"].values]
            raw = steps.window("backscatter", ti, pols.index("VV"), slice(r0, r1), slice(c0, c1)).astype(np.float32)
            with np.errstate(divide="ignore", invalid="ignore"):
                db = 10 * np.log10(raw)
            lo, hi = VV_DB_RANGE
            g = np.clip((db - lo) / (hi - lo), 0, 1)
            rgb = np.repeat(np.nan_to_num(g * 255)[..., None], 3, axis=2).astype(np.uint8)
            missing = ~np.isfinite(db)
        else:
            bands = [str(b) for b in ds["band"].values]
            refl = steps.window("reflectance", ti, slice(None), slice(r0, r1), slice(c0, c1)).astype(np.float32)
            missing = np.all(refl == 0, axis=0)
            refl = refl * 1e-4
            if kind == "true_color":
                rgb = np.stack([refl[bands.index(b)] for b in ("B04", "B03", "B02")], axis=-1)
                rgb = (np.clip(rgb / TRUE_COLOR_MAX, 0, 1) ** (1 / 1.4) * 255).astype(np.uint8)
            else:
                ndvi = ndvi_of(refl[bands.index("B04")], refl[bands.index("B08")])
                lo, hi = NDVI_RANGE
                import matplotlib

                cmap = matplotlib.colormaps["RdYlGn"]
                rgb = (cmap(np.clip(np.nan_to_num((ndvi - lo) / (hi - lo)), 0, 1))[..., :3] * 255).astype(np.uint8)
        rgb[missing] = (40, 0, 40)
        return self._png(rgb, geom, xs[c0], ys[r0], res)

    def quicklook(self, tile_id: str, max_px: int = QUICKLOOK_MAX_PX,
                  max_bytes: int = QUICKLOOK_MAX_BYTES) -> tuple[bytes, list[float], str]:
        """The tile's latest clear true colour: each pixel from the newest S2 view where it was clear
        (newest first, at most :data:`QUICKLOOK_VIEWS` views looked at), read one pixel in ``step`` (the
        centre one of each step × step block) so the long side is at most ``max_px``, and encoded in at
        most ``max_bytes`` (see :data:`QUICKLOOK_MAX_BYTES`). Returns the PNG, the WGS84 bounds
        ``[south, west, north, east]`` of exactly the blocks it shows (what a Leaflet image overlay
        takes) and the date of the newest view used. Cached per cube version."""
        ds = self._open(tile_id, "S2")
        key = (tile_id, int(ds.sizes["time"]), str(ds["time"].values[-1]) if ds.sizes["time"] else "", max_px,
               max_bytes)
        with self._lock:
            hit = self._quicklooks.get(tile_id)
            if hit is not None and hit[0] == key:
                return hit[1]
        if ds.sizes["time"] == 0:
            raise NotFoundError(f"no S2 acquisition in the cube of tile {tile_id}")
        grid = ds.attrs.get("grid", {})
        epsg = int(grid.get("epsg", 0))
        if not epsg:
            raise UnavailableError(f"cube of tile {tile_id} has no grid CRS")
        while True:
            result = self._quicklook_at(ds, tile_id, epsg, max_px, max_bytes, grid)
            if len(result[0]) <= max_bytes or max_px <= 64:
                break
            max_px //= 2
        with self._lock:
            self._quicklooks[tile_id] = (key, result)
        return result

    def _quicklook_at(self, ds, tile_id: str, epsg: int, max_px: int, max_bytes: int, grid: dict) -> tuple[bytes, list[float], str]:
        xs, ys = ds["x"].values, ds["y"].values
        step = max(1, int(np.ceil(max(len(xs), len(ys)) / max_px)))
        # whole blocks only (a partial last block would stretch the overlay), sampled at their centre
        nx, ny = max(1, len(xs) // step), max(1, len(ys) // step)
        cx = slice(step // 2, step // 2 + nx * step, step)
        cy = slice(step // 2, step // 2 + ny * step, step)
        bands = [str(b) for b in ds["band"].values]
        rgb_idx = [bands.index(b) for b in ("B04", "B03", "B02")]
        out = np.zeros((3, ny, nx), np.float32)
        todo = np.ones(out.shape[1:], bool)
        newest = None
        for ti in range(ds.sizes["time"] - 1, max(-1, ds.sizes["time"] - 1 - QUICKLOOK_VIEWS), -1):
            clear = np.asarray(ds["clear"][ti, cy, cx].values) == 1
            take = todo & clear
            if not take.any():
                continue
            refl = np.asarray(ds["reflectance"][ti, rgb_idx, cy, cx].values, np.float32) * 1e-4
            out[:, take] = refl[:, take]
            todo &= ~take
            newest = newest or str(ds["time"].values[ti])[:10]
            if not todo.any():
                break
        if newest is None:
            raise NotFoundError(f"no clear S2 pixel in the last {QUICKLOOK_VIEWS} views of tile {tile_id}")
        rgb = (np.clip(np.moveaxis(out, 0, -1) / TRUE_COLOR_MAX, 0, 1) ** (1 / 1.4) * 255).astype(np.uint8)
        alpha = np.where(todo, 0, 255).astype(np.uint8)  # never clear: transparent
        from PIL import Image
        from pyproj import Transformer

        img = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
        buf = io.BytesIO()
        img.save(buf, "PNG")
        if buf.tell() > max_bytes:  # a palette keeps the layer legible at a third of the bytes
            buf = io.BytesIO()
            img.quantize(256, method=Image.Quantize.FASTOCTREE).save(buf, "PNG", optimize=True)
        res = abs(float(xs[1] - xs[0])) if len(xs) > 1 else float(grid.get("resolution", 10.0))
        yres = abs(float(ys[1] - ys[0])) if len(ys) > 1 else res
        # the blocks shown: from the first pixel's outer edge, nx (ny) blocks of step pixels
        x0 = float(xs[0]) - res / 2
        x1 = x0 + nx * step * res
        y1 = float(ys[0]) + yres / 2  # rows run north to south
        y0 = y1 - ny * step * yres
        lon, lat = Transformer.from_crs(epsg, 4326, always_xy=True).transform([x0, x1, x0, x1], [y0, y0, y1, y1])
        bounds = [round(min(lat), 6), round(min(lon), 6), round(max(lat), 6), round(max(lon), 6)]
        return buf.getvalue(), bounds, newest

    def _png(self, rgb: np.ndarray, geom, x0: float, y0: float, res: float) -> bytes:
        from PIL import Image, ImageDraw

        h, w = rgb.shape[:2]
        scale = max(1, min(self.max_px // max(h, w), 16))
        img = Image.fromarray(rgb, "RGB").resize((w * scale, h * scale), Image.NEAREST)
        draw = ImageDraw.Draw(img)
        polys = list(getattr(geom, "geoms", [geom]))
        for p in polys:
            # pixel centres sit at x0 + i·res; the pixel's left edge at x0 - res/2
            pts = [((x - (x0 - res / 2)) / res * scale, ((y0 + res / 2) - y) / res * scale)
                   for x, y in p.exterior.coords]
            draw.line(pts, fill=(0, 200, 255), width=max(1, scale // 4))
        buf = io.BytesIO()
        img.save(buf, "PNG", optimize=False)
        return buf.getvalue()
