"""Session fixtures for the real local services (Kafka, PostgreSQL + PostGIS, pgstac) and test data.

A fixture starts its service when it is not running (``scripts/services/*.sh``), and the service is
stopped at the end of the session only if a test session started it (see ``tests/services.py``).
A service that cannot start FAILS the tests that need it, with the service's log tail: never a skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.services import (
    PgstacServers,
    ServiceError,
    create_database,
    drop_database,
    kafka_service,
    moto_s3_service,
    postgres_service,
    unique_db_name,
)

pytest_plugins = ["tests.alerts.stores"]  # any_store: the alert store suites' engines, for alerts and dashboards

T = TypeVar("T")


def _hold(service: AbstractContextManager[T]) -> Iterator[T]:
    """Enter a service context for a fixture; a start-up failure fails the test (no traceback noise)."""
    failure = None
    try:
        value = service.__enter__()
    except ServiceError as e:
        failure = str(e)
    if failure is not None:
        pytest.fail(f"local service did not start:\n{failure}", pytrace=False)
    try:
        yield value
    finally:
        service.__exit__(None, None, None)


@pytest.fixture
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Settings read anew in the test and not kept for later ones, with no ``SITSMON_CONFIG`` from the
    environment (``get_settings`` caches one ``Settings`` per process)."""
    from sitsmon.settings import get_settings

    get_settings.cache_clear()
    monkeypatch.delenv("SITSMON_CONFIG", raising=False)
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``"127.0.0.1:29092"``: a real Apache Kafka 0.9 broker (use ``api_version=(0, 9)``)."""
    yield from _hold(kafka_service())


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """``http://127.0.0.1:PORT``: a real S3-compatible server (moto) for this session; the environment
    carries its endpoint and dummy credentials (as production's does for MinIO or S3), so subprocesses reach it."""
    from contracts import storage
    from tests.services import S3_TEST_CREDENTIALS

    saved = {k: os.environ.get(k) for k in (*S3_TEST_CREDENTIALS, "AWS_ENDPOINT_URL")}
    held = _hold(moto_s3_service())
    url = next(held)
    os.environ.update({**S3_TEST_CREDENTIALS, "AWS_ENDPOINT_URL": url})
    storage.configure(endpoint_url=url)
    try:
        yield url
    finally:
        storage.configure()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        held.close()  # stops the server


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """``s3://NAME``: a fresh, empty bucket on the session's S3 server."""
    from contracts import storage

    name = f"t-{uuid.uuid4().hex[:16]}"
    storage.filesystem().mkdir(name)
    return f"s3://{name}"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The admin DSN of the local PostgreSQL 15 + PostGIS 3 server (database ``sitsmon``)."""
    yield from _hold(postgres_service())


@pytest.fixture(scope="session")
def make_database(postgres_server: str) -> Iterator[Callable[[str], str]]:
    """Factory: ``make_database(hint) -> dsn`` of a fresh database with postgis, dropped at the end."""
    made: list[str] = []

    def make(hint: str = "db") -> str:
        name = unique_db_name(hint)
        made.append(name)
        return create_database(postgres_server, name)

    yield make
    for name in made:
        drop_database(postgres_server, name)


@pytest.fixture(scope="module")
def postgres_dsn(request: pytest.FixtureRequest, make_database: Callable[[str], str]) -> str:
    """A fresh database (with postgis) for this test module: ``postgresql://postgres@127.0.0.1:PORT/NAME``."""
    return make_database(request.module.__name__.rsplit(".", 1)[-1])


@pytest.fixture(scope="session")
def pgstac_api(
    postgres_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[list[dict[str, Any]], list[dict[str, Any]]], str]]:
    """Factory: ``pgstac_api(collections, items) -> url`` of a stac-fastapi-pgstac API serving them.

    Each distinct data set gets its own database and server (the same data set, the same server);
    all are stopped and dropped at the end of the session.
    """
    servers = PgstacServers(postgres_server, tmp_path_factory.mktemp("pgstac"))

    def serve(collections: list[dict[str, Any]], items: list[dict[str, Any]]) -> str:
        try:
            return servers(collections, items)
        except ServiceError as e:
            failure = str(e)
        pytest.fail(f"pgstac API did not start:\n{failure}", pytrace=False)

    yield serve
    servers.close()


SMALL_ARCHIVE_CONFIG = dict(
    seed=7,
    n_tiles=1,
    tile_size_px=256,
    parcels_per_tile=60,
    start=date(2024, 5, 1),
    end=date(2024, 7, 15),
)


@pytest.fixture(scope="session")
def small_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic archive (1 tile of 256 px, 60 parcels, 2024-05-01..2024-07-15, seed 7)."""
    from ingest.synth import SynthConfig, generate_archive

    root = tmp_path_factory.mktemp("small_archive") / "archive"
    generate_archive(root, SynthConfig(**SMALL_ARCHIVE_CONFIG))
    return root


DEMO_ARGS = ["--tile-size", "128", "--parcels", "30", "--start", "2024-05-01", "--end", "2024-07-10", "--port", "0",
             "--no-serve"]


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """``sitsmon demo`` once on a tiny archive (one tile of 128 px, 30 parcels, ten weeks): its data dir and
    the JSON report it printed. Shared by the demo test and the dashboard tests (the same run, made once);
    never change it: work on a copy (``tests.dashboards.conftest.copy_data_dir``)."""
    import contextlib
    import io
    import json

    from sitsmon.cli import main

    root = tmp_path_factory.mktemp("demo") / "data"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["demo", "--data-dir", str(root), *DEMO_ARGS])
    assert code == 0, out.getvalue()[-2000:]
    return root, json.loads(out.getvalue().strip().splitlines()[-1])
