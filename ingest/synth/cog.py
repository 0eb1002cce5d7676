"""Cloud-optimised GeoTIFF writing: tiled, deflate, internal overviews, COG layout.

The image and its overviews are built in memory (GDAL MEM driver), then copied once by the COG driver
with ``OVERVIEWS=FORCE_USE_EXISTING``: half the work of letting the COG driver build overviews through
a temporary compressed file, with the same result (``LAYOUT=COG``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.enums import Resampling
from rasterio.io import MemoryFile
from rasterio.transform import Affine

__all__ = ["write_cog", "overview_factors"]


def overview_factors(size: int) -> list[int]:
    """Overview decimation factors down to about 256 px; at least one level even for small images."""
    levels = max(1, int(np.floor(np.log2(max(size, 1) / 256))))
    return [2**i for i in range(1, levels + 1)]


def write_cog(
    path: Path,
    array: np.ndarray,
    transform: tuple[float, ...],
    epsg: int,
    nodata: float | int | None,
    blocksize: int = 256,
    resampling: str = "average",
) -> None:
    """Write a single-band (H, W) array as a COG; deflate with predictor 2 (integers) or 3 (floats)."""
    if array.ndim != 2:
        raise ValueError(f"write_cog expects a 2-D array, got shape {array.shape} for {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    is_float = np.issubdtype(array.dtype, np.floating)
    profile = dict(
        width=array.shape[1],
        height=array.shape[0],
        count=1,
        dtype=array.dtype.name,
        crs=f"EPSG:{epsg}",
        transform=Affine(*transform),
        nodata=nodata,
    )
    with MemoryFile() as mem_file, mem_file.open(driver="MEM", **profile) as mem:
        mem.write(array, 1)
        mem.build_overviews(overview_factors(max(array.shape)), Resampling[resampling])
        rasterio.shutil.copy(
            mem,
            path,
            driver="COG",
            compress="DEFLATE",
            level=1,
            predictor=3 if is_float else 2,
            blocksize=blocksize,
            overviews="FORCE_USE_EXISTING",
            bigtiff="NO",
        )
