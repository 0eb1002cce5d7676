"""A local stand-in for Sentinel Hub that answers as the service documents, over a synthetic archive.

Three endpoints on a real HTTP server:

- ``POST /oauth/token`` (client credentials): a new bearer token per call (``tok-1``, ``tok-2``, ...);
- ``POST /api/v1/catalog/1.0.0/search``: the archive's items as Catalog API features (Sentinel Hub ids,
  ``proj:bbox``; S1 scenes without any MGRS field, absolute orbit only), ``context.next`` paging;
- ``POST /api/v1/process``: the scene(s) of the request's ``timeRange`` over its bounds, read from the
  archive's COGs, with the band values Sentinel Hub documents (S2 DN: ``harmonizeValues`` false keeps the
  product DN, true removes the baseline offset; S1 linear gamma0 for ``backCoeff: GAMMA0_TERRAIN``,
  anything else refused; ``dataMask``), passed through the request's own evalscript (run by node:
  ``setup()`` and ``evaluatePixel()`` per pixel) and returned as a GeoTIFF of the evalscript's
  ``sampleType`` (UINT16 rounded and clamped) in the request's CRS and size.

Every request must carry a token the stand-in issued and has not revoked (else 401); ``fault`` lets
a test answer chosen requests with an error status instead.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Callable
from datetime import datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.io import MemoryFile
from rasterio.transform import from_bounds
from rasterio.windows import from_bounds as window_from_bounds

from ingest.items import parse_time
from ingest.types import S2_BANDS
from tests.ingest.scripted_http import LocalServer

SEARCH = "/api/v1/catalog/1.0.0/search"
PROCESS = "/api/v1/process"
TOKEN = "/oauth/token"
_COLLECTION = {"sentinel-2-l2a": "sentinel-2-l2a", "S2L2A": "sentinel-2-l2a", "sentinel-1-grd": "sentinel-1-grd",
               "S1GRD": "sentinel-1-grd"}

_NODE_DRIVER = """
const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
%s
const cfg = setup();
const bands = cfg.input[0].bands || cfg.input[0];
const n = input.n;
const outBands = cfg.output.bands;
const out = [];
for (let b = 0; b < outBands; b++) out.push(new Array(n));
for (let i = 0; i < n; i++) {
  const s = {};
  for (const b of bands) { const v = input.data[b][i]; s[b] = v === null ? NaN : v; }
  const r = evaluatePixel(s);
  for (let b = 0; b < outBands; b++) out[b][i] = Number.isNaN(r[b]) ? null : r[b];
}
process.stdout.write(JSON.stringify({sampleType: cfg.output.sampleType, bands: out}));
"""


def run_evalscript(evalscript: str, data: dict[str, np.ndarray]) -> tuple[str, np.ndarray]:
    """Run ``evalscript`` on per-band pixel arrays (node); returns (sampleType, (bands, n) float64, NaN kept)."""
    n = len(next(iter(data.values())))
    payload = {"n": n, "data": {k: [None if not np.isfinite(x) else float(x) for x in v] for k, v in data.items()}}
    done = subprocess.run(["node", "-e", _NODE_DRIVER % evalscript], input=json.dumps(payload), capture_output=True,
                          text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise ValueError(f"evalscript failed: {done.stderr.strip()[-400:]}")
    answer = json.loads(done.stdout)
    return answer["sampleType"], np.array([[np.nan if v is None else v for v in b] for b in answer["bands"]], float)


def _s2_id(item: dict[str, Any]) -> str:
    p = item["properties"]
    when = datetime.fromisoformat(p["datetime"].replace("Z", "+00:00"))
    base = p["s2:processing_baseline"].replace(".", "")
    return (f"S2{p['platform'][-1].upper()}_MSIL2A_{when:%Y%m%dT%H%M%S}_N{base}_R122_T{p['s2:mgrs_tile']}_"
            f"{when:%Y%m%dT%H%M%S}")


def _s1_id(item: dict[str, Any]) -> str:
    when = datetime.fromisoformat(item["properties"]["datetime"].replace("Z", "+00:00"))
    return f"S1A_IW_GRDH_1SDV_{when:%Y%m%dT%H%M%S}_{when:%Y%m%dT%H%M%S}_053707_0686F3_6B0A"


def catalogue_feature(item: dict[str, Any], bounds: tuple[float, ...]) -> dict[str, Any]:
    """An archive item as the Catalog API publishes it (what Sentinel Hub's features carry, nothing more)."""
    p = item["properties"]
    s2 = item["collection"] == "sentinel-2-l2a"
    props: dict[str, Any] = {"datetime": p["datetime"], "platform": p["platform"]}
    if s2:
        props.update({"instruments": ["msi"], "constellation": "sentinel-2", "gsd": 10,
                      "eo:cloud_cover": p["eo:cloud_cover"], "proj:epsg": p["proj:epsg"], "proj:bbox": list(bounds)})
    else:  # the Catalog API gives the absolute orbit; sitsmon derives the relative one
        props.update({"constellation": "sentinel-1", "sar:instrument_mode": "IW", "s1:polarization": "DV",
                      "sat:orbit_state": p["sat:orbit_state"].upper(),
                      "sat:absolute_orbit": 175 * 300 + 73 + p["sat:relative_orbit"] - 1})
    return {"stac_version": "1.0.0", "type": "Feature", "id": _s2_id(item) if s2 else _s1_id(item),
            "bbox": item["bbox"], "geometry": item["geometry"], "properties": props,
            "assets": {"data": {"href": f"s3://sentinel-bucket/{item['id']}", "title": "s3",
                                "type": "inode/directory"}}, "links": []}


class SentinelHubStandIn(LocalServer):
    """The service over the items of ``archive`` (MiniArchive-like: ``root``, ``grid``, ``items``)."""

    def __init__(self, archive: Any, page_size: int = 2):
        self.archive = archive
        self.page_size = page_size
        self.visible: Callable[[dict[str, Any]], bool] = lambda item: True  # what the catalogue shows now
        self.fault: Callable[[str, dict[str, Any], dict[str, Any] | None], tuple[int, dict[str, str]] | None] = \
            lambda path, body, item: None  # (status, headers) to answer instead, e.g. (503, {})
        self.issued: list[str] = []
        self.revoked: set[str] = set()
        self.requests: list[tuple[str, str, int]] = []  # (path, token, status answered)
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                status, headers, body, ctype = owner._answer(path, self.headers.get("Authorization", ""), raw)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._serve(Handler)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ bookkeeping
    def count(self, path: str, status: int | None = None) -> int:
        return sum(1 for p, _, s in self.requests if p == path and (status is None or s == status))

    # ------------------------------------------------------------------ answers
    def _answer(self, path: str, auth: str, raw: bytes) -> tuple[int, dict[str, str], bytes, str]:
        token = auth.removeprefix("Bearer ").strip()
        if path == TOKEN:
            with self._lock:
                token = f"tok-{len(self.issued) + 1}"
                self.issued.append(token)
                self.requests.append((path, "", 200))
            return 200, {}, json.dumps({"access_token": token, "expires_in": 3600, "token_type": "Bearer"}).encode(), \
                "application/json"
        body = json.loads(raw or b"{}")
        if token not in self.issued or token in self.revoked:
            self.requests.append((path, token, 401))
            return 401, {}, json.dumps({"error": {"status": 401, "reason": "Unauthorized",
                                                  "message": "Token is expired or invalid"}}).encode(), \
                "application/json"
        item = self._scene(body) if path == PROCESS else None
        forced = self.fault(path, body, item)
        if forced is not None:
            self.requests.append((path, token, forced[0]))
            return forced[0], forced[1], json.dumps({"error": {"status": forced[0]}}).encode(), "application/json"
        try:
            if path == SEARCH:
                out = json.dumps(self._search(body)).encode(), "application/json"
            elif path == PROCESS:
                out = self._process(body, item), "image/tiff"
            else:
                self.requests.append((path, token, 404))
                return 404, {}, b'{"error": {"status": 404}}', "application/json"
        except ValueError as e:
            self.requests.append((path, token, 400))
            return 400, {}, json.dumps({"error": {"status": 400, "reason": "Bad Request", "message": str(e)}}).encode(), \
                "application/json"
        self.requests.append((path, token, 200))
        return 200, {}, *out

    def _search(self, body: dict[str, Any]) -> dict[str, Any]:
        collection = body["collections"][0]
        start, end = (parse_time(t) for t in body["datetime"].split("/"))
        x0, y0, x1, y1 = body.get("bbox") or (-180, -90, 180, 90)
        found = [catalogue_feature(i, self.archive.grid.bounds) for i in self.archive.items
                 if i["collection"] == collection and self.visible(i)
                 and start <= parse_time(i["properties"]["datetime"]) <= end
                 and i["bbox"][0] < x1 and x0 < i["bbox"][2] and i["bbox"][1] < y1 and y0 < i["bbox"][3]]
        offset = int(body.get("next") or 0)
        limit = min(int(body.get("limit") or 100), self.page_size)
        page = found[offset:offset + limit]
        context: dict[str, Any] = {"limit": limit, "returned": len(page)}
        if offset + limit < len(found):
            context["next"] = offset + limit
        return {"type": "FeatureCollection", "features": page, "links": [], "context": context}

    def _scene(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """The archive item the request's collection and timeRange select (the stand-in holds one per instant)."""
        data = body["input"]["data"][0]
        collection = _COLLECTION.get(data["type"])
        span = data["dataFilter"]["timeRange"]
        start, end = parse_time(span["from"]), parse_time(span["to"])
        hits = [i for i in self.archive.items if i["collection"] == collection
                and start <= parse_time(i["properties"]["datetime"]) <= end]
        return hits[0] if len(hits) == 1 else None

    def _process(self, body: dict[str, Any], item: dict[str, Any] | None) -> bytes:
        if item is None:
            raise ValueError("no single scene in the requested timeRange")
        bounds = body["input"]["bounds"]
        epsg = int(str(bounds["properties"]["crs"]).rstrip("/").split("/")[-1])
        if epsg != self.archive.grid.epsg:
            raise ValueError(f"stand-in serves EPSG:{self.archive.grid.epsg} only, asked {epsg}")
        bbox = bounds["bbox"]
        width, height = int(body["output"]["width"]), int(body["output"]["height"])
        data = body["input"]["data"][0]
        processing = data.get("processing") or {}
        s2 = item["collection"] == "sentinel-2-l2a"
        inputs = self._inputs(item, bbox, width, height, processing, s2)
        sample_type, out = run_evalscript(body["evalscript"], {k: v.ravel() for k, v in inputs.items()})
        dtype = {"UINT8": "uint8", "UINT16": "uint16", "FLOAT32": "float32"}[sample_type]
        if dtype != "float32":  # documented: integer sample types are rounded and clamped
            info = np.iinfo(dtype)
            out = np.clip(np.rint(np.nan_to_num(out)), info.min, info.max)
        out = out.astype(dtype).reshape(len(out), height, width)
        profile = dict(driver="GTiff", width=width, height=height, count=len(out), dtype=dtype, crs=f"EPSG:{epsg}",
                       transform=from_bounds(*bbox, width, height))
        with MemoryFile() as mem:
            with mem.open(**profile) as dst:
                dst.write(out)
            return mem.read()

    def _inputs(self, item: dict[str, Any], bbox: list[float], width: int, height: int,
                processing: dict[str, Any], s2: bool) -> dict[str, np.ndarray]:
        """The evalscript's input bands over the request's bounds, as the service documents them."""
        root = Path(self.archive.root)

        def read(asset: str, fill: float) -> np.ndarray:
            with rasterio.open(root / item["assets"][asset]["href"]) as ds:
                window = window_from_bounds(*bbox, transform=ds.transform)
                return ds.read(1, window=window, out_shape=(height, width), boundless=True,
                               fill_value=fill).astype(float)

        if s2:
            dn = {b: read(b, 0) for b in S2_BANDS}
            mask = np.all([v != 0 for v in dn.values()], axis=0)
            if processing.get("harmonizeValues", True):  # the default: baseline >= 04.00 offset removed
                shift = 1000 if tuple(int(x) for x in item["properties"]["s2:processing_baseline"].split(".")) >= (4, 0) \
                    else 0
                dn = {b: np.where(mask, np.maximum(v - shift, 0), 0) for b, v in dn.items()}
            return {**dn, "SCL": read("SCL", 0), "dataMask": mask.astype(float)}
        if processing.get("backCoeff") != "GAMMA0_TERRAIN" or not processing.get("orthorectify"):
            raise ValueError("stand-in holds orthorectified GAMMA0_TERRAIN backscatter only")
        vv, vh = read("vv", np.nan), read("vh", np.nan)
        return {"VV": vv, "VH": vh, "dataMask": (np.isfinite(vv) & np.isfinite(vh)).astype(float)}
