"""Parcels as GeoJSON (by bbox, point, id), a parcel's series, chips, acquisition dates and peers.

Parcel ids are free text (``#``, ``/`` and spaces occur in real layers), so the id is a ``path``
parameter: ``/api/parcels/A%2FB%20C/series`` reaches parcel ``A/B C``. Routes with a suffix are
registered before the bare ``/{parcel_id}`` route so the suffix is never read as part of an id.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response

from alerts.store import AlertQuery
from dashboards.deps import ServicesDep, access, campaign_days, visible_tiles
from dashboards.schemas import (
    Campaign,
    Page,
    PageSize,
    ParcelSearchIn,
    TileId,
    alert_public,
    check_id,
    parse_bbox,
)
from dashboards.security import READ, User
from dashboards.series import ALL_CAMPAIGNS

router = APIRouter(prefix="/api/parcels", tags=["parcels"])

ParcelId = Annotated[str, "parcel id (URL-encoded)"]


def _id(parcel_id: str) -> str:
    try:
        return check_id(parcel_id, "parcel")
    except ValueError as e:
        raise HTTPException(422, str(e)) from e


def _collection(services, frame, page: int, page_size: int) -> dict:
    lights = services.parcels.lights()
    total = len(frame)
    rows = frame.iloc[(page - 1) * page_size: page * page_size]
    return {"type": "FeatureCollection", "count": total, "page": page, "page_size": page_size,
            "features": [services.parcels.feature(r, lights) for _, r in rows.iterrows()]}


@router.get("")
def list_parcels(
    services: ServicesDep,
    bbox: Annotated[str | None, Query(max_length=200, description="minlon,minlat,maxlon,maxlat (WGS84)")] = None,
    tile_id: TileId = None,
    light: Annotated[Literal["green", "orange", "red", "not_analysable"] | None, Query()] = None,
    land_use: Annotated[str | None, Query(max_length=100)] = None,
    page: Page = 1,
    page_size: PageSize = 100,
    user: User = access(READ, "filtered"),
) -> dict:
    try:
        box = parse_bbox(bbox) if bbox is not None else None
    except ValueError as e:
        raise HTTPException(422, str(e)) from e
    frame = services.parcels.select(tiles=visible_tiles(user, tile_id), bbox=box, light=light, land_use=land_use,
                                    region=user.region)
    return _collection(services, frame, page, page_size)


@router.get("/at")
def parcels_at(
    services: ServicesDep,
    lon: Annotated[float, Query(ge=-180, le=180)],
    lat: Annotated[float, Query(ge=-90, le=90)],
    user: User = access(READ, "filtered"),
) -> dict:
    frame = services.parcels.select(tiles=visible_tiles(user), point=(lon, lat), region=user.region)
    return _collection(services, frame, 1, 100)


@router.post("/search")
def search_parcels(
    body: ParcelSearchIn, services: ServicesDep, page: Page = 1, page_size: PageSize = 100,
    user: User = access(READ, "filtered"),
) -> dict:
    """Parcels intersecting a GeoJSON polygon (WGS84), paged."""
    try:
        polygon = body.geometry.to_shape()
    except ValueError as e:
        raise HTTPException(422, str(e)) from e
    frame = services.parcels.select(tiles=visible_tiles(user), polygon=polygon, light=body.light, region=user.region)
    return _collection(services, frame, page, page_size)


@router.get("/{parcel_id:path}/series", response_class=Response,
            responses={200: {"content": {"application/json": {}}, "description": "the parcel's series"}})
def parcel_series(
    parcel_id: ParcelId, services: ServicesDep,
    fill: Annotated[bool, Query(description="gap-filled NDVI ± std at cloudy views")] = True,
    expected: Annotated[bool, Query(description="the encoder's expected NDVI ± std")] = True,
    campaign: Annotated[int | None, Query(ge=1900, le=2200, description="the campaign whose series (made "
                                          "with that campaign's outline) to show; default: the latest")] = None,
    all_campaigns: Annotated[bool, Query(description="every campaign's rows (the whole history), each row "
                                         "tagged with its campaign; overrides campaign")] = False,
    user: User = access(READ, "parcel"),
) -> Response:
    """S2 bands and NDVI, S1 VV/VH (dB), gap-filled values, the encoder's expectation, the alerts; of one
    campaign (``campaign`` in the answer, ``campaigns`` the parcel's others, ``campaign_window`` its first
    and last day; the alerts those whose event date lies in it), or of all of them."""
    pid = _id(parcel_id)
    tile = services.parcels.tile_of(pid)
    out = dict(services.series.series(tile, pid, services.parcels.ids_on_tile(tile), fill=fill, expected=expected,
                                      campaign=ALL_CAMPAIGNS if all_campaigns else campaign))
    window = None
    if out["campaign"] != ALL_CAMPAIGNS:  # another campaign's alerts belong to another outline's series
        window = campaign_days(services, out["campaign"])
        out["campaign_window"] = [window[0].isoformat(), window[1].isoformat()]
    alerts = services.alerts.query(AlertQuery(parcel_id=pid, limit=1000, date_from=window[0] if window else None,
                                              date_to=window[1] if window else None))
    centroid = services.parcels.centroid(pid)
    out["alerts"] = [alert_public(a, centroid).model_dump(mode="json") for a in alerts]
    # plain floats, strings and None only: serialised directly (jsonable_encoder costs ~40 ms here;
    # orjson 0.3 ms where json.dumps took 1.8 ms of a five-year series)
    return Response(orjson.dumps(out), media_type="application/json")


@router.get("/{parcel_id:path}/dates")
def parcel_dates(parcel_id: ParcelId, services: ServicesDep, user: User = access(READ, "parcel")) -> dict:
    """Acquisition dates of the parcel's tile (the calendar of chips)."""
    pid = _id(parcel_id)
    tile = services.parcels.tile_of(pid)
    return {"parcel_id": pid, "tile_id": tile,
            "S2": services.chips.dates(tile, "S2"), "S1": services.chips.dates(tile, "S1"),
            "acquisitions": {"S2": services.chips.acquisitions(tile, "S2"),
                             "S1": services.chips.acquisitions(tile, "S1")}}


