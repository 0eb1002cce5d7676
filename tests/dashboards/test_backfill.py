"""Backfill jobs through the API: a real `sitsmon monitor replay` subprocess on a copy of the
session's data dir, finished (state done, its alerts back in an emptied store) and cancelled
(state cancelled, process gone); a process that ignores SIGTERM is killed; bad requests are 4xx."""

from __future__ import annotations

import json
import sys
import time
from datetime import date
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from dashboards import create_app
from dashboards.backfill import BackfillJobs
from dashboards.config import DashboardConfig
from tests.dashboards.conftest import FOREIGN_TILE, auth, copy_data_dir

START, END = "2024-05-01", "2024-07-10"
WHOLE_WORLD = {"type": "Polygon", "coordinates": [[[-180, -90], [180, -90], [180, 90], [-180, 90], [-180, -90]]]}


def gone(pid: int) -> bool:
    """No such process, or only its zombie left (exited, not yet reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def wait_final(client, site, job_id: int, timeout_s: float = 300) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(f"/api/ops/backfill/{job_id}", headers=auth(site, "operator")).json()
        if job["state"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not end in {timeout_s} s: {job}")


@pytest.fixture(scope="module")
def copy(site, tmp_path_factory):
    """The session's data dir without its monitor states and alerts: what the replay re-creates."""
    root = copy_data_dir(site.data_dir, tmp_path_factory.mktemp("backfill") / "data", skip=("monitor", "alerts.sqlite"))
    config = DashboardConfig.from_data_dir(root)
    with TestClient(create_app(config, with_model=False)) as client:
        yield client, root


def test_a_replay_job_runs_to_done_and_its_alerts_appear(copy, site):
    client, root = copy
    assert client.get("/api/alerts", headers=auth(site, "operator")).json()["count"] == 0
    r = client.post("/api/ops/backfill", headers=auth(site, "operator"),
                    json={"tiles": [site.tile], "start": START, "end": END})
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["state"] in ("queued", "running") and job["who"] == "op" and job["tiles"] == [site.tile]
    job = wait_final(client, site, job["id"])
    assert job["state"] == "done", job
    result = json.loads(job["progress"])  # the replay's last line: its JSON result
    assert result["tiles"][site.tile]["acquisitions"] > 0 and job["returncode"] == 0
    alerts = client.get("/api/alerts", headers=auth(site, "operator")).json()
    assert alerts["count"] == result["alerts"] > 0  # the replay's effect: the emptied store holds its alerts
    assert (root / "monitor").is_dir()
    listed = client.get("/api/ops/backfill", headers=auth(site, "operator")).json()
    assert listed["data"][0]["id"] == job["id"] and listed["data"][0]["state"] == "done"


def test_cancel_stops_the_process(copy, site):
    client, _ = copy
    # the tiles of the parcels a polygon touches; cancelled while the replay is still starting up
    job = client.post("/api/ops/backfill", headers=auth(site, "admin"),
                      json={"polygon": WHOLE_WORLD, "start": START, "end": END}).json()
    assert job["tiles"] == [site.tile]
    for _ in range(200):
        job = client.get(f"/api/ops/backfill/{job['id']}", headers=auth(site, "admin")).json()
        if job["pid"]:
            break
        time.sleep(0.05)
    assert job["state"] == "running" and not gone(job["pid"])
    r = client.post(f"/api/ops/backfill/{job['id']}/cancel", headers=auth(site, "admin"))
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    assert gone(job["pid"])
    assert client.post(f"/api/ops/backfill/{job['id']}/cancel", headers=auth(site, "admin")).status_code == 409
    assert wait_final(client, site, job["id"])["state"] == "cancelled"  # the watcher did not overwrite it


