"""HTTP plumbing shared by the sources: a per-source rate limit and retries with backoff.

Retries cover timeouts, connection failures, HTTP 429 and 5xx; they wait ``Retry-After`` when the
server gives it, else exponential backoff with jitter (tenacity).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import requests
import tenacity

from ingest.errors import RetryableHTTPError, SourceError

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``max_retries`` retries after the first attempt; waits in seconds."""

    max_retries: int = 5
    initial_wait_s: float = 0.5
    max_wait_s: float = 30.0
    jitter_s: float = 0.5
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.initial_wait_s < 0 or self.max_wait_s < 0 or self.jitter_s < 0 or self.timeout_s <= 0:
            raise ValueError("retry waits must be >= 0 and the timeout > 0")


class RateLimiter:
    """At most ``rate`` requests per second (token bucket with a burst of one); thread-safe."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        if rate <= 0:
            raise ValueError(f"rate limit must be > 0 requests per second, got {rate}")
        self.interval = 1.0 / rate
        self._clock, self._sleep = clock, sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = self._clock()
            wait = self._next - now
            self._next = max(now, self._next) + self.interval
        if wait > 0:
            self._sleep(wait)


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _wait(policy: RetryPolicy) -> Callable[[tenacity.RetryCallState], float]:
    backoff = tenacity.wait_exponential_jitter(multiplier=policy.initial_wait_s, max=policy.max_wait_s, jitter=policy.jitter_s)

    def wait(state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, RetryableHTTPError) and error.retry_after is not None:
            return min(error.retry_after, policy.max_wait_s)
        return backoff(state)

    return wait


def call_with_retries(fn: Callable[[], T], policy: RetryPolicy, what: str) -> T:
    """Call ``fn``; retry on :class:`RetryableHTTPError`; after the last attempt raise :class:`SourceError`."""

    def log(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        logger.warning("%s: attempt %d failed (%s); retrying", what, state.attempt_number, error)

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(RetryableHTTPError),
        stop=tenacity.stop_after_attempt(policy.max_retries + 1),
        wait=_wait(policy),
        before_sleep=log,
        reraise=True,
    )
    try:
        return retrying(fn)
    except RetryableHTTPError as e:
        raise SourceError(f"{what}: giving up after {policy.max_retries + 1} attempts: {e}") from e


def send(session: requests.Session, request: requests.Request, policy: RetryPolicy, limiter: RateLimiter | None) -> requests.Response:
    """Send one request (rate-limited); transient failures raise :class:`RetryableHTTPError`,
    other HTTP errors :class:`SourceError`. No retry here: wrap in :func:`call_with_retries`."""
    if limiter is not None:
        limiter.acquire()
    prepared = session.prepare_request(request)
    try:
        response = session.send(prepared, timeout=policy.timeout_s)
    except requests.Timeout as e:
        raise RetryableHTTPError(f"{request.method} {request.url}: timed out after {policy.timeout_s} s") from e
    except requests.ConnectionError as e:
        raise RetryableHTTPError(f"{request.method} {request.url}: unreachable ({_short(e)})") from e
    status = response.status_code
    if status == 429 or 500 <= status < 600:
        raise RetryableHTTPError(
            f"{request.method} {request.url}: HTTP {status}", status, retry_after_seconds(response.headers.get("Retry-After"))
        )
    if not 200 <= status < 300:
        raise SourceError(f"{request.method} {request.url}: HTTP {status}: {response.text[:200]}")
    return response


def _short(error: Exception) -> str:
    text = str(error)
    errno = re.search(r"\[Errno -?\d+\] [^'\")]+", text)
    if errno:
        return errno.group(0)
    return text if len(text) < 160 else text[:157] + "..."


def request_json(
    session: requests.Session, method: str, url: str, policy: RetryPolicy, limiter: RateLimiter | None,
    **kwargs: Any,
) -> Any:
    """One JSON request with retries; malformed JSON raises :class:`SourceError`."""

    def once() -> Any:
        response = send(session, requests.Request(method, url, **kwargs), policy, limiter)
        try:
            return response.json()
        except ValueError as e:
            raise SourceError(f"{method} {url}: answer is not JSON: {response.text[:120]!r}") from e

    return call_with_retries(once, policy, f"{method} {url}")
