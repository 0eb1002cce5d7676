"""Kafka-only behaviour of the bus (the shared contract runs on Kafka in test_bus.py)."""

from __future__ import annotations

import time
import uuid

import pytest

from monitor.bus import BusError, BusUnavailableError, CommitError, KafkaBus, make_bus
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
    with pytest.raises(BusError, match=r"session_timeout_s must be >= 1 s, got 0\.5"):
        KafkaBus("127.0.0.1:1", session_timeout_s=0.5)
    with pytest.raises(BusError, match="max_poll_interval_s must be > 0, got 0"):
        KafkaBus("127.0.0.1:1", max_poll_interval_s=0)


def test_kafka_request_timeout_outlasts_the_session(kafka_bootstrap: str) -> None:
    """A 0.9 JoinGroup waits up to the session timeout: shorter requests would time out mid-rebalance."""
    bus = KafkaBus(kafka_bootstrap, api_version="0.9", session_timeout_s=20.0, request_timeout_s=5.0)
    assert bus.request_timeout_s > bus.session_timeout_s
    bus.close()


@pytest.mark.integration
@pytest.mark.timeout(90)
@pytest.mark.parametrize(("max_poll_interval_s", "stays"), [(300.0, True), (2.0, False)])
def test_a_batch_longer_than_the_session_stays_in_the_group_on_0_9(
        kafka_bootstrap: str, max_poll_interval_s: float, stays: bool) -> None:
    """kafka-python heartbeats between polls: on a 0.9 broker a member alone in its group that spends
    longer than its session timeout on one batch keeps its partitions and commits it; only
    ``max_poll_interval_s`` makes it leave (a poll bound clamped to the session timeout made every
    such batch leave the group and fail its commit)."""
    bus = KafkaBus(kafka_bootstrap, api_version="0.9", session_timeout_s=2.0,
                   max_poll_interval_s=max_poll_interval_s)
    topic, group = f"test.bus.{uuid.uuid4().hex[:10]}", f"g-{uuid.uuid4().hex[:8]}"
    try:
        for i in range(3):
            bus.publish(topic, f"k{i}", {"i": i})
        bus.flush()
        consumer = bus.consumer([topic], group)
        got = []
        for _ in range(60):
            got += consumer.poll(timeout_s=0.5)
            if got:
                break
        assert got
        held = consumer.assignment()
        time.sleep(5.0)  # the batch: 2.5 session timeouts without a poll
        if stays:
            consumer.commit()
            assert consumer.assignment() == held
            assert bus.committed(group, topic)
        else:
            with pytest.raises(CommitError, match="CommitFailedError"):
                consumer.commit()
        consumer.close()
    finally:
        bus.close()
