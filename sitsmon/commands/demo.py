"""``sitsmon demo``: the embedded pipeline on a synthetic archive, nothing else to start.

1. a synthetic Sentinel-1/2 archive (generated once under ``<data_dir>/archive``);
2. a real STAC API over it (rustac) with the COGs served over HTTP with Range requests;
3. a first search that lists the acquisitions the catalogue holds and when each was published;
4. the stream: a simulated clock releases the acquisitions in publication order, as a live catalogue
   would (``--speed`` simulated days per second; default: as fast as it goes). At each release the
   poller ingests what appeared (tile cube, parcel series) and announces it on the in-process bus
   (``sits.acquisitions``); the streaming monitor folds each acquisition into every parcel's encoder
   and detector states, and prints a line per acquisition (date, sensor, parcels updated, new
   alerts, latency): alerts go to the SQLite store and the ``sits.alerts`` topic as they are raised;
5. the alert store's contents;
6. each parcel's CAP traffic light (``traffic-lights.csv``);
7. the dashboard on http://127.0.0.1:8000 (``[dashboard]``) with a login printed for each demo user,
   until Ctrl-C (``--no-serve``: exit instead).

A second run reuses the archive and ingests nothing new: every step is idempotent.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

from sitsmon.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo",
        help="the embedded pipeline on a synthetic archive",
        description=(__doc__ or "").split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="where everything goes (default: [paths] data_dir)")
    parser.add_argument("--fresh", action="store_true", help="delete earlier demo output and start over")
    parser.add_argument("--tile-size", type=int, default=None, help="pixels per tile side (default: [synth])")
    parser.add_argument("--parcels", type=int, default=None, help="parcels per tile (default: [synth])")
    parser.add_argument("--start", default=None, help="first acquisition date (default: [synth] start)")
    parser.add_argument("--end", default=None, help="last acquisition date (default: [synth] end)")
    parser.add_argument("--port", type=int, default=None, help="STAC API port (default: [stac] port; 0: any free)")
    parser.add_argument("--serve", action="store_true", help="also keep the STAC API running while the dashboard runs")
    parser.add_argument("--no-serve", action="store_true",
                        help="exit at the end instead of serving the dashboard (scripted runs)")
    parser.add_argument("--speed", type=float, default=0.0,
                        help="simulated days per second of the live replay (default 0: as fast as it goes)")
    parser.set_defaults(handler=run)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _archive(root: Path, args: argparse.Namespace, settings: Settings) -> Path:
    from ingest.synth import SynthConfig, generate_archive

    archive = root / "archive"
    if (archive / "archive.json").is_file():
        _say(f"[1/6] archive: reusing {archive} (--fresh to regenerate)")
        return archive
    s = settings.synth
    config = SynthConfig(
        seed=s.seed,
        n_tiles=s.tiles,
        tile_size_px=args.tile_size or s.tile_size_px,
        parcels_per_tile=args.parcels or s.parcels_per_tile,
        start=date.fromisoformat(args.start or s.start),
        end=date.fromisoformat(args.end or s.end),
        quicklooks=False,
    )
    _say(f"[1/6] archive: generating a synthetic Sentinel-1/2 archive in {archive}")
    manifest = generate_archive(archive, config, progress=True)
    _say(f"      {json.dumps(manifest.get('counts', {}))}")
    return archive


def _search(url: str) -> tuple[dict[str, int], list[int]]:
    """Every acquisition the catalogue holds, and the times at which they were published."""
    from pystac_client import Client

    from ingest.sources.simulated import published_s

    items = list(Client.open(url).search(collections=["sentinel-2-l2a", "sentinel-1-grd"], limit=200)
                 .items_as_dicts())
    counts = Counter(item["collection"] for item in items)
    times = sorted(item["properties"]["datetime"] for item in items)
    span = f" from {times[0][:10]} to {times[-1][:10]}" if times else ""
    _say(f"[3/6] search: {len(items)} acquisitions{span}: " + ", ".join(f"{n} {c}" for c, n in sorted(counts.items())))
    return dict(counts), sorted({published_s(item) for item in items})


def _stream(url: str, archive: Path, root: Path, bus: Any, start: str, releases: list[int],
            speed: float) -> dict[str, Any]:
    """Release the archive in publication order on a simulated clock: poll, ingest, fold, alert — live."""
    import time

    import ingest
    from alerts.sinks.kafka import KafkaAlertSink
    from ingest.sources.simulated import PublishedBy, SimulatedClock
    from monitor.config import MonitorConfig
    from monitor.service import Monitor, Service, format_fold

    _say("[4/6] stream: the catalogue's acquisitions are released in publication order (simulated clock); "
         "each is ingested into the tile cube and parcel series, announced on sits.acquisitions, and "
         "folded into the encoder and detector states by the monitor")
    parcels = archive / "parcels" / "parcels.parquet"
    poller = ingest.build_poller(
        [url], root / "cubes", root / "series", str(root / "ingest-ledger.sqlite"),
        start=start, parcels_path=parcels, grids_from=archive, publisher=bus, workers=1, lookback_days=45,
    )
    # A rerun continues the simulated clock where the last run stopped (one poll at the end if nothing is new).
    clock_file = root / "demo-clock.json"
    done = json.loads(clock_file.read_text())["now_s"] if clock_file.exists() else None
    if done is not None:
        releases = [r for r in releases if r > done] or releases[-1:]
    clock = SimulatedClock(max(done or 0, releases[0] - 1) if releases else 0)
    poller.clock = clock
    poller.sources = [PublishedBy(source, clock) for source in poller.sources]
    config = MonitorConfig(data_dir=root, series_dir=root / "series", parcels=parcels, save_every=5)
    monitor = Monitor(config, sinks=[KafkaAlertSink(bus, config.alerts_topic)])
    seen: Counter = Counter()

    def on_fold(report) -> None:
        seen[report.acquisition.sensor] += 1
        if report.status != "duplicate":
            _say(format_fold(report))

    service = Service(monitor, bus, on_fold=on_fold)
    totals = Counter()
    # "already there": items an earlier run ingested (a poll also re-sees its own look-back window)
    already = poller.ledger.counts().get("ingested", 0)
    quarantined: list[tuple[str, str]] = []
    try:
        for release in releases:
            tick = time.monotonic()
            clock.advance_to(max(release, clock.now_s))
            report = poller.poll_once()
            bus.flush()
            for key in ("ingested_items", "ingested_slots"):
                totals[key] += report.to_dict()[key]
            quarantined.extend(report.quarantined)
            for item_id, why in report.quarantined:
                _say(f"      quarantined {item_id}: {why}")
            if report.errors:
                raise RuntimeError(f"ingest failed: {report.errors[0]}")
            service.run_once(timeout_s=0.05)
            clock_file.write_text(json.dumps({"now_s": clock.now_s}))
            if speed > 0 and releases[-1] != release:  # speed: simulated days per second
                nxt = releases[releases.index(release) + 1]
                time.sleep(max(0.0, (nxt - release) / 86400.0 / speed - (time.monotonic() - tick)))
        lights = monitor.update_lights(service.report.tiles) if service.report.tiles else None
    finally:
        poller.ledger.close()
        service.close()
    run = service.report
    totals["duplicates"] = already
    _say(f"      {totals['ingested_items']} items in {totals['ingested_slots']} acquisitions ingested, "
         f"{totals['duplicates']} already there, {len(quarantined)} quarantined; the monitor folded "
         f"{run.acquisitions} acquisitions ({run.parcels_updated} parcel updates, {run.rewound} late arrivals "
         f"rewound) and raised {run.alerts} alerts")
    return {"ingest": dict(totals), "quarantined": len(quarantined), "events": dict(seen),
            "monitor": {"acquisitions": run.acquisitions, "parcels_updated": run.parcels_updated,
                        "alerts": run.alerts}, "new_alerts": run.new_alerts, "lights_frame": lights}


def _summary(root: Path, new_alerts: int) -> dict[str, Any]:
    """What the alert store and the traffic-light file hold now."""
    import pandas as pd

    from alerts.store import AlertQuery, open_store

    with open_store(str(root / "alerts.sqlite")) as store:
        alerts = store.query(AlertQuery(limit=100_000))
    by_type = Counter(a.type for a in alerts)
    lights_path = root / "traffic-lights.csv"
    lights = pd.read_csv(lights_path)["light"].value_counts().to_dict() if lights_path.exists() else {}
    _say(f"[5/6] alerts: {len(alerts)} in {root / 'alerts.sqlite'} "
         f"({', '.join(f'{n} {t}' for t, n in sorted(by_type.items())) or 'none'}), {new_alerts} new in this run")
    _say(f"[6/6] traffic lights ({lights_path}): {lights}")
    return {"alerts": len(alerts), "new_alerts": new_alerts, "by_type": dict(by_type), "lights": lights}


def run(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.archive import open_archive
    from ingest.locks import WriterLock
    from ingest.stac_server import running_stac_api
    from monitor.bus import make_bus

    root = (args.data_dir or settings.paths.data_dir).resolve()
    if args.fresh and root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    archive = _archive(root, args, settings)
    start = open_archive(archive).manifest["start"]
    port = settings.stac.port if args.port is None else args.port
    with running_stac_api(archive, settings.stac.host, port, port + 1 if port else 0) as endpoint:
        _say(f"[2/6] STAC API on {endpoint.url} (COGs on {endpoint.assets_url})")
        found, releases = _search(endpoint.url)
        bus = make_bus("memory", path=root / "bus.sqlite")
        try:
            with WriterLock(root, "ingest", command="sitsmon demo"):  # the demo is this data dir's ingest writer
                streamed = _stream(endpoint.url, archive, root, bus, start, releases, args.speed)
        finally:
            bus.close()
        streamed.pop("lights_frame")
        summary = _summary(root, new_alerts=streamed.pop("new_alerts"))
        print(json.dumps({"data_dir": str(root), "stac_api": endpoint.url, "found": found, **streamed, **summary}),
              flush=True)
        if args.serve:
            _say(f"      the STAC API stays up on {endpoint.url} while the dashboard runs")
        if not args.no_serve and args.serve:
            _dashboard(root, settings)
    if not args.no_serve and not args.serve:
        _dashboard(root, settings)
    return 0


def _dashboard(root: Path, settings: Settings) -> None:
    """Serve the dashboard of the demo's data dir until Ctrl-C, with fresh logins for the demo users."""
    import dashboards

    logins = dashboards.demo_logins(root)
    host, port = settings.dashboard.host, settings.dashboard.port
    _say(f"[dashboard] http://{host}:{port}/ — log in with one of these tokens (Ctrl-C to stop):")
    for name, token in logins.items():
        _say(f"      {name:16s} {token}")
    dashboards.serve(root, host, port, with_model=settings.dashboard.with_model)
