"""Zonal statistics per parcel: a plain numpy reference (:mod:`.reference`) and a numba kernel (:mod:`.kernels`).

Both share one signature::

    zonal_sums(labels, values, valid, n_labels) -> (sums, valid_count, pixel_count)

``labels`` (y, x) int32, 0 = no parcel, 1..n_labels = parcel index; ``values`` (c, y, x) any real dtype;
``valid`` (y, x) bool (clear and not nodata). ``sums`` (n_labels, c) float64 sum of values over valid
pixels; ``valid_count`` (n_labels,) int64; ``pixel_count`` (n_labels,) int64 pixels of the parcel.
Labels outside 0..n_labels are an error.
"""

from ingest.zonal.kernels import zonal_sums
from ingest.zonal.reference import zonal_sums as zonal_sums_reference

__all__ = ["zonal_sums", "zonal_sums_reference", "check_inputs"]

from ingest.zonal.reference import check_inputs  # noqa: E402
