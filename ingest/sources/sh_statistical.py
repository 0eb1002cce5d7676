"""Parcel statistics straight from the Sentinel Hub Statistical API into the parcel-series store.

The way Area Monitoring works: no cube, one Statistical API request per parcel geometry
(``sentinelhub.SentinelHubStatistical``, daily aggregation over the period), an evalscript that masks
everything but clear pixels (SCL 4-7, as ``ingest.types.SCL_CLEAR``), and the answers written as one
slot per UTC day with the same schema as the zonal statistics of the cubes (``ingest.series.stats_table``).
Sentinel Hub returns harmonised reflectance (the processing-baseline offset already removed).

Retries and token handling are sentinelhub's: the OAuth token is fetched and refreshed by its session,
429 answers are waited out and 5xx retried up to ``policy.max_retries`` times (``max_download_attempts``);
``requests_per_second`` bounds how fast the parcels' requests are sent.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ingest.errors import IngestError, SourceError
from ingest.http import RateLimiter, RetryPolicy
from ingest.items import parse_time
from ingest.series import stats_table, write_slot
from ingest.sources.sentinelhub import collection_at, sh_config
from ingest.types import REFLECTANCE_SCALE, S2_BANDS, SCL_CLEAR, Sensor

__all__ = ["EVALSCRIPT", "StatisticalResult", "parcel_statistics"]

logger = logging.getLogger(__name__)

EVALSCRIPT = f"""//VERSION=3
function setup() {{
  return {{
    input: [{{bands: [{", ".join(f'"{b}"' for b in S2_BANDS)}, "SCL", "dataMask"]}}],
    output: [{{id: "bands", bands: {len(S2_BANDS)}, sampleType: "FLOAT32"}}, {{id: "dataMask", bands: 1}}]
  }};
}}
const CLEAR = [{", ".join(str(c) for c in SCL_CLEAR)}];
function evaluatePixel(s) {{
  return {{bands: [{", ".join(f"s.{b}" for b in S2_BANDS)}],
          dataMask: [s.dataMask * (CLEAR.includes(s.SCL) ? 1 : 0)]}};
}}
"""


class StatisticalResult:
    """What one run wrote: slot files, and per parcel the intervals the service failed on."""

    def __init__(self) -> None:
        self.slots: list[Path] = []
        self.failed: list[tuple[str, str]] = []  # (parcel_id, reason)


def _stats(interval: dict[str, Any]) -> tuple[np.ndarray, int, int]:
    """Band means (reflectance), pixels in the parcel, clear pixels of one interval's answer."""
    bands = interval["outputs"]["bands"]["bands"]
    means = np.full(len(S2_BANDS), np.nan)
    sample = no_data = 0
    for i in range(len(S2_BANDS)):
        stats = bands[f"B{i}"]["stats"]
        value = stats.get("mean")
        means[i] = float(value) if isinstance(value, int | float) and math.isfinite(value) else np.nan
        sample, no_data = int(stats["sampleCount"]), int(stats["noDataCount"])
    return means, sample, sample - no_data


def parcel_statistics(parcels: Any, tile_id: str, start_s: int, end_s: int, series_root: str | Path, *,
                      client_id: str, client_secret: str, base_url: str = "https://services.sentinel-hub.com",
                      token_url: str | None = None, resolution_m: float = 10.0, policy: RetryPolicy = RetryPolicy(),
                      requests_per_second: float = 5.0, max_cloud_cover: float = 1.0) -> StatisticalResult:
    """Request every parcel's daily S2 statistics in [start_s, end_s] and write them as series slots.

    ``parcels``: a GeoDataFrame (``parcel_id``, geometry in any CRS) as ``ingest.parcels.read_parcels`` gives.
    """
    if not client_id or not client_secret:
        raise IngestError("Sentinel Hub Statistical API needs a client id and secret (SH_CLIENT_ID, SH_CLIENT_SECRET)")
    from sentinelhub import CRS, Geometry, SentinelHubStatistical
    from sentinelhub.download.sentinelhub_statistical_client import SentinelHubStatisticalDownloadClient
    from sentinelhub.exceptions import BaseSentinelHubException

    base = base_url.rstrip("/")
    config = sh_config(client_id, client_secret, base, token_url, policy)
    collection = collection_at("sentinel-2-l2a", base)
    time_range = (datetime.fromtimestamp(start_s, UTC).replace(tzinfo=None),
                  datetime.fromtimestamp(end_s, UTC).replace(tzinfo=None))
    utm = parcels.to_crs(parcels.estimate_utm_crs())
    ids = [str(p) for p in parcels["parcel_id"]]
    client = SentinelHubStatisticalDownloadClient(config=config)
    limiter = RateLimiter(requests_per_second)
    by_day: dict[int, dict[str, tuple[np.ndarray, int, int]]] = defaultdict(dict)
    result = StatisticalResult()
    for pid, geom in zip(ids, utm.geometry.values, strict=True):
        request = SentinelHubStatistical(
            aggregation=SentinelHubStatistical.aggregation(EVALSCRIPT, time_range, "P1D",
                                                           resolution=(resolution_m, resolution_m)),
            input_data=[SentinelHubStatistical.input_data(collection, maxcc=max_cloud_cover)],
            geometry=Geometry(geom, CRS(utm.crs.to_epsg())), config=config)
        limiter.acquire()
        try:
            answer = client.download(request.download_list[0], decode_data=True)
        except (BaseSentinelHubException, OSError, ValueError) as e:
            raise SourceError(f"Sentinel Hub Statistical API {base}: parcel {pid}: {' '.join(str(e).split())[:300]}") from e
        for interval in answer.get("data") or []:
            if "error" in interval:
                result.failed.append((pid, str(interval["error"])[:200]))
                continue
            day_s = parse_time(interval["interval"]["from"], f"parcel {pid} interval")
            by_day[day_s][pid] = _stats(interval)
    for day_s in sorted(by_day):
        rows = by_day[day_s]
        pix = np.array([rows[p][1] if p in rows else 0 for p in ids], np.int64)
        valid = np.array([rows[p][2] if p in rows else 0 for p in ids], np.int64)
        means = np.stack([rows[p][0] if p in rows else np.full(len(S2_BANDS), np.nan) for p in ids])
        sums = np.nan_to_num(means / REFLECTANCE_SCALE) * valid[:, None]  # stored units, as from the cubes
        slot = datetime.fromtimestamp(day_s, UTC).strftime("%Y%m%d")
        table = stats_table(ids, Sensor.S2, day_s, tile_id, sums, valid, pix,
                            [f"sentinelhub-statistical:{slot}"], slot=slot)
        result.slots.append(write_slot(series_root, tile_id, Sensor.S2, slot, table))
    logger.info("Sentinel Hub Statistical API: %d parcels, %d day slots written for tile %s",
                len(ids), len(result.slots), tile_id)
    return result
