"""Several processes opening the PostgreSQL alert store on a new database at once all succeed.

Found by the two-worker monitor test on S3: both workers created the schema at the same moment and one
died on "duplicate key value violates unique constraint pg_type_typname_nsp_index".
"""

from __future__ import annotations

import multiprocessing as mp

import pytest

pytestmark = pytest.mark.integration

OPENERS = 6


def _open(dsn: str, start: mp.Barrier, out: mp.Queue) -> None:
    from alerts.store.postgres import PostgresAlertStore

    start.wait(30)
    try:
        PostgresAlertStore(dsn).close()
        out.put("ok")
    except Exception as e:  # noqa: BLE001 - the message is the assertion's subject
        out.put(f"{type(e).__name__}: {e}")


@pytest.mark.parametrize("attempt", range(3))
def test_concurrent_openers_on_a_new_database_all_succeed(make_database, attempt):
    dsn = make_database(f"schema_race_{attempt}")
    ctx = mp.get_context("spawn")
    start, out = ctx.Barrier(OPENERS), ctx.Queue()
    procs = [ctx.Process(target=_open, args=(dsn, start, out)) for _ in range(OPENERS)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    assert results == ["ok"] * OPENERS, results

    from alerts.store.postgres import PostgresAlertStore

    with PostgresAlertStore(dsn) as store:  # and the schema is whole: a query runs
        assert store.count() == 0
