"""Dependencies as ``Annotated`` aliases: the services, the current user, and route access rules.

Every route but the public ones declares one :class:`Access` (roles and a region scope) through
:func:`access`; ``tests/dashboards/test_route_auth.py`` walks every route and fails on one without.
Scopes: ``parcel``/``alert``/``tile`` check the path's resource against the user's tiles (403);
``filtered``: the route filters its answer to the user's tiles itself; ``none``: holds no regional data.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from alerts.errors import AlertNotFoundError
from dashboards.errors import NotFoundError
from dashboards.security import Role, User
from dashboards.services import Services

Scope = Literal["parcel", "alert", "tile", "filtered", "none"]

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
        tile = None
        try:
            if self.scope == "parcel":
                tile = services.parcels.tile_of(params["parcel_id"])
            elif self.scope == "alert":
                tile = services.alerts.get(params["alert_id"]).tile_id
            elif self.scope == "tile":
                tile = params["tile_id"]
        except (NotFoundError, AlertNotFoundError) as e:
            # an unknown id is a 404; a known one outside the region a 403 (below)
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(e)) from e
        if tile is not None and not user.may_see(tile):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"tile {tile} is outside your region")
        return user


def access(roles: frozenset[Role], scope: Scope):
    return Depends(Access(roles, scope))


def visible_tiles(user: User, tile_id: str | None = None) -> set[str] | None:
    """The tiles a filtered route may answer with (None: every tile); 403 for a foreign ``tile_id``."""
    if tile_id is not None:
        if not user.may_see(tile_id):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"tile {tile_id} is outside your region")
        return {tile_id}
    return None if user.all_tiles else set(user.tiles)
