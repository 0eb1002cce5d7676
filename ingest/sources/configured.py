"""A STAC source from one ``[[ingest.sources]]`` entry (plain values: ingest reads no settings).

Credentials come from the environment variable the entry names (``token_env``), never from the file:
for ``planetary-computer`` it is the subscription key sent to the SAS token endpoint, for the other
dialects a bearer token sent with every catalogue request.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ingest.assets import dialect_named
from ingest.errors import ConfigError
from ingest.http import RetryPolicy
from ingest.sources.stac_api import StacApiSource

__all__ = ["configured_source"]


def configured_source(url: str, dialect: str = "synthetic", *, name: str = "", collections: tuple[str, ...] = (),
                      calibration: Mapping[str, str] | None = None, token_env: str = "", sas_url: str = "",
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
    return StacApiSource(url, policy, requests_per_second, name=name or None, dialect=resolved, sign_item=sign,
                         collections=tuple(collections), headers=headers)
