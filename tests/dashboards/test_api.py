"""The API over the session's data dir: answers checked against the stores they read, bad input
refused with a clear 4xx and nothing written, URL-encoded odd ids, the lifecycle and the ladder."""

from __future__ import annotations

import json
import os
from urllib.parse import quote

import geopandas as gpd
import pandas as pd

from alerts.store import open_store
from tests.dashboards.conftest import ODD_ID, auth


def _snapshot(site) -> list[tuple]:
    with open_store(site.config.alerts_url) as store:
        return [(a.alert_id, a.status.value, len(a.history)) for a in store.query(limit=1000)]


def test_parcels_geojson_matches_the_layer(client, site):
    layer = gpd.read_parquet(site.config.parcels_path)
    lights = pd.read_csv(site.config.traffic_lights, dtype={"parcel_id": str}).set_index("parcel_id")
    r = client.get("/api/parcels", params={"page_size": 7, "page": 2}, headers=auth(site, "viewer"))
    fc = r.json()
    assert r.status_code == 200 and fc["count"] == len(layer) and len(fc["features"]) == 7
    for f in fc["features"]:
        assert f["properties"]["light"] == lights.loc[f["id"], "light"]
    x0, y0, x1, y1 = layer.total_bounds
    west = f"{x0},{y0},{(x0 + x1) / 2},{y1}"
    got = client.get("/api/parcels", params={"bbox": west, "page_size": 500}, headers=auth(site, "viewer")).json()
    import shapely

    expect = layer[layer.geometry.intersects(shapely.box(x0, y0, (x0 + x1) / 2, y1))]
    assert sorted(f["id"] for f in got["features"]) == sorted(expect["parcel_id"])
    inner = layer.geometry.iloc[3].representative_point()
    at = client.get("/api/parcels/at", params={"lon": inner.x, "lat": inner.y}, headers=auth(site, "viewer")).json()
    assert [f["id"] for f in at["features"]] == [layer["parcel_id"].iloc[3]]


def test_odd_ids_work_url_encoded(client, site):
    enc = quote(ODD_ID, safe="")
    r = client.get(f"/api/parcels/{enc}", headers=auth(site, "viewer"))
    assert r.status_code == 200 and r.json()["id"] == ODD_ID
    alerts = client.get("/api/alerts", params={"parcel_id": ODD_ID}, headers=auth(site, "viewer")).json()
    assert [a["alert_id"] for a in alerts["data"]] == [site.odd_alert_id]
    peers = client.get(f"/api/parcels/{enc}/peers", headers=auth(site, "viewer"))
    assert peers.status_code == 200 and all(f["id"] != ODD_ID for f in peers.json()["features"])


def test_series_has_bands_db_expectation_and_alerts(client, site):
    with open_store(site.config.alerts_url) as store:
        alert = store.query(limit=1, sort="confidence_desc", type="mowing")[0]
    r = client.get(f"/api/parcels/{quote(alert.parcel_id, safe='')}/series", headers=auth(site, "viewer"))
    s = r.json()
    assert r.status_code == 200 and s["s2"] and s["s1"]
    from ingest.series import read_series

    raw = read_series(site.config.series_dir, parcel_id=alert.parcel_id).to_pandas()
    s1 = raw[raw["sensor"] == "S1"].iloc[0]
    import math

    assert abs(s["s1"][0]["vv_db"] - 10 * math.log10(s1["VV"])) < 1e-3
    clear = [p for p in s["s2"] if p["clear"] and p["ndvi"] is not None]
    b = clear[0]["bands"]
    assert abs(clear[0]["ndvi"] - (b["B08"] - b["B04"]) / (b["B08"] + b["B04"])) < 1e-3
    assert sum(p["expected_ndvi"] is not None for p in s["s2"]) >= len(s["s2"]) - 1
    assert all(p["expected_ndvi_std"] > 0 for p in s["s2"] if p["expected_ndvi_std"] is not None)
    assert alert.alert_id in [a["alert_id"] for a in s["alerts"]]
    for p in s["s2"]:  # gap-filled values only at cloudy views, always with an uncertainty
        assert p["filled"] is (p["filled_ndvi"] is not None)
        if p["filled"]:
            assert not p["clear"] and p["filled_ndvi_std"] > 0
    # the expectation equals the alert's evidence (what the demo stored) at the evidence date
    model = alert.evidence.get("model")
    if model:
        view = next(p for p in s["s2"] if p["time"][:10] == model["date"])
        assert abs(view["expected_ndvi"] - model["expected_ndvi"]) < 2e-3


