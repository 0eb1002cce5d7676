"""Alerts: the queue (filtered, sorted, paged on the server), one alert, status changes, bulk
acknowledge, the escalation ladder, and the live stream of new alerts and status changes (SSE)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from alerts.errors import AlertNotFoundError, TransitionError
from alerts.store import AlertQuery
from alerts.types import EVENT_TYPES, TRANSITIONS, Status
from dashboards.deps import ServicesDep, access, campaign_days, visible_parcels, visible_tiles
from dashboards.paging import CursorError, decode_cursor, encode_cursor
from dashboards.schemas import (
    AlertPublic,
    AlertSort,
    AlertsPublic,
    BulkAckIn,
    BulkResult,
    Page,
    PageSize,
    StatusChangeIn,
    TileId,
    alert_public,
)
from dashboards.security import READ, TRIAGE, User

router = APIRouter(prefix="/api/alerts", tags=["alerts"])

AlertType = Literal[EVENT_TYPES]  # type: ignore[valid-type]
# The controllers' ladder, in order (DESIGN: automatic → remote review → photo request → field visit).
LADDER = (Status.NEW, Status.REMOTE_REVIEW, Status.PHOTO_REQUEST, Status.FIELD_CHECK)
HEARTBEAT_S = 15.0


@router.get("", response_model=AlertsPublic)
def list_alerts(
    services: ServicesDep,
    type: Annotated[AlertType | None, Query()] = None,
    status: Annotated[list[Status] | None, Query(max_length=10)] = None,
    tile_id: TileId = None,
    parcel_id: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    region: Annotated[str | None, Query(min_length=1, max_length=100, description="the alert's region label")] = None,
    date_from: Annotated[date | None, Query(description="event date from (inclusive)")] = None,
    date_to: Annotated[date | None, Query(description="event date to (inclusive)")] = None,
    campaign: Annotated[int | None, Query(ge=1900, le=2200, description=(
        "the campaign whose alerts (event date within its window: [campaigns] windows, default the "
        "calendar year); combines with date_from / date_to"))] = None,
    min_confidence: Annotated[float | None, Query(ge=0, le=1)] = None,
    sort: Annotated[AlertSort, Query()] = "event_date_desc",
    page: Page = 1,
    page_size: PageSize = 50,
    cursor: Annotated[str | None, Query(min_length=1, max_length=600, description=(
        "the next_cursor of the previous page (keyset paging: the same cost at any depth; "
        "`page` counts pages for the answer only)"))] = None,
    user: User = access(READ, "filtered"),
) -> AlertsPublic:
    if date_from and date_to and date_to < date_from:
        raise HTTPException(422, f"date_to {date_to} is before date_from {date_from}")
    if campaign is not None:  # the campaign's window, narrowed by the explicit dates
        first, last = campaign_days(services, campaign)
        date_from, date_to = max(first, date_from or first), min(last, date_to or last)
        if date_to < date_from:
            return AlertsPublic(count=0, page=page, page_size=page_size, data=[])
    try:
        after = decode_cursor(cursor, sort) if cursor is not None else None
    except CursorError as e:
        raise HTTPException(422, str(e)) from None
    tiles = visible_tiles(user, tile_id)
    parcels = visible_parcels(user, services)
    if parcels is not None:  # a region polygon: the alerts of its parcels only
        parcels = sorted(parcels if parcel_id is None else parcels & {parcel_id})
        if not parcels:
            return AlertsPublic(count=0, page=page, page_size=page_size, data=[])
    base = dict(parcel_id=parcels if parcels is not None else parcel_id, region=region, status=status or None, type=type, date_from=date_from, date_to=date_to,
                tile_id=sorted(tiles) if tiles is not None else None, min_confidence=min_confidence)
    if tiles is not None and not tiles:
        return AlertsPublic(count=0, page=page, page_size=page_size, data=[])
    offset = 0 if after is not None else (page - 1) * page_size
    # one row more than the page says whether a next page exists
    q = AlertQuery(**base, limit=page_size + 1, offset=offset, sort=sort, after=after)
    alerts = services.alerts.query(q)
    more = len(alerts) > page_size
    alerts = alerts[:page_size]
    total = services.alerts.count(AlertQuery(**base))
    data = [alert_public(a, services.parcels.centroid(a.parcel_id), with_evidence=False) for a in alerts]
    return AlertsPublic(count=total, page=page, page_size=page_size, data=data,
                        next_cursor=encode_cursor(alerts[-1], sort) if more else None)


@router.get("/ladder")
def ladder(user: User = access(READ, "none")) -> dict:
    """The escalation ladder and every allowed status change (the lifecycle of ``alerts.types``)."""
    return {"ladder": [s.value for s in LADDER],
            "transitions": {s.value: sorted(t.value for t in TRANSITIONS[s]) for s in Status}}


@router.get("/stream")
async def stream(
    request: Request, services: ServicesDep,
    max_s: Annotated[float | None, Query(ge=0, le=86400, description="end the stream after this long")] = None,
    user: User = access(READ, "filtered"),
):
    """Server-Sent Events: ``alert`` events ({alert_id, kind: new|<status>, when, ...}) for the caller's
    tiles, from the moment of connecting (or ``Last-Event-ID``). Polls the store; needs no monitor."""
    tiles = visible_tiles(user)
    parcels = visible_parcels(user, services)
    poll_s = services.config.stream_poll_s
    cursor = datetime.now(UTC)
    last = request.headers.get("last-event-id")
    if last:
        try:
            cursor = datetime.fromisoformat(last.split("|")[0])
        except ValueError:
            pass

    async def events():
        nonlocal cursor
        seen: set[tuple[str, str, str]] = set()
        quiet_s = 0.0
        yield "retry: 2000\n: connected\n\n"
        loop = asyncio.get_running_loop()
        end = None if max_s is None else loop.time() + max_s
        while not await request.is_disconnected() and (end is None or loop.time() < end):
            changes = await run_in_threadpool(services.alerts.changes_since, cursor, 500)
            for alert_id, kind, when in changes:
                key = (alert_id, kind, when.isoformat())
                if key in seen:
                    continue
                seen.add(key)
                try:
                    a = await run_in_threadpool(services.alerts.get, alert_id)
                except AlertNotFoundError:
                    continue
                if (tiles is not None and a.tile_id not in tiles) or (parcels is not None and a.parcel_id not in parcels):
                    continue
                payload = {"alert_id": a.alert_id, "kind": kind, "when": when.isoformat(), "status": a.status.value,
                           "parcel_id": a.parcel_id, "tile_id": a.tile_id, "type": a.type,
                           "event_date": a.event_date.isoformat(), "confidence": a.confidence}
                yield f"id: {when.isoformat()}\nevent: alert\ndata: {json.dumps(payload)}\n\n"
                quiet_s = 0.0
            if changes:
                cursor = max(cursor, changes[-1][2])
                seen = {k for k in seen if k[2] >= cursor.isoformat()}
            await asyncio.sleep(poll_s)
            quiet_s += poll_s
            if quiet_s >= HEARTBEAT_S:
                quiet_s = 0.0
                yield ": keep-alive\n\n"

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.post("/acknowledge", response_model=BulkResult)
def bulk_acknowledge(body: BulkAckIn, services: ServicesDep, user: User = access(TRIAGE, "filtered")) -> BulkResult:
    """Acknowledge many alerts; all ids are checked (exist, in region) before anything is written.
    Alerts whose status does not allow it are skipped with the reason."""
    found = {}
    parcels = visible_parcels(user, services)
    for aid in body.alert_ids:
        try:
            found[aid] = services.alerts.get(aid)
        except AlertNotFoundError as e:
            raise HTTPException(404, f"{e}; nothing was changed") from e
        if not user.may_see(found[aid].tile_id) or (parcels is not None and found[aid].parcel_id not in parcels):
            raise HTTPException(403, f"alert {aid} is outside your region; nothing was changed")
    done, skipped = [], {}
    for aid in body.alert_ids:
        try:
            services.alerts.set_status(aid, Status.ACKNOWLEDGED, who=user.name, note=body.note)
            done.append(aid)
        except TransitionError as e:
            skipped[aid] = str(e)
    return BulkResult(acknowledged=done, skipped=skipped)


@router.get("/{alert_id}", response_model=AlertPublic)
def get_alert(alert_id: str, services: ServicesDep, user: User = access(READ, "alert")) -> AlertPublic:
    a = services.alerts.get(alert_id)
    return alert_public(a, services.parcels.centroid(a.parcel_id))


@router.post("/{alert_id}/status", response_model=AlertPublic)
def change_status(alert_id: str, body: StatusChangeIn, services: ServicesDep,
                  user: User = access(TRIAGE, "alert")) -> AlertPublic:
    """A status change with a note (and, for a photo request, what/where/which direction)."""
    try:
        a = services.alerts.set_status(alert_id, body.status, who=user.name, note=body.full_note())
    except TransitionError as e:
        raise HTTPException(409, str(e)) from e
    return alert_public(a, services.parcels.centroid(a.parcel_id))
