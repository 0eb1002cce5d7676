"""Tiles: parcels per tile, bounds, acquisitions in the cube."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

from dashboards.deps import ServicesDep, access, visible_tiles
from dashboards.errors import DashboardError
from dashboards.security import READ, User

router = APIRouter(prefix="/api/tiles", tags=["tiles"])


def _acquisitions(services, tile_id: str) -> dict:
    out = {}
    for sensor in ("S2", "S1"):
        try:
            out[sensor] = services.chips.dates(tile_id, sensor)
        except DashboardError:
            out[sensor] = []
    return out


@router.get("")
def list_tiles(services: ServicesDep, user: User = access(READ, "filtered")) -> dict:
    allowed = visible_tiles(user)
    tiles = services.parcels.tiles()
    data = [{"tile_id": t, **info, "acquisitions": {k: len(v) for k, v in _acquisitions(services, t).items()}}
            for t, info in sorted(tiles.items()) if allowed is None or t in allowed]
    return {"count": len(data), "data": data}


@router.get("/{tile_id}/quicklook", response_class=Response,
            responses={200: {"content": {"image/png": {}}, "description": "latest clear true colour"}})
def tile_quicklook(tile_id: str, services: ServicesDep, user: User = access(READ, "tile")) -> Response:
    """The tile's latest clear true-colour composite from the cube (PNG); its WGS84 bounds
    (south, west, north, east) and the newest view's date in the ``X-Bounds`` / ``X-Date`` headers."""
    if tile_id not in services.parcels.tiles():  # also keeps odd ids out of the cube path
        raise HTTPException(404, f"no tile {tile_id!r}")
    try:
        png, bounds, day = services.chips.quicklook(tile_id)
    except DashboardError as e:  # no cube, or no clear view in it
        raise HTTPException(404, str(e)) from e
    return Response(png, media_type="image/png", headers={
        "X-Bounds": ",".join(str(v) for v in bounds), "X-Date": day, "Cache-Control": "private, max-age=300"})


@router.get("/{tile_id}")
def get_tile(tile_id: str, services: ServicesDep, user: User = access(READ, "tile")) -> dict:
    tiles = services.parcels.tiles()
    if tile_id not in tiles:
        raise HTTPException(404, f"no tile {tile_id!r}")
    return {"tile_id": tile_id, **tiles[tile_id], "acquisitions": _acquisitions(services, tile_id)}
