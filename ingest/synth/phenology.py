"""Surface signals: crop calendars as cover fractions, spectra mixed from end-members, and S1 backscatter.

A unit (a parcel, a background cell, or the road/hedge margin) is described per day by the fractions of
its surface: green vegetation ``fg``, standing dry vegetation ``fds``, lying dry matter ``fdl`` (hay,
stubble), rapeseed flowers ``ffl``, PV panels ``fpv``, disturbed soil of works ``fwk``, sealed/urban
``furb``, water ``fwat`` and bare soil (the rest). Reflectance is the linear mix of the end-member
spectra below by those fractions; backscatter follows an empirical dB model of biomass, soil moisture and
roughness, mixed in linear power with strong PV and urban scatterers.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "BANDS",
    "BANDS_10M",
    "BANDS_20M",
    "KINDS",
    "ENDMEMBERS",
    "Fractions",
    "reflectance",
    "backscatter_db",
    "logistic",
]

BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
BANDS_10M: tuple[str, ...] = ("B02", "B03", "B04", "B08")
BANDS_20M: tuple[str, ...] = ("B05", "B06", "B07", "B8A", "B11", "B12")
WAVELENGTH_UM = dict(
    B02=0.490,
    B03=0.560,
    B04=0.665,
    B05=0.705,
    B06=0.740,
    B07=0.783,
    B08=0.842,
    B8A=0.865,
    B11=1.610,
    B12=2.190,
)
COMMON_NAME = dict(
    B02="blue",
    B03="green",
    B04="red",
    B05="rededge",
    B06="rededge",
    B07="rededge",
    B08="nir",
    B8A="nir08",
    B11="swir16",
    B12="swir22",
)

#: Unit kinds: 0 is the road/hedge margin; 1-5 declared land uses; 6-9 undeclared background cover.
KINDS: tuple[str, ...] = (
    "margin",
    "grassland",
    "cereal",
    "maize",
    "rapeseed",
    "other",
    "forest",
    "water",
    "urban",
    "meadow",
)

#: Surface reflectance (0-1) of each end-member at BANDS.
ENDMEMBERS: dict[str, np.ndarray] = {
    k: np.asarray(v, np.float32)
    for k, v in {
        "green": (0.028, 0.062, 0.032, 0.095, 0.290, 0.390, 0.430, 0.450, 0.205, 0.095),
        "dry": (0.085, 0.115, 0.145, 0.175, 0.215, 0.240, 0.265, 0.280, 0.360, 0.265),
        "soil": (0.075, 0.105, 0.145, 0.175, 0.195, 0.205, 0.215, 0.225, 0.300, 0.255),
        "flower": (0.050, 0.140, 0.120, 0.220, 0.320, 0.380, 0.420, 0.430, 0.250, 0.120),
        "pv": (0.095, 0.085, 0.072, 0.070, 0.072, 0.075, 0.080, 0.080, 0.060, 0.045),
        "works": (0.110, 0.140, 0.175, 0.200, 0.220, 0.230, 0.240, 0.250, 0.330, 0.290),
        "urban": (0.100, 0.110, 0.120, 0.130, 0.145, 0.155, 0.165, 0.170, 0.210, 0.185),
        "water": (0.040, 0.050, 0.030, 0.020, 0.015, 0.012, 0.010, 0.010, 0.005, 0.003),
        "cloud": (0.560, 0.555, 0.560, 0.565, 0.570, 0.575, 0.580, 0.580, 0.450, 0.330),
    }.items()
}


def logistic(x):
    """1 / (1 + exp(-x)), overflow-safe."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float32)))


