"""The UI in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright), served by
`sitsmon serve` in a subprocess configured only through SITSMON_* variables.

Log in, see the map with parcels coloured by light, open a parcel from its alert marker, see the
chart (alert line drawn) and the chips, acknowledge the alert in the queue, see the change in a
second browser session through the live stream (no reload), and a viewer cannot change a status.
Then the campaign pickers: the served site is a copy of the session's with an earlier campaign (2023)
added for one parcel (series, a light per parcel, an alert; and 600 alerts of it on the other parcels); the parcel page lists both campaigns and
shows one at a time (chart, alerts, the hash keeps the choice), and the map recolours by campaign, its alert markers following.
Screenshots go to $SITSMON_TEST_ARTEFACTS (default: a temporary folder); the path is printed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from tests.dashboards.conftest import copy_data_dir

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


EARLIER = 2023  # the campaign added before the demo's (2024)
EARLIER_LIGHT = "red"  # every parcel's light of EARLIER: unlike the demo's greens and oranges
EARLIER_OPEN_ALERTS = 600  # acknowledged alerts of EARLIER on the other parcels: more than an API page


def _add_earlier_campaign(root: Path, tile: str) -> str:
    """Give the first mowing alert's parcel a campaign EARLIER: the first half of its rows one year
    earlier (so the two series differ in length), a light of EARLIER for every parcel, and one alert of
    EARLIER (acknowledged, so the flow's choice of a new alert is unchanged). Returns the parcel id."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    from alerts.store import open_store
    from alerts.types import Status, make_alert_id
    from ingest.series import read_series, write_slot

    with open_store(str(root / "alerts.sqlite")) as store:
        alert = store.query(limit=1, type="mowing")[0]
        pid = alert.parcel_id
        shift = pd.Timedelta(days=366)  # 2024 is a leap year: the same calendar days of 2023
        window = (alert.window_start - shift.to_pytimedelta(), alert.window_end - shift.to_pytimedelta())
        old = alert.model_copy(update={"event_date": alert.event_date - shift.to_pytimedelta(),
                                       "window_start": window[0], "window_end": window[1], "history": (),
                                       "status": Status.NEW,  # the session's earlier tests may have triaged it
                                       "alert_id": make_alert_id(pid, alert.type, *window)})
        store.upsert(old)
        store.set_status(old.alert_id, "acknowledged", who="seed")
        # more open alerts of EARLIER than one page of the API (500), spread over the other parcels, so
        # the map's markers must page; acknowledged and unconfident: the flow test's choices stay as they were
        others = sorted(set(pd.read_csv(root / "traffic-lights.csv", dtype={"parcel_id": str})["parcel_id"]) - {pid})
        seeded = []
        for k in range(EARLIER_OPEN_ALERTS):
            o, w = others[k % len(others)], (window[0] + timedelta(days=k // len(others)), window[1] + timedelta(days=k // len(others)))
            seeded.append(old.model_copy(update={"parcel_id": o, "window_start": w[0], "window_end": w[1], "confidence": 0.1,
                                                 "event_date": w[0], "status": Status.ACKNOWLEDGED,
                                                 "alert_id": make_alert_id(o, alert.type, *w)}))
        store.upsert_many(seeded)
    rows = read_series(root / "series", tile, parcel_id=pid)
    for sensor in ("S2", "S1"):
        t = rows.filter(pc.equal(rows["sensor"], sensor))
        t = t.slice(0, t.num_rows // 2)
        times = pa.array(t["time"].to_pandas() - shift, pa.timestamp("s", tz="UTC"))
        t = t.set_column(t.schema.get_field_index("time"), "time", times)
        t = t.set_column(t.schema.get_field_index("campaign"), "campaign", pa.array([EARLIER] * t.num_rows, pa.int16()))
        write_slot(root / "series", tile, sensor, f"campaign-{EARLIER}", t)
    lights = pd.read_csv(root / "traffic-lights.csv", dtype={"parcel_id": str})
    earlier = lights.drop_duplicates("parcel_id").assign(campaign=EARLIER, light=EARLIER_LIGHT)
    pd.concat([earlier, lights], ignore_index=True).to_csv(root / "traffic-lights.csv", index=False)
    return pid


@pytest.fixture(scope="module")
def served(site, tmp_path_factory):
    """The session's site copied, with campaign EARLIER added (the session's site stays as it is)."""
    from dataclasses import replace

    from dashboards.config import DashboardConfig

    root = copy_data_dir(site.data_dir, tmp_path_factory.mktemp("browser") / "data")
    pid = _add_earlier_campaign(root, site.tile)
    return replace(site, data_dir=root, config=DashboardConfig.from_data_dir(root, stream_poll_s=0.3)), pid


@pytest.fixture(scope="module")
def server(served):
    site = served[0]
    port = _free_port()
    env = {**os.environ, "SITSMON_PATHS__DATA_DIR": str(site.data_dir), "SITSMON_DASHBOARD__PORT": str(port),
           "SITSMON_DASHBOARD__STREAM_POLL_S": "0.3", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-m", "sitsmon.cli", "serve"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
        if proc.poll() is not None:
            raise RuntimeError(f"sitsmon serve exited: {proc.stdout.read().decode()[-2000:]}")
    else:
        proc.kill()
        raise RuntimeError("sitsmon serve did not come up in 60 s")
    yield base
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    out = Path(os.environ.get("SITSMON_TEST_ARTEFACTS") or tmp_path_factory.mktemp("screenshots"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"\nbrowser screenshots in {out}")
    return out


def site_dates(site) -> list[str]:
    """The chips the calendar shows: two per S2 acquisition, one per S1 acquisition."""
    from ingest.cube import cube_path, open_cube

    path = cube_path(site.config.cubes_dir, site.tile)
    return [*(2 * list(open_cube(path, "S2")["time"].values)), *open_cube(path, "S1")["time"].values]


def _login(browser, base: str, token: str):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(base + "/")
    page.fill("#token", token)
    page.click("#login")
    page.wait_for_selector("#whoami:not(:empty)")
    return page


def test_browser_flow(server, browser, served, shots) -> None:
    from alerts.store import open_store

    site = served[0]
    with open_store(site.config.alerts_url) as store:
        target = next(a for a in store.query(limit=100, sort="confidence_desc")
                      if a.status.value == "new" and a.alert_id != site.odd_alert_id)
    ctl = _login(browser, server, site.tokens["controller"])
    # the map: every parcel drawn, filled by its light
    ctl.wait_for_function("document.querySelectorAll('#map path.leaflet-interactive').length >= 30")
    ctl.wait_for_selector("#map path.alert-marker")
    fills = ctl.eval_on_selector_all("#map path.leaflet-interactive:not(.alert-marker)", "els => els.map(e => e.getAttribute('fill'))")
    assert len(fills) == len(site.parcel_ids)
    assert {"#2e9d3a", "#f39c12"} <= set(fills), set(fills)  # green and orange parcels both shown
    # the cube quicklook under the parcels, loaded (a decoded image with its size)
    ctl.wait_for_function("[...document.querySelectorAll('#map img.leaflet-image-layer')].some(i => i.complete && i.naturalWidth > 0)",
                          timeout=30000)
    ctl.screenshot(path=str(shots / "1-map.png"))

    second = _login(browser, server, site.tokens["admin"])
    second.goto(server + "/#/alerts")
    second.wait_for_selector(f"#queue tr[data-id='{target.alert_id}']")
    assert "new" in second.inner_text(f"#queue tr[data-id='{target.alert_id}'] .status")

    # open the parcel from the map (its tooltip-bearing polygon), then the chart and the chips
    ctl.evaluate("pid => { location.hash = '#/parcel/' + encodeURIComponent(pid); }", target.parcel_id)
    ctl.wait_for_selector("#chart canvas")
    ctl.wait_for_function("document.querySelectorAll('#chips img[data-loaded]').length >= 4", timeout=30000)
    assert target.parcel_id in ctl.inner_text("#parcel-title")
    assert ctl.locator(f"#parcel-alerts tr[data-id='{target.alert_id}']").count() == 1
    series_labels = ctl.inner_text("#chart")
    assert "expected NDVI" in series_labels and "VV dB" in series_labels
    ctl.screenshot(path=str(shots / "2-parcel.png"), full_page=True)
    ctl.click("#calendar-btn")  # every acquisition of the period: S2 true colour + NDVI, S1 VV
    n_acq = len(site_dates(site))
    ctl.wait_for_function(f"document.querySelectorAll('#calendar img[data-loaded]').length === {n_acq}", timeout=60000)
    ctl.locator("#calendar").screenshot(path=str(shots / "2b-calendar.png"))

    # acknowledge in the queue
    ctl.goto(server + "/#/alerts")
    row = f"#queue tr[data-id='{target.alert_id}']"
    ctl.wait_for_selector(row + " button.ack")
    ctl.click(row + " button.ack")
    ctl.wait_for_function(f"document.querySelector(\"{row} .status\")?.textContent === 'acknowledged'")
    ctl.screenshot(path=str(shots / "3-queue-acknowledged.png"))

    # the second session sees it through the live stream, without a reload
    second.wait_for_function(f"document.querySelector(\"{row} .status\")?.textContent === 'acknowledged'",
                             timeout=15000)
    assert second.evaluate("performance.getEntriesByType('navigation').length") == 1
    second.screenshot(path=str(shots / "4-second-session-live.png"))
    with open_store(site.config.alerts_url) as store:
        stored = store.get(target.alert_id)
    assert stored.status.value == "acknowledged" and stored.history[-1].who == "ctl"

    # a viewer sees the queue without triage controls, and the API refuses a forced change
    viewer = _login(browser, server, site.tokens["viewer"])
    viewer.goto(server + "/#/alerts")
    viewer.wait_for_selector("#queue tr[data-id]")
    assert viewer.locator("#queue button.ack").first.is_visible() is False if viewer.locator(
        "#queue button.ack").count() else True
    status = viewer.evaluate(
        """async (id) => (await fetch(`/api/alerts/${id}/status`, {method: 'POST',
             headers: {'Authorization': 'Bearer ' + sessionStorage.getItem('sitsmon-token'), 'Content-Type': 'application/json'},
             body: JSON.stringify({status: 'dismissed', note: 'viewer try'})})).status""",
        target.alert_id,
    )
    assert status == 403
    viewer.screenshot(path=str(shots / "5-viewer-queue.png"))
    with open_store(site.config.alerts_url) as store:
        assert store.get(target.alert_id).status.value == "acknowledged"

    viewer_ops = viewer.locator("#nav-ops")
    assert viewer_ops.is_hidden()
    op = _login(browser, server, site.tokens["operator"])
    op.goto(server + "/#/ops")
    op.wait_for_selector("#monitor-down")
    assert "monitor not running" in op.inner_text("#monitor-down")
    op.screenshot(path=str(shots / "6-operator.png"), full_page=True)

    # a backfill from the operator page: started, seen running with its pid, cancelled from the page
    op.fill("#bf-tiles", site.tile)
    op.fill("#bf-start", "2024-05-01")
    op.fill("#bf-end", "2024-07-10")
    op.click("#backfill-form button[type=submit]")
    op.wait_for_selector("#backfill-jobs tr.job-running .bf-cancel")
    row = op.locator("#backfill-jobs tr.job-running").first
    assert site.tile in row.inner_text() and "op" in row.inner_text()
    op.screenshot(path=str(shots / "7-operator-backfill-running.png"), full_page=True)
    job_id = row.get_attribute("data-job")
    row.locator(".bf-cancel").click()
    op.wait_for_selector(f"#backfill-jobs tr.job-cancelled[data-job='{job_id}']")
    op.screenshot(path=str(shots / "8-operator-backfill-cancelled.png"), full_page=True)


def _range_text(series: dict) -> str:
    """What the parcel page says of the series it charts (the page computes it in JS)."""
    days = sorted(r["time"][:10] for r in series["s2"] + series["s1"])
    w0, w1 = series["campaign_window"]
    return f"{w0} – {w1}: {len(series['s2'])} S2 views, {len(series['s1'])} S1 views, {days[0]} to {days[-1]}"


OPEN = ("new", "acknowledged", "remote_review", "photo_request", "field_check")


def _open_alerts(server: str, headers: dict, campaign: int | None) -> list[str]:
    """The open alerts' ids the API answers (of ``campaign``; None: of every campaign)."""
    params = [("status", s) for s in OPEN] + [("page_size", "500")] + ([("campaign", str(campaign))] if campaign else [])
    out, page = [], 1
    while True:
        res = httpx.get(f"{server}/api/alerts", params=[*params, ("page", str(page))], headers=headers, timeout=60).json()
        out += [a["alert_id"] for a in res["data"]]
        if len(out) >= res["count"] or not res["data"]:
            return out
        page += 1


def test_campaign_pickers(server, browser, served, shots) -> None:
    """The parcel page lists the parcel's campaigns (latest chosen); choosing the earlier one charts its
    series (its points, dates, chips and alerts), the hash keeps it and a reload reopens it; the map's
    picker recolours the lights by campaign and the export link follows it."""
    from urllib.parse import quote

    import pandas as pd

    from alerts.store import open_store

    site, pid = served
    headers = {"Authorization": f"Bearer {site.tokens['controller']}"}
    enc = quote(pid, safe="")
    series = {c: httpx.get(f"{server}/api/parcels/{enc}/series", params={"campaign": c}, headers=headers, timeout=120).json()
              for c in (EARLIER, EARLIER + 1)}
    texts = {c: _range_text(s) for c, s in series.items()}
    assert texts[EARLIER] != texts[EARLIER + 1]
    with open_store(site.config.alerts_url) as store:  # each campaign's alerts: event dates of its year
        alerts = {c: {a.alert_id for a in store.query(limit=1000, parcel_id=pid) if a.event_date.year == c}
                  for c in series}
    assert all(alerts.values())

    page = _login(browser, server, site.tokens["controller"])
    page.evaluate("pid => { location.hash = '#/parcel/' + encodeURIComponent(pid); }", pid)
    page.wait_for_function("t => document.querySelector('#series-range').textContent === t", arg=texts[EARLIER + 1])
    options = page.eval_on_selector_all("#parcel-campaign option", "os => os.map(o => o.value)")
    assert options == [str(EARLIER + 1), str(EARLIER)] and page.input_value("#parcel-campaign") == str(EARLIER + 1)
    points = {EARLIER + 1: page.evaluate("state.chart.data[0].length")}
    assert {r.get_attribute("data-id") for r in page.locator("#parcel-alerts tr[data-id]").all()} == alerts[EARLIER + 1]

    page.select_option("#parcel-campaign", str(EARLIER))
    page.wait_for_function("t => document.querySelector('#series-range').textContent === t", arg=texts[EARLIER])
    points[EARLIER] = page.evaluate("state.chart.data[0].length")
    for c, s in series.items():  # the chart's x: one point per acquisition time of either sensor
        assert points[c] == len({r["time"] for r in s["s2"] + s["s1"]}), c
    assert {r.get_attribute("data-id") for r in page.locator("#parcel-alerts tr[data-id]").all()} == alerts[EARLIER]
    assert f"{EARLIER_LIGHT} (campaign {EARLIER})" in page.inner_text("#parcel-info")  # that campaign's light
    chip_days = page.eval_on_selector_all("#chips .chip span", "ss => ss.map(s => s.textContent.split(' · ')[2].slice(0, 10))")
    assert chip_days and all(d.startswith(str(EARLIER)) for d in chip_days), chip_days
    assert page.evaluate("location.hash") == page.evaluate(
        "([pid, c]) => '#/parcel/' + encodeURIComponent(pid) + '?campaign=' + c", [pid, EARLIER])
    page.screenshot(path=str(shots / "9-parcel-earlier-campaign.png"), full_page=True)
    page.reload()  # the link reopens the same season
    page.wait_for_function("t => document.querySelector('#series-range').textContent === t", arg=texts[EARLIER])
    assert page.input_value("#parcel-campaign") == str(EARLIER)

    # the map: latest lights by default, the earlier campaign's when picked; the export link follows
    page.evaluate("() => { location.hash = '#/map'; }")
    page.wait_for_selector("#map[data-campaign='latest']")
    fills = lambda: set(page.eval_on_selector_all(  # noqa: E731
        "#map path.leaflet-interactive:not(.alert-marker)", "els => els.map(e => e.getAttribute('fill'))"))
    assert {"#2e9d3a", "#f39c12"} <= fills()
    page.wait_for_selector("#map[data-alert-markers^='latest:']")  # every season's open alerts
    assert page.get_attribute("#map", "data-alert-markers") == f"latest:{len(_open_alerts(server, headers, None))}"
    assert "campaign" not in page.get_attribute("#map-export a[data-format=csv]", "href")
    page.select_option("#map-campaign", str(EARLIER))
    page.wait_for_selector(f"#map[data-campaign='{EARLIER}']")
    assert fills() == {"#d62c1a"}  # EARLIER_LIGHT for every parcel
    assert page.evaluate("location.hash") == f"#/map?campaign={EARLIER}"
    # the alert markers follow: that campaign's open alerts only (the API's answer), not every season's
    page.wait_for_selector(f"#map[data-alert-markers^='{EARLIER}:']")
    open_of = {c: _open_alerts(server, headers, c) for c in (EARLIER, None)}
    assert 500 < len(open_of[EARLIER]) < len(open_of[None])  # more than one page of the API, fewer than all
    assert page.get_attribute("#map", "data-alert-markers") == f"{EARLIER}:{len(open_of[EARLIER])}"
    assert page.locator("#map path.alert-marker").count() == len(open_of[EARLIER])
    assert page.get_attribute("#map-export a[data-format=csv]", "href") == f"/api/lights/export?format=csv&campaign={EARLIER}"
    with page.expect_download() as dl:
        page.click("#map-export a[data-format=csv]")
    exported = pd.read_csv(dl.value.path(), dtype=str)
    lit = set(pd.read_csv(site.config.traffic_lights, dtype={"parcel_id": str})["parcel_id"])
    assert set(exported["parcel_id"]) == lit and set(exported["campaign"]) == {str(EARLIER)}
    assert set(exported["light"]) == {EARLIER_LIGHT}
    page.screenshot(path=str(shots / "10-map-earlier-campaign.png"))
    page.reload()
    page.wait_for_selector(f"#map[data-campaign='{EARLIER}']")
    assert page.input_value("#map-campaign") == str(EARLIER) and fills() == {"#d62c1a"}
