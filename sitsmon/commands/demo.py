"""``sitsmon demo``: the embedded pipeline on a synthetic archive, nothing else to start.

1. a synthetic Sentinel-1/2 archive (generated once under ``<data_dir>/archive``);
2. a real STAC API over it (rustac) with the COGs served over HTTP with Range requests;
3. a first search that lists the acquisitions the catalogue holds;
4. ingest: the poller loads every new acquisition onto the tile grid, writes the Zarr cubes and the
   parcel series, and announces each acquisition on the in-process bus;
5. the acquisition events are read back from the bus (what the monitor consumes);
6. the detectors run on the parcel series, the encoder's expectation at each event is added to
   its evidence, alerts go to the SQLite store, and each parcel gets its CAP traffic light.

The streaming monitor (encoder state per acquisition) and the dashboard come with later issues.
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

ACQUISITIONS_TOPIC = "sits.acquisitions"


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
    parser.add_argument("--serve", action="store_true", help="keep the STAC API running at the end until Ctrl-C")
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


def _search(url: str) -> dict[str, int]:
    from pystac_client import Client

    items = list(Client.open(url).search(collections=["sentinel-2-l2a", "sentinel-1-grd"], limit=200)
                 .items_as_dicts())
    counts = Counter(item["collection"] for item in items)
    times = sorted(item["properties"]["datetime"] for item in items)
    span = f" from {times[0][:10]} to {times[-1][:10]}" if times else ""
    _say(f"[3/6] search: {len(items)} acquisitions{span}: " + ", ".join(f"{n} {c}" for c, n in sorted(counts.items())))
    return dict(counts)


def _ingest(url: str, archive: Path, root: Path, bus: Any, start: str) -> dict[str, Any]:
    import ingest

    _say("[4/6] ingest: loading new acquisitions into tile cubes and parcel series")
    poller = ingest.build_poller(
        [url], root / "cubes", root / "series", str(root / "ingest-ledger.sqlite"),
        start=start, parcels_path=archive / "parcels" / "parcels.parquet", grids_from=archive,
        publisher=bus, workers=1,
    )
    try:
        report = poller.poll_once()
    finally:
        poller.ledger.close()
    bus.flush()
    summary = report.to_dict()
    _say(f"      {summary['ingested_items']} items in {summary['ingested_slots']} acquisitions ingested, "
         f"{summary['duplicates']} already there, {len(summary['quarantined'])} quarantined")
    for item_id, why in report.quarantined:
        _say(f"      quarantined {item_id}: {why}")
    if report.errors:
        raise RuntimeError(f"ingest failed: {report.errors[0]}")
    return summary


def _consume(bus: Any) -> Counter:
    consumer = bus.consumer([ACQUISITIONS_TOPIC], group_id="sitsmon-demo")
    seen: Counter = Counter()
    try:
        while batch := consumer.poll(timeout_s=0.5, max_records=500):
            for message in batch:
                seen[message.value["sensor"]] += 1
            consumer.commit()
    finally:
        consumer.close()
    _say(f"[5/6] bus: {sum(seen.values())} new acquisition events on {ACQUISITIONS_TOPIC} "
         + (", ".join(f"{n} {s}" for s, n in sorted(seen.items())) or "(nothing new)"))
    return seen


def _detect(archive: Path, root: Path) -> dict[str, Any]:
    import pandas as pd

    import sits
    from alerts.detectors import make_detectors, run_detectors
    from alerts.expectation import add_model_expectations, annotate_events
    from alerts.series import normalise_observations, read_parcels
    from alerts.store import open_store
    from alerts.traffic_light import assess_frame
    from alerts.types import Alert
    from ingest.series import read_series

    table = read_series(root / "series")
    if table.num_rows == 0:
        raise RuntimeError("no parcel series were written; nothing to detect")
    obs = normalise_observations(table.to_pandas(), source="parcel series")
    parcels = read_parcels(archive / "parcels" / "parcels.parquet")
    events, _ = run_detectors(obs, parcels, make_detectors(["mowing", "harvest", "solar"]))
    # The encoder's expectation at each event goes into the evidence ("what the model expected").
    model = sits.load_model()
    events = annotate_events(events, add_model_expectations(obs, model), model.version)
    tiles = dict(zip(parcels["parcel_id"], parcels.get("tile_id", pd.Series([""] * len(parcels))), strict=False))
    alerts = [Alert.from_event(e, tile_id=tiles.get(e.parcel_id, "")) for e in events]
    with open_store(str(root / "alerts.sqlite")) as store:
        new = store.upsert_many(alerts)
    last = obs["time"].max()
    lights = assess_frame(obs, parcels, events, campaign=last.year, as_of=last.date())
    lights.to_csv(root / "traffic-lights.csv", index=False)
    by_type = Counter(a.type for a in alerts)
    light_counts = lights["light"].value_counts().to_dict()
    _say(f"[6/6] alerts: {len(alerts)} events ({', '.join(f'{n} {t}' for t, n in sorted(by_type.items()))}), "
         f"{new} new in {root / 'alerts.sqlite'}; traffic lights {light_counts}")
    return {"alerts": len(alerts), "new_alerts": new, "by_type": dict(by_type), "lights": light_counts}


def run(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.archive import open_archive
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
        found = _search(endpoint.url)
        bus = make_bus("memory", path=root / "bus.sqlite")
        try:
            ingested = _ingest(endpoint.url, archive, root, bus, start)
            events = _consume(bus)
        finally:
            bus.close()
        detected = _detect(archive, root)
        print(json.dumps({"data_dir": str(root), "stac_api": endpoint.url, "found": found,
                          "ingest": {k: ingested[k] for k in ("ingested_items", "ingested_slots", "duplicates")},
                          "quarantined": len(ingested["quarantined"]), "events": dict(events), **detected}))
        if args.serve:
            import threading

            _say(f"STAC API stays up on {endpoint.url}; Ctrl-C to stop")
            threading.Event().wait()
    return 0