class Fractions:
    """Cover fractions of U units at T times: each attribute an array (U, T) float32 in 0-1.

    Also ``biomass`` (0-1.5, for S1), ``rough_db`` (soil roughness added to backscatter, dB),
    ``shade`` (canopy shading multiplier of reflectance, 1 outside forests).
    """

    __slots__ = ("fg", "fds", "fdl", "ffl", "fpv", "fwk", "furb", "fwat", "biomass", "rough_db", "shade")

    def __init__(self, shape: tuple[int, int]) -> None:
        for name in self.__slots__:
            setattr(self, name, np.zeros(shape, np.float32))
        self.shade[:] = 1.0

    def soil(self) -> np.ndarray:
        rest = self.fg + self.fds + self.fdl + self.ffl + self.fpv + self.fwk + self.furb + self.fwat
        return np.clip(1.0 - rest, 0.0, 1.0)

    def normalise(self) -> None:
        """Clip every fraction to 0-1 and rescale where their sum passes 1."""
        names = ("fg", "fds", "fdl", "ffl", "fpv", "fwk", "furb", "fwat")
        for n in names:
            np.clip(getattr(self, n), 0.0, 1.0, out=getattr(self, n))
        total = sum(getattr(self, n) for n in names)
        over = np.where(total > 1.0, 1.0 / np.maximum(total, 1e-6), 1.0).astype(np.float32)
        for n in names:
            getattr(self, n)[...] *= over


def reflectance(fr: Fractions, soil_brightness: np.ndarray, soil_moisture: np.ndarray) -> np.ndarray:
    """Reflectance (U, T, 10) float32 by linear mixing; wet soil is darker.

    ``soil_brightness`` (U,) around 1; ``soil_moisture`` (T,) volumetric, 0.05-0.45.
    """
    wet = (1.0 - 0.9 * (soil_moisture - 0.1)).astype(np.float32)  # (T,)
    soil_spec = ENDMEMBERS["soil"][None, None, :] * (soil_brightness[:, None, None] * wet[None, :, None])
    out = fr.soil()[..., None] * soil_spec
    for frac, name in (
        (fr.fg, "green"),
        (fr.fds + fr.fdl, "dry"),
        (fr.ffl, "flower"),
        (fr.fpv, "pv"),
        (fr.fwk, "works"),
        (fr.furb, "urban"),
        (fr.fwat, "water"),
    ):
        out += frac[..., None] * ENDMEMBERS[name][None, None, :]
    out *= fr.shade[..., None]
    return out.astype(np.float32)


def backscatter_db(
    fr: Fractions,
    soil_moisture: np.ndarray,
    orbit_offset_db: np.ndarray,
    pv_orbit_db: np.ndarray,
    urban_db: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(VV, VH) in dB, each (U, T) float32.

    Ground: VH grows ~8 dB from bare soil to full biomass; VV rises a little then is attenuated; both rise
    with soil moisture (less under dense canopy) and roughness. Water is dark, urban bright (double
    bounce), PV panels very bright in VV; each is mixed in linear power by its fraction.
    ``orbit_offset_db`` (U, T): incidence/slope effect per unit and orbit; ``pv_orbit_db`` (T,);
    ``urban_db`` (U,): VV of the sealed part (buildings -4.5 dB; asphalt of roads is dark, -14 dB).
    """
    b = fr.biomass
    sm = soil_moisture[None, :].astype(np.float32) - 0.25
    canopy = np.minimum(b, 1.0)
    vh = -22.3 + 8.0 * b + 6.0 * sm * (1.0 - 0.6 * canopy) + 0.8 * fr.rough_db + orbit_offset_db
    vv = -12.0 + 3.2 * b - 1.9 * b * b + 12.0 * sm * (1.0 - 0.5 * canopy) + fr.rough_db + orbit_offset_db
    lin_vv = 10.0 ** (vv / 10.0)
    lin_vh = 10.0 ** (vh / 10.0)
    ground = 1.0 - fr.fpv - fr.furb - fr.fwat
    pv_vv = 10.0 ** ((-3.0 + pv_orbit_db[None, :]) / 10.0)
    pv_vh = 10.0 ** ((-12.5 + 0.5 * pv_orbit_db[None, :]) / 10.0)
    urb_vv = 10.0 ** (urban_db[:, None] / 10.0)
    urb_vh = 10.0 ** ((urban_db[:, None] - 7.0) / 10.0)
    lin_vv = ground * lin_vv + fr.fpv * pv_vv + fr.furb * urb_vv + fr.fwat * 10 ** (-21.0 / 10)
    lin_vh = ground * lin_vh + fr.fpv * pv_vh + fr.furb * urb_vh + fr.fwat * 10 ** (-28.0 / 10)
    return (
        (10.0 * np.log10(np.maximum(lin_vv, 1e-6))).astype(np.float32),
        (10.0 * np.log10(np.maximum(lin_vh, 1e-6))).astype(np.float32),
    )
