"""Configuration of the synthetic archive: one frozen dataclass, validated on construction."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

from ingest.errors import IngestError

__all__ = ["LAND_USES", "SynthConfig", "SynthConfigError", "SynthError", "ArchiveExistsError"]

#: Land uses of declared parcels (the LPIS layer); background cover (forest, water, urban) is not declared.
LAND_USES: tuple[str, ...] = ("grassland", "cereal", "maize", "rapeseed", "other")

RESOLUTION_M = 10.0
MIN_PARCEL_HA = 0.5
MAX_PARCEL_HA = 20.0
#: Smallest mean area per parcel (ha) a tile must offer, once the background share is taken away.
MIN_MEAN_PARCEL_HA = 1.0
MAX_TILES = 32


class SynthError(IngestError):
    """Base error of the synthetic archive generator (an :class:`ingest.errors.IngestError`)."""


class SynthConfigError(SynthError, ValueError):
    """A synthetic archive configuration that cannot be generated."""


class ArchiveExistsError(SynthError, FileExistsError):
    """The output folder exists and is not empty, and overwriting was not asked for."""


def _share(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and 0.0 <= float(value) <= 1.0):
        raise SynthConfigError(f"{name} must be a share between 0 and 1, got {value!r}")


@dataclass(frozen=True, slots=True)
class SynthConfig:
    """What to generate. Sizes in 10 m pixels; dates inclusive; shares in [0, 1].

    ``land_use_shares`` gives the mix of declared parcels; grassland parcels are split into mown
    (``mowing_share``), grazed only (``grazing_share``) and unmanaged (the rest: never mown nor grazed,
    the CAP "no activity" case). ``solar_parcel_share`` of parcels (at least one per tile when > 0)
    become ground-mounted solar farms, plus ``solar_sites_outside_per_tile`` sites on undeclared land.
    """

    seed: int = 42
    n_tiles: int = 1
    tile_size_px: int = 1024
    parcels_per_tile: int = 2500
    start: date = date(2024, 3, 1)
    end: date = date(2024, 10, 31)
    quicklooks: bool = False
    land_use_shares: tuple[tuple[str, float], ...] = (
        ("grassland", 0.35),
        ("cereal", 0.30),
        ("maize", 0.15),
        ("rapeseed", 0.10),
        ("other", 0.10),
    )
    background_share: float = 0.12
    mowing_share: float = 0.60
    grazing_share: float = 0.25
    aftermath_grazing_share: float = 0.30
    catch_crop_share: float = 0.30
    solar_parcel_share: float = 0.004
    solar_sites_outside_per_tile: int = 2
    late_publication_share: float = 0.08
    declared_practice_error_share: float = 0.5
    cog_blocksize: int = 256
    workers: int = 2

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise SynthConfigError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not isinstance(self.n_tiles, int) or not 1 <= self.n_tiles <= MAX_TILES:
            raise SynthConfigError(f"n_tiles must be between 1 and {MAX_TILES}, got {self.n_tiles!r}")
        if not isinstance(self.parcels_per_tile, int) or self.parcels_per_tile < 1:
            raise SynthConfigError(
                f"no parcels: parcels_per_tile must be at least 1, got {self.parcels_per_tile!r}"
            )
        if not isinstance(self.start, date) or not isinstance(self.end, date):
            raise SynthConfigError(f"start and end must be dates, got {self.start!r} and {self.end!r}")
        if self.end <= self.start:
            raise SynthConfigError(f"end {self.end.isoformat()} is not after start {self.start.isoformat()}")
        if (self.end - self.start).days > 366 * 6:
            raise SynthConfigError(f"date range {self.start}..{self.end} is longer than six years")
        px = self.tile_size_px
        if not isinstance(px, int) or px < 1:
            raise SynthConfigError(f"tile_size_px must be a positive integer, got {px!r}")
        tile_ha = (px * RESOLUTION_M) ** 2 / 1e4
        if tile_ha < MIN_PARCEL_HA * 4 or px < 32:
            raise SynthConfigError(
                f"tile of {px}x{px} px ({tile_ha:.2f} ha) is too small for a parcel "
                f"(parcels are {MIN_PARCEL_HA}-{MAX_PARCEL_HA} ha; use at least 32 px)"
            )
        if px % 2:
            raise SynthConfigError(f"tile_size_px must be even (20 m bands halve it), got {px}")
        for name in (
            "background_share",
            "mowing_share",
            "grazing_share",
            "aftermath_grazing_share",
            "catch_crop_share",
            "solar_parcel_share",
            "late_publication_share",
            "declared_practice_error_share",
        ):
            _share(name, getattr(self, name))
        if self.background_share > 0.6:
            raise SynthConfigError(f"background_share must be at most 0.6, got {self.background_share}")
        if self.mowing_share + self.grazing_share > 1.0:
            raise SynthConfigError(
                f"mowing_share + grazing_share must be at most 1, got {self.mowing_share + self.grazing_share}"
            )
        usable_ha = tile_ha * (1.0 - self.background_share) * 0.9
        if usable_ha / self.parcels_per_tile < MIN_MEAN_PARCEL_HA:
            need_px = math.ceil(
                math.sqrt(
                    self.parcels_per_tile * MIN_MEAN_PARCEL_HA * 1e4 / ((1 - self.background_share) * 0.9)
                )
                / RESOLUTION_M
            )
            raise SynthConfigError(
                f"tile of {px}x{px} px ({tile_ha:.1f} ha) is too small for {self.parcels_per_tile} parcels "
                f"of {MIN_PARCEL_HA}-{MAX_PARCEL_HA} ha: use fewer parcels or a tile of at least "
                f"{need_px + need_px % 2} px"
            )
        names = [n for n, _ in self.land_use_shares]
        if not names or set(names) - set(LAND_USES) or len(set(names)) != len(names):
            raise SynthConfigError(
                f"land_use_shares must name distinct land uses among {LAND_USES}, got {names}"
            )
        weights = [w for _, w in self.land_use_shares]
        if any((not isinstance(w, int | float)) or w < 0 for w in weights) or sum(weights) <= 0:
            raise SynthConfigError(
                f"land_use_shares weights must be non-negative with a positive sum: {weights}"
            )
        if not isinstance(self.solar_sites_outside_per_tile, int) or self.solar_sites_outside_per_tile < 0:
            raise SynthConfigError(
                f"solar_sites_outside_per_tile must be a non-negative integer, got {self.solar_sites_outside_per_tile!r}"
            )
        if self.cog_blocksize not in (256, 512):
            raise SynthConfigError(f"cog_blocksize must be 256 or 512, got {self.cog_blocksize}")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise SynthConfigError(f"workers must be a positive integer, got {self.workers!r}")

    @property
    def n_days(self) -> int:
        """Days in the inclusive range ``start..end``."""
        return (self.end - self.start).days + 1