def test_chips_png_and_missing_date(client, site):
    pid = quote(site.parcel_ids[1], safe="")
    dates = client.get(f"/api/parcels/{pid}/dates", headers=auth(site, "viewer")).json()
    for kind, d in (("true_color", dates["S2"][0]), ("ndvi", dates["S2"][-1]), ("vv", dates["S1"][0])):
        r = client.get(f"/api/parcels/{pid}/chips/{kind}", params={"date": d}, headers=auth(site, "viewer"))
        assert r.status_code == 200 and r.headers["content-type"] == "image/png" and r.content[:4] == b"\x89PNG"
    r = client.get(f"/api/parcels/{pid}/chips/true_color", params={"date": "2024-01-01"}, headers=auth(site, "viewer"))
    assert r.status_code == 404 and "no S2 acquisition" in r.json()["detail"]
    r = client.get(f"/api/parcels/{pid}/chips/true_color", params={"date": "2024-13-01"}, headers=auth(site, "viewer"))
    assert r.status_code == 422


def test_bad_input_is_4xx_and_writes_nothing(client, site):
    before = _snapshot(site)
    h = auth(site, "controller")
    cases = [
        ("GET", "/api/parcels?bbox=1,2,3", None, 422),
        ("GET", "/api/parcels?bbox=10,50,5,40", None, 422),
        ("GET", "/api/parcels?bbox=a,b,c,d", None, 422),
        ("GET", "/api/parcels?page_size=501", None, 422),
        ("GET", "/api/alerts?page_size=100000", None, 422),
        ("GET", "/api/alerts?date_from=2024-06-01&date_to=2024-05-01", None, 422),
        ("GET", "/api/alerts?date_from=yesterday", None, 422),
        ("GET", "/api/alerts?status=bogus", None, 422),
        ("GET", "/api/alerts?tile_id=../../etc", None, 422),
        ("GET", "/api/parcels/no%20such%20parcel", None, 404),
        ("GET", "/api/alerts/not-an-alert", None, 404),
        ("POST", f"/api/alerts/{site.alert_ids[0]}/status", {"status": "flying"}, 422),
        ("POST", f"/api/alerts/{site.alert_ids[0]}/status", {"status": "acknowledged", "note": "x" * 5000}, 422),
        ("POST", "/api/alerts/acknowledge", {"alert_ids": []}, 422),
        ("POST", "/api/alerts/acknowledge", {"alert_ids": ["x"] * 501}, 422),
        ("POST", "/api/alerts/acknowledge", {"alert_ids": [site.alert_ids[0], "missing"]}, 404),
    ]
    for method, url, body, code in cases:
        r = client.request(method, url, headers=h, json=body)
        assert r.status_code == code, (url, r.status_code, r.text)
        detail = r.json()["detail"]
        assert detail and (isinstance(detail, str) or detail[0]["msg"]), url
    assert _snapshot(site) == before


