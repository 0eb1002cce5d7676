"""``sitsmon bench api``: the dashboard API under load from a second process on loopback.

Builds (once, under ``--data-dir``) a synthetic data dir: ``--parcels`` square parcels,
``--parcels-per-tile`` on each tile (France: ~100 000 on each of ~100 tiles), with ``--years`` of
parcel series (S2 every 5 days, S1 every 6 days), each tile's written straight in the series store's
compacted layout (:class:`ingest.series.CompactWriter`; tiles in parallel, columns by numpy and
Arrow kernels: 1 M parcels × 5 years, 669 M rows, took 13 min here), ``--alerts`` alerts in the
SQLite store, and a small cube (512 × 512 px, 12 S2 and 12 S1 acquisitions) on the first tile for
chips. A series request reads its parcel's tile only. Then starts
``sitsmon serve`` as a subprocess and drives
it from this process with ``--concurrency`` keep-alive clients. Prints JSON: p50/p95/p99 per
endpoint (``series``: the store read with bands, NDVI, dB and alerts; ``series_gap_filled``: plus
the gap filler; the encoder's expectation is off, it is a model run per parcel), the floors of the
same run (``/health``: the HTTP round trip; ``read_series`` of the same parcels in this process), and
the sustained requests/s of a mixed load (``--sustain-concurrency`` keep-alive clients for
``--sustain-s``, every request for a parcel or filter drawn afresh, so no answer cache flatters it).
Alert pages are walked the way the UI walks them, by ``next_cursor`` (``alerts_page``), and by page
number (``alerts_page_offset``).

Each phase also reports the server's CPU per request (``/proc`` of the server and its workers), which
the machine's other load inflates far less than the times, and the request rate that CPU allows on
the server's cores. ``budgets`` lists each budget of DESIGN.md (p95 series ≤ 50 ms, alert page ≤ 100
ms, chip ≤ 150 ms, 200 req/s sustained) with the measured value, pass/fail and the ratio to
``/health`` p95 of the same run: on a shared machine, compare the ratios and the CPU, not the times.

``--years`` sets a shorter series (``series_rows`` in the output says what was built).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sitsmon.settings import Settings

TILE, EPSG, X0, Y0 = "33UXP", 32633, 600000.0, 5300000.0
SPACING_M, SIDE_M = 50.0, 40.0
TILE_STEP_M = 110_000.0  # a Sentinel-2 tile's side
CUBE_PX, RES = 512, 10.0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("api", help="dashboard API latency and throughput (server in a second process)",
                       description=(__doc__ or "").split("\n\n", 1)[1],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=Path("sitsmon-bench-api"), help="where the synthetic data go")
    p.add_argument("--parcels", type=int, default=20_000, help="parcels with series (DESIGN: 1 M)")
    p.add_argument("--parcels-per-tile", type=int, default=100_000,
                   help="parcels on each tile (France: ~100 000); a request reads its parcel's tile")
    p.add_argument("--years", type=float, default=5.0, help="years of series per parcel")
    p.add_argument("--alerts", type=int, default=1_000_000, help="alerts in the store")
    p.add_argument("--requests", type=int, default=400, help="requests per endpoint")
    p.add_argument("--concurrency", type=int, default=4, help="concurrent keep-alive clients")
    p.add_argument("--sustain-s", type=float, default=10.0, help="duration of the mixed sustained load")
    p.add_argument("--sustain-concurrency", type=int, default=8, help="keep-alive clients of the sustained load")
    p.add_argument("--server-workers", type=int, default=2, help="worker processes of the server (`serve --workers`)")
    p.set_defaults(handler=run)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _tile_id(k: int) -> str:
    """The ``k``-th tile of the bench: the chips' tile first, then synthetic ids of zone 33T."""
    letters = "ABCDEFGHJKLMNPQRSTUV"
    return TILE if k == 0 else f"33T{letters[(k - 1) // 20 % 20]}{letters[(k - 1) % 20]}{'' if k <= 400 else k}"


