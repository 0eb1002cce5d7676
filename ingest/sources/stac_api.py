"""A STAC API source through pystac-client, with a per-source rate limit and retries with backoff."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import requests
from pystac_client import Client
from pystac_client.exceptions import APIError
from pystac_client.stac_api_io import StacApiIO

from ingest.assets import Dialect, dialect_named
from ingest.errors import IngestError, SourceError
from ingest.http import RateLimiter, RetryPolicy, call_with_retries, send

logger = logging.getLogger(__name__)


class _RetryingStacApiIO(StacApiIO):
    """pystac-client IO whose every request is rate-limited and retried on timeouts, 429 and 5xx."""

    def __init__(self, policy: RetryPolicy, limiter: RateLimiter | None, **kwargs: Any):
        super().__init__(max_retries=None, timeout=policy.timeout_s, **kwargs)
        self.policy = policy
        self.limiter = limiter

    def request(
        self, href: str, method: str | None = None, headers: dict[str, str] | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> str:
        method = (method or "GET").upper()
        if method in ("POST", "PUT", "PATCH"):
            req = requests.Request(method=method, url=href, headers=headers, json=parameters)
        else:
            req = requests.Request(method=method, url=href, headers=headers, params=dict(parameters or {}))

        def once() -> str:
            response = send(self.session, req, self.policy, self.limiter)
            return response.content.decode("utf-8", errors="replace")

        return call_with_retries(once, self.policy, f"{method} {href}")


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class StacApiSource:
    """Searches one STAC API (item-search conformance) by collection, bbox/intersects and datetime."""

    def __init__(self, url: str, policy: RetryPolicy = RetryPolicy(), requests_per_second: float = 5.0,
                 name: str | None = None, page_size: int = 100, dialect: Dialect | str | None = None,
                 sign_item: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 collections: tuple[str, ...] = (), headers: dict[str, str] | None = None):
        if not url.startswith(("http://", "https://")):
            raise IngestError(f"STAC API URL must be http(s)://, got {url!r}")
        self.dialect = dialect_named(dialect)  # how its items name their bands (ingest.assets)
        self.sign_item = sign_item  # applied to an item right before its assets are read (e.g. SAS tokens)
        self.collections = tuple(collections)  # what to watch here; empty: the poller's collections
        self.headers = dict(headers or {})  # credentials from the environment (never logged)
        self.url = url.rstrip("/")
        self.name = name or self.url
        self.policy = policy
        self.limiter = RateLimiter(requests_per_second)
        self.page_size = page_size
        self._client: Client | None = None

    def _open(self) -> Client:
        if self._client is None:
            io = _RetryingStacApiIO(self.policy, self.limiter, headers=self.headers or None)
            try:
                self._client = Client.open(self.url, stac_io=io)
            except (APIError, ValueError, KeyError) as e:
                raise SourceError(f"STAC API {self.url}: cannot open ({e})") from e
        return self._client

    def search(
        self, collection: str, bbox: tuple[float, float, float, float] | None, start_s: int, end_s: int,
        intersects: dict[str, Any] | None = None,
    ) -> Iterator[Any]:
        client = self._open()
        try:
            search = client.search(
                collections=[collection], bbox=list(bbox) if bbox and not intersects else None,
                intersects=intersects, datetime=[_iso(start_s), _iso(end_s)], limit=self.page_size, method="POST",
            )
            for page in search.pages_as_dicts():
                features = page.get("features")
                if not isinstance(features, list):
                    raise SourceError(f"STAC API {self.url}: search page without a features list")
                yield from features
        except APIError as e:
            raise SourceError(f"STAC API {self.url}: search failed: {' '.join(str(e).split())[:300]}") from e
        except ValueError as e:  # malformed JSON page
            raise SourceError(f"STAC API {self.url}: malformed search answer: {e}") from e
