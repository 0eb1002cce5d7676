"""Physically possible values per band and sensor, and the detection of a plainly wrong unit.

One rule for every entry point (``detect``, ``gapfill``, ``eval``, ``ingest import``; see
:func:`contracts.interchange.check_observations`): a value outside its range rejects its row; a
column whose values are mostly outside in the way a known wrong unit would put them refuses the file.

- S2 surface reflectance (B02..B12), unitless: [-0.1, 3.0]. L2A's offset (baseline 04.00+) makes
  -0.1 the lowest value a product can hold; bright clouds and snow reach 1.5-2 (the real data set
  peaks at 1.76), so 3 leaves room and still rejects nonsense (1e30, -5).
  *Digital numbers* (0-10000) instead of reflectance: most values above 3.
- S1 backscatter (VV, VH), linear power: [0, 100] (100 is +20 dB, above the strongest urban
  double bounce). *Decibels* instead of linear power: most values negative.
- ``clear``: [0, 1] (1 clear; a fraction of clear pixels is allowed).
- ``orbit``: a relative orbit, an integer in 1..175 (S1; S2 has 143), or -1 for unknown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from contracts.bands import CLEAR, ORBIT, S1_POLS, S2_BANDS


@dataclass(frozen=True, slots=True)
class ValueRange:
    """Closed interval ``[lo, hi]`` of one quantity; ``integer``: whole numbers only; ``missing``: a
    sentinel that means "unknown" and is always accepted."""

    quantity: str
    lo: float
    hi: float
    integer: bool = False
    missing: float | None = None

    def __post_init__(self) -> None:
        if not self.lo < self.hi:
            raise ValueError(f"{self.quantity}: empty range [{self.lo}, {self.hi}]")

    def contains(self, values: np.ndarray) -> np.ndarray:
        """Boolean mask of the finite values that lie in the range (NaN → True: missing is allowed)."""
        v = np.asarray(values, dtype=np.float64)
        ok = np.isnan(v) | ((v >= self.lo) & (v <= self.hi))
        if self.integer:
            ok &= np.isnan(v) | (v == np.round(v))
        if self.missing is not None:
            ok |= v == self.missing
        return ok

    def describe(self) -> str:
        lo = int(self.lo) if self.integer else self.lo
        hi = int(self.hi) if self.integer else self.hi
        kind = "an integer in " if self.integer else ""
        extra = f" or {int(self.missing) if self.integer else self.missing} (unknown)" if self.missing is not None else ""
        return f"{self.quantity} must be {kind}[{lo}, {hi}]{extra}"


REFLECTANCE = ValueRange("surface reflectance", -0.1, 3.0)
BACKSCATTER_LINEAR = ValueRange("backscatter (linear power)", 0.0, 100.0)
CLEAR_FLAG = ValueRange("clear flag", 0.0, 1.0)
RELATIVE_ORBIT = ValueRange("relative orbit", 1.0, 175.0, integer=True, missing=-1.0)

COLUMN_RANGES: dict[str, ValueRange] = {
    **{b: REFLECTANCE for b in S2_BANDS},
    **{p: BACKSCATTER_LINEAR for p in S1_POLS},
    CLEAR: CLEAR_FLAG,
    ORBIT: RELATIVE_ORBIT,
}
"""The range of every numeric column of the interchange table."""

# A unit is "plainly wrong" when most of a column's values say so; a few odd rows are just bad rows.
WRONG_UNIT_SHARE = 0.5


def wrong_unit(column: str, values: np.ndarray) -> str | None:
    """Why ``values`` of ``column`` look like a wrong unit (one line), or None.

    Reflectance in digital numbers (most values above 3 and at most 65535) and backscatter in dB
    (most values negative) are recognised; other columns never.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    if column in S2_BANDS:
        dn = (v > REFLECTANCE.hi) & (v <= 65535)
        if dn.mean() > WRONG_UNIT_SHARE:
            return (f"{column} looks like digital numbers (0-10000; median {np.median(v):.6g}), "
                    f"expected surface reflectance 0-1: divide by 10000")
    if column in S1_POLS:
        if (v < 0).mean() > WRONG_UNIT_SHARE:
            return (f"{column} looks like decibels (median {np.median(v):.6g}), expected linear power: "
                    f"convert with 10 ** (dB / 10)")
    return None


def check_value(column: str, value: float) -> str | None:
    """Why one value of ``column`` is refused (one line), or None (a scalar form of the row rule)."""
    rng = COLUMN_RANGES.get(column)
    if not math.isfinite(value) and not math.isnan(value):
        return f"{column} is not finite: {value}"
    if rng is None or bool(rng.contains(np.array([value]))[0]):
        return None
    return f"{column} = {value:.6g} out of range: {rng.describe()}"
