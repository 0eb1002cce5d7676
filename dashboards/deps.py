"""Dependencies as ``Annotated`` aliases: the services, the current user, and route access rules.

Every route but the public ones declares one :class:`Access` (roles and a region scope) through
:func:`access`; ``tests/dashboards/test_route_auth.py`` walks every route and fails on one without.
Scopes: ``parcel``/``alert``/``tile`` check the path's resource against the user's tiles (403),
``job`` a backfill job's tiles (every one must be the user's);
``filtered``: the route filters its answer to the user's tiles itself; ``none``: holds no regional data.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from alerts.errors import AlertNotFoundError
from contracts.campaigns import CampaignError
from dashboards.errors import NotFoundError
from dashboards.security import Role, User
from dashboards.services import Services

Scope = Literal["parcel", "alert", "tile", "job", "filtered", "none"]

_bearer = HTTPBearer(auto_error=False, description="token from `sitsmon users add`")


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def current_user(
    services: ServicesDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> User:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing bearer token",
                            headers={"WWW-Authenticate": "Bearer"})
    user = services.users.authenticate(credentials.credentials)
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid or revoked token",
                            headers={"WWW-Authenticate": "Bearer"})
    return user


CurrentUser = Annotated[User, Depends(current_user)]


class Access:
    """Role and region check of one route (a dependency; the route test reads ``roles`` and ``scope``)."""

    def __init__(self, roles: frozenset[Role], scope: Scope) -> None:
        self.roles = roles
        self.scope = scope

    def __call__(self, request: Request, user: CurrentUser, services: ServicesDep) -> User:
        if user.role not in self.roles:
            allowed = ", ".join(sorted(r.value for r in self.roles))
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"role {user.role.value} may not do this (needs {allowed})")
        params = request.path_params
        tiles: list[str] = []
        parcel = None
        try:
            if self.scope == "parcel":
                parcel = params["parcel_id"]
                tiles = [services.parcels.tile_of(parcel)]
            elif self.scope == "alert":
                alert = services.alerts.get(params["alert_id"])
                tiles, parcel = [alert.tile_id], alert.parcel_id
            elif self.scope == "tile":
                tiles = [params["tile_id"]]
            elif self.scope == "job":
                job_id = params["job_id"]
                if not job_id.isdigit():
                    raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"job id must be a number, got {job_id!r}")
                tiles = services.backfill.get(int(job_id))["tiles"]
        except (NotFoundError, AlertNotFoundError) as e:
            # an unknown id is a 404; a known one outside the region a 403 (below)
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(e)) from e
        foreign = [t for t in tiles if not user.may_see(t)]
        if foreign:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"tile {foreign[0]} is outside your region")
        if parcel is not None and user.region is not None and parcel not in services.parcels.ids_in(user.region):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"parcel {parcel} is outside your region polygon")
        return user


def access(roles: frozenset[Role], scope: Scope):
    return Depends(Access(roles, scope))


def visible_parcels(user: User, services: Services) -> set[str] | None:
    """The parcels a user with a region polygon may see (None: no polygon, the tiles decide)."""
    return None if user.region is None else services.parcels.ids_in(user.region)


def visible_tiles(user: User, tile_id: str | None = None) -> set[str] | None:
    """The tiles a filtered route may answer with (None: every tile); 403 for a foreign ``tile_id``."""
    if tile_id is not None:
        if not user.may_see(tile_id):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"tile {tile_id} is outside your region")
        return {tile_id}
    return None if user.all_tiles else set(user.tiles)


def operated_tiles(user: User, services: Services) -> set[str] | None:
    """The tiles an operator's pages show: the user's tiles, narrowed by a region polygon to the tiles
    of the parcels it touches (None: every tile)."""
    tiles = visible_tiles(user)
    if user.region is None:
        return tiles
    touched = services.parcels.tiles_in(user.region)
    return touched if tiles is None else tiles & touched


def campaign_days(services: Services, campaign: int) -> tuple[date, date]:
    """First and last day of ``campaign`` under the configured calendar: an alert belongs to the
    campaign its event date falls in, the rule that assigns acquisitions (contracts/campaigns.py);
    422 for a campaign the configured windows do not hold."""
    try:
        return services.config.calendar().window(campaign)
    except CampaignError as e:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(e)) from e
