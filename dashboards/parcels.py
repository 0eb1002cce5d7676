"""The parcel layer and the traffic lights, read from disk and re-read when the files change.

Geometries are kept in WGS84 (what the map and the GeoJSON answers use) with an STRtree for bbox
and point queries; the tile of each parcel decides who may see it.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dashboards.errors import NotFoundError, UnavailableError

logger = logging.getLogger(__name__)

LIGHTS = ("green", "orange", "red", "not_analysable")


def _stamp(path: Path | None) -> tuple[int, int] | None:
    try:
        st = path.stat() if path is not None else None
    except OSError:
        return None
    return None if st is None else (st.st_mtime_ns, st.st_size)


@dataclass(frozen=True, slots=True)
class ParcelLayer:
    frame: Any  # GeoDataFrame in EPSG:4326, index = parcel_id
    tree: Any  # shapely STRtree over frame.geometry
    ids: np.ndarray


class Parcels:
    """Parcels (``parcel_id, tile_id, land_use, geometry``) and their lights, cached by file stamp."""

    def __init__(self, parcels_path: Path | None, lights_path: Path) -> None:
        self.parcels_path = parcels_path
        self.lights_path = lights_path
        self._lock = threading.Lock()
        self._layer: ParcelLayer | None = None
        self._layer_stamp: tuple | None = None
        self._lights: pd.DataFrame | None = None
        self._lights_stamp: tuple | None = None
        self._by_campaign: dict[object, pd.DataFrame] = {}  # per campaign asked (or "latest"), one row per parcel
        self._tile_ids: dict[str, tuple[ParcelLayer, list[str]]] = {}

    # -- loading ----------------------------------------------------------------------------------

    def layer(self) -> ParcelLayer:
        stamp = _stamp(self.parcels_path)
        if stamp is None:
            raise UnavailableError(f"no parcel layer at {self.parcels_path} (set [ingest] parcels)")
        with self._lock:
            if self._layer is None or stamp != self._layer_stamp:
                self._layer = self._load(self.parcels_path)
                self._layer_stamp = stamp
            return self._layer

    @staticmethod
    def _load(path: Path) -> ParcelLayer:
        import geopandas as gpd
        import shapely

        gdf = gpd.read_parquet(path) if path.suffix.lower() in (".parquet", ".geoparquet") else gpd.read_file(path)
        if gdf.crs is None:
            raise UnavailableError(f"parcel layer {path} has no CRS")
        gdf = gdf.to_crs(4326)
        gdf["parcel_id"] = gdf["parcel_id"].astype(str)
        if "tile_id" not in gdf.columns:
            gdf["tile_id"] = ""
        if "land_use" not in gdf.columns:
            gdf["land_use"] = ""
        gdf = gdf[~gdf.geometry.isna() & ~gdf.geometry.is_empty].drop_duplicates("parcel_id")
        gdf = gdf.set_index("parcel_id", drop=False)
        return ParcelLayer(gdf, shapely.STRtree(gdf.geometry.values), gdf["parcel_id"].to_numpy())

    def lights(self, campaign: int | None = None) -> pd.DataFrame:
        """``parcel_id → light, reasons, reason_codes, campaign`` of ``campaign`` (None: each parcel's
        latest campaign); empty when no lights were written. The file holds one row per (parcel, campaign)."""
        stamp = _stamp(self.lights_path)
        with self._lock:
            if stamp is None:
                return pd.DataFrame(columns=["light", "reasons", "reason_codes", "campaign"])
            if self._lights is None or stamp != self._lights_stamp:
                df = pd.read_csv(self.lights_path, dtype={"parcel_id": str}, keep_default_na=False)
                for col in ("reasons", "reason_codes", "campaign", "markers", "land_use"):
                    if col not in df.columns:
                        df[col] = ""
                df["_campaign"] = pd.to_numeric(df["campaign"], errors="coerce")
                # a parcel's latest campaign last (file order within one campaign, as before)
                self._lights = df.sort_values("_campaign", kind="stable", na_position="first")
                self._by_campaign = {}
                self._lights_stamp = stamp
            table = self._lights
            if campaign is None:
                key = "latest"
            else:
                key = int(campaign)
                table = table[table["_campaign"] == key]
            hit = self._by_campaign.get(key)
            if hit is None:
                hit = table.drop_duplicates("parcel_id", keep="last").set_index("parcel_id").drop(columns="_campaign")
                self._by_campaign[key] = hit
            return hit

    def campaigns(self) -> list[int]:
        """The campaigns the lights file holds, ascending."""
        self.lights()
        with self._lock:
            if self._lights is None:
                return []
            return sorted(int(c) for c in self._lights["_campaign"].dropna().unique())

    # -- queries ----------------------------------------------------------------------------------

    def tile_of(self, parcel_id: str) -> str:
        frame = self.layer().frame
        if parcel_id not in frame.index:
            raise NotFoundError(f"no parcel {parcel_id!r}")
        return str(frame.at[parcel_id, "tile_id"])

    def ids_in(self, region) -> set[str]:
        """The parcels intersecting a region polygon (WGS84 shapely geometry)."""
        layer = self.layer()
        return set(layer.ids[layer.tree.query(region, predicate="intersects")].tolist())

    def tiles_in(self, region) -> set[str]:
        """The tiles of the parcels intersecting a region polygon (what an operator of it runs)."""
        layer = self.layer()
        hits = layer.tree.query(region, predicate="intersects")
        return set(layer.frame["tile_id"].iloc[hits].astype(str).tolist())

    def ids_on_tile(self, tile_id: str) -> list[str]:
        """The tile's parcel ids, cached per layer version (a scan of a million-parcel layer costs
        ~100 ms, and every series request asks)."""
        layer = self.layer()
        with self._lock:
            hit = self._tile_ids.get(tile_id)
            if hit is not None and hit[0] is layer:
                return hit[1]
        ids = layer.frame.index[layer.frame["tile_id"] == tile_id].tolist()
        with self._lock:
            self._tile_ids[tile_id] = (layer, ids)
        return ids

    def tiles(self) -> dict[str, dict[str, Any]]:
        """Per tile: parcel count and WGS84 bounds of its parcels."""
        frame = self.layer().frame
        out: dict[str, dict[str, Any]] = {}
        for tile, g in frame.groupby("tile_id"):
            b = g.total_bounds
            out[str(tile)] = {"parcels": len(g), "bbox": [round(float(v), 6) for v in b]}
        return out

    def select(self, *, tiles: set[str] | None, bbox: tuple[float, float, float, float] | None = None,
               point: tuple[float, float] | None = None, light: str | None = None,
               land_use: str | None = None, polygon: Any = None, region: Any = None,
               campaign: int | None = None) -> pd.DataFrame:
        """Parcels (as rows of the layer) visible for ``tiles`` (None: all) and intersecting the user's
        ``region`` polygon (None: no polygon), filtered, sorted by id."""
        import shapely

        layer = self.layer()
        frame = layer.frame
        if region is not None:
            frame = frame.iloc[np.sort(layer.tree.query(region, predicate="intersects"))]
        if bbox is not None:
            idx = layer.tree.query(shapely.box(*bbox), predicate="intersects")
            frame = frame.iloc[np.sort(idx)]
        if point is not None:
            idx = layer.tree.query(shapely.Point(*point), predicate="intersects")
            frame = frame.iloc[np.sort(idx)]
        if polygon is not None:
            idx = layer.tree.query(polygon, predicate="intersects")
            frame = layer.frame.iloc[np.sort(idx)].loc[lambda f: f.index.isin(frame.index)]
        if tiles is not None:
            frame = frame[frame["tile_id"].isin(tiles)]
        if land_use:
            frame = frame[frame["land_use"].astype(str) == land_use]
        if light:
            lights = self.lights(campaign)
            frame = frame[frame["parcel_id"].map(lights["light"]).fillna("") == light] if len(lights) else frame.iloc[:0]
        return frame.sort_index()

    def feature(self, row: Any, lights: pd.DataFrame) -> dict[str, Any]:
        import shapely

        pid = str(row["parcel_id"])
        props: dict[str, Any] = {"parcel_id": pid, "tile_id": str(row["tile_id"]), "land_use": str(row["land_use"])}
        for col in ("declared_practice", "area_ha"):
            if col in row.index:
                v = row[col]
                props[col] = None if v is None or (isinstance(v, float) and math.isnan(v)) else (
                    float(v) if isinstance(v, (int, float, np.number)) else str(v))
        if pid in lights.index:
            lrow = lights.loc[pid]
            props["light"] = str(lrow["light"])
            props["reasons"] = str(lrow["reasons"])
            props["reason_codes"] = str(lrow["reason_codes"])
            props["campaign"] = str(lrow["campaign"])
        else:
            props["light"] = None
        c = row.geometry.centroid
        props["centroid"] = [round(c.x, 6), round(c.y, 6)]
        return {"type": "Feature", "id": pid, "properties": props,
                "geometry": json.loads(shapely.to_geojson(shapely.set_precision(row.geometry, 1e-7)))}

    def centroid(self, parcel_id: str) -> tuple[float, float] | None:
        try:
            frame = self.layer().frame
        except UnavailableError:
            return None
        if parcel_id not in frame.index:
            return None
        c = frame.at[parcel_id, "geometry"].centroid
        return (round(c.x, 6), round(c.y, 6))

    def geometry(self, parcel_id: str):
        frame = self.layer().frame
        if parcel_id not in frame.index:
            raise NotFoundError(f"no parcel {parcel_id!r}")
        return frame.at[parcel_id, "geometry"]

    def peers(self, parcel_id: str, limit: int, region: Any = None) -> pd.DataFrame:
        """Parcels of the same declared use on the same tile (and in ``region``), nearest first."""
        frame = self.layer().frame
        if parcel_id not in frame.index:
            raise NotFoundError(f"no parcel {parcel_id!r}")
        me = frame.loc[parcel_id]
        same = frame[(frame["land_use"] == me["land_use"]) & (frame["tile_id"] == me["tile_id"])
                     & (frame["parcel_id"] != parcel_id)]
        if region is not None:
            same = same[same["parcel_id"].isin(self.ids_in(region))]
        import shapely

        # degrees are fine for ranking neighbours on one tile (no distance is reported)
        d = shapely.distance(shapely.centroid(same.geometry.values), shapely.centroid(me.geometry))
        return same.assign(_d=d).sort_values("_d").head(limit)
