"""Finding an item's bands by what they mean, in the dialect of the catalogue that published it.

Catalogues name the same Sentinel-2 band differently: ``B02`` (the synthetic archive, Planetary
Computer), ``blue`` (Earth Search), ``B02_10m`` next to ``B02_20m`` and ``B02_60m`` (Copernicus Data
Space). A band is found by its ``eo:bands`` (STAC 1.0) or ``bands`` (STAC 1.1) name or common name —
the three red-edge bands share ``rededge`` and are told apart by their centre wavelength — and only
what carries no band metadata (SCL, the S1 polarisations) is looked up in a small per-dialect table.
Where several assets mean the same band (Earth Search ``blue`` and ``blue-jp2``, the CDSE
resolutions), a GeoTIFF beats a JPEG 2000 and the finest resolution wins.

Scale and offset come from ``raster:bands`` (or the STAC 1.1 ``raster:scale``/``raster:offset``); without
them, the L2A convention of the processing baseline (scale 1e-4, offset -0.1 = -1000 DN from 04.00 on).
An item that says the provider already applied the offset to its pixels
(``earthsearch:boa_offset_applied``) gets offset 0: the offset is never applied twice.

Sentinel-1 values are ingested as linear power only from a collection the dialect (or the
configuration) declares calibrated: gamma0 (RTC) or sigma0. An uncalibrated GRD collection (digital
numbers) is refused when the poller is configured; an S1 item of a collection of unknown calibration
is quarantined (the poll goes on).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ingest.errors import ConfigError, ItemError
from ingest.types import REFLECTANCE_SCALE, S1_ASSETS, S2_BANDS, SCL_ASSET, Sensor, sensor_of_collection

__all__ = ["DIALECTS", "Dialect", "ResolvedAsset", "CALIBRATED", "baseline_key", "check_collections", "dialect_named",
           "resolve_assets", "s1_calibration", "s2_bands_and_scl"]

#: What each canonical S2 band means: its STAC ``eo`` common name and centre wavelength (micrometres).
COMMON_NAME = {"B02": "blue", "B03": "green", "B04": "red", "B05": "rededge", "B06": "rededge", "B07": "rededge",
               "B08": "nir", "B8A": "nir08", "B11": "swir16", "B12": "swir22"}
WAVELENGTH_UM = {"B02": 0.490, "B03": 0.560, "B04": 0.665, "B05": 0.705, "B06": 0.740, "B07": 0.783, "B08": 0.842,
                 "B8A": 0.865, "B11": 1.610, "B12": 2.190}
#: Older spellings of the B8A common name (eo v1.0 "nir narrow").
_COMMON_ALIASES = {"nir narrow": "nir08", "nir09": "nir09"}
CALIBRATED = ("gamma0", "sigma0")  # linear power; anything else is not backscatter
UNCALIBRATED = "uncalibrated"
_RESOLUTION_IN_KEY = re.compile(r"_(\d+)m$")


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one catalogue publishes Sentinel items: the asset keys it uses for what has no band metadata,
    and the radiometry of its Sentinel-1 collections (collection id -> gamma0 | sigma0 | uncalibrated)."""

    name: str
    keys: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # canonical band -> asset keys
    s1_radiometry: Mapping[str, str] = field(default_factory=dict)

    def with_calibration(self, declared: Mapping[str, str]) -> Dialect:
        """This dialect with collections declared calibrated by the configuration (a calibration step upstream)."""
        for collection, kind in declared.items():
            if kind not in CALIBRATED:
                raise ConfigError(f"calibration of {collection!r} must be one of {', '.join(CALIBRATED)}, got {kind!r}")
        return Dialect(self.name, self.keys, {**self.s1_radiometry, **declared})


DIALECTS: dict[str, Dialect] = {
    # The synthetic archive's S1 is delivered terrain-corrected on the tile grid (docs/archive-format.md).
    "synthetic": Dialect("synthetic", {SCL_ASSET: ("SCL",), "vv": ("vv",), "vh": ("vh",)},
                         {"sentinel-1-grd": "gamma0", "sentinel-1-rtc": "gamma0"}),
    "earth-search": Dialect("earth-search", {SCL_ASSET: ("scl",), "vv": ("vv",), "vh": ("vh",)},
                            {"sentinel-1-grd": UNCALIBRATED}),
    "planetary-computer": Dialect("planetary-computer", {SCL_ASSET: ("SCL",), "vv": ("vv",), "vh": ("vh",)},
                                  {"sentinel-1-rtc": "gamma0", "sentinel-1-grd": UNCALIBRATED}),
    # Sentinel Hub: band assets fetched from the Process API (ingest.sources.sh_process), S1 asked as
    # terrain-corrected gamma0 (backCoeff GAMMA0_TERRAIN).
    "sentinel-hub": Dialect("sentinel-hub", {SCL_ASSET: ("SCL",), "vv": ("vv",), "vh": ("vh",)},
                            {"sentinel-1-grd": "gamma0"}),
    "cdse": Dialect("cdse", {SCL_ASSET: ("SCL_20m",), "vv": ("VV", "vv"), "vh": ("VH", "vh")},
                    {"sentinel-1-grd": UNCALIBRATED}),
}


