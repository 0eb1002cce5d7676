"""Sentinel Hub Process API: a catalogue item's pixels on a tile's grid, as GeoTIFFs the cube loader reads.

Sentinel Hub serves no files: an item found in its catalogue is loaded by asking the Process API for
the tile's grid (its CRS, bounds and 10 m pixels, in blocks of at most 2500 x 2500 px, the service's
limit) and the acquisition's instant (``timeRange`` [datetime, datetime + 1 s]). The evalscript returns

- S2 L2A: the ten bands as digital numbers (``units: "DN"``, ``harmonizeValues: false``: the product's
  own DN, the processing-baseline offset included, so scale 1e-4 and the offset follow from
  ``s2:processing_baseline`` exactly as for the COGs), SCL and dataMask, as UINT16; every band 0 where
  dataMask is 0 (0 is the products' no data);
- S1 IW GRD: VV and VH as linear-power gamma0 (``backCoeff: GAMMA0_TERRAIN``, orthorectified on the
  Copernicus DEM), FLOAT32, NaN where dataMask is 0.

The answers are written as one single-band GeoTIFF per band under ``cache_dir/<tile>/<item>/`` and the
item handed on with local hrefs (``raster:bands`` data type and nodata), so the cube and the parcel
series are written by the same load path as for COGs (``ingest.load.load_item``). A fetched item stays
in the cache for ``cache_days`` (a slot rebuilt for a late item reads it again without a new request).

Requests go through ``sentinelhub``: ``SentinelHubRequest`` builds them, its download client waits out
429 answers (``Retry-After``, milliseconds as the service sends them) and retries 5xx and connection
errors ``max_download_attempts`` times with backoff; its session fetches the OAuth token (client
credentials) and renews it before expiry. A 401 (a token the service no longer accepts, e.g. revoked
or expired early) is not retried by the library: here the token is renewed once and the request sent
again. Whatever still fails raises :class:`ProcessError`; the ingestor quarantines the item with that
reason and the poll goes on.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from ingest.errors import ItemError
from ingest.http import RateLimiter
from ingest.items import parse_time
from ingest.types import S1_ASSETS, S2_BANDS, SCL_ASSET, Sensor, TileGrid, sensor_of_collection

__all__ = ["EVALSCRIPT_S1", "EVALSCRIPT_S2", "MAX_REQUEST_PX", "PROCESS_SCHEME", "ProcessError", "ProcessFetcher",
           "TokenKeeper", "process_assets"]

logger = logging.getLogger(__name__)

#: Href scheme of the placeholder assets a Sentinel Hub catalogue item carries until it is fetched.
PROCESS_SCHEME = "sentinelhub-process:"
#: The Process API's largest output, in pixels per side.
MAX_REQUEST_PX = 2500
_S2_OUT = (*S2_BANDS, SCL_ASSET, "dataMask")
_S1_IN = ("VV", "VH")

EVALSCRIPT_S2 = f"""//VERSION=3
function setup() {{
  return {{
    input: [{{bands: [{", ".join(f'"{b}"' for b in (*S2_BANDS, SCL_ASSET, "dataMask"))}], units: "DN"}}],
    output: {{bands: {len(_S2_OUT)}, sampleType: "UINT16"}}
  }};
}}
function evaluatePixel(s) {{
  if (s.dataMask === 0) {{ return [{", ".join("0" for _ in _S2_OUT)}]; }}
  return [{", ".join(f"s.{b}" for b in (*S2_BANDS, SCL_ASSET))}, s.dataMask];
}}
"""

EVALSCRIPT_S1 = f"""//VERSION=3
function setup() {{
  return {{
    input: [{{bands: [{", ".join(f'"{b}"' for b in (*_S1_IN, "dataMask"))}]}}],
    output: {{bands: {len(_S1_IN)}, sampleType: "FLOAT32"}}
  }};
}}
function evaluatePixel(s) {{
  if (s.dataMask === 0) {{ return [NaN, NaN]; }}
  return [{", ".join(f"s.{b}" for b in _S1_IN)}];
}}
"""

_S2_PROCESSING = {"harmonizeValues": False}
_S1_PROCESSING = {"backCoeff": "GAMMA0_TERRAIN", "orthorectify": True, "demInstance": "COPERNICUS"}
_S1_FILTER = {"acquisitionMode": "IW", "polarization": "DV", "resolution": "HIGH"}
_DONE = ".complete"


class ProcessError(ItemError):
    """The Process API could not deliver an item's pixels (after the retries)."""