def _tile_ids(n: int, per_tile: int) -> list[str]:
    """The tiles of ``n`` parcels, ``per_tile`` on each (a country's 10 M parcels lie on ~100 tiles)."""
    return [_tile_id(k) for k in range(max(1, -(-n // per_tile)))]


def _parcel_id(g: int, per_tile: int) -> str:
    """The id of parcel ``g`` (0 … n−1): the ``g % per_tile``-th parcel of tile ``g // per_tile``."""
    return f"{_tile_id(g // per_tile)}-{g % per_tile:07d}"


def _parcel_boxes(n: int, tile_index: int = 0):
    """Square parcels on a regular grid, row-major from the tile's north-west corner (tiles laid out
    4 a row, 110 km apart)."""
    import numpy as np

    per_row = int(np.ceil(np.sqrt(n)))
    i = np.arange(n)
    x = X0 + (tile_index % 4) * TILE_STEP_M + (i % per_row) * SPACING_M + 5.0
    y = Y0 - (tile_index // 4) * TILE_STEP_M + CUBE_PX * RES - (i // per_row) * SPACING_M - 5.0 - SIDE_M
    return x, y, per_row


def _tile_counts(n: int, per_tile: int) -> list[tuple[str, int]]:
    return [(t, min(per_tile, n - k * per_tile)) for k, t in enumerate(_tile_ids(n, per_tile))]


def _write_parcels(root: Path, n: int, per_tile: int) -> list[str]:
    import geopandas as gpd
    import pandas as pd
    import shapely

    frames = []
    for k, (tile, count) in enumerate(_tile_counts(n, per_tile)):
        x, y, _ = _parcel_boxes(count, k)
        ids = [f"{tile}-{j:07d}" for j in range(count)]
        frames.append(gpd.GeoDataFrame({"parcel_id": ids, "tile_id": tile, "land_use": "grassland"},
                                       geometry=shapely.box(x, y, x + SIDE_M, y + SIDE_M), crs=EPSG))
    gdf = pd.concat(frames, ignore_index=True)
    gdf.to_crs(4326).to_parquet(root / "parcels.parquet")
    return gdf["parcel_id"].tolist()


def _series_times(years: float):
    import numpy as np

    t0 = int(datetime(2020, 1, 1, tzinfo=UTC).timestamp())
    days = int(years * 365)
    s2_t = t0 + 86400 * np.arange(0, days, 5) + 36000
    s1_t = t0 + 86400 * np.arange(2, days, 6) + 18000
    times = np.concatenate([s2_t, s1_t])
    is_s2 = np.concatenate([np.ones(len(s2_t), bool), np.zeros(len(s1_t), bool)])
    order = np.argsort(times, kind="stable")
    return times[order], is_s2[order]


SERIES_BLOCK_ROWS = 400_000  # rows generated and written at a time (~40 MB of columns)


def _write_tile_series(out: Path, tile: str, count: int, years: float, seed: int) -> int:
    """One tile's compacted series file, written straight in the store's layout
    (:class:`ingest.series.CompactWriter`); every column built by numpy and Arrow kernels, none
    row by row (a million parcels × five years is 669 M rows)."""
    import numpy as np
    import pyarrow as pa

    from contracts.campaigns import CALENDAR_YEAR
    from ingest.series import COMPACT, SCHEMA, CompactWriter
    from ingest.types import S1_POLS, S2_BANDS

    times, is_s2 = _series_times(years)
    per = len(times)
    rng = np.random.default_rng(seed)
    slots = pa.array([str(t) for t in times], pa.string())
    sensors, passes = pa.array(["S1", "S2"], pa.string()), pa.array(["ascending", ""], pa.string())
    constants = pa.array([tile, ""], pa.string())
    block = max(1, SERIES_BLOCK_ROWS // per)
    campaigns = CALENDAR_YEAR.campaigns_of(times).astype(np.int16)  # the default calendar, as ingest records it
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{COMPACT}.bench.tmp"
    with CompactWriter(tmp) as writer:
        for b0 in range(0, count, block):
            k = min(block, count - b0)
            m = k * per
            pids = pa.array([f"{tile}-{j:07d}" for j in range(b0, b0 + k)], pa.string())
            s2 = np.tile(is_s2, k)
            code = s2.astype(np.int32)  # 1: S2, 0: S1 (the index into sensors / passes)
            cols = {"parcel_id": pids.take(pa.array(np.repeat(np.arange(k, dtype=np.int32), per))),
                    "time": pa.array(np.tile(times, k).astype("datetime64[s]"), pa.timestamp("s", tz="UTC")),
                    "sensor": sensors.take(pa.array(code))}
            for band in S2_BANDS:
                v = rng.random(m, dtype=np.float32) * np.float32(0.38) + np.float32(0.02)
                v[~s2] = np.nan
                cols[band] = pa.array(v, pa.float32())
            clear = (rng.random(m, dtype=np.float32) > 0.4).astype(np.float32)
            clear[~s2] = np.nan
            cols["clear"] = pa.array(clear, pa.float32())
            for pol in S1_POLS:
                v = np.power(np.float32(10), rng.random(m, dtype=np.float32) * np.float32(-1.2) - np.float32(0.8))
                v[s2] = np.nan
                cols[pol] = pa.array(v, pa.float32())
            cols["orbit"] = pa.array(np.where(s2, -1, 73).astype(np.int16), pa.int16())
            zeros = pa.array(np.zeros(m, np.int32))
            cols["tile_id"] = constants.take(zeros)
            cols["clear_fraction"] = pa.array(np.where(s2, 1.0, np.nan).astype(np.float32), pa.float32())
            cols["pixel_count"] = pa.array(np.full(m, 16, np.int32), pa.int32())
            cols["valid_count"] = pa.array(np.full(m, 16, np.int32), pa.int32())
            cols["pass"] = passes.take(pa.array(code))
            cols["item_ids"] = constants.take(pa.array(np.ones(m, np.int32)))
            cols["slot"] = slots.take(pa.array(np.tile(np.arange(per, dtype=np.int32), k)))
            cols["campaign"] = pa.array(np.tile(campaigns, k), pa.int16())  # ingest records it: no fallback per read
            for field in SCHEMA:  # a column the store has and the bench does not make: empty, as in an older store
                if field.name not in cols:
                    cols[field.name] = pa.nulls(m, field.type)
            writer.write(pa.table(cols, schema=SCHEMA))
    tmp.rename(out / COMPACT)
    return count * per


def _write_series(root: Path, n: int, per_tile: int, years: float) -> dict:
    """Every tile's series, tiles written in parallel (one process per core)."""
    from concurrent.futures import ProcessPoolExecutor, as_completed

    tiles = _tile_counts(n, per_tile)
    per = len(_series_times(years)[0])
    jobs = max(1, min(len(tiles), os.cpu_count() or 1))
    with ProcessPoolExecutor(jobs) as pool:
        futures = [pool.submit(_write_tile_series, root / "series" / t, t, c, years, k) for k, (t, c) in enumerate(tiles)]
        for done, f in enumerate(as_completed(futures), 1):
            f.result()
            _say(f"bench api: series of {done}/{len(tiles)} tiles written")
    return {"rows": per * n, "rows_per_parcel": per, "tiles": len(tiles)}


def _write_cube(root: Path) -> list[str]:
    import numpy as np

    from ingest.cube import CubeWriter, cube_path
    from ingest.types import Sensor, TileGrid

    grid = TileGrid(TILE, EPSG, RES, (X0, Y0, X0 + CUBE_PX * RES, Y0 + CUBE_PX * RES))
    w = CubeWriter(cube_path(root / "cubes", TILE), grid, chunk=256)
    rng = np.random.default_rng(1)
    days = []
    for k in range(12):
        d = date(2024, 5, 1) + timedelta(days=5 * k)
        days.append(d.isoformat())
        for sensor in (Sensor.S2, Sensor.S1):
            slot = d.strftime("%Y%m%d") + ("" if sensor is Sensor.S2 else "-ascending")
            idx, new = w.begin_slot(sensor, slot)
            for win in w.blocks():
                y0, y1, x0, x1 = win
                if sensor is Sensor.S2:
                    data = rng.integers(200, 4000, (10, y1 - y0, x1 - x0), dtype=np.uint16)
                    w.write_block(sensor, idx, win, data, np.ones((y1 - y0, x1 - x0), np.uint8))
                else:
                    w.write_block(sensor, idx, win, rng.uniform(0.005, 0.2, (2, y1 - y0, x1 - x0)).astype(np.float32))
            ts = int(datetime(d.year, d.month, d.day, 10 if sensor is Sensor.S2 else 5, tzinfo=UTC).timestamp())
            meta = {"baseline": "05.10"} if sensor is Sensor.S2 else {"orbit": 73, "pass": "ascending"}
            w.commit_slot(sensor, idx, new, slot, ts, (f"bench-{sensor.value}-{slot}",), meta)
    return days


def _write_alerts(root: Path, ids: list[str], n: int) -> None:
    """Alerts written in bulk into the store's own table (the store creates the schema; one row at a
    time through ``upsert`` would take an fsync per alert)."""
    from alerts.store import open_store
    from alerts.types import EVENT_TYPES, make_alert_id

    path = root / "alerts.sqlite"
    open_store(str(path)).close()
    rng = random.Random(2)
    now = datetime.now(UTC).isoformat()
    con = sqlite3.connect(path)
    rows = []
    for k in range(n):
        pid = ids[k % len(ids)]
        kind = EVENT_TYPES[k % 4]
        # spread over five years whatever the parcel count (by k // parcels, a million parcels' alerts
        # all fell in January 2020, and a filter of any other year matched nothing: cheap, flattering pages)
        d = date(2020, 1, 1) + timedelta(days=k * 37 % 1800)
        rows.append((make_alert_id(pid, kind, d, d), pid, pid.rsplit("-", 1)[0], "", kind, d.isoformat(), d.isoformat(), d.isoformat(),
                     now, round(rng.random(), 3), '{"sensor":"S2"}', "bench", ("new", "acknowledged", "confirmed")[k % 3]))
        if len(rows) == 50_000:
            con.executemany("INSERT OR IGNORE INTO alerts VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            con.commit()
            rows = []
    con.executemany("INSERT OR IGNORE INTO alerts VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    con.commit()
    con.close()


def _build(root: Path, args: argparse.Namespace) -> dict:
    marker = root / "bench.json"
    want = {"parcels": args.parcels, "years": args.years, "alerts": args.alerts, "parcels_per_tile": args.parcels_per_tile}
    if marker.is_file() and json.loads(marker.read_text()).get("spec") == want:
        _say(f"bench api: reusing {root}")
        return json.loads(marker.read_text())
    import shutil

    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    t = time.perf_counter()
    ids = _write_parcels(root, args.parcels, args.parcels_per_tile)
    _say(f"bench api: {len(ids)} parcels")
    series = _write_series(root, args.parcels, args.parcels_per_tile, args.years)
    series["seconds"] = round(time.perf_counter() - t, 1)
    _say(f"bench api: {series['rows']} series rows on {series['tiles']} tiles")
    days = _write_cube(root)
    _write_alerts(root, ids, args.alerts)
    _say(f"bench api: {args.alerts} alerts; built in {time.perf_counter() - t:.0f} s")
    info = {"spec": want, "series": series, "cube_days": days}
    marker.write_text(json.dumps(info))
    return info


def _in_cube(n: int) -> list[int]:
    """Indices of the parcels that lie wholly inside the small cube (the chips' parcels; ``n``: the
    parcels of its tile)."""
    _, _, per_row = _parcel_boxes(n)
    side = int((CUBE_PX * RES - 5.0 - SIDE_M) // SPACING_M) + 1
    return [r * per_row + c for r in range(min(side, per_row)) for c in range(min(side, per_row))
            if r * per_row + c < n]


def _stats(lat_s: list[float]) -> dict:
    import numpy as np

    a = np.sort(np.asarray(lat_s)) * 1000
    return {"n": len(a), "p50_ms": round(float(np.percentile(a, 50)), 2),
            "p95_ms": round(float(np.percentile(a, 95)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2)}


BUDGETS_MS = {"series": 50.0, "alerts_page": 100.0, "chip": 150.0}  # p95, DESIGN.md
BUDGET_REQ_S = 200.0


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and all its descendants (the server and its workers)."""
    total, todo, tick = 0.0, [pid], os.sysconf("SC_CLK_TCK")
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total


def _budgets(result: dict, cores: int) -> dict:
    health = result["floor_http_health"]["p95_ms"]
    out = {}
    for name, limit in BUDGETS_MS.items():
        got = result[name]["p95_ms"]
        out[f"{name}_p95_ms"] = {"budget": limit, "measured": got, "pass": got <= limit,
                                 "ratio_to_health_p95": round(got / health, 2) if health else None,
                                 "server_cpu_ms_per_request": result[name].get("server_cpu_ms")}
    sus = result["sustained"]
    out["sustained_requests_per_s"] = {
        "budget": BUDGET_REQ_S, "measured": sus["requests_per_s"], "pass": sus["requests_per_s"] >= BUDGET_REQ_S,
        "server_cpu_ms_per_request": sus.get("server_cpu_ms"),
        # what the server's CPU per request allows on its cores, were they free (the load of others aside)
        "cpu_bound_requests_per_s": round(cores * 1000 / sus["server_cpu_ms"], 1) if sus.get("server_cpu_ms") else None,
        "cores": cores}
    return out


def _sustain(base: str, token: str, make_url, concurrency: int, seconds: float, seed: int) -> tuple[int, int, float]:
    """Keep-alive clients sending ``make_url(rng)`` until ``seconds`` pass: (requests, errors, seconds)."""
    import httpx

    counts = [0, 0]
    lock = threading.Lock()
    ready = threading.Barrier(concurrency + 1)  # the clock starts once every client is connected

    def worker(k: int):
        rng = random.Random(seed + k)
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as c:
            ready.wait()
            t_end = time.perf_counter() + seconds
            while True:
                try:
                    ok = c.get(make_url(rng)).status_code == 200
                except httpx.HTTPError:
                    ok = False
                with lock:
                    counts[0] += 1
                    counts[1] += 0 if ok else 1
                if time.perf_counter() >= t_end:
                    return

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(concurrency)]
    for th in threads:
        th.start()
    ready.wait()
    t = time.perf_counter()
    for th in threads:
        th.join()
    return counts[0], counts[1], time.perf_counter() - t


def _cursor_urls(base: str, token: str, filters: list[str], pages: int) -> list[str]:
    """The URLs the UI sends walking each filter's first ``pages`` pages by ``next_cursor``."""
    from urllib.parse import quote

    import httpx

    urls = []
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
        for f in filters:
            url = f
            for _ in range(pages):
                urls.append(url)
                nxt = c.get(url).json().get("next_cursor")
                if not nxt:
                    break
                url = f"{f}&cursor={quote(nxt, safe='')}"
    return urls


def _drive(base: str, token: str, urls: list[str], concurrency: int) -> tuple[list[float], int]:
    import httpx

    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()
    it = iter(urls)

    def worker():
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as c:
            while True:
                with lock:
                    url = next(it, None)
                if url is None:
                    return
                t = time.perf_counter()
                try:
                    ok = c.get(url).status_code == 200
                except httpx.HTTPError:
                    ok = False
                dt = time.perf_counter() - t
                with lock:
                    lat.append(dt)
                    errors[0] += 0 if ok else 1

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return lat, errors[0]


def run(args: argparse.Namespace, settings: Settings) -> int:
    from urllib.parse import quote

    from dashboards.security import UserStore

    if min(args.parcels, args.parcels_per_tile, args.alerts, args.requests, args.concurrency, args.server_workers, args.sustain_concurrency) < 1:
        raise ValueError("--parcels, --parcels-per-tile, --alerts, --requests, --concurrency, --sustain-concurrency and --server-workers "
                         "must be >= 1")
    root = args.data_dir.resolve()
    info = _build(root, args)
    users = UserStore(root / "dashboard.sqlite")
    token = users.reissue("bench", "admin", ["*"])
    users.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "SITSMON_INGEST__PARCELS": str(root / "parcels.parquet"),
           "SITSMON_DASHBOARD__WITH_MODEL": "false"}
    server = subprocess.Popen([sys.executable, "-m", "sitsmon.cli", "serve", "--data-dir", str(root),
                               "--port", str(port), "--workers", str(args.server_workers)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        import httpx

        for _ in range(300):
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"server did not start: {server.stderr.read().decode()[-500:]}")
        rng = random.Random(3)
        pid = lambda g: quote(_parcel_id(g, args.parcels_per_tile), safe="")  # noqa: E731
        in_cube = _in_cube(min(args.parcels, args.parcels_per_tile))  # on the first tile: their ids are theirs
        # warm-up: parcel layer, cube and store handles (and matplotlib, for NDVI chips) are loaded lazily
        # on first use, in every worker: each kind, several times over several connections
        warm = [f"/api/parcels/{pid(k)}/series?fill=false&expected=false&all_campaigns=true" for k in range(8)]
        warm += ["/api/alerts?page_size=10"] * 8
        warm += [f"/api/parcels/{pid(in_cube[0])}/chips/{kind}?date={info['cube_days'][0]}"
                 for kind in ("true_color", "ndvi", "vv") for _ in range(8)]
        for _ in range(2):
            _drive(base, token, warm, args.concurrency)
        # each tile's compacted-file footer is parsed once per file version and worker (~0.7 s for a tile
        # of 100 000 parcels): every tile asked on each of several fresh connections, so that every
        # worker has taken some of them
        tiles = len(_tile_ids(args.parcels, args.parcels_per_tile))
        every_tile = [f"/api/parcels/{pid(k * args.parcels_per_tile)}/series?fill=false&expected=false&all_campaigns=true"
                      for k in range(tiles)]
        for _ in range(3):
            connections = [threading.Thread(target=_drive, args=(base, token, every_tile, 1))
                           for _ in range(2 * args.server_workers)]
            for th in connections:
                th.start()
            for th in connections:
                th.join()
        # the first gap-filled request of the tile starts the fit of its gap filler (a one-off; the
        # answer says fill_pending until it is done): wait until both workers answer with the fill
        t = time.perf_counter()
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=120) as c:
            filled_in_a_row = 0
            while filled_in_a_row < 4 and time.perf_counter() - t < 900:
                pending = c.get(f"/api/parcels/{pid(1)}/series?expected=false&all_campaigns=true").json().get("fill_pending")
                filled_in_a_row = 0 if pending else filled_in_a_row + 1
                if pending:
                    time.sleep(1)
        first_fill_s = round(time.perf_counter() - t, 2)
        series_urls = [f"/api/parcels/{pid(rng.randrange(args.parcels))}/series?fill=false&expected=false&all_campaigns=true"
                       for _ in range(args.requests)]
        # on the first tile, whose gap filler was fitted above (each other tile's fit, ~30 s of CPU,
        # would run beside the phases measured next)
        filled_urls = [f"/api/parcels/{pid(rng.randrange(min(args.parcels, args.parcels_per_tile)))}/series?expected=false&all_campaigns=true"
                       for _ in range(max(1, args.requests // 4))]
        alert_urls, alert_filters = [], []
        for _ in range(args.requests):
            y = rng.randrange(2020, 2025)
            f = (f"/api/alerts?status={rng.choice(['new', 'acknowledged'])}&type={rng.choice(['mowing', 'harvest'])}"
                 f"&tile_id={TILE}&date_from={y}-01-01&date_to={y}-12-31&min_confidence=0.2"
                 f"&sort={rng.choice(['event_date_desc', 'confidence_desc'])}&page_size=50")
            alert_filters.append(f)
            alert_urls.append(f"{f}&page={rng.randrange(1, 20)}")
        # the UI's way: page after page by next_cursor, 20 pages deep (walked once here to learn the cursors)
        cursor_urls = _cursor_urls(base, token, alert_filters[: max(1, args.requests // 20)], 20)
        rng.shuffle(cursor_urls)
        chip_urls = [f"/api/parcels/{pid(rng.choice(in_cube))}/chips/{rng.choice(['true_color', 'ndvi', 'vv'])}"
                     f"?date={rng.choice(info['cube_days'])}" for _ in range(args.requests)]
        result = {"parcels": args.parcels, "parcels_per_tile": args.parcels_per_tile, "tiles": tiles,
                  "years": args.years, "series_rows": info["series"]["rows"], "series_build_s": info["series"].get("seconds"),
                  "rows_per_parcel": info["series"]["rows_per_parcel"], "alerts": args.alerts,
                  "concurrency": args.concurrency, "server_workers": args.server_workers, "cpu_count": os.cpu_count(),
                  "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
                  "gapfill_fit_s": first_fill_s}
        # floors of this run: the HTTP round trip (/health) and the store read alone, in this process
        c0 = _cpu_s(server.pid)
        lat, _ = _drive(base, token, ["/health"] * args.requests, args.concurrency)
        result["floor_http_health"] = {**_stats(lat), "server_cpu_ms": round(1000 * (_cpu_s(server.pid) - c0) / len(lat), 2)}
        from ingest.series import read_series

        read = []
        for k in range(tiles):  # each tile's footer parsed before the clock, as the server's were in its warm-up
            read_series(root / "series", tile_id=_tile_id(k), parcel_id=_parcel_id(k * args.parcels_per_tile, args.parcels_per_tile))
        for url in series_urls[: min(100, len(series_urls))]:
            pid_text = url.split("/")[3].replace("%2F", "/")
            t = time.perf_counter()
            read_series(root / "series", tile_id=pid_text.rsplit("-", 1)[0], parcel_id=pid_text)
            read.append(time.perf_counter() - t)
        result["floor_store_read_series"] = _stats(read)
        from ingest import series as series_store

        series_store._INDEX_CACHE.clear()  # this process's copy of every tile's footer (~330 MB a tile) goes
        for name, urls in (("series", series_urls), ("series_gap_filled", filled_urls), ("alerts_page", cursor_urls),
                           ("alerts_page_offset", alert_urls), ("chip", chip_urls)):
            c0 = _cpu_s(server.pid)
            lat, errors = _drive(base, token, urls, args.concurrency)
            cpu_ms = round(1000 * (_cpu_s(server.pid) - c0) / max(1, len(lat)), 2)
            result[name] = {**_stats(lat), "errors": errors, "server_cpu_ms": cpu_ms}
            _say(f"bench api: {name} {result[name]}")
        def mixed(r: random.Random) -> str:
            """Series, alert page and chip in equal parts, each of a parcel or filter drawn afresh."""
            kind = r.randrange(3)
            if kind == 0:
                return f"/api/parcels/{pid(r.randrange(args.parcels))}/series?fill=false&expected=false&all_campaigns=true"
            if kind == 1:
                return f"{r.choice(alert_filters)}&page={r.randrange(1, 20)}"
            return (f"/api/parcels/{pid(r.choice(in_cube))}/chips/{r.choice(['true_color', 'ndvi', 'vv'])}"
                    f"?date={r.choice(info['cube_days'])}")

        c0 = _cpu_s(server.pid)
        done, errors, seconds = _sustain(base, token, mixed, args.sustain_concurrency, args.sustain_s, 7)
        result["sustained"] = {"requests": done, "seconds": round(seconds, 2), "concurrency": args.sustain_concurrency,
                               "requests_per_s": round(done / seconds, 1), "errors": errors,
                               "server_cpu_ms": round(1000 * (_cpu_s(server.pid) - c0) / max(1, done), 2)}
        result["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
        result["budgets"] = _budgets(result, min(os.cpu_count() or 1, args.server_workers))
        for name, b in result["budgets"].items():
            _say(f"bench api: budget {name}: {b['measured']} vs {b['budget']} "
                 f"{'PASS' if b['pass'] else 'FAIL'} (health ratio {b.get('ratio_to_health_p95')}, "
                 f"server CPU {b.get('server_cpu_ms_per_request')} ms/request)")
        print(json.dumps(result))
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
    return 0