def test_lifecycle_ladder_history_and_bulk(client, site):
    h = auth(site, "controller")
    ids = [a for a in site.alert_ids if a != site.odd_alert_id]
    with open_store(site.config.alerts_url) as store:
        fresh = [a.alert_id for a in store.query(limit=100, status="new") if a.alert_id != site.odd_alert_id]
    a, b = fresh[0], fresh[1]
    steps = [("remote_review", "images look mown"), ("photo_request", "")]
    for status, note in steps:
        body = {"status": status, "note": note}
        if status == "photo_request":
            body.update(photo_what="the mown strip", photo_lon=16.61, photo_lat=48.03, photo_direction_deg=90)
        r = client.post(f"/api/alerts/{a}/status", json=body, headers=h)
        assert r.status_code == 200, r.text
    illegal = client.post(f"/api/alerts/{a}/status", json={"status": "acknowledged"}, headers=h)
    assert illegal.status_code == 409 and "cannot go from photo_request" in illegal.json()["detail"]
    r = client.post(f"/api/alerts/{a}/status", json={"status": "field_check", "note": "visit"}, headers=h)
    got = client.get(f"/api/alerts/{a}", headers=h).json()
    assert [x["status"] for x in got["history"]] == ["remote_review", "photo_request", "field_check"]
    assert got["history"][1]["note"].startswith("photo request: the mown strip at 48.030000,16.610000 facing 90")
    assert all(x["who"] == "ctl" for x in got["history"]) and got["evidence"]
    bulk = client.post("/api/alerts/acknowledge", json={"alert_ids": [a, b], "note": "batch"}, headers=h).json()
    assert bulk["acknowledged"] == [b] and "field_check" in bulk["skipped"][a]
    with open_store(site.config.alerts_url) as store:
        assert store.get(b).status.value == "acknowledged" and store.get(b).history[-1].note == "batch"
    assert len(ids) >= 2


def test_alert_list_filters_and_sorts_on_the_server(client, site):
    with open_store(site.config.alerts_url) as store:
        everything = store.query(limit=1000)
    h = auth(site, "viewer")
    by_conf = client.get("/api/alerts", params={"sort": "confidence_desc", "page_size": 500}, headers=h).json()
    confs = [x["confidence"] for x in by_conf["data"]]
    assert confs == sorted((a.confidence for a in everything), reverse=True)
    page2 = client.get("/api/alerts", params={"sort": "confidence_desc", "page_size": 2, "page": 2}, headers=h).json()
    assert [x["alert_id"] for x in page2["data"]] == [x["alert_id"] for x in by_conf["data"][2:4]]
    mowing = client.get("/api/alerts", params={"type": "mowing", "min_confidence": 0.8}, headers=h).json()
    assert mowing["count"] == sum(a.type == "mowing" and a.confidence >= 0.8 for a in everything)
    nowhere = client.get("/api/alerts", params={"region": "nowhere"}, headers=h).json()
    assert nowhere["count"] == sum(a.region == "nowhere" for a in everything) == 0


def test_alert_list_cursor_pages_walk_the_same_order_as_numbered_pages(client, site):
    h = auth(site, "viewer")
    for sort in ("confidence_desc", "event_date_desc"):
        whole = client.get("/api/alerts", params={"sort": sort, "page_size": 500}, headers=h).json()
        assert whole["next_cursor"] is None and len(whole["data"]) == whole["count"] > 3
        walked, params = [], {"sort": sort, "page_size": 3}
        while True:
            page = client.get("/api/alerts", params=params, headers=h).json()
            walked += [x["alert_id"] for x in page["data"]]
            if page["next_cursor"] is None:
                break
            params["cursor"] = page["next_cursor"]
        assert walked == [x["alert_id"] for x in whole["data"]], sort
    first = client.get("/api/alerts", params={"sort": "confidence_desc", "page_size": 2}, headers=h).json()
    for params, message in (({"sort": "event_date_desc", "cursor": first["next_cursor"]}, "made for sort"),
                            ({"sort": "confidence_desc", "cursor": "not-a-cursor"}, "malformed cursor")):
        r = client.get("/api/alerts", params=params, headers=h)
        assert r.status_code == 422 and message in r.json()["detail"]