def dialect_named(name: str | Dialect | None) -> Dialect:
    """The dialect called ``name`` (``None``: the synthetic archive's); :class:`ConfigError` naming the choices."""
    if isinstance(name, Dialect):
        return name
    if name is None:
        return DIALECTS["synthetic"]
    try:
        return DIALECTS[name]
    except KeyError:
        raise ConfigError(f"unknown catalogue dialect {name!r}: expected one of {', '.join(DIALECTS)}") from None


@dataclass(frozen=True, slots=True)
class ResolvedAsset:
    """One canonical band of an item: where it is and how its values become physical units."""

    band: str  # canonical: B02..B12, SCL, vv, vh
    key: str  # the item's asset key
    href: str
    scale: float
    offset: float
    data_type: str | None  # as declared in raster:bands
    nodata: float | None


def baseline_key(baseline: str) -> tuple[int, ...]:
    """Orderable processing baseline: "05.10" -> (5, 10); unknown -> ()."""
    try:
        return tuple(int(p) for p in baseline.split("."))
    except ValueError:
        return ()


def s2_bands_and_scl() -> tuple[str, ...]:
    return (*S2_BANDS, SCL_ASSET)


def _canonical(sensor: Sensor) -> tuple[str, ...]:
    return s2_bands_and_scl() if sensor is Sensor.S2 else S1_ASSETS


def _band_meta(asset: dict[str, Any]) -> dict[str, Any] | None:
    """The one band an asset holds (eo:bands or STAC 1.1 bands); None for none or several."""
    for name in ("eo:bands", "bands"):
        bands = asset.get(name)
        if isinstance(bands, list):
            return bands[0] if len(bands) == 1 and isinstance(bands[0], dict) else None
    return None


def _common_name(meta: dict[str, Any]) -> str:
    name = str(meta.get("common_name") or meta.get("eo:common_name") or "").lower()
    return _COMMON_ALIASES.get(name, name)


def _wavelength(meta: dict[str, Any]) -> float | None:
    value = meta.get("center_wavelength", meta.get("eo:center_wavelength"))
    return float(value) if isinstance(value, int | float) else None


def _normal_band_name(name: str) -> str:
    """B2 / b02 / B8A -> B02 / B02 / B8A."""
    m = re.fullmatch(r"B0?(\d{1,2})(A?)", name.strip().upper())
    return f"B{int(m.group(1)):02d}{m.group(2)}".replace("B08A", "B8A") if m else name.strip().upper()


def _means(band: str, key: str, asset: dict[str, Any], dialect: Dialect) -> bool:
    """Whether asset ``key`` holds canonical ``band``."""
    if key in dialect.keys.get(band, ()):
        return True
    meta = _band_meta(asset)
    if band in S1_ASSETS:
        pols = asset.get("sar:polarizations")
        if isinstance(pols, list) and [str(p).upper() for p in pols] == [band.upper()]:
            return True
        return key.lower() == band or (meta is not None and str(meta.get("name", "")).upper() == band.upper())
    if band == SCL_ASSET:
        return key.upper().split("_")[0] == SCL_ASSET or (meta is not None and str(meta.get("name", "")).upper() == SCL_ASSET)
    if _normal_band_name(_RESOLUTION_IN_KEY.sub("", key)) == band:  # B02, b02, B02_10m
        return True
    if meta is None:
        return False
    if _normal_band_name(str(meta.get("name", ""))) == band:
        return True
    common = _common_name(meta)
    if common != COMMON_NAME[band]:
        return False
    same = [b for b, c in COMMON_NAME.items() if c == common]
    if len(same) == 1:
        return True
    wavelength = _wavelength(meta)  # rededge: the nearest of the bands sharing the name
    return wavelength is not None and min(same, key=lambda b: abs(WAVELENGTH_UM[b] - wavelength)) == band


def _resolution(key: str, asset: dict[str, Any]) -> float:
    rb = raster_band(asset)
    for value in (asset.get("gsd"), rb.get("spatial_resolution"), asset.get("raster:spatial_resolution")):
        if isinstance(value, int | float) and value > 0:
            return float(value)
    transform = asset.get("proj:transform")
    if isinstance(transform, list) and transform and isinstance(transform[0], int | float):
        return abs(float(transform[0]))
    m = _RESOLUTION_IN_KEY.search(key)
    return float(m.group(1)) if m else math.inf


def _is_jp2(asset: dict[str, Any]) -> bool:
    return "jp2" in str(asset.get("type", "")).lower() or str(asset.get("href", "")).lower().endswith(".jp2")


