"""The Sentinel Hub catalogue (Catalog API 1.0.0) through ``sentinelhub``, normalised to the STAC fields ingest reads.

Credentials come from the caller (the command reads ``SH_CLIENT_ID``/``SH_CLIENT_SECRET`` from the
environment). Sentinel Hub items carry no per-band COG assets; ``asset_template`` (with ``{tile}``,
``{item}``, ``{band}``, ``{date}`` fields) builds them, else the items arrive without band assets and
are quarantined by the poller with that reason.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from ingest.errors import IngestError, SourceError
from ingest.http import RateLimiter, RetryPolicy
from ingest.types import S1_ASSETS, S2_BANDS, SCL_ASSET, Sensor, sensor_of_collection

logger = logging.getLogger(__name__)

_TILE = re.compile(r"_T(\d{2}[A-Z]{3})_")
_BASELINE = re.compile(r"_N(\d{2})(\d{2})_")
_S1_ORBIT = re.compile(r"_(\d{6})_[0-9A-F]{6}_[0-9A-F]{4}$")

COLLECTIONS = {"sentinel-2-l2a": "SENTINEL2_L2A", "sentinel-1-grd": "SENTINEL1_IW"}


def normalise_feature(feature: dict[str, Any], collection: str, asset_template: str | None = None,
                      tile_id: str | None = None) -> dict[str, Any]:
    """A Sentinel Hub catalogue feature as a STAC item with the fields of docs/archive-format.md."""
    item = dict(feature)
    props = dict(item.get("properties") or {})
    item_id = str(item.get("id") or "")
    item["collection"] = collection
    sensor = sensor_of_collection(collection)
    tile = tile_id
    match = _TILE.search(item_id)
    if match:
        tile = match.group(1)
    if tile:
        props.setdefault("grid:code", f"MGRS-{tile}")
    if sensor is Sensor.S2:
        base = _BASELINE.search(item_id)
        if base:
            props.setdefault("s2:processing_baseline", f"{base.group(1)}.{base.group(2)}")
    else:
        state = props.get("sat:orbit_state")
        if isinstance(state, str):
            props["sat:orbit_state"] = state.lower()
        if "sat:relative_orbit" not in props and isinstance(props.get("sat:absolute_orbit"), int):
            # Sentinel-1: relative = (absolute - 73) % 175 + 1 (S1A); S1B offset 27.
            offset = 27 if str(props.get("platform", "")).lower().endswith("b") else 73
            props["sat:relative_orbit"] = (props["sat:absolute_orbit"] - offset) % 175 + 1
    item["properties"] = props
    assets = {k: v for k, v in (item.get("assets") or {}).items() if k not in ("data",)}
    if asset_template and tile:
        date = str(props.get("datetime", ""))[:10]
        names = (*S2_BANDS, SCL_ASSET) if sensor is Sensor.S2 else S1_ASSETS
        for band in names:
            assets[band] = {
                "href": asset_template.format(tile=tile, item=item_id, band=band, date=date),
                "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                "roles": ["data"],
            }
    item["assets"] = assets
    return item


class SentinelHubSource:
    """Searches the Sentinel Hub catalogue; retries follow ``policy`` (sentinelhub's own retry loop)."""

    def __init__(self, client_id: str, client_secret: str, base_url: str = "https://services.sentinel-hub.com",
                 token_url: str | None = None, policy: RetryPolicy = RetryPolicy(), requests_per_second: float = 5.0,
                 asset_template: str | None = None, name: str | None = None):
        if not client_id or not client_secret:
            raise IngestError("Sentinel Hub source needs a client id and secret (SH_CLIENT_ID, SH_CLIENT_SECRET)")
        from sentinelhub import SHConfig

        self.base_url = base_url.rstrip("/")
        self.config = SHConfig(
            sh_client_id=client_id,
            sh_client_secret=client_secret,
            sh_base_url=self.base_url,
            sh_token_url=token_url or f"{self.base_url}/auth/realms/main/protocol/openid-connect/token",
            max_download_attempts=policy.max_retries + 1,
            download_sleep_time=policy.initial_wait_s,
            download_timeout_seconds=policy.timeout_s,
        )
        self.name = name or f"sentinelhub:{self.base_url}"
        self.limiter = RateLimiter(requests_per_second)
        self.asset_template = asset_template
        self._catalog = None

    def search(
        self, collection: str, bbox: tuple[float, float, float, float] | None, start_s: int, end_s: int,
        intersects: dict[str, Any] | None = None,
    ) -> Iterator[Any]:
        from sentinelhub import CRS, BBox, DataCollection, Geometry, SentinelHubCatalog
        from sentinelhub.exceptions import BaseSentinelHubException as SHException

        if collection not in COLLECTIONS:
            raise SourceError(f"Sentinel Hub source: unsupported collection {collection!r}")
        if self._catalog is None:
            self._catalog = SentinelHubCatalog(config=self.config)
        start = datetime.fromtimestamp(start_s, UTC).replace(tzinfo=None)
        end = datetime.fromtimestamp(end_s, UTC).replace(tzinfo=None)
        self.limiter.acquire()
        try:
            results = self._catalog.search(
                getattr(DataCollection, COLLECTIONS[collection]),
                time=(start, end),
                bbox=BBox(bbox, crs=CRS.WGS84) if bbox and not intersects else None,
                geometry=Geometry(intersects, crs=CRS.WGS84) if intersects else None,
            )
            for feature in results:
                yield normalise_feature(feature, collection, self.asset_template)
        except (SHException, OSError, ValueError, KeyError) as e:
            raise SourceError(f"Sentinel Hub catalogue {self.base_url}: {' '.join(str(e).split())[:300]}") from e