def test_lights_export_csv_and_geojson(client, site):
    h = auth(site, "viewer")
    csv = client.get("/api/lights/export", params={"format": "csv", "light": "green"}, headers=h)
    rows = pd.read_csv(__import__("io").StringIO(csv.text), dtype={"parcel_id": str})
    lights = pd.read_csv(site.config.traffic_lights, dtype={"parcel_id": str})
    assert sorted(rows["parcel_id"]) == sorted(lights.loc[lights["light"] == "green", "parcel_id"])
    gj = client.get("/api/lights/export", params={"format": "geojson"}, headers=h)
    data = json.loads(gj.text)
    assert gj.headers["content-type"].startswith("application/geo+json")
    assert len(data["features"]) == len(lights) and all(f["geometry"]["type"].endswith("Polygon") for f in data["features"])


def test_monitor_status_from_health_file(client, site):
    path = site.config.monitor_health
    h = auth(site, "operator")
    assert client.get("/api/ops/monitor", headers=h).json()["running"] is False
    path.parent.mkdir(parents=True, exist_ok=True)
    health = {"schema": "sitsmon-monitor-health/1", "pid": os.getpid(), "updated_at": "2026-01-01T00:00:00+00:00",
              "tiles": {site.tile: {"t_last": "2024-07-10T00:00:00Z", "acquisitions": 38, "parcels": 30},
                        "99ZZZ": {"t_last": "2024-07-10T00:00:00Z", "acquisitions": 1, "parcels": 1}},
              "lag": {"sits.acquisitions/0": 3, "sits.acquisitions/1": 2}, "processed": 38, "last_error": None}
    try:
        path.write_text(json.dumps(health))
        got = client.get("/api/ops/monitor", headers=h).json()
        assert got["running"] and got["total_lag"] == 5 and list(got["tiles"]) == [site.tile]
        path.write_text(json.dumps({**health, "pid": 2**22 + 12345}))
        dead = client.get("/api/ops/monitor", headers=h).json()
        assert not dead["running"] and "not alive" in dead["reason"]
    finally:
        path.unlink()
    ingest = client.get("/api/ops/ingest", headers=h).json()
    assert ingest["available"] and sum(ingest["counts"].values()) > 0


def test_stream_reports_a_status_change(client, site):
    import threading
    import time

    with open_store(site.config.alerts_url) as store:
        target = next(a for a in store.query(limit=100, status="new") if a.alert_id != site.odd_alert_id)

    def later():
        time.sleep(0.8)
        with open_store(site.config.alerts_url) as store:
            store.set_status(target.alert_id, "dismissed", who="test", note="from another process's store")

    threading.Thread(target=later).start()
    events = []
    with client.stream("GET", "/api/alerts/stream", params={"max_s": 3}, headers=auth(site, "viewer")) as r:
        for line in r.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line[5:]))
    assert {"alert_id": target.alert_id, "kind": "dismissed"}.items() <= events[-1].items()
    foreign = []
    with client.stream("GET", "/api/alerts/stream", params={"max_s": 0.5}, headers=auth(site, "foreign")) as r:
        foreign = [line for line in r.iter_lines() if line.startswith("data:")]
    assert foreign == []


def test_some_cloudy_views_are_gap_filled(site):
    from dashboards.series import SeriesReader

    reader = SeriesReader(site.config.series_dir, with_model=False)
    ids = [pid for pid in site.parcel_ids if pid != ODD_ID]
    points = [p for pid in ids for p in reader.series(site.tile, pid, ids)["s2"]]
    filled = [p for p in points if p["filled"]]
    assert filled and len(filled) < len(points)
    assert all(-1 <= p["filled_ndvi"] <= 1 for p in filled)