@router.get(
    "/{parcel_id:path}/chips/{kind}",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "PNG chip"}},
)
def parcel_chip(
    parcel_id: ParcelId,
    kind: Literal["true_color", "ndvi", "vv"],
    services: ServicesDep,
    day: Annotated[date, Query(alias="date", description="acquisition day (YYYY-MM-DD, UTC)")],
    user: User = access(READ, "parcel"),
) -> Response:
    pid = _id(parcel_id)
    tile = services.parcels.tile_of(pid)
    png = services.chips.render(tile, services.parcels.geometry(pid), day, kind)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=300"})


@router.get("/{parcel_id:path}/peers")
def parcel_peers(
    parcel_id: ParcelId, services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=50)] = 10, user: User = access(READ, "parcel"),
) -> dict:
    """Parcels of the same declared use on the same tile, nearest first."""
    pid = _id(parcel_id)
    peers = services.parcels.peers(pid, limit, region=user.region)
    lights = services.parcels.lights()
    return {"type": "FeatureCollection", "count": len(peers),
            "features": [services.parcels.feature(r, lights) for _, r in peers.iterrows()]}


@router.get("/{parcel_id:path}")
def get_parcel(parcel_id: ParcelId, services: ServicesDep, campaign: Campaign = None,
               user: User = access(READ, "parcel")) -> dict:
    """The parcel with its light of ``campaign`` (default: its latest; none that campaign: ``light`` null)."""
    pid = _id(parcel_id)
    frame = services.parcels.layer().frame
    return services.parcels.feature(frame.loc[pid], services.parcels.lights(campaign))
