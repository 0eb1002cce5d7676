"""The alert store under concurrent writers and failures (issue 15 item 7): a run is one transaction
(``BEGIN IMMEDIATE`` on SQLite, retried while the database is busy); two writer processes both
succeed and lose nothing; a failure midway stores nothing of the run. Backends come from a registry
(issue 14 item 6): ``alerts/store/base.py`` imports none of them."""

from __future__ import annotations

import ast
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from alerts.errors import StoreError
from alerts.store import backends, open_store
from alerts.store.postgres import PostgresAlertStore
from alerts.store.sqlite import SqliteAlertStore
from tests.alerts.stores import emptied_postgres_store
from tests.alerts.test_inputs import good  # noqa: F401 - fixture
from tests.alerts.test_store import make_alert

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _writers(url: str, tmp_path: Path, runs: int, per_run: int, names=("a", "b")) -> list[subprocess.CompletedProcess]:
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-m", "tests.alerts.store_writer", url, n, str(runs), str(per_run),
                               str(go)], env=_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for n in names]
    time.sleep(1.5)  # both imported and waiting
    go.write_text("go")
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


def test_two_writer_processes_both_succeed_and_lose_nothing(tmp_path):
    url = str(tmp_path / "S.sqlite")
    SqliteAlertStore(url).close()  # the schema exists; the writers race on the data, not the DDL
    runs, per_run = 25, 40
    results = _writers(url, tmp_path, runs, per_run)
    for r in results:
        assert r.returncode == 0, r.stderr[-2000:]
    with SqliteAlertStore(url) as store:
        assert store.count() == 2 * runs * per_run


@pytest.mark.integration
def test_two_writer_processes_on_postgresql(postgres_dsn, tmp_path):
    emptied_postgres_store(postgres_dsn).close()
    runs, per_run = 10, 40
    for r in _writers(postgres_dsn, tmp_path, runs, per_run):
        assert r.returncode == 0, r.stderr[-2000:]
    with PostgresAlertStore(postgres_dsn) as store:
        assert store.count() == 2 * runs * per_run


def test_two_detect_runs_on_one_store(good, tmp_path):  # noqa: F811
    """The issue's probe: two ``sitsmon detect --store S.sqlite`` started together."""
    obs = pd.read_csv(good["obs"])
    store = tmp_path / "S.sqlite"
    procs = []
    for pid in ("G1", "G2"):
        part = tmp_path / f"{pid}.csv"
        obs[obs.parcel_id == pid].to_csv(part, index=False)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "sitsmon", "detect", "--observations", str(part), "--parcels", str(good["parcels"]),
             "--out", str(tmp_path / f"{pid}-alerts.csv"), "--store", str(store)],
            env=_env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    written = sum(len(pd.read_csv(tmp_path / f"{pid}-alerts.csv")) for pid in ("G1", "G2"))
    with SqliteAlertStore(store) as s:
        assert written > 0 and s.count() == written


def test_a_run_failing_midway_stores_nothing_sqlite(tmp_path):
    """A real SQLite failure on the third alert of a run (a trigger aborts the insert)."""
    path = tmp_path / "S.sqlite"
    with SqliteAlertStore(path) as store:
        store.upsert_many([make_alert("EARLIER", day="2024-05-01")])
    con = sqlite3.connect(path)
    con.execute("CREATE TRIGGER fail BEFORE INSERT ON alerts WHEN NEW.parcel_id = 'P3' "
                "BEGIN SELECT RAISE(ABORT, 'simulated failure'); END")
    con.commit()
    con.close()
    run = [make_alert(f"P{i}", day=f"2024-06-1{i}") for i in range(1, 6)]
    with SqliteAlertStore(path) as store:
        with pytest.raises(StoreError, match="nothing of it was stored.*simulated failure"):
            store.upsert_many(run)
        assert [a.parcel_id for a in store.query()] == ["EARLIER"]


def test_a_run_failing_midway_stores_nothing(any_store):
    """An alert that cannot be encoded (a detector's bug) in the middle of a run: both backends roll
    the whole run back, the alerts stored before stay as they were."""
    earlier = make_alert("EARLIER", day="2024-05-01")
    any_store.upsert_many([earlier])
    run = [make_alert(f"P{i}", day=f"2024-06-1{i}") for i in range(1, 6)]
    broken = run[2].model_copy(update={"evidence": {"bad": object()}})
    with pytest.raises(StoreError, match="nothing of it was stored"):
        any_store.upsert_many([*run[:2], broken, *run[3:]])
    assert [a.alert_id for a in any_store.query()] == [earlier.alert_id]
    assert any_store.upsert_many(run) == 5 and any_store.count() == 6


def test_busy_database_is_retried_within_the_timeout(tmp_path):
    """Another connection holds the write lock for a while: the run waits for it, then succeeds;
    held past the timeout, it fails with a one-line error naming the store."""
    path = tmp_path / "S.sqlite"
    SqliteAlertStore(path).close()
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    import threading

    threading.Timer(1.0, lambda: holder.execute("COMMIT")).start()
    with SqliteAlertStore(path, busy_timeout_s=20) as store:
        assert store.upsert_many([make_alert()]) == 1
    holder.execute("BEGIN IMMEDIATE")
    with SqliteAlertStore(path, busy_timeout_s=0.5) as store:  # opening and reading never wait
        assert store.count() == 1
        with pytest.raises(StoreError, match=f"SQLite alert store {path} stayed busy"):
            store.upsert_many([make_alert("P2")])
        holder.execute("ROLLBACK")
        assert store.count() == 1
    holder.close()


def test_store_base_imports_no_backend_and_urls_resolve_by_registry(tmp_path):
    tree = ast.parse((ROOT / "alerts/store/base.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in imported if m and m.startswith(("alerts.store.", "psycopg", "sqlite3"))}
    assert backends()["sqlite"] is SqliteAlertStore and backends()["postgresql"] is PostgresAlertStore
    with open_store(f"sqlite:///{tmp_path / 'a.sqlite'}") as s:
        assert isinstance(s, SqliteAlertStore) and s.path == str(tmp_path / "a.sqlite")
    with pytest.raises(StoreError, match="unknown alert store scheme 'mysql'"):
        open_store("mysql://x/y")
