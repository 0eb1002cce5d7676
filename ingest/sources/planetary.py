"""Planetary Computer signing: asset hrefs in Azure Blob Storage get a SAS token before they are read.

Through the ``planetary-computer`` package (``planetary_computer.sas``): it asks the SAS token endpoint
(``sas_url``, configurable: the tests run a local stand-in) for a token per storage account and
container, caches it until a minute before expiry, and sends ``PC_SDK_SUBSCRIPTION_KEY`` from the
environment when set. Items are signed when they are loaded, not when they are found, so an item
ingested days after its search (a resumed slot) gets a fresh token. A failed request or a token that
has already expired raises :class:`SigningError`; the ingestor quarantines the item with that reason.
"""

from __future__ import annotations

import copy
import threading
from typing import Any
from urllib.parse import urlparse

from ingest.errors import ItemError

__all__ = ["SAS_URL", "PlanetaryComputerSigner", "SigningError"]

SAS_URL = "https://planetarycomputer.microsoft.com/api/sas/v1/token"
_SETTINGS_LOCK = threading.Lock()


class SigningError(ItemError):
    """An item's asset hrefs could not be signed (token endpoint failed, token expired)."""


class PlanetaryComputerSigner:
    """``sign(item)`` -> a copy of the item whose blob-storage hrefs carry a SAS token."""

    def __init__(self, sas_url: str = SAS_URL, retries: int = 2, subscription_key: str | None = None):
        if not sas_url.startswith(("http://", "https://")):
            raise ValueError(f"SAS token endpoint must be http(s)://, got {sas_url!r}")
        self.sas_url = sas_url.rstrip("/")
        self.retries = retries
        self.subscription_key = subscription_key  # None: the package reads PC_SDK_SUBSCRIPTION_KEY

    def _token(self, account: str, container: str) -> Any:
        import planetary_computer.sas as sas
        from planetary_computer.settings import Settings

        # The package reads its endpoint from a process-wide settings object: set ours for this call.
        with _SETTINGS_LOCK:
            settings = Settings.get()
            previous = (settings.sas_url, settings.subscription_key)
            settings.sas_url = self.sas_url
            if self.subscription_key is not None:
                settings.subscription_key = self.subscription_key
            try:
                return sas.get_token(account, container, retry_total=self.retries, retry_backoff_factor=0.1)
            finally:
                settings.sas_url, settings.subscription_key = previous

    def sign(self, item: dict[str, Any]) -> dict[str, Any]:
        import planetary_computer.sas as sas

        out = copy.deepcopy(item)
        for key, asset in (out.get("assets") or {}).items():
            href = str(asset.get("href", ""))
            parsed = urlparse(href)
            if not parsed.netloc.endswith(sas.BLOB_STORAGE_DOMAIN) or "se=" in parsed.query:
                continue  # not in blob storage, or signed already
            account, container = sas.parse_blob_url(parsed)
            try:
                token = self._token(account, container)
            except Exception as e:  # noqa: BLE001 - requests, HTTP status and pydantic validation errors alike
                raise SigningError(f"item {item.get('id')}: signing asset {key} failed at "
                                   f"{self.sas_url}/{account}/{container}: {' '.join(str(e).split())[:200]}") from e
            if token.ttl() <= 0:
                raise SigningError(f"item {item.get('id')}: SAS token for {account}/{container} expired at "
                                   f"{token.expiry.isoformat()} (from {self.sas_url})")
            asset["href"] = token.sign(href).href
        return out