def test_lights_geopackage_in_the_national_projection(client, site, tmp_path):
    h = auth(site, "viewer")
    r = client.get("/api/lights/export", params={"format": "gpkg", "epsg": 5514, "light": "orange"}, headers=h)
    assert r.status_code == 200
    (tmp_path / "l.gpkg").write_bytes(r.content)
    got = gpd.read_file(tmp_path / "l.gpkg")
    assert got.crs.to_epsg() == 5514
    layer = gpd.read_parquet(site.config.parcels_path).set_index("parcel_id").to_crs(5514)
    lights = pd.read_csv(site.config.traffic_lights, dtype={"parcel_id": str})
    assert sorted(got["parcel_id"]) == sorted(lights.loc[lights["light"] == "orange", "parcel_id"])
    one = got.iloc[0]
    assert one.geometry.symmetric_difference(layer.loc[one["parcel_id"], "geometry"]).area < 1.0  # m²
    bad = client.get("/api/lights/export", params={"format": "gpkg", "epsg": 999998}, headers=h)
    assert bad.status_code == 422 and "EPSG" in bad.json()["detail"]


def test_parcels_by_polygon_and_oversized_bodies(client, site):
    import shapely

    layer = gpd.read_parquet(site.config.parcels_path)
    x0, y0, x1, y1 = layer.total_bounds
    tri = [[x0, y0], [x1, y0], [x0, y1], [x0, y0]]
    h = auth(site, "viewer")
    r = client.post("/api/parcels/search", json={"geometry": {"type": "Polygon", "coordinates": [tri]}},
                    params={"page_size": 500}, headers=h)
    expect = layer[layer.geometry.intersects(shapely.Polygon(tri))]["parcel_id"]
    assert r.status_code == 200 and sorted(f["id"] for f in r.json()["features"]) == sorted(expect)
    assert 0 < len(expect) < len(layer)
    bow = [[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]
    bad = client.post("/api/parcels/search", json={"geometry": {"type": "Polygon", "coordinates": [bow]}}, headers=h)
    assert bad.status_code == 422 and "Self-intersection" in bad.json()["detail"]
    huge = {"geometry": {"type": "Polygon", "coordinates": [[[0, 0]] * 200_000]}}
    big = client.post("/api/parcels/search", json=huge, headers=h)
    assert big.status_code == 413


def test_tile_quicklook_is_the_newest_clear_view_per_pixel(client, site):
    import io

    import numpy as np
    from PIL import Image

    from dashboards.chips import QUICKLOOK_VIEWS
    from ingest.cube import cube_path, open_cube

    r = client.get(f"/api/tiles/{site.tile}/quicklook", headers=auth(site, "viewer"))
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    s, w, n, e = (float(v) for v in r.headers["X-Bounds"].split(","))
    layer = gpd.read_parquet(site.config.parcels_path).to_crs(4326)
    x0, y0, x1, y1 = layer.total_bounds
    assert w <= x0 < x1 <= e and s <= y0 < y1 <= n  # the parcels lie on the tile's overlay
    img = np.asarray(Image.open(io.BytesIO(r.content)))
    ds = open_cube(cube_path(site.config.cubes_dir, site.tile), "S2")
    assert img.shape[:2] == (ds.sizes["y"], ds.sizes["x"]) and img.shape[2] == 4
    # reference, one pixel at a time: walk back from the newest view to the first clear one
    clear = np.asarray(ds["clear"].values)
    bands = [str(b) for b in ds["band"].values]
    refl = np.asarray(ds["reflectance"].values)
    rng = np.random.default_rng(0)
    for y, x in zip(rng.integers(0, img.shape[0], 20), rng.integers(0, img.shape[1], 20), strict=True):
        last = clear.shape[0] - 1
        times = [t for t in range(last, max(-1, last - QUICKLOOK_VIEWS), -1) if clear[t, y, x] == 1][:1]
        if not times:
            assert img[y, x, 3] == 0
            continue
        want = [refl[times[0], bands.index(b), y, x] * 1e-4 for b in ("B04", "B03", "B02")]
        want = [int(min(max(v / 0.3, 0), 1) ** (1 / 1.4) * 255) for v in want]
        assert img[y, x, 3] == 255 and np.abs(img[y, x, :3].astype(int) - want).max() <= 1
