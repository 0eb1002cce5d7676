"""schemathesis over the app's own OpenAPI document: no request it generates gets a 5xx.

Runs in-process (ASGI) on a copy of the session's data dir, with an admin token (every route
reachable) and with none; bounded by ``max_examples`` per operation. The live stream is left out:
it is an endless response by design (it is exercised in test_api and the browser test).
"""

from __future__ import annotations

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from dashboards import create_app
from dashboards.config import DashboardConfig
from dashboards.security import UserStore
from tests.dashboards.conftest import copy_data_dir

MAX_EXAMPLES = 15


@pytest.fixture(scope="module")
def fuzz_app(site, tmp_path_factory):
    root = copy_data_dir(site.data_dir, tmp_path_factory.mktemp("fuzz") / "data")
    config = DashboardConfig.from_data_dir(root)
    users = UserStore(config.users_db)
    token = users.add("fuzzer", "admin", ["*"])
    users.close()
    app = create_app(config, with_model=False)
    with TestClient(app):  # runs the lifespan: the stores are opened
        yield app, token


def _schema(app):
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def _fuzz(op, token: str, failures: list[str]) -> None:
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy())
    def run(case):
        for headers in ({"Authorization": f"Bearer {token}"}, {}):
            response = case.call(headers=headers)
            if response.status_code >= 500:
                failures.append(f"{op.method.upper()} {case.formatted_path} {case.query} -> "
                                f"{response.status_code}: {response.text[:200]}")
            if not headers and op.path != "/health":
                # without a token: refused, malformed, or matching no route (404) - never served
                assert response.status_code in (401, 404, 422), (op.path, response.status_code)

    run()


def test_no_5xx_for_generated_requests(fuzz_app):
    app, token = fuzz_app
    schema = _schema(app)
    operations = [op.ok() for op in schema.get_all_operations() if op.ok().path != "/api/alerts/stream"]
    assert len(operations) >= 15
    failures = []
    for op in operations:
        _fuzz(op, token, failures)
    assert not failures, "\n".join(failures[:10])