def raster_band(asset: dict[str, Any]) -> dict[str, Any]:
    """raster:bands[0] (STAC 1.0), else the STAC 1.1 fields on the band or the asset, under the 1.0 names."""
    bands = asset.get("raster:bands")
    if isinstance(bands, list) and bands and isinstance(bands[0], dict):
        return bands[0]
    out: dict[str, Any] = {}
    meta = _band_meta(asset) or {}
    for source in (asset, meta):
        for name in ("scale", "offset", "spatial_resolution"):
            if f"raster:{name}" in source:
                out[name] = source[f"raster:{name}"]
        for name in ("data_type", "nodata"):
            if name in source:
                out[name] = source[name]
    return out


def _nodata(value: Any) -> float | None:
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value.lower() in ("nan", "inf", "-inf"):
        return float(value)
    return None


def scale_offset(item: dict[str, Any], band: str, rb: dict[str, Any]) -> tuple[float, float]:
    item_id = item.get("id")
    props = item.get("properties") or {}
    if band not in S2_BANDS:
        return 1.0, 0.0
    scale = rb.get("scale")
    if isinstance(scale, int | float) and not isinstance(scale, bool):
        offset = rb.get("offset")
        offset = float(offset) if isinstance(offset, int | float) and not isinstance(offset, bool) else 0.0
        scale = float(scale)
    else:  # no raster:bands: the L2A convention per processing baseline
        scale = REFLECTANCE_SCALE
        offset = -0.1 if baseline_key(str(props.get("s2:processing_baseline") or "")) >= (4, 0) else 0.0
    if not (math.isfinite(scale) and scale > 0 and math.isfinite(offset)):
        raise ItemError(f"item {item_id}: band {band} has unusable raster:bands scale {scale} / offset {offset}")
    if props.get("earthsearch:boa_offset_applied") is True:
        offset = 0.0  # the provider already shifted the pixel values
    return scale, offset


def resolve_assets(item: dict[str, Any], sensor: Sensor, dialect: Dialect | str | None = None) -> dict[str, ResolvedAsset]:
    """Every canonical band of ``sensor`` in ``item`` (in canonical order); :class:`ItemError` names what is missing."""
    dialect = dialect_named(dialect)
    item_id = item.get("id")
    assets = item.get("assets")
    if not isinstance(assets, dict):
        raise ItemError(f"item {item_id}: no assets object")
    usable = {k: a for k, a in assets.items()
              if isinstance(a, dict) and a.get("href")
              and (not isinstance(a.get("roles"), list) or "data" in a["roles"] or k in sum(dialect.keys.values(), ()))}
    out: dict[str, ResolvedAsset] = {}
    missing = []
    for band in _canonical(sensor):
        found = sorted((k for k, a in usable.items() if _means(band, k, a, dialect)),
                       key=lambda k: (_is_jp2(usable[k]), _resolution(k, usable[k]), k))
        if not found:
            missing.append(band)
            continue
        key = found[0]
        rb = raster_band(usable[key])
        scale, offset = scale_offset(item, band, rb)
        out[band] = ResolvedAsset(band, key, str(usable[key]["href"]), scale, offset,
                                  str(rb["data_type"]) if isinstance(rb.get("data_type"), str) else None,
                                  _nodata(rb.get("nodata")))
    if missing:
        have = ", ".join(sorted(assets)) or "none"
        raise ItemError(f"item {item_id}: missing asset(s) {', '.join(missing)}: no asset among ({have}) holds them "
                        f"by eo:bands name, common name or the {dialect.name} asset keys")
    return out


def s1_calibration(collection: str, dialect: Dialect | str | None = None) -> str:
    """gamma0 or sigma0 for a calibrated S1 collection; :class:`ItemError` for an uncalibrated or unknown one."""
    dialect = dialect_named(dialect)
    kind = dialect.s1_radiometry.get(collection)
    if kind in CALIBRATED:
        return kind
    if kind == UNCALIBRATED:
        raise ItemError(f"S1 collection {collection!r} of {dialect.name} is uncalibrated GRD (digital numbers, not "
                        "backscatter): use a calibrated collection (e.g. sentinel-1-rtc) or declare the calibration "
                        "step in [[ingest.sources]] calibration")
    raise ItemError(f"S1 collection {collection!r}: calibration unknown to the {dialect.name} dialect "
                    f"(known: {', '.join(sorted(dialect.s1_radiometry)) or 'none'}); not ingested as backscatter")


def check_collections(dialect: Dialect | str | None, collections: Iterable[str], where: str = "source") -> None:
    """At configuration time: a watched S1 collection known to be uncalibrated GRD is refused (:class:`ConfigError`).

    A collection of unknown calibration passes here; each of its items is quarantined with the reason.
    """
    dialect = dialect_named(dialect)
    for collection in collections:
        if sensor_of_collection(collection) is Sensor.S1 and dialect.s1_radiometry.get(collection) == UNCALIBRATED:
            try:
                s1_calibration(collection, dialect)
            except ItemError as e:
                raise ConfigError(f"{where}: {e}") from None
