"""`sitsmon users add|list|revoke` and `sitsmon serve`'s refusal of a missing data dir."""

from __future__ import annotations

import json
import sqlite3

from fastapi.testclient import TestClient

from dashboards import create_app
from dashboards.config import DashboardConfig
from sitsmon.cli import main


def test_users_add_list_revoke(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    assert main(["users", "--data-dir", str(data), "add", "anna", "--role", "controller", "--tiles", "33UXP,33UXQ"]) == 0
    added = json.loads(capsys.readouterr().out)
    token = added["token"]
    assert added["tiles"] == ["33UXP", "33UXQ"] and token.startswith("smk_")
    with sqlite3.connect(data / "dashboard.sqlite") as db:
        stored = db.execute("select * from users").fetchall()
    assert token not in json.dumps(stored)  # only the digest is kept
    assert main(["users", "--data-dir", str(data), "add", "anna", "--role", "viewer"]) == 1
    assert "exists" in capsys.readouterr().err
    assert main(["users", "--data-dir", str(data), "add", "bad name!", "--role", "viewer"]) == 1
    assert "user name must match" in capsys.readouterr().err
    assert main(["users", "--data-dir", str(data), "list"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert listed[0]["name"] == "anna" and "token" not in listed[0]

    app = create_app(DashboardConfig.from_data_dir(data), with_model=False)
    with TestClient(app) as client:
        h = {"Authorization": f"Bearer {token}"}
        assert client.get("/api/me", headers=h).json()["tiles"] == ["33UXP", "33UXQ"]
        assert main(["users", "--data-dir", str(data), "revoke", "anna"]) == 0
        assert client.get("/api/me", headers=h).status_code == 401
        assert client.get("/health").status_code == 200
        assert client.get("/openapi.json").status_code == 200
    assert main(["users", "--data-dir", str(data), "revoke", "anna"]) == 1


def test_serve_refuses_a_missing_data_dir(tmp_path, capsys):
    assert main(["serve", "--data-dir", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err
    assert "data dir" in err and "nope" in err and len(err.strip().splitlines()) == 1


def test_demo_logins_are_fresh_each_time(tmp_path):
    from dashboards import demo_logins

    first = demo_logins(tmp_path)
    second = demo_logins(tmp_path)
    assert set(first) == set(second) == {"demo-admin", "demo-controller", "demo-operator", "demo-viewer"}
    app = create_app(DashboardConfig.from_data_dir(tmp_path), with_model=False)
    with TestClient(app) as client:
        me = client.get("/api/me", headers={"Authorization": f"Bearer {second['demo-controller']}"}).json()
        assert me["role"] == "controller" and me["may_triage"]
        old = client.get("/api/me", headers={"Authorization": f"Bearer {first['demo-controller']}"})
        assert old.status_code == 401
