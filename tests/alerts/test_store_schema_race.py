"""Several processes opening the PostgreSQL alert store on a new database at once all succeed.

Found by the two-worker monitor test on S3: both workers created the schema at the same moment and one
died on "duplicate key value violates unique constraint pg_type_typname_nsp_index".
"""

from __future__ import annotations

import multiprocessing as mp

import pytest

pytestmark = pytest.mark.integration

OPENERS = 6


def _opener(tasks: mp.Queue, start: mp.Barrier, out: mp.Queue) -> None:
    """One opener process: for each database it is given, wait until every opener holds one, then open."""
    from alerts.store.postgres import PostgresAlertStore

    while True:
        dsn = tasks.get()
        start.wait(30)
        try:
            PostgresAlertStore(dsn).close()
            out.put("ok")
        except Exception as e:  # noqa: BLE001 - the message is the assertion's subject
            out.put(f"{type(e).__name__}: {e}")


@pytest.fixture(scope="module")
def open_at_once():
    """``open_at_once(dsn) -> results``: ``OPENERS`` processes open the store on ``dsn`` at the same moment
    (a barrier). The processes are spawned, and import the store, once for all attempts: each attempt
    races on a new database as before, without paying six interpreter start-ups again."""
    ctx = mp.get_context("spawn")
    tasks, start, out = ctx.Queue(), ctx.Barrier(OPENERS), ctx.Queue()
    procs = [ctx.Process(target=_opener, args=(tasks, start, out), daemon=True) for _ in range(OPENERS)]
    for p in procs:
        p.start()

    def open_all(dsn: str) -> list[str]:
        for _ in procs:  # an opener holds its database at the barrier: each of the six takes exactly one
            tasks.put(dsn)
        return [out.get(timeout=120) for _ in procs]

    yield open_all
    for p in procs:  # every store they opened is closed: nothing to finish (a clean exit took seconds)
        p.terminate()
    for p in procs:
        p.join(30)


@pytest.mark.parametrize("attempt", range(3))
def test_concurrent_openers_on_a_new_database_all_succeed(make_database, open_at_once, attempt):
    dsn = make_database(f"schema_race_{attempt}")
    results = open_at_once(dsn)
    assert results == ["ok"] * OPENERS, results

    from alerts.store.postgres import PostgresAlertStore

    with PostgresAlertStore(dsn) as store:  # and the schema is whole: a query runs
        assert store.count() == 0
