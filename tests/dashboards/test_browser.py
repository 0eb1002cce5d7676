"""The UI in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright), served by
`sitsmon serve` in a subprocess configured only through SITSMON_* variables.

Log in, see the map with parcels coloured by light, open a parcel from its alert marker, see the
chart (alert line drawn) and the chips, acknowledge the alert in the queue, see the change in a
second browser session through the live stream (no reload), and a viewer cannot change a status.
Screenshots go to $SITSMON_TEST_ARTEFACTS (default: a temporary folder); the path is printed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(site):
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


def test_browser_flow(server, browser, site, shots) -> None:
    from alerts.store import open_store

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
