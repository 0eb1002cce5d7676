"""The synthetic archive republished as a real catalogue publishes it (``sitsmon synth --dialect``).

The same scenes, so that ingest must give the same cubes whatever the catalogue; what changes is what
real catalogues do differently:

- ``earth-search`` (Element 84 v1): asset keys ``blue`` … ``swir22``, ``scl``; ``eo:bands`` and
  ``raster:bands`` (scale 0.0001, offset -0.1) while the pixels already have the -1000 DN offset applied
  (``earthsearch:boa_offset_applied: true``); ``proj:epsg``; hrefs ``sentinel-s2-l2a-cogs/33/U/XP/2024/5/<id>/``.
  S1 only as ``sentinel-1-grd`` (uncalibrated GRD: refused by ingest).
- ``planetary-computer``: keys ``B02`` … ``SCL``, ``eo:bands`` without ``raster:bands`` (the offset
  follows from ``s2:processing_baseline``), ``proj:epsg``, SAFE-style ids and hrefs; S1 as the
  calibrated ``sentinel-1-rtc`` (gamma0, linear power).
- ``cdse`` (Copernicus Data Space STAC 1.1): per-resolution keys ``B02_10m``, ``B02_20m`` …
  ``SCL_20m``, STAC 1.1 ``bands`` with ``eo:common_name`` and ``raster:scale``/``raster:offset``,
  ``proj:code`` only, JPEG 2000 (lossless) inside a SAFE-style folder; S1 as ``sentinel-1-grd``
  (uncalibrated: refused).

Planetary Computer ``sentinel-1-rtc`` items carry no MGRS tile, as the real ones: ingest places them
on the configured tile grids by their footprint (``ingest.grid.tiles_of_footprint``). Two deliberate
departures from the real catalogues, because the synthetic scenes exist only on their tile grid: the
S1 RTC ids still name their tile (one synthetic scene per tile), and the S1 files of the GRD
collections hold the calibrated values (ingest refuses them by what the catalogue declares, never
reads them).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil

from ingest.synth.cog import write_cog
from ingest.synth.phenology import BANDS, BANDS_10M, COMMON_NAME, WAVELENGTH_UM
from ingest.synth.stac import S1_COLLECTION, S2_COLLECTION

__all__ = ["DIALECTS", "republish", "s3_hrefs"]

DIALECTS = ("synthetic", "earth-search", "planetary-computer", "cdse")
EARTH_SEARCH_KEYS = {"B02": "blue", "B03": "green", "B04": "red", "B05": "rededge1", "B06": "rededge2",
                     "B07": "rededge3", "B08": "nir", "B8A": "nir08", "B11": "swir16", "B12": "swir22", "SCL": "scl"}
S1_COLLECTIONS = {"earth-search": "sentinel-1-grd", "planetary-computer": "sentinel-1-rtc", "cdse": "sentinel-1-grd"}
JP2_TYPE = "image/jp2"
#: 10 m bands CDSE also publishes resampled to 20 m (R20m folder of the SAFE).
CDSE_EXTRA_20M = ("B02", "B03", "B04")
BOA_ADD_OFFSET_DN = 1000
#: The MGRS tile fields; real Planetary Computer ``sentinel-1-rtc`` items carry none of them.
TILE_PROPERTIES = ("grid:code", "s2:mgrs_tile", "mgrs:utm_zone", "mgrs:latitude_band", "mgrs:grid_square")


def republish(root: Path, dialect: str) -> None:
    """Rewrite the archive at ``root`` (written by the generator) in ``dialect``; ``synthetic`` changes nothing."""
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}: expected one of {', '.join(DIALECTS)}")
    if dialect == "synthetic":
        return
    manifest = json.loads((root / "archive.json").read_text())
    s1_cid = S1_COLLECTIONS[dialect]
    s2_items = _read_items(root, S2_COLLECTION)
    s1_items = _read_items(root, S1_COLLECTION)
    new_s2 = [_S2_WRITERS[dialect](root, it) for it in s2_items]
    new_s1 = [_s1_item(root, it, dialect, s1_cid) for it in s1_items]
    shutil.rmtree(root / "data" / S2_COLLECTION)
    shutil.rmtree(root / "data" / S1_COLLECTION)
    for old, new, items in ((S2_COLLECTION, S2_COLLECTION, new_s2), (S1_COLLECTION, s1_cid, new_s1)):
        coll = json.loads((root / "collections" / f"{old}.json").read_text())
        coll["id"] = coll["title"] = new
        coll["description"] += f" Republished in the {dialect} dialect."
        (root / "collections" / f"{old}.json").unlink()
        (root / "items" / f"{old}.ndjson").unlink()
        (root / "collections" / f"{new}.json").write_text(json.dumps(coll, indent=2))
        with open(root / "items" / f"{new}.ndjson", "w") as fh:
            for it in items:
                fh.write(json.dumps(it, separators=(",", ":")) + "\n")
    manifest["dialect"] = dialect
    manifest["collections"] = [S2_COLLECTION, s1_cid]
    counts = manifest["counts"]
    counts[s1_cid] = counts.pop(S1_COLLECTION)
    (root / "archive.json").write_text(json.dumps(manifest, indent=2))


def s3_hrefs(root: Path, bucket: str = "eodata", collection: str = S2_COLLECTION) -> dict[str, Path]:
    """Point the ``cdse`` archive's ``collection`` items at ``s3://<bucket>/Sentinel-2/...``, as the real
    CDSE items do (its files stay where they are); returns object key -> local file, for the caller to upload."""
    manifest = json.loads((root / "archive.json").read_text())
    if manifest.get("dialect") != "cdse":
        raise ValueError(f"{root}: s3 hrefs are the cdse layout, this archive is {manifest.get('dialect')!r}")
    items, uploads = _read_items(root, collection), {}
    for item in items:
        for asset in item["assets"].values():
            key = asset["href"].removeprefix("data/")
            uploads[key] = root / asset["href"]
            asset["href"] = f"s3://{bucket}/{key}"
    with open(root / "items" / f"{collection}.ndjson", "w") as fh:
        for it in items:
            fh.write(json.dumps(it, separators=(",", ":")) + "\n")
    return uploads


def _read_items(root: Path, cid: str) -> list[dict[str, Any]]:
    with open(root / "items" / f"{cid}.ndjson") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _move(root: Path, href: str, new_href: str) -> str:
    target = root / "data" / new_href
    target.parent.mkdir(parents=True, exist_ok=True)
    (root / href).rename(target)
    return f"data/{new_href}"


def _safe_name(item: dict[str, Any]) -> tuple[str, str, str]:
    """(product id as ESA names it, datatake time, tile) of a synthetic S2 item."""
    p = item["properties"]
    tile = p["s2:mgrs_tile"]
    when = p["datetime"].replace("-", "").replace(":", "").rstrip("Z")  # 20240505T100031
    made = p["created"].replace("-", "").replace(":", "").rstrip("Z")
    unit = p["platform"][-1].upper()
    baseline = p["s2:processing_baseline"].replace(".", "")
    return f"S2{unit}_MSIL2A_{when}_N{baseline}_R{p['sat:relative_orbit']:03d}_T{tile}_{made}", when, tile


def _tile_path(tile: str) -> str:
    return f"{int(tile[:2])}/{tile[2]}/{tile[3:]}"


# ---------------------------------------------------------------------------------------- Sentinel-2


def _earth_search_s2(root: Path, item: dict[str, Any]) -> dict[str, Any]:
    props = dict(item["properties"])
    props.pop("proj:code")
    props["earthsearch:boa_offset_applied"] = True
    tile = props["s2:mgrs_tile"]
    folder = f"sentinel-s2-l2a-cogs/{_tile_path(tile)}/{props['datetime'][:4]}/{int(props['datetime'][5:7])}/{item['id']}"
    assets = {}
    for band, asset in item["assets"].items():
        key = EARTH_SEARCH_KEYS[band]
        asset = dict(asset)
        new_href = f"data/{folder}/{band}.tif"
        if band == "SCL":
            _move(root, asset["href"], f"{folder}/{band}.tif")
        else:  # the provider subtracted BOA_ADD_OFFSET from the pixels; raster:bands still says -0.1
            _harmonise(root / asset["href"], root / new_href)
            (root / asset["href"]).unlink()
            asset["eo:bands"] = [{"name": key, "common_name": COMMON_NAME[band],
                                  "center_wavelength": WAVELENGTH_UM[band]}]
        asset["href"] = new_href
        assets[key] = asset
    return {**item, "properties": props, "assets": assets}


def _harmonise(src: Path, dst: Path) -> None:
    """DN - 1000 (at least 1 where there is data; 0 stays no data), same COG profile."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(src) as ds:
        dn = ds.read(1)
        profile = ds.profile
    out = np.where(dn > 0, np.maximum(dn.astype(np.int32) - BOA_ADD_OFFSET_DN, 1), 0).astype(dn.dtype)
    write_cog(dst, out, tuple(profile["transform"])[:6], profile["crs"].to_epsg(), 0, profile.get("blockxsize", 256))


