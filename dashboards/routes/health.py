"""Public: liveness only, no data."""

from __future__ import annotations

from fastapi import APIRouter

from dashboards import __version__

router = APIRouter(tags=["health"])


@router.get("/health")
def health() -> dict:
    return {"status": "ok", "service": "sitsmon-dashboard", "version": __version__}
