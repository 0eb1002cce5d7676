"""The operator page: ingest ledger (counts, watermarks, quarantine), the monitor's health, and
backfill jobs (a ``monitor replay`` of some tiles and a period: start, progress, cancel)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path

from dashboards.deps import ServicesDep, access, operated_tiles, visible_tiles
from dashboards.ops import ingest_status, monitor_status
from dashboards.schemas import BackfillIn, Page, PageSize
from dashboards.security import OPERATE, User

router = APIRouter(prefix="/api/ops", tags=["operations"])


@router.get("/ingest")
def get_ingest(services: ServicesDep, page: Page = 1, page_size: PageSize = 50,
               user: User = access(OPERATE, "filtered")) -> dict:
    out = ingest_status(services.config.ledger_url, operated_tiles(user, services), page_size, (page - 1) * page_size)
    return {**out, "page": page, "page_size": page_size}


@router.get("/monitor")
def get_monitor(services: ServicesDep, user: User = access(OPERATE, "filtered")) -> dict:
    out = monitor_status(services.config.monitor_health)
    allowed = operated_tiles(user, services)
    if allowed is not None and "tiles" in out:
        out["tiles"] = {t: v for t, v in out["tiles"].items() if t in allowed}
    return out


JobId = Annotated[int, Path(ge=1, le=2**62, description="backfill job id")]


@router.get("/backfill")
def list_backfill(services: ServicesDep, page: Page = 1, page_size: PageSize = 50,
                  user: User = access(OPERATE, "filtered")) -> dict:
    """Backfill jobs, newest first (only those wholly inside the user's region)."""
    jobs, total = services.backfill.list(operated_tiles(user, services), page_size, (page - 1) * page_size)
    return {"count": total, "page": page, "page_size": page_size, "data": jobs}


@router.post("/backfill", status_code=201)
def start_backfill(body: BackfillIn, services: ServicesDep, user: User = access(OPERATE, "filtered")) -> dict:
    """Start a replay of ``tiles`` (or of the tiles whose parcels ``polygon`` touches) over ``start..end``."""
    if (body.tiles is None) == (body.polygon is None):
        raise HTTPException(422, "give either tiles or polygon")
    if body.polygon is not None:
        try:
            polygon = body.polygon.to_shape()
        except ValueError as e:
            raise HTTPException(422, str(e)) from e
        touched = services.parcels.select(tiles=visible_tiles(user), polygon=polygon, region=user.region)
        tiles = sorted(set(touched["tile_id"].astype(str)))
        if not tiles:
            raise HTTPException(422, "the polygon touches no parcel of your region")
    else:
        tiles = sorted(set(body.tiles or []))
        allowed = operated_tiles(user, services)  # a polygon operator: the tiles the polygon touches
        foreign = [t for t in tiles if not user.may_see(t) or (allowed is not None and t not in allowed)]
        if foreign:
            raise HTTPException(403, f"tile {foreign[0]} is outside your region")
        unknown = sorted(set(tiles) - set(services.parcels.tiles()))
        if unknown:
            raise HTTPException(422, f"no parcels on tile {unknown[0]} (tiles of the parcel layer only)")
    return services.backfill.start(user.name, tiles, body.start, body.end)


@router.get("/backfill/{job_id}")
def get_backfill(job_id: JobId, services: ServicesDep, user: User = access(OPERATE, "job")) -> dict:
    return services.backfill.get(job_id)


@router.post("/backfill/{job_id}/cancel")
def cancel_backfill(job_id: JobId, services: ServicesDep, user: User = access(OPERATE, "job")) -> dict:
    """Cancel a queued or running job (SIGTERM, then SIGKILL); 409 when it has ended already."""
    return services.backfill.cancel(job_id)
