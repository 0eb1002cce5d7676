"""The Sentinel Hub catalogue (Catalog API 1.0.0) through ``sentinelhub``, normalised to the STAC fields ingest reads.

Credentials come from the caller (the command reads ``SH_CLIENT_ID``/``SH_CLIENT_SECRET`` from the
environment). Sentinel Hub items carry no per-band files: each found item gets placeholder band assets
and its pixels are fetched at load time from the Process API on the tile's grid
(``ingest.sources.sh_process``), so the cube is written by the same load path as for COGs. An
``asset_template`` (with ``{tile}``, ``{item}``, ``{band}``, ``{date}`` fields) points the bands at
COGs of one's own instead. S1 scenes carry no MGRS tile: the poller places them by footprint.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ingest.errors import IngestError, SourceError
from ingest.http import RateLimiter, RetryPolicy
from ingest.sources.sh_process import ProcessError, ProcessFetcher, TokenKeeper, one_line, process_assets
from ingest.types import S1_ASSETS, S2_BANDS, SCL_ASSET, Sensor, sensor_of_collection

logger = logging.getLogger(__name__)

_TILE = re.compile(r"_T(\d{2}[A-Z]{3})_")
_BASELINE = re.compile(r"_N(\d{2})(\d{2})_")
_S1_ORBIT = re.compile(r"_(\d{6})_[0-9A-F]{6}_[0-9A-F]{4}$")

COLLECTIONS = {"sentinel-2-l2a": "SENTINEL2_L2A", "sentinel-1-grd": "SENTINEL1_IW"}
_DEFINED: dict[tuple[str, str], Any] = {}


def sh_config(client_id: str, client_secret: str, base_url: str, token_url: str | None, policy: RetryPolicy) -> Any:
    """The ``sentinelhub.SHConfig`` of one deployment: credentials, token URL, retries and timeouts from ``policy``."""
    from sentinelhub import SHConfig

    base = base_url.rstrip("/")
    return SHConfig(sh_client_id=client_id, sh_client_secret=client_secret, sh_base_url=base,
                    sh_token_url=token_url or f"{base}/auth/realms/main/protocol/openid-connect/token",
                    max_download_attempts=policy.max_retries + 1, download_sleep_time=policy.initial_wait_s,
                    download_timeout_seconds=policy.timeout_s)


def collection_at(collection: str, base_url: str) -> Any:
    """The sentinelhub ``DataCollection`` of ``collection`` served by ``base_url`` (defined once per process)."""
    from sentinelhub import DataCollection

    key = (collection, base_url.rstrip("/"))
    if key not in _DEFINED:
        name = f"{collection}-at-{len(_DEFINED)}"
        _DEFINED[key] = getattr(DataCollection, COLLECTIONS[collection]).define_from(name, service_url=key[1])
    return _DEFINED[key]


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
    if not asset_template:
        assets.update(process_assets(item_id, sensor))
        bbox, epsg = props.get("proj:bbox"), props.get("proj:epsg")
        if sensor is Sensor.S2 and isinstance(bbox, list) and len(bbox) == 4 and epsg:
            # S2: the item's proj:bbox is its MGRS tile; at 10 m it gives the tile grid (ingest.grid.grid_from_item)
            x0, y0, x1, y1 = (float(v) for v in bbox)
            for band in ("B02", "B03", "B04", "B08"):
                assets[band] |= {"proj:transform": [10.0, 0.0, x0, 0.0, -10.0, y1],
                                 "proj:shape": [round((y1 - y0) / 10), round((x1 - x0) / 10)]}
    elif tile:
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
    """Searches the Sentinel Hub catalogue; retries follow ``policy`` (sentinelhub's own retry loop).

    ``fetch_item`` (None with an ``asset_template``) loads an item's pixels through the Process API onto
    a tile grid; the poller calls it right before the item's assets are read.
    """

    dialect = "sentinel-hub"

    def __init__(self, client_id: str, client_secret: str, base_url: str = "https://services.sentinel-hub.com",
                 token_url: str | None = None, policy: RetryPolicy = RetryPolicy(), requests_per_second: float = 5.0,
                 asset_template: str | None = None, name: str | None = None, cache_dir: str | Path | None = None,
                 cache_days: float = 3.0):
        if not client_id or not client_secret:
            raise IngestError("Sentinel Hub source needs a client id and secret (SH_CLIENT_ID, SH_CLIENT_SECRET)")
        self.base_url = base_url.rstrip("/")
        self.config = sh_config(client_id, client_secret, self.base_url, token_url, policy)
        self.name = name or f"sentinelhub:{self.base_url}"
        self.limiter = RateLimiter(requests_per_second)
        self.asset_template = asset_template
        self.tokens = TokenKeeper(self.config)  # one OAuth session for the catalogue and the Process API
        self.fetch_item: ProcessFetcher | None = None
        if not asset_template:
            self.fetch_item = ProcessFetcher(self.config, {c: collection_at(c, self.base_url) for c in COLLECTIONS},
                                             cache_dir, requests_per_second, cache_days, self.tokens)
        self._catalog = None

    def search(
        self, collection: str, bbox: tuple[float, float, float, float] | None, start_s: int, end_s: int,
        intersects: dict[str, Any] | None = None,
    ) -> Iterator[Any]:
        from sentinelhub import CRS, BBox, DataCollection, Geometry, SentinelHubCatalog

        if collection not in COLLECTIONS:
            raise SourceError(f"Sentinel Hub source: unsupported collection {collection!r}")
        if self._catalog is None:
            self._catalog = SentinelHubCatalog(config=self.config)
        catalog = self._catalog
        start = datetime.fromtimestamp(start_s, UTC).replace(tzinfo=None)
        end = datetime.fromtimestamp(end_s, UTC).replace(tzinfo=None)

        def pages(session: Any) -> list[dict[str, Any]]:  # every page, so that a renewed token starts afresh
            catalog.client.session = session
            self.limiter.acquire()
            return list(catalog.search(
                getattr(DataCollection, COLLECTIONS[collection]), time=(start, end),
                bbox=BBox(bbox, crs=CRS.WGS84) if bbox and not intersects else None,
                geometry=Geometry(intersects, crs=CRS.WGS84) if intersects else None,
            ))

        try:
            features = self.tokens.call(pages, f"Sentinel Hub catalogue {self.base_url}")
        except ProcessError as e:
            raise SourceError(str(e)) from e
        except (KeyError, TypeError) as e:
            raise SourceError(f"Sentinel Hub catalogue {self.base_url}: malformed answer: {one_line(e)}") from e
        for feature in features:
            yield normalise_feature(feature, collection, self.asset_template)