def _planetary_computer_s2(root: Path, item: dict[str, Any]) -> dict[str, Any]:
    props = dict(item["properties"])
    for name in ("proj:code", "grid:code", "mgrs:utm_zone", "mgrs:latitude_band", "mgrs:grid_square"):
        props.pop(name)
    safe, when, tile = _safe_name(item)
    pc_id = safe.replace(f"_N{props['s2:processing_baseline'].replace('.', '')}", "")
    granule = f"sentinel2-l2/{_tile_path(tile)}/{when[:4]}/{when[4:6]}/{when[6:8]}/{safe}.SAFE/GRANULE/L2A_T{tile}_{when}"
    assets = {}
    for band, asset in item["assets"].items():
        asset = {k: v for k, v in asset.items() if k != "raster:bands"}  # PC publishes no scale/offset
        res = 10 if band in BANDS_10M else 20
        asset["href"] = _move(root, asset["href"], f"{granule}/IMG_DATA/R{res}m/T{tile}_{when}_{band}_{res}m.tif")
        assets[band] = asset
    return {**item, "id": pc_id, "properties": props, "assets": assets}


def _cdse_s2(root: Path, item: dict[str, Any]) -> dict[str, Any]:
    props = dict(item["properties"])
    props.pop("proj:epsg")
    safe, when, tile = _safe_name(item)
    granule = f"Sentinel-2/MSI/L2A/{when[:4]}/{when[4:6]}/{when[6:8]}/{safe}.SAFE/GRANULE/L2A_T{tile}_{when}"
    assets = {}
    for band, asset in item["assets"].items():
        res = 10 if band in BANDS_10M else 20
        versions = [res] + ([20] if band in CDSE_EXTRA_20M else [])
        for out_res in versions:
            href = f"data/{granule}/IMG_DATA/R{out_res}m/T{tile}_{when}_{band}_{out_res}m.jp2"
            _to_jp2(root / asset["href"], root / href, out_res // res)
            new = {k: v for k, v in asset.items() if k not in ("raster:bands", "eo:bands", "proj:shape", "proj:transform")}
            rb = asset["raster:bands"][0]
            new.update({"href": href, "type": JP2_TYPE, "gsd": out_res, "data_type": rb["data_type"], "nodata": rb["nodata"]})
            with rasterio.open(root / href) as ds:
                new["proj:shape"] = [ds.height, ds.width]
                new["proj:transform"] = list(ds.transform)[:6]
            if band in BANDS:
                new["bands"] = [{"name": band, "eo:common_name": COMMON_NAME[band],
                                 "eo:center_wavelength": WAVELENGTH_UM[band]}]
                new["raster:scale"] = rb["scale"]
                new["raster:offset"] = rb["offset"]
            assets[f"{band}_{out_res}m"] = new
        (root / asset["href"]).unlink()
    return {**item, "stac_version": "1.1.0", "id": safe, "properties": props, "assets": assets}


def _to_jp2(src: Path, dst: Path, factor: int) -> None:
    """Lossless JPEG 2000 of a COG (its overview ``factor`` when > 1: the R20m copy of a 10 m band)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if factor == 1:
        rasterio.shutil.copy(src, dst, driver="JP2OpenJPEG", REVERSIBLE="YES", QUALITY="100", RESOLUTIONS="1")
        return
    with rasterio.open(src, overview_level=int(np.log2(factor)) - 1) as ds:
        rasterio.shutil.copy(ds, dst, driver="JP2OpenJPEG", REVERSIBLE="YES", QUALITY="100", RESOLUTIONS="1")


_S2_WRITERS = {"earth-search": _earth_search_s2, "planetary-computer": _planetary_computer_s2, "cdse": _cdse_s2}


# ---------------------------------------------------------------------------------------- Sentinel-1


def _s1_item(root: Path, item: dict[str, Any], dialect: str, cid: str) -> dict[str, Any]:
    props = dict(item["properties"])
    when = props["datetime"].replace("-", "").replace(":", "").rstrip("Z")
    tile = props["grid:code"][5:]
    if dialect == "planetary-computer":
        props.pop("proj:code")
        for name in TILE_PROPERTIES:  # as the real sentinel-1-rtc items: ingest places them by footprint
            props.pop(name, None)
        item_id = f"S1A_IW_GRDH_1SDV_{when}_{tile}_{props['sat:orbit_state'][0].upper()}{props['sat:relative_orbit']:03d}_rtc"
        folder = f"sentinel1-grd-rtc/GRD/{when[:4]}/{int(when[4:6])}/{int(when[6:8])}/IW/DV/{item_id}/measurement"
        names = {"vv": "iw-vv.rtc.tiff", "vh": "iw-vh.rtc.tiff"}
        props["sar:product_type"] = "GRD"
        props["s1:processing_level"] = "RTC"
    else:
        if dialect == "cdse":
            props.pop("proj:epsg")
        item_id = item["id"]
        folder = f"{dialect}-s1/{when[:4]}/{when[4:6]}/{when[6:8]}/{item_id}/measurement"
        names = {"vv": "iw-vv.tiff", "vh": "iw-vh.tiff"}
    assets = {}
    for pol, asset in item["assets"].items():
        asset = dict(asset, href=_move(root, asset["href"], f"{folder}/{names[pol]}"))
        key = pol.upper() if dialect == "cdse" else pol
        assets[key] = asset
    return {**item, "id": item_id, "collection": cid, "properties": props, "assets": assets}
