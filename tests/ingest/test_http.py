"""Retries, backoff, Retry-After and the rate limit, against a real local HTTP server."""

from __future__ import annotations

import time

import pytest
import requests

from ingest.errors import SourceError
from ingest.http import RateLimiter, RetryPolicy, request_json, retry_after_seconds
from ingest.poller import Poller, WatchConfig
from ingest.sources import StacApiSource
from tests.ingest.scripted_http import ScriptedServer, landing

FAST = RetryPolicy(max_retries=3, initial_wait_s=0.01, max_wait_s=0.2, jitter_s=0.01, timeout_s=2.0)


def test_retries_429_and_5xx_then_succeeds():
    with ScriptedServer() as srv:
        srv.script("/x", 429, "slow down", {"Retry-After": "0.05"})
        srv.script("/x", 503, "busy")
        srv.script("/x", 502, "bad gateway")
        srv.script("/x", 200, {"ok": True})
        t0 = time.monotonic()
        assert request_json(requests.Session(), "GET", srv.url + "/x", FAST, None) == {"ok": True}
        assert srv.count("/x") == 4
        assert time.monotonic() - t0 >= 0.05  # Retry-After was honoured (a lower bound, not a timing budget)


def test_gives_up_with_a_clear_message():
    with ScriptedServer() as srv:
        srv.script("/x", 500, "boom")
        with pytest.raises(SourceError, match=r"giving up after 4 attempts: GET .*/x: HTTP 500"):
            request_json(requests.Session(), "GET", srv.url + "/x", FAST, None)
        assert srv.count("/x") == 4


def test_client_errors_are_not_retried():
    with ScriptedServer() as srv:
        srv.script("/x", 404, "nope")
        with pytest.raises(SourceError, match="HTTP 404"):
            request_json(requests.Session(), "GET", srv.url + "/x", FAST, None)
        assert srv.count("/x") == 1


def test_unreachable_host_is_retried_then_reported():
    with ScriptedServer() as srv:
        url = srv.url
    with pytest.raises(SourceError, match="unreachable"):
        request_json(requests.Session(), "GET", url + "/x", FAST, None)


def test_retry_after_forms():
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    assert 0 <= retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_rate_limiter_spaces_requests():
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    limiter = RateLimiter(4.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        limiter.acquire()
    assert slept == pytest.approx([0.25, 0.25, 0.25, 0.25])
    with pytest.raises(ValueError):
        RateLimiter(0)


def test_stac_source_rides_out_429_and_503(tmp_path):
    with ScriptedServer() as srv:
        srv.script("/", 200, landing(srv.url))
        srv.script("/search", 429, "", {"Retry-After": "0"})
        srv.script("/search", 503, "")
        srv.script("/search", 200, {"type": "FeatureCollection", "features": [{"id": "a"}], "links": []})
        src = StacApiSource(srv.url, FAST, requests_per_second=100)
        assert list(src.search("sentinel-2-l2a", None, 0, 10)) == [{"id": "a"}]
        assert srv.count("/search") == 3


def test_poll_goes_on_when_a_source_fails(tmp_path):
    """One source answers 500 forever, one is unreachable: both reported, nothing written, no crash."""
    from ingest.ledger import open_ledger

    with ScriptedServer() as down:
        dead_url = down.url
    with ScriptedServer() as srv:
        srv.script("/", 200, landing(srv.url))
        srv.script("/search", 500, "internal")
        led = open_ledger(tmp_path / "l.sqlite")
        poller = Poller([StacApiSource(srv.url, FAST, 100), StacApiSource(dead_url, FAST, 100)], led,
                        tmp_path / "cubes", tmp_path / "series", WatchConfig(collections=("sentinel-2-l2a",)))
        report = poller.poll_once()
        assert len(report.errors) == 2
        assert "HTTP 500" in report.errors[0] and "unreachable" in report.errors[1]
        assert led.watermark(srv.url, "sentinel-2-l2a", "*") is None  # not advanced past a failed search
        assert not (tmp_path / "cubes").exists()