def test_a_process_ignoring_sigterm_is_killed(tmp_path):
    ignore = ("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
              "print('ignoring SIGTERM', flush=True); time.sleep(120)")
    jobs = BackfillJobs(tmp_path / "d.sqlite", tmp_path, command=[sys.executable, "-c", ignore], term_grace_s=0.5)
    try:
        job = jobs.start("op", ["T1"], date(2024, 1, 1), date(2024, 1, 2))
        queued = jobs.start("op", ["T1", "T2"], date(2024, 1, 1), date(2024, 1, 2))
        assert queued["state"] == "queued"  # one job per tile at a time
        deadline = time.monotonic() + 60
        while jobs.get(job["id"])["progress"] != "ignoring SIGTERM" and time.monotonic() < deadline:
            time.sleep(0.05)
        t0 = time.monotonic()
        assert jobs.cancel(job["id"])["state"] == "cancelled"
        assert gone(job["pid"]) and time.monotonic() - t0 >= 0.5  # outlived SIGTERM, then SIGKILL
        nxt = jobs.get(queued["id"])
        assert nxt["state"] == "running" and nxt["pid"]  # the queued one started
    finally:
        jobs.close()  # stops what it started
    assert gone(nxt["pid"])


def test_jobs_of_other_tiles_run_side_by_side_and_a_tiles_jobs_in_order(tmp_path):
    # a stand-in replay: reports each tile of its --tiles as the replay does, then waits to be stopped
    fake = ("import sys, time; tiles = sys.argv[sys.argv.index('--tiles') + 1].split(','); "
            "[print(f'replay {t}: 7 acquisitions folded, 1 alerts', flush=True) for t in tiles[:1]]; time.sleep(120)")
    jobs = BackfillJobs(tmp_path / "d.sqlite", tmp_path, command=[sys.executable, "-c", fake], max_running=2)
    try:
        a = jobs.start("op", ["T1", "T2"], date(2024, 1, 1), date(2024, 1, 2))
        b = jobs.start("op", ["T2"], date(2024, 1, 1), date(2024, 1, 2))  # waits for a (tile T2)
        c = jobs.start("op", ["T3"], date(2024, 1, 1), date(2024, 1, 2))  # another tile: runs at once
        d = jobs.start("op", ["T4"], date(2024, 1, 1), date(2024, 1, 2))  # two run already: waits
        assert [jobs.get(j["id"])["state"] for j in (a, b, c, d)] == ["running", "queued", "running", "queued"]
        deadline = time.monotonic() + 60
        while jobs.get(a["id"])["tiles_done"] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        got = jobs.get(a["id"])
        assert (got["tiles_done"], got["tiles_total"], got["acquisitions_done"]) == (1, 2, 7)
        assert (jobs.get(b["id"])["tiles_done"], jobs.get(b["id"])["tiles_total"]) == (0, 1)
        jobs.cancel(c["id"])  # frees a slot: d (T4) starts, b still waits for a's T2
        assert [jobs.get(j["id"])["state"] for j in (b, d)] == ["queued", "running"]
        jobs.cancel(a["id"])
        assert jobs.get(b["id"])["state"] == "running"
    finally:
        jobs.close()


@pytest.mark.parametrize(("who", "body", "status"), [
    ("operator", {"start": START, "end": END}, 422),  # neither tiles nor polygon
    ("operator", {"tiles": ["33UXP"], "polygon": WHOLE_WORLD, "start": START, "end": END}, 422),
    ("operator", {"tiles": ["33UXP"], "start": END, "end": START}, 422),
    ("operator", {"tiles": ["bad tile!"], "start": START, "end": END}, 422),
    ("admin", {"tiles": ["00AAA"], "start": START, "end": END}, 422),  # no parcels there
    ("operator", {"tiles": [FOREIGN_TILE], "start": START, "end": END}, 403),
    ("foreign_op", {"polygon": WHOLE_WORLD, "start": START, "end": END}, 422),  # touches none of their region
])
def test_bad_requests_start_nothing(client, site, who, body, status):
    before = client.get("/api/ops/backfill", headers=auth(site, "admin")).json()["count"]
    r = client.post("/api/ops/backfill", headers=auth(site, who), json=body)
    assert r.status_code == status, r.text
    assert client.get("/api/ops/backfill", headers=auth(site, "admin")).json()["count"] == before
    assert client.get("/api/ops/backfill/999999", headers=auth(site, "admin")).status_code == 404
    assert client.get("/api/ops/backfill/x1", headers=auth(site, "admin")).status_code == 422
