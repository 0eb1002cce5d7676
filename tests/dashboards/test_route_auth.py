"""Every route of the app: 401 without a token, 403 for a wrong role or a foreign region.

The routes are enumerated from the app itself, so a route added later without an access rule
fails here: each non-public route must carry exactly one ``Access`` dependency, and its rule is
then exercised for real (a role outside ``Access.roles`` gets 403; a user whose region lacks the
tile gets 403 on ``parcel``/``alert``/``tile`` routes and sees none of the data on ``filtered`` ones).
"""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from fastapi.routing import APIRoute, iter_route_contexts

from dashboards.deps import Access
from dashboards.main import PUBLIC_PATHS
from dashboards.security import Role
from tests.dashboards.conftest import auth

ROLE_USER = {Role.ADMIN: "admin", Role.CONTROLLER: "controller", Role.VIEWER: "viewer", Role.OPERATOR: "operator"}


def _routes(app):
    out = []
    for ctx in iter_route_contexts(app.routes):
        route = ctx.original_route
        if not isinstance(route, APIRoute):
            assert ctx.path in PUBLIC_PATHS, f"non-API route {ctx.path} is not declared public"
            continue
        for method in sorted(route.methods - {"HEAD"}):
            out.append((method, route))
    return out


def _access(route: APIRoute) -> list[Access]:
    found = []

    def walk(dep):
        if isinstance(dep.call, Access):
            found.append(dep.call)
        for d in dep.dependencies:
            walk(d)

    walk(route.dependant)
    return found


JOB: dict[str, str] = {}  # the id of a real backfill job of the site (filled by the fixture below)


@pytest.fixture(scope="module", autouse=True)
def backfill_job(client, site):
    """A backfill job of the site's tile to address (started, then cancelled at once)."""
    job = client.post("/api/ops/backfill", headers=auth(site, "admin"),
                      json={"tiles": [site.tile], "start": "2024-05-01", "end": "2024-05-02"}).json()
    assert client.post(f"/api/ops/backfill/{job['id']}/cancel", headers=auth(site, "admin")).status_code == 200
    JOB["job_id"] = str(job["id"])


def _url(route: APIRoute, site) -> str:
    values = {"parcel_id": quote(site.parcel_ids[1], safe=""), "alert_id": site.alert_ids[0],
              "tile_id": site.tile, "kind": "true_color", **JOB}
    path = re.sub(r"{(\w+)(:\w+)?}", lambda m: values[m.group(1)], route.path)
    query = {"/api/parcels/at": "?lon=16.61&lat=48.03", "/api/parcels/{parcel_id:path}/chips/{kind}": "?date=2024-05-04"}
    return path + query.get(route.path, "")


BODIES = {"/api/alerts/{alert_id}/status": lambda s: {"status": "acknowledged", "note": "x"},
          "/api/alerts/acknowledge": lambda s: {"alert_ids": s.alert_ids[:1]},
          "/api/ops/backfill": lambda s: {"tiles": [s.tile], "start": "2024-05-01", "end": "2024-05-02"},
          "/api/parcels/search": lambda s: {"geometry": {"type": "Polygon", "coordinates": [
              [[-180, -90], [180, -90], [180, 90], [-180, 90], [-180, -90]]]}}}


def _call(client, method, route, site, who=None):
    headers = auth(site, who) if who else {}
    url = _url(route, site)
    if route.path.endswith("/stream"):
        with client.stream(method, url, headers=headers, params={"max_s": 0}) as r:
            status = r.status_code
            body = "" if status == 200 else r.read().decode()
            return status, body
    body = BODIES.get(route.path, lambda s: None)(site)
    r = client.request(method, url, headers=headers, json=body)
    return r.status_code, r.text


def test_every_route_has_one_access_rule(app):
    for method, route in _routes(app):
        if route.path in PUBLIC_PATHS:
            assert not _access(route)
            continue
        rules = _access(route)
        assert len(rules) == 1, f"{method} {route.path} has {len(rules)} access rules (needs exactly one)"


def test_no_token_is_401_everywhere(app, client, site):
    checked = 0
    for method, route in _routes(app):
        if route.path in PUBLIC_PATHS:
            continue
        status, _ = _call(client, method, route, site)
        assert status == 401, f"{method} {route.path} answered {status} without a token"
        r = client.request(method, _url(route, site), headers={"Authorization": "Bearer smk_not-a-token"},
                           json=BODIES.get(route.path, lambda s: None)(site))
        assert r.status_code == 401, f"{method} {route.path} answered {r.status_code} to a wrong token"
        checked += 1
    assert checked >= 15


def test_wrong_role_is_403(app, client, site):
    checked = 0
    for method, route in _routes(app):
        if route.path in PUBLIC_PATHS:
            continue
        rule = _access(route)[0]
        for role, who in ROLE_USER.items():
            if role in rule.roles:
                continue
            status, body = _call(client, method, route, site, who)
            assert status == 403, f"{method} {route.path} let a {role.value} through ({status}: {body[:200]})"
            checked += 1
    assert checked >= 5  # triage routes refuse viewers and operators; ops routes refuse viewers and controllers


def test_foreign_region_is_403_or_sees_nothing(app, client, site):
    ids = [*site.alert_ids, *site.parcel_ids, site.tile]
    for method, route in _routes(app):
        if route.path in PUBLIC_PATHS:
            continue
        rule = _access(route)[0]
        who = "foreign" if Role.CONTROLLER in rule.roles else "foreign_op"
        status, body = _call(client, method, route, site, who)
        if rule.scope in ("parcel", "alert", "tile", "job"):
            assert status == 403, f"{method} {route.path} served a foreign region ({status})"
        elif rule.scope == "filtered":
            if route.path == "/api/alerts/acknowledge":
                assert status == 403, "bulk acknowledge of a foreign alert must be refused"
                continue
            if method == "POST" and route.path == "/api/ops/backfill":
                assert status == 403, "a backfill of a foreign tile must be refused"
                continue
            assert status == 200, f"{method} {route.path}: {status} {body[:200]}"
            leaked = [i for i in ids if i in body]
            assert not leaked, f"{method} {route.path} leaked {leaked[:3]} to a foreign region"
        else:
            assert rule.scope == "none"


@pytest.mark.parametrize("who", ["admin", "controller", "viewer", "operator"])
def test_own_region_reads(client, site, who):
    r = client.get("/api/alerts", headers=auth(site, who))
    assert r.status_code == 200 and r.json()["count"] == len(site.alert_ids)
