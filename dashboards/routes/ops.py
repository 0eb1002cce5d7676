"""The operator page: ingest ledger (counts, watermarks, quarantine) and the monitor's health."""

from __future__ import annotations

from fastapi import APIRouter

from dashboards.deps import ServicesDep, access, visible_tiles
from dashboards.ops import ingest_status, monitor_status
from dashboards.schemas import Page, PageSize
from dashboards.security import OPERATE, User

router = APIRouter(prefix="/api/ops", tags=["operations"])


@router.get("/ingest")
def get_ingest(services: ServicesDep, page: Page = 1, page_size: PageSize = 50,
               user: User = access(OPERATE, "filtered")) -> dict:
    out = ingest_status(services.config.ledger_url, visible_tiles(user), page_size, (page - 1) * page_size)
    return {**out, "page": page, "page_size": page_size}


@router.get("/monitor")
def get_monitor(services: ServicesDep, user: User = access(OPERATE, "filtered")) -> dict:
    out = monitor_status(services.config.monitor_health)
    allowed = visible_tiles(user)
    if allowed is not None and "tiles" in out:
        out["tiles"] = {t: v for t, v in out["tiles"].items() if t in allowed}
    return out
