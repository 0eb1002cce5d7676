"""A STAC source from one ``[[ingest.sources]]`` entry (plain values: ingest reads no settings).

Credentials come from the environment variable the entry names (``token_env``), never from the file:
for ``planetary-computer`` it is the subscription key sent to the SAS token endpoint, for the other
dialects a bearer token sent with every catalogue request. Items whose assets live on S3 (``s3://``
hrefs: the Copernicus Data Space's ``s3://eodata/...``, JPEG 2000 inside SAFE folders) are read through
GDAL's ``/vsis3/`` at the entry's ``s3_endpoint`` (for ``cdse`` by default CDSE's own,
:data:`CDSE_S3_ENDPOINT`), path-style, with ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` from the
environment (docs/catalogues.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from ingest.assets import dialect_named
from ingest.errors import AssetError, ConfigError
from ingest.http import RetryPolicy
from ingest.load import READ_ENV
from ingest.sources.stac_api import StacApiSource

__all__ = ["CDSE_S3_ENDPOINT", "S3Access", "configured_source"]

#: The Copernicus Data Space Ecosystem's S3 endpoint for ``s3://eodata/...`` (its S3 keys come from the
#: CDSE dashboard; they go in the environment, never in the configuration).
CDSE_S3_ENDPOINT = "https://eodata.dataspace.copernicus.eu"
S3_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


class S3Access:
    """The signing step of a source whose assets are on S3: the GDAL options of its endpoint on each item
    with ``s3://`` hrefs (``ingest.load.READ_ENV``); :class:`AssetError` naming the source when the
    credentials are not in the environment (the item is quarantined, the poll goes on)."""

    def __init__(self, source: str, endpoint: str, environ: Mapping[str, str] = os.environ,
                 then: Any = None):
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path.strip("/"):
            raise ConfigError(f"s3_endpoint must be http(s)://host[:port], got {endpoint!r}")
        self.source, self.endpoint, self.environ, self.then = source, endpoint, environ, then
        self.gdal = {"AWS_S3_ENDPOINT": parts.netloc, "AWS_VIRTUAL_HOSTING": "FALSE",
                     "AWS_HTTPS": "YES" if parts.scheme == "https" else "NO"}

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        item = self.then(item) if self.then else item
        if not any(str(a.get("href", "")).startswith("s3://") for a in (item.get("assets") or {}).values()):
            return item
        missing = [k for k in S3_CREDENTIALS if not self.environ.get(k)]
        if missing:
            raise AssetError(f"source {self.source}: item {item.get('id')} has s3:// assets at {self.endpoint}, "
                             f"but {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set "
                             "in the environment")
        return {**item, READ_ENV: {"source": self.source, "endpoint": self.endpoint, "gdal": dict(self.gdal)}}


def configured_source(url: str, dialect: str = "synthetic", *, name: str = "", collections: tuple[str, ...] = (),
                      calibration: Mapping[str, str] | None = None, token_env: str = "", sas_url: str = "",
                      s3_endpoint: str = "",
                      policy: RetryPolicy = RetryPolicy(), requests_per_second: float = 5.0,
                      environ: Mapping[str, str] = os.environ) -> StacApiSource:
    """The source, its dialect (with declared calibrations) and signer; :class:`ConfigError` names what is wrong."""
    where = f"[[ingest.sources]] {name or url}"
    try:
        resolved = dialect_named(dialect)
        if calibration:
            resolved = resolved.with_calibration(dict(calibration))
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    token = None
    if token_env:
        token = environ.get(token_env)
        if not token:
            raise ConfigError(f"{where}: token_env names {token_env}, which is not set in the environment")
    headers: dict[str, str] = {}
    sign: Any = None
    if resolved.name == "planetary-computer":
        from ingest.sources.planetary import SAS_URL, PlanetaryComputerSigner

        sign = PlanetaryComputerSigner(sas_url or SAS_URL, retries=policy.max_retries, subscription_key=token).sign
    elif token:
        headers["Authorization"] = f"Bearer {token}"
    endpoint = s3_endpoint or (CDSE_S3_ENDPOINT if resolved.name == "cdse" else "")
    if endpoint:
        try:
            sign = S3Access(name or url, endpoint, environ, then=sign)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
    return StacApiSource(url, policy, requests_per_second, name=name or None, dialect=resolved, sign_item=sign,
                         collections=tuple(collections), headers=headers)
