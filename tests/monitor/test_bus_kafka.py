"""Kafka-only behaviour of the bus (the shared contract runs on Kafka in test_bus.py)."""

from __future__ import annotations

import uuid

import pytest

from monitor.bus import BusError, BusUnavailableError, KafkaBus, make_bus
from tests.services import free_port


@pytest.mark.timeout(30)
@pytest.mark.parametrize("api_version", [(0, 9), None])
def test_unreachable_broker_is_named(api_version: tuple[int, int] | None) -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(BusUnavailableError, match=address) as info:
        make_bus("kafka", address, api_version, connect_timeout_s=1.0)
    assert isinstance(info.value, BusError) and isinstance(info.value, ConnectionError)


@pytest.mark.timeout(30)
def test_kafka_version_probe_failure_is_bounded_and_explained(kafka_bootstrap: str) -> None:
    """Auto-detecting the API version of a 0.9 broker fails: the error says so, after connect_timeout_s."""
    bus = KafkaBus(kafka_bootstrap, api_version=None, connect_timeout_s=2.0)
    with pytest.raises(BusUnavailableError, match="api_version='0.9'"):
        bus.publish(f"test.bus.{uuid.uuid4().hex[:10]}", "k", {"a": 1})
    bus.close()


def test_kafka_rejects_bad_bootstrap_and_version() -> None:
    with pytest.raises(BusError, match="HOST:PORT"):
        KafkaBus("localhost")
    with pytest.raises(BusError, match="api_version"):
        KafkaBus("127.0.0.1:1", api_version="zero.nine")


def test_kafka_request_timeout_outlasts_the_session(kafka_bootstrap: str) -> None:
    """A 0.9 JoinGroup waits up to the session timeout: shorter requests would time out mid-rebalance."""
    bus = KafkaBus(kafka_bootstrap, api_version="0.9", session_timeout_s=20.0, request_timeout_s=5.0)
    assert bus.request_timeout_s > bus.session_timeout_s
    bus.close()
