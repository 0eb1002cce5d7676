"""Traffic lights per parcel (from ``traffic-lights.csv``), listed or exported as CSV / GeoJSON."""

from __future__ import annotations

import io
import json
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response

from dashboards.deps import ServicesDep, access, visible_tiles
from dashboards.schemas import Campaign, Page, PageSize, TileId
from dashboards.security import READ, User

router = APIRouter(prefix="/api/lights", tags=["traffic lights"])

LightName = Literal["green", "orange", "red", "not_analysable"]
EXPORT_MAX = 200_000


def _rows(services, user: User, tile_id: str | None, light: str | None, campaign: int | None = None):
    frame = services.parcels.select(tiles=visible_tiles(user, tile_id), light=light, region=user.region,
                                    campaign=campaign)
    lights = services.parcels.lights(campaign)
    return frame[frame["parcel_id"].isin(lights.index)], lights


def _record(row, lights) -> dict:
    lrow = lights.loc[row["parcel_id"]]
    return {"parcel_id": str(row["parcel_id"]), "tile_id": str(row["tile_id"]), "land_use": str(row["land_use"]),
            "campaign": str(lrow["campaign"]), "light": str(lrow["light"]), "reasons": str(lrow["reasons"]),
            "reason_codes": str(lrow["reason_codes"])}


@router.get("")
def list_lights(
    services: ServicesDep, tile_id: TileId = None, light: Annotated[LightName | None, Query()] = None,
    campaign: Campaign = None, page: Page = 1, page_size: PageSize = 100, user: User = access(READ, "filtered"),
) -> dict:
    """The lights of one campaign (``campaign`` in the answer; default each parcel's latest, ``campaigns``
    lists those the file holds)."""
    frame, lights = _rows(services, user, tile_id, light, campaign)
    rows = frame.iloc[(page - 1) * page_size: page * page_size]
    counts = lights.loc[frame["parcel_id"], "light"].value_counts().to_dict() if len(frame) else {}
    return {"count": len(frame), "page": page, "page_size": page_size, "by_light": counts,
            "campaign": campaign if campaign is not None else "latest", "campaigns": services.parcels.campaigns(),
            "data": [_record(r, lights) for _, r in rows.iterrows()]}


def _crs(epsg: int | None):
    if epsg is None:
        return None
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        return CRS.from_epsg(epsg)
    except CRSError as e:
        raise HTTPException(422, f"unknown EPSG code {epsg}") from e


@router.get("/export", response_class=Response,
            responses={200: {"content": {"text/csv": {}, "application/geo+json": {},
                                         "application/geopackage+sqlite3": {}}}})
def export_lights(
    services: ServicesDep, format: Annotated[Literal["csv", "geojson", "gpkg"], Query()] = "csv",
    tile_id: TileId = None, light: Annotated[LightName | None, Query()] = None, campaign: Campaign = None,
    epsg: Annotated[int | None, Query(ge=1024, le=999999, description="output CRS for gpkg (default WGS84), "
                                      "e.g. 5514 (S-JTSK) or 2154 (Lambert-93)")] = None,
    user: User = access(READ, "filtered"),
) -> Response:
    """The filtered view for QGIS users: CSV (no geometry), GeoJSON (WGS84, as RFC 7946 wants) or
    GeoPackage (WGS84 or the national projection given by ``epsg``)."""
    crs = _crs(epsg)
    frame, lights = _rows(services, user, tile_id, light, campaign)
    frame = frame.head(EXPORT_MAX)
    if format == "gpkg":
        import tempfile
        from pathlib import Path

        import geopandas as gpd

        records = [_record(r, lights) for _, r in frame.iterrows()]
        gdf = gpd.GeoDataFrame(records, geometry=list(frame.geometry.values), crs=4326)
        if crs is not None:
            gdf = gdf.to_crs(crs)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "traffic-lights.gpkg"
            gdf.to_file(out, layer="traffic_lights", driver="GPKG")
            body = out.read_bytes()
        return Response(body, media_type="application/geopackage+sqlite3",
                        headers={"Content-Disposition": 'attachment; filename="traffic-lights.gpkg"'})
    if format == "csv":
        import csv

        buf = io.StringIO()
        cols = ["parcel_id", "tile_id", "land_use", "campaign", "light", "reasons", "reason_codes"]
        w = csv.DictWriter(buf, fieldnames=cols)
        w.writeheader()
        for _, r in frame.iterrows():
            w.writerow(_record(r, lights))
        return Response(buf.getvalue(), media_type="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="traffic-lights.csv"'})
    features = []
    for _, r in frame.iterrows():
        f = services.parcels.feature(r, lights)
        f["properties"] = {**_record(r, lights)}
        features.append(f)
    body = json.dumps({"type": "FeatureCollection", "features": features})
    return Response(body, media_type="application/geo+json",
                    headers={"Content-Disposition": 'attachment; filename="traffic-lights.geojson"'})