def process_assets(item_id: str, sensor: Sensor) -> dict[str, Any]:
    """The placeholder band assets of a catalogue item whose pixels come from the Process API."""
    names = (*S2_BANDS, SCL_ASSET) if sensor is Sensor.S2 else S1_ASSETS
    return {band: {"href": f"{PROCESS_SCHEME}{item_id}/{band}", "type": "image/tiff; application=geotiff",
                   "roles": ["data"], "eo:bands": [{"name": band}]} for band in names}


def _blocks(grid: TileGrid) -> list[tuple[int, int, int, int]]:
    """(row0, row1, col0, col1) windows of at most MAX_REQUEST_PX per side covering the grid."""
    h, w = grid.shape
    ny, nx = -(-h // MAX_REQUEST_PX), -(-w // MAX_REQUEST_PX)
    ys = np.linspace(0, h, ny + 1).round().astype(int)
    xs = np.linspace(0, w, nx + 1).round().astype(int)
    return [(int(ys[i]), int(ys[i + 1]), int(xs[j]), int(xs[j + 1])) for i in range(ny) for j in range(nx)]


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.@" else "_" for c in name)


def one_line(e: BaseException) -> str:
    """An error as one line of at most 300 characters (for reasons and logs)."""
    return " ".join(str(e).split())[:300]


def _status(e: BaseException) -> int | None:
    return getattr(getattr(getattr(e, "request_exception", None), "response", None), "status_code", None)


class TokenKeeper:
    """One OAuth session (client credentials) shared by the catalogue and Process API requests of a source.

    sentinelhub's session renews the token shortly before it expires; a 401 before that (the service
    no longer accepts it) is not retried by the library, so :meth:`call` renews the token once and
    sends the request again. ``renewals`` counts those renewals.
    """

    def __init__(self, config: Any):
        self.config = config
        self.renewals = 0
        self._session: Any = None
        self._lock = threading.Lock()

    def session(self) -> Any:
        from sentinelhub import SentinelHubSession

        with self._lock:
            if self._session is None:
                self._session = SentinelHubSession(self.config)
            return self._session

    def _renew(self, stale: Any) -> None:
        from sentinelhub import SentinelHubSession

        with self._lock:
            if self._session is stale:  # another thread may have renewed it already
                self._session = SentinelHubSession(self.config)
                self.renewals += 1

    def call(self, send: Any, what: str) -> Any:
        """``send(session)`` with a fresh token once more if the service answered 401; errors as :class:`ProcessError`."""
        from sentinelhub.exceptions import BaseSentinelHubException, DownloadFailedException

        for attempt in (0, 1):
            try:
                session = self.session()
            except (BaseSentinelHubException, OSError, ValueError) as e:
                raise ProcessError(f"{what}: Sentinel Hub token at {self.config.sh_token_url}: {one_line(e)}") from e
            try:
                return send(session)
            except DownloadFailedException as e:
                if _status(e) != 401 or attempt:
                    raise ProcessError(f"{what}: {one_line(e)}") from e
                logger.warning("%s: Sentinel Hub refused the token (401); renewing it once", what)
                try:
                    self._renew(session)
                except (BaseSentinelHubException, OSError, ValueError) as e2:
                    raise ProcessError(f"{what}: token renewal at {self.config.sh_token_url} failed: "
                                       f"{one_line(e2)}") from e2
            except (BaseSentinelHubException, OSError, ValueError) as e:
                raise ProcessError(f"{what}: {one_line(e)}") from e
        raise AssertionError("unreachable")


class ProcessFetcher:
    """``fetch(item, grid)`` -> the item with its bands as local GeoTIFFs on ``grid`` (Process API answers)."""

    def __init__(self, config: Any, collections: dict[str, Any], cache_dir: str | Path | None = None,
                 requests_per_second: float = 5.0, cache_days: float = 3.0, tokens: TokenKeeper | None = None):
        self.config = config  # sentinelhub.SHConfig (credentials, base and token URLs, retries)
        self.collections = collections  # sitsmon collection id -> sentinelhub DataCollection
        # None: a temporary folder of this process (the command line gives <data_dir>/sentinelhub-process)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else Path(tempfile.mkdtemp(prefix="sitsmon-sh-"))
        self.limiter = RateLimiter(requests_per_second)
        self.cache_days = cache_days
        self.tokens = tokens or TokenKeeper(config)
        self._local = threading.local()  # one download client per thread (tiles are ingested in parallel)

    def _download(self, request: Any, what: str) -> bytes:
        """One request's body: sentinelhub's retry loop (429, 5xx), the token renewed once on a 401."""
        from sentinelhub import SentinelHubDownloadClient

        def send(session: Any) -> bytes:
            client = getattr(self._local, "client", None)
            if client is None:
                client = self._local.client = SentinelHubDownloadClient(config=self.config, session=session)
            client.session = session
            self.limiter.acquire()
            return client.download([request], decode_data=False)[0].content

        return self.tokens.call(send, f"{what}: Process API")

    def _request(self, item: dict[str, Any], sensor: Sensor, grid: TileGrid, window: tuple[int, int, int, int]) -> Any:
        from sentinelhub import CRS, BBox, MimeType, SentinelHubRequest

        y0, y1, x0, x1 = window
        left, top = grid.bounds[0] + x0 * grid.resolution, grid.bounds[3] - y0 * grid.resolution
        bbox = BBox((left, top - (y1 - y0) * grid.resolution, left + (x1 - x0) * grid.resolution, top),
                    crs=CRS(grid.epsg))
        when = datetime.fromtimestamp(parse_time(item["properties"].get("datetime"), f"item {item['id']} datetime"),
                                      UTC).replace(tzinfo=None)
        s2 = sensor is Sensor.S2
        extra: dict[str, Any] = {"processing": dict(_S2_PROCESSING if s2 else _S1_PROCESSING)}
        if not s2:
            extra["dataFilter"] = dict(_S1_FILTER)
        input_data = SentinelHubRequest.input_data(self.collections[item["collection"]],
                                                   time_interval=(when, when + timedelta(seconds=1)),
                                                   other_args=extra)
        return SentinelHubRequest(
            evalscript=EVALSCRIPT_S2 if s2 else EVALSCRIPT_S1, input_data=[input_data],
            responses=[SentinelHubRequest.output_response("default", MimeType.TIFF)],
            bbox=bbox, size=(x1 - x0, y1 - y0), config=self.config,
        ).download_list[0]

    # ------------------------------------------------------------------ files
    def _folder(self, item: dict[str, Any], grid: TileGrid) -> Path:
        return self.cache_dir / _safe(grid.tile_id) / _safe(str(item["id"]))

    def _write(self, item: dict[str, Any], sensor: Sensor, grid: TileGrid, folder: Path) -> None:
        """Every block's answer into one single-band GeoTIFF per band (written aside, then moved in place)."""
        import rasterio
        from rasterio.io import MemoryFile

        s2 = sensor is Sensor.S2
        names = (*S2_BANDS, SCL_ASSET) if s2 else S1_ASSETS
        dtype, nodata = ("uint16", 0) if s2 else ("float32", float("nan"))
        part = folder.with_name(folder.name + ".part")
        shutil.rmtree(part, ignore_errors=True)
        part.mkdir(parents=True)
        h, w = grid.shape
        profile = dict(driver="GTiff", width=w, height=h, count=1, dtype=dtype, crs=f"EPSG:{grid.epsg}",
                       transform=rasterio.Affine(*grid.transform), nodata=nodata, tiled=True,
                       blockxsize=min(512, 16 * max(1, w // 16)), blockysize=min(512, 16 * max(1, h // 16)),
                       compress="deflate")
        outs = {n: rasterio.open(part / f"{n}.tif", "w", **profile) for n in names}
        try:
            for window in _blocks(grid):
                what = f"item {item['id']}: tile {grid.tile_id} block {window}"
                body = self._download(self._request(item, sensor, grid, window), what)
                y0, y1, x0, x1 = window
                try:
                    with MemoryFile(body) as mem, mem.open() as ds:
                        data = ds.read()
                        crs = ds.crs.to_epsg() if ds.crs else None
                except Exception as e:  # noqa: BLE001 - rasterio's errors for a body that is no GeoTIFF
                    raise ProcessError(f"{what}: answer is not a GeoTIFF ({one_line(e)})") from e
                want = len(_S2_OUT) if s2 else len(_S1_IN)
                if data.shape != (want, y1 - y0, x1 - x0) or crs != grid.epsg:
                    raise ProcessError(f"{what}: answer holds {data.shape} in EPSG:{crs}, asked for "
                                       f"{(want, y1 - y0, x1 - x0)} in EPSG:{grid.epsg}")
                for i, n in enumerate(names):
                    outs[n].write(data[i].astype(dtype, copy=False), 1,
                                  window=rasterio.windows.Window(x0, y0, x1 - x0, y1 - y0))
        finally:
            for ds in outs.values():
                ds.close()
        (part / _DONE).write_text(str(item["id"]))
        shutil.rmtree(folder, ignore_errors=True)
        part.rename(folder)

    def _evict(self) -> None:
        """Drop fetched items older than ``cache_days`` (by the folder's modification time)."""
        limit = time.time() - self.cache_days * 86400
        for folder in self.cache_dir.glob("*/*"):
            try:
                if folder.is_dir() and folder.stat().st_mtime < limit:
                    shutil.rmtree(folder, ignore_errors=True)
            except OSError:
                continue

    def fetch(self, item: dict[str, Any], grid: TileGrid) -> dict[str, Any]:
        """The item with local hrefs on ``grid``; items without Process API placeholders pass unchanged."""
        assets = item.get("assets") or {}
        if not any(str(a.get("href", "")).startswith(PROCESS_SCHEME) for a in assets.values() if isinstance(a, dict)):
            return item
        collection = str(item.get("collection"))
        if collection not in self.collections:
            raise ProcessError(f"item {item.get('id')}: no Process API collection for {collection!r}")
        sensor = sensor_of_collection(collection)
        folder = self._folder(item, grid)
        if not (folder / _DONE).is_file():
            self._evict()
            self._write(item, sensor, grid, folder)
            logger.info("fetched %s for tile %s through the Process API", item.get("id"), grid.tile_id)
        h, w = grid.shape
        data_type, nodata = ("uint16", 0) if sensor is Sensor.S2 else ("float32", "nan")
        fetched = {}
        for band, asset in assets.items():
            if str(asset.get("href", "")).startswith(PROCESS_SCHEME):
                asset = {**asset, "href": str(folder / f"{band}.tif"), "proj:shape": [h, w],
                         "proj:transform": list(grid.transform),
                         "raster:bands": [{"data_type": data_type, "nodata": nodata}]}
            fetched[band] = asset
        props = {**item.get("properties", {}), "proj:epsg": grid.epsg}
        return {**item, "properties": props, "assets": fetched}

    __call__ = fetch
