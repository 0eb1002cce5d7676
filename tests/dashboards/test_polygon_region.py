"""A region polygon: a controller added with `sitsmon users add --region-polygon FILE` sees, exports
and changes only the parcels intersecting it and their alerts (the rest: 403 or absent)."""

from __future__ import annotations

import json
import os

import geopandas as gpd
import pytest
import shapely
from shapely.geometry import mapping

from alerts.store import open_store
from sitsmon.cli import main
from tests.dashboards.conftest import auth


@pytest.fixture(scope="module")
def region(site, tmp_path_factory):
    """A polygon just inside one alerted parcel: that parcel is the region, the others are not."""
    layer = gpd.read_parquet(site.config.parcels_path).to_crs(4326)
    with open_store(site.config.alerts_url) as store:
        alerts = store.query(limit=1000)
    alerted = sorted({a.parcel_id for a in alerts})
    mine = alerted[0]
    geom = layer.set_index("parcel_id").geometry[mine]
    poly = shapely.box(*geom.representative_point().buffer(1e-5).bounds)
    inside = set(layer.loc[layer.intersects(poly), "parcel_id"].astype(str))  # geopandas' own predicate
    assert mine in inside and len(inside) < len(layer)
    path = tmp_path_factory.mktemp("region") / "region.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": mapping(poly)}]}))
    return path, inside, alerts


@pytest.fixture(scope="module")
def token(site, region):
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["users", "--data-dir", str(site.data_dir), "add", "polyctl", "--role", "controller",
                     "--tiles", site.tile, "--region-polygon", str(region[0])]) == 0
    added = json.loads(out.getvalue().strip().splitlines()[-1])
    assert added["region_polygon"] is True
    return added["token"]


def test_only_the_polygons_parcels_and_alerts(client, site, region, token):
    _, inside, alerts = region
    h = {"Authorization": f"Bearer {token}"}
    me = client.get("/api/me", headers=h).json()
    assert me["region_polygon"]["type"] == "Polygon"
    listed = client.get("/api/parcels?page_size=500", headers=h).json()
    assert {f["properties"]["parcel_id"] for f in listed["features"]} == inside
    got = client.get("/api/alerts?page_size=500", headers=h).json()
    want = [a for a in alerts if a.parcel_id in inside]
    assert got["count"] == len(want) > 0 and {a["parcel_id"] for a in got["data"]} <= inside
    csv = client.get("/api/lights/export?format=csv", headers=h).text.splitlines()
    assert len(csv) > 1 and {line.split(",")[0] for line in csv[1:]} <= inside
    outside_alert = next(a for a in alerts if a.parcel_id not in inside)
    inside_parcel = sorted(inside)[0]
    outside_parcel = next(p for p in site.parcel_ids if p not in inside)
    from urllib.parse import quote

    assert client.get(f"/api/parcels/{quote(inside_parcel, safe='')}", headers=h).status_code == 200
    assert client.get(f"/api/parcels/{quote(outside_parcel, safe='')}", headers=h).status_code == 403
    assert client.get(f"/api/parcels/{quote(outside_parcel, safe='')}/series?fill=false&expected=false",
                      headers=h).status_code == 403
    assert client.get(f"/api/alerts/{outside_alert.alert_id}", headers=h).status_code == 403
    before = outside_alert.status
    r = client.post(f"/api/alerts/{outside_alert.alert_id}/status", headers=h,
                    json={"status": "acknowledged", "note": "not mine"})
    assert r.status_code == 403
    r = client.post("/api/alerts/acknowledge", headers=h, json={"alert_ids": [want[0].alert_id, outside_alert.alert_id]})
    assert r.status_code == 403
    with open_store(site.config.alerts_url) as store:  # nothing was written
        assert store.get(outside_alert.alert_id).status == before
        assert store.get(want[0].alert_id).status == want[0].status
    peers = client.get(f"/api/parcels/{quote(inside_parcel, safe='')}/peers", headers=h).json()
    assert {f["properties"]["parcel_id"] for f in peers["features"]} <= inside


def test_a_bad_region_file_is_refused_and_adds_nobody(site, tmp_path, capsys):
    bad = tmp_path / "line.geojson"
    bad.write_text(json.dumps({"type": "LineString", "coordinates": [[16.0, 48.0], [16.1, 48.1]]}))
    assert main(["users", "--data-dir", str(site.data_dir), "add", "badpoly", "--role", "viewer",
                 "--region-polygon", str(bad)]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "Polygon" in err
    assert main(["users", "--data-dir", str(site.data_dir), "list"]) == 0
    assert "badpoly" not in capsys.readouterr().out


def _add_user(site, name: str, role: str, polygon_path) -> str:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["users", "--data-dir", str(site.data_dir), "add", name, "--role", role, "--tiles", site.tile,
                     "--region-polygon", str(polygon_path)]) == 0
    return json.loads(out.getvalue().strip().splitlines()[-1])["token"]


def test_operator_pages_show_the_tiles_the_polygon_touches(client, site, region, tmp_path):
    far = tmp_path / "far.geojson"  # on no parcel of the layer (the South Atlantic)
    far.write_text(json.dumps(mapping(shapely.box(-20.0, -40.0, -19.99, -39.99))))
    near_h = {"Authorization": f"Bearer {_add_user(site, 'polyop', 'operator', region[0])}"}
    far_h = {"Authorization": f"Bearer {_add_user(site, 'farop', 'operator', far)}"}
    path = site.config.monitor_health  # a live monitor's health file with two tiles
    path.parent.mkdir(parents=True, exist_ok=True)
    health = {"schema": "sitsmon-monitor-health/1", "pid": os.getpid(), "updated_at": "2026-01-01T00:00:00+00:00",
              "tiles": {site.tile: {"acquisitions": 38, "parcels": 30}, "99ZZZ": {"acquisitions": 1, "parcels": 1}},
              "lag": {}, "processed": 39, "last_error": None}
    try:
        path.write_text(json.dumps(health))
        admin = client.get("/api/ops/monitor", headers=auth(site, "admin")).json()
        assert admin["running"] and sorted(admin["tiles"]) == sorted([site.tile, "99ZZZ"])
        assert list(client.get("/api/ops/monitor", headers=near_h).json()["tiles"]) == [site.tile]
        assert client.get("/api/ops/monitor", headers=far_h).json()["tiles"] == {}
    finally:
        path.unlink()
    r = client.post("/api/ops/backfill", headers=far_h, json={"tiles": [site.tile], "start": "2024-05-01",
                                                              "end": "2024-05-10"})
    assert r.status_code == 403 and "outside your region" in r.json()["detail"]
    assert client.get("/api/ops/backfill", headers=far_h).json()["count"] == 0
