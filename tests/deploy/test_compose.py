"""compose.yaml and the Dockerfile agree with the code (settings model, CLI, pyproject), carry no secret,
and the checker that says so rejects broken copies (issue 12 item 4). Docker does not run here."""

from __future__ import annotations

import copy

import pytest
import yaml

from tests.deploy.compose_check import REPO, compose_problems, dockerfile_problems, environment

# What an operator's .env would hold for the variables compose.yaml requires (${VAR:?}); values of the
# right shape, none of them real.
SAMPLES = {
    "POSTGRES_PASSWORD": "sample-password",
    "MINIO_ROOT_USER": "sample-user",
    "MINIO_ROOT_PASSWORD": "sample-password",
    "SITE_DIR": "/srv/sitsmon-site",
    "STAC_URLS": '["https://stac.example.org/v1"]',
}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (REPO / "Dockerfile").read_text()


def test_compose_agrees_with_the_code(compose):
    assert compose_problems(compose, SAMPLES) == []


def test_dockerfile_agrees_with_the_code(dockerfile):
    assert dockerfile_problems(dockerfile) == []


def test_the_services_a_deployment_needs(compose):
    services = compose["services"]
    assert {"kafka", "postgis", "minio", "ingest", "monitor", "dashboard"} <= set(services)
    # KRaft, no ZooKeeper anywhere.
    assert "zookeeper" not in " ".join(services).lower()
    kafka = environment(services["kafka"])
    assert services["kafka"]["image"].startswith("apache/kafka:") and "broker,controller" in kafka["KAFKA_PROCESS_ROLES"]
    assert not any("ZOOKEEPER" in key for s in services.values() for key in environment(s))
    # The monitor runs as several replicas of one consumer group; ingest polls; the dashboard serves.
    monitor = services["monitor"]
    assert monitor["deploy"]["replicas"] >= 2
    assert environment(monitor)["SITSMON_BUS__GROUP_ID"] and environment(monitor)["SITSMON_BUS__BACKEND"] == "kafka"
    assert monitor["command"][:2] == ["monitor", "run"]
    assert services["ingest"]["command"][:2] == ["ingest", "poll"]
    assert services["dashboard"]["command"][0] == "serve"
    # pgstac is optional: only in its profile.
    assert services["stac-api"]["profiles"] == ["pgstac"] and services["pgstac-migrate"]["profiles"] == ["pgstac"]
    # Every service that writes keeps its data on a named volume.
    for name in ("kafka", "postgis", "minio", "ingest", "monitor", "dashboard"):
        assert any(str(v).split(":")[0] in compose["volumes"] for v in services[name]["volumes"]), name


def test_no_secret_file_is_committed():
    assert not (REPO / ".env").exists()
    assert ".env" in (REPO / ".dockerignore").read_text().split()


def _set(tree: dict, path: str, value) -> dict:
    tree = copy.deepcopy(tree)
    *parents, last = path.split("/")
    node = tree
    for key in parents:
        node = node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return tree


_DELETE = object()

SEEDED = [
    # (what is broken, path, new value, a word of the problem the checker must report)
    ("a setting name with a typo", "services/monitor/environment/SITSMON_BUS__BACKNED", "kafka", "SITSMON_BUS__BACKNED"),
    ("a section that does not exist", "services/ingest/environment/SITSMON_INJEST__TILES", "[]", "SITSMON_INJEST__TILES"),
    ("a value the model refuses", "services/monitor/environment/SITSMON_BUS__BACKEND", "rabbitmq", "bus.backend"),
    ("a port out of range", "services/dashboard/environment/SITSMON_DASHBOARD__PORT", "70000", "dashboard.port"),
    ("an option the CLI lacks", "services/monitor/command", ["monitor", "run", "--onse"], "--onse"),
    ("a subcommand the CLI lacks", "services/ingest/command", ["ingest", "pol"], "does not parse"),
    ("a literal password", "services/postgis/environment/POSTGRES_PASSWORD", "hunter2", "POSTGRES_PASSWORD is written"),
    ("a password in a URL", "services/ingest/environment/SITSMON_ALERTS__STORE_URL",
     "postgresql://sitsmon:hunter2@postgis:5432/sitsmon", "literal password"),
    ("an unguarded variable", "services/minio/environment/MINIO_ROOT_PASSWORD", "${MINIO_ROOT_PASSWORD}", "neither a default"),
    ("a secret with a default", "services/monitor/environment/SITSMON_ALERTS__WEBHOOK_SECRET",
     "${WEBHOOK_SECRET:-letmein}", "has a default"),
    ("a compose variable with the settings' prefix", "services/ingest/environment/SITSMON_INGEST__WORKERS",
     "${SITSMON_WORKERS:-2}", "starts with SITSMON_"),
    ("a required variable the test has no sample for", "services/ingest/environment/SITSMON_INGEST__SINCE",
     "${SINCE:?set SINCE}", "no sample value"),
    ("a missing healthcheck", "services/dashboard/healthcheck", _DELETE, "no healthcheck"),
    ("waiting on a service without healthcheck", "services/kafka/healthcheck", _DELETE, "has no healthcheck"),
    ("an undeclared volume", "services/dashboard/volumes", ["sitsmon-dat:/data"], "sitsmon-dat"),
    ("a dependency on a profile-only service", "services/ingest/depends_on/stac-api",
     {"condition": "service_healthy"}, "profile"),
]


@pytest.mark.parametrize(("what", "path", "value", "word"), SEEDED, ids=[s[0] for s in SEEDED])
def test_the_checker_rejects_a_broken_copy(compose, what, path, value, word):
    problems = compose_problems(_set(compose, path, value), SAMPLES)
    assert any(word in p for p in problems), (what, problems)


@pytest.mark.parametrize(("old", "new", "word"), [
    ('ENTRYPOINT ["sitsmon"]', 'ENTRYPOINT ["sitsmonn"]', "not an entry point"),
    ('ENTRYPOINT ["sitsmon"]', "ENTRYPOINT sitsmon", "exec (JSON) form"),
    ('CMD ["--help"]', 'CMD ["--hepl"]', "does not parse"),
    ("COPY monitor monitor", "COPY monitors monitor", "COPY source monitors"),
])
def test_the_checker_rejects_a_broken_dockerfile(dockerfile, old, new, word):
    assert old in dockerfile
    problems = dockerfile_problems(dockerfile.replace(old, new))
    assert any(word in p for p in problems), problems

