"""`sitsmon ingest poll|backfill|import|parcels import`: STAC catalogues -> per-tile Zarr cubes and parcel series.

Settings used: ``[ingest]`` tiles, collections, poll_interval_s, lookback_days, max_retries,
requests_per_second, ledger_url; ``[stac] urls``; ``[paths] data_dir``; ``[bus]``. Options given on
the command line win. Sentinel Hub credentials come from ``SH_CLIENT_ID`` / ``SH_CLIENT_SECRET``.
poll, backfill and import hold the data dir's ingest lock (:mod:`ingest.locks`) for their whole run;
status takes none and also checks every cube.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from sitsmon.commands import add_command
from sitsmon.settings import Settings

logger = logging.getLogger(__name__)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stac-url", action="append", default=None, metavar="URL",
                   help="STAC API to search (repeatable; default: [stac] urls)")
    p.add_argument("--sentinelhub", action="store_true",
                   help="also search the Sentinel Hub catalogue (credentials from SH_CLIENT_ID/SH_CLIENT_SECRET)")
    p.add_argument("--sentinelhub-url", default=None, help="Sentinel Hub base URL (default: [ingest] sentinelhub_url)")
    p.add_argument("--sentinelhub-assets", default=None, metavar="TEMPLATE",
                   help="href template for Sentinel Hub items' band COGs, e.g. https://host/{tile}/{date}/{band}.tif "
                        "(default: the pixels come from the Process API on each tile's grid)")
    p.add_argument("--tiles", nargs="+", default=None, metavar="TILE", help="MGRS tile ids (default: [ingest] tiles)")
    p.add_argument("--aoi", action="append", default=None, metavar="GEOJSON",
                   help="GeoJSON file of an area of interest (EPSG:4326), mapped onto the tiles found over it")
    p.add_argument("--collections", nargs="+", default=None, help="collections (default: [ingest] collections)")
    p.add_argument("--grids", default=None, metavar="ARCHIVE",
                   help="archive folder or archive.json with the tile grids (default: from the items)")
    p.add_argument("--parcels", default=None, metavar="LAYER",
                   help="parcel layer (GeoParquet, GeoPackage, GeoJSON) for the parcel series")
    p.add_argument("--campaign", type=int, default=None, metavar="YEAR",
                   help="use the parcel layer imported for this campaign (sitsmon ingest parcels import)")
    p.add_argument("--cubes", default=None, help="cube folder (default: <data_dir>/cubes)")
    p.add_argument("--series", default=None, help="parcel-series folder (default: <data_dir>/series)")
    p.add_argument("--ledger", default=None, help="ledger: SQLite path or postgresql:// URL")
    p.add_argument("--chunk", type=int, default=None, help="cube chunk size in pixels (default: [ingest] chunk)")
    p.add_argument("--workers", type=int, default=None, help="tiles ingested in parallel (default: [ingest] workers)")
    p.add_argument("--bus", choices=("none", "memory", "kafka"), default=None,
                   help="where acquisition events go (default: [bus] backend)")
    p.add_argument("--max-retries", type=int, default=None, help="HTTP retries per request")
    p.add_argument("--rps", type=float, default=None, help="requests per second per source")
    _wait_option(p)


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"--wait needs seconds >= 0, got {text}")
    return value


def _wait_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wait", nargs="?", type=_seconds, const=True, default=False, metavar="SECONDS",
                   help="when another ingest writer holds the data dir, wait for it (at most SECONDS if given) "
                        "instead of exiting with 'data dir is in use'")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "ingest", help="poll STAC catalogues into tile cubes and parcel series",
        description="Search STAC catalogues, load new acquisitions onto each tile's grid, write the Zarr "
                    "cubes and the parcel series, and announce each acquisition on the bus.")
    actions = parser.add_subparsers(dest="ingest_action", metavar="ACTION", required=True)
    poll = add_command(actions, "poll", run, help="poll for new items (continuously, or --once)",
                       description="Poll the sources every interval; --once does one pass.")
    _common(poll)
    poll.add_argument("--once", action="store_true", help="one pass, then exit")
    poll.add_argument("--since", default=None, help="first search start where no watermark exists (ISO date)")
    poll.add_argument("--lookback-days", type=float, default=None, help="look-back for late-published items")
    poll.add_argument("--interval", type=float, default=None, help="seconds between polls")
    back = add_command(actions, "backfill", run, help="replay a past period in time order (resumable)",
                       description="Ingest every item acquired in [--start, --end], tiles in parallel; "
                                   "interrupted runs resume from the ledger.")
    _common(back)
    back.add_argument("--start", required=True, help="first acquisition date (ISO)")
    back.add_argument("--end", required=True, help="last acquisition date (ISO, inclusive)")
    back.add_argument("--scheduler", default=None, metavar="ADDRESS",
                      help="run the backfill as tasks by tile and time block on Dask distributed: a scheduler "
                           "address (tcp://host:8786) or 'local' for a LocalCluster of --workers processes here "
                           "(default: [dask] scheduler; empty: this process, tiles in --workers threads)")
    back.add_argument("--block-days", type=float, default=None, metavar="DAYS",
                      help="with --scheduler: days of acquisitions per task of a tile (default: [dask] block_days)")
    from contracts.interchange import DUPLICATE_POLICY

    imp = add_command(
        actions, "import", run, help="load parcel series in the interchange format (CSV/Parquet)",
        description="Import interchange rows (docs/data-contracts.md) into the parcel-series store, one slot file per "
                    "acquisition (sensor + UTC day), merged with the rows stored there: rows are keyed by "
                    "(parcel_id, time, sensor), never by file name, and the same rows imported again are "
                    "not stored twice. Rows with a bad id, time or sensor, text or an infinity in a value "
                    "column, or a value outside its physical range are rejected with their line; a file "
                    "missing a band column or in a plainly wrong unit (digital numbers, dB) is refused. "
                    f"{DUPLICATE_POLICY} One acquisition event per slot written goes to the bus.")
    imp.add_argument("path", help="CSV or Parquet file")
    imp.add_argument("--tile-id", default="imported", help="tile the series are filed under (default: imported)")
    imp.add_argument("--series", default=None, help="parcel-series folder (default: <data_dir>/series)")
    imp.add_argument("--sensors", default=None, metavar="S2,S1",
                     help="import only these sensors' rows (e.g. S1 for a file without S2 band columns); "
                          "default both, and a missing band column of either refuses the file")
    imp.add_argument("--bus", choices=("none", "memory", "kafka"), default=None,
                     help="where the acquisition events go (default: [bus] backend)")
    _wait_option(imp)
    stat = add_command(
        actions, "statistics", run, help="parcel statistics from the Sentinel Hub Statistical API into the parcel-series store",
        description="One Statistical API request per parcel (daily S2 L2A band means over clear pixels, SCL 4-7), "
                    "written as one slot per UTC day with the schema of the cube-based zonal statistics. "
                    "Credentials from SH_CLIENT_ID / SH_CLIENT_SECRET; 429 waited out, 5xx retried.")
    stat.add_argument("--parcels", required=True, metavar="LAYER", help="parcel layer (GeoParquet, GeoPackage, GeoJSON)")
    stat.add_argument("--tile-id", required=True, help="tile the series are filed under (parcels of other tiles skipped)")
    stat.add_argument("--start", required=True, help="first day (ISO)")
    stat.add_argument("--end", required=True, help="last day (ISO, inclusive)")
    stat.add_argument("--series", default=None, help="parcel-series folder (default: <data_dir>/series)")
    stat.add_argument("--sentinelhub-url", default=None, help="Sentinel Hub base URL (default: [ingest] sentinelhub_url)")
    stat.add_argument("--token-url", default=None, help="OAuth token URL (default: the base URL's)")
    stat.add_argument("--max-retries", type=int, default=None, help="HTTP retries per request")
    stat.add_argument("--rps", type=float, default=None, help="requests per second")
    _wait_option(stat)
    par = add_command(
        actions, "parcels", run, help="parcel layers per campaign: import one with its per-parcel report",
        description="Parcel layers change every campaign (ids, outlines, land use); each is imported for its year.")
    par_actions = par.add_subparsers(dest="parcels_action", metavar="ACTION", required=True)
    pimp = add_command(
        par_actions, "import", run, help="import a parcel layer for a campaign, with its per-parcel report",
        description="Read and check the layer (empty or duplicate ids and empty or non-polygon geometries rejected, "
                    "invalid geometries repaired with make_valid), then report per parcel: status and reason, area, "
                    "the area shared with other parcels (and their ids), and the S2 10 m, S2 20 m and S1 pixels fully "
                    "inside. Writes <root>/<YEAR>/parcels.parquet (the kept parcels with their counts: give it as "
                    "the parcel layer, and the traffic light judges 'not analysable' on these counts) and "
                    "<root>/<YEAR>/report.csv (every row). Other campaigns are left alone.")
    pimp.add_argument("path", help="parcel layer (GeoParquet, GeoPackage, GeoJSON)")
    pimp.add_argument("--campaign", required=True, type=int, metavar="YEAR", help="the campaign (year) it declares")
    pimp.add_argument("--root", default=None, help="campaign layers folder (default: <data_dir>/parcels)")
    pimp.add_argument("--id-column", default="parcel_id", help="the parcel id column (default parcel_id)")
    pimp.add_argument("--s1-resolution", type=float, default=20.0, metavar="M",
                      help="S1 pixel size in m for the pixels-inside count (default 20: IW GRD-HR resolution)")
    pimp.add_argument("--grids", default=None, metavar="ARCHIVE",
                      help="archive folder or archive.json with the tile grids: count the pixels inside on the grid "
                           "of each tile a parcel falls in (default: [ingest] grids, else the grids of the cubes "
                           "under <data_dir>/cubes, else grids aligned in the layer's UTM zone)")
    chk = add_command(
        actions, "check", run, help="search one day of each configured source and resolve every asset of one item",
        description="For each source ([[ingest.sources]] and [stac] urls, or --stac-url): refuse an uncalibrated "
                    "S1 collection, search one UTC day per collection, and for the first item found resolve every "
                    "band in the source's dialect and open each asset's header. Prints what it found or exactly "
                    "what is missing; exit status 1 when anything is missing. Writes nothing.")
    chk.add_argument("--stac-url", action="append", default=None, metavar="URL",
                     help="check this STAC API instead of the configured sources (repeatable)")
    chk.add_argument("--dialect", default="synthetic",
                     choices=("synthetic", "earth-search", "planetary-computer", "cdse"),
                     help="dialect of --stac-url (default synthetic)")
    chk.add_argument("--source", action="append", default=None, metavar="NAME",
                     help="only the configured source(s) of this name or URL")
    chk.add_argument("--sentinelhub", action="store_true",
                     help="also check the Sentinel Hub catalogue and its Process API (SH_CLIENT_ID/SH_CLIENT_SECRET)")
    chk.add_argument("--sentinelhub-url", default=None, help="Sentinel Hub base URL (default: [ingest] sentinelhub_url)")
    chk.add_argument("--token-url", default=None, help="Sentinel Hub OAuth token URL (default: the base URL's)")
    chk.add_argument("--day", default=None, help="UTC day to search, YYYY-MM-DD (default: yesterday)")
    chk.add_argument("--collections", nargs="+", default=None, help="collections (default: [ingest] collections)")
    st = add_command(actions, "status", run, help="items per status, quarantined items with reasons, watermarks",
                     description="Read the ledger: what was ingested, quarantined (and why), superseded.")
    st.add_argument("--ledger", default=None, help="ledger: SQLite path or postgresql:// URL")
    st.add_argument("--tile", default=None, help="only this tile's quarantined items")
    st.add_argument("--cubes", default=None, help="cube folder to check (default: <data_dir>/cubes)")


def _publisher(kind: str, settings: Settings) -> Any:
    if kind == "none":
        from ingest.events import NullPublisher

        return NullPublisher()
    from monitor.bus import make_bus

    if kind == "kafka":
        return make_bus("kafka", settings.bus.bootstrap_servers, settings.bus.api_version or None)
    return make_bus("memory", path=settings.bus.path or settings.paths.under("bus.sqlite"))


def _time(value: str, end: bool = False) -> int:
    from ingest.items import parse_time

    if "T" not in value:
        value = f"{value}T23:59:59Z" if end else f"{value}T00:00:00Z"
    return parse_time(value, "--end" if end else "--start")


def _configured_sources(settings: Settings, max_retries: int | None = None, rps: float | None = None) -> list[Any]:
    """The [[ingest.sources]] entries as sources (credentials from the environment variables they name)."""
    from ingest.http import RetryPolicy
    from ingest.sources.configured import configured_source

    s = settings.ingest
    policy = RetryPolicy(max_retries=max_retries if max_retries is not None else s.max_retries)
    return [configured_source(e.url, e.dialect, name=e.name, collections=tuple(e.collections),
                              calibration=e.calibration, token_env=e.token_env, sas_url=e.sas_url,
                              s3_endpoint=e.s3_endpoint, policy=policy,
                              requests_per_second=rps or s.requests_per_second)
            for e in s.sources]


def _statistics(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.http import RetryPolicy
    from ingest.parcels import read_parcels
    from ingest.sources.sh_statistical import parcel_statistics

    s = settings.ingest
    parcels = read_parcels(args.parcels)[0]
    if "tile_id" in parcels.columns and parcels["tile_id"].notna().any():
        parcels = parcels[parcels["tile_id"] == args.tile_id]
    if parcels.empty:
        raise ValueError(f"--parcels {args.parcels}: no parcel of tile {args.tile_id}")
    result = parcel_statistics(
        parcels, args.tile_id, _time(args.start), _time(args.end, end=True),
        args.series or s.series_dir or settings.paths.data_dir / "series",
        client_id=os.environ.get("SH_CLIENT_ID", ""), client_secret=os.environ.get("SH_CLIENT_SECRET", ""),
        base_url=args.sentinelhub_url or s.sentinelhub_url, token_url=args.token_url,
        policy=RetryPolicy(max_retries=args.max_retries if args.max_retries is not None else s.max_retries),
        requests_per_second=args.rps or s.requests_per_second)
    print(json.dumps({"parcels": len(parcels), "slots": [p.name for p in result.slots],
                      "failed": [list(f) for f in result.failed]}))
    return 0


def _parcels_import(args: argparse.Namespace, settings: Settings) -> int:
    """The summary on stdout; each repaired or rejected row is logged (stderr) by ingest.parcels."""
    from ingest.parcel_campaign import import_campaign_layer

    result = import_campaign_layer(args.path, args.campaign, args.root or settings.paths.data_dir / "parcels",
                                   id_column=args.id_column, s1_resolution_m=args.s1_resolution,
                                   grids=_import_grids(args, settings))
    print(json.dumps(result.to_dict()))
    return 0


def _import_grids(args: argparse.Namespace, settings: Settings) -> dict[str, Any] | None:
    """The tile grids a layer's pixels are counted on: --grids, [ingest] grids, else the cubes' own."""
    from ingest.grid import grids_from_manifest
    from ingest.pipeline import read_stored_grid

    source = args.grids or settings.ingest.grids
    if source:
        return grids_from_manifest(source)
    cubes = Path(settings.ingest.cubes_dir or settings.paths.data_dir / "cubes")
    stored = {p.stem: read_stored_grid(p) for p in sorted(cubes.glob("*.zarr"))} if cubes.is_dir() else {}
    return {t: g for t, g in stored.items() if g is not None} or None


def _check(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import UTC, datetime, timedelta

    from ingest.check import check_source
    from ingest.sources import StacApiSource

    if args.stac_url:
        sources = [StacApiSource(u, dialect=args.dialect) for u in args.stac_url]
    else:
        sources = _configured_sources(settings) + [StacApiSource(u) for u in settings.stac.urls]
        if settings.ingest.sentinelhub and not args.sentinelhub:
            sources.append(_sentinelhub_source(args, settings))
        if args.source:
            sources = [x for x in sources if x.name in args.source or getattr(x, "url", None) in args.source]
    if args.sentinelhub:
        sources.append(_sentinelhub_source(args, settings))
    if not sources:
        raise ValueError("nothing to check: give --stac-url, or configure [[ingest.sources]] or [stac] urls"
                         + (f" named {', '.join(args.source)}" if args.source else ""))
    day = args.day or (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")
    ok = True
    for source in sources:
        report = check_source(source, tuple(args.collections or settings.ingest.collections), _time(day))
        print("\n".join(report.lines), flush=True)
        ok &= report.ok
    return 0 if ok else 1


def campaign_parcels(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Which parcel layer reduces each acquisition (``ingest.campaign_layers``), as ``build_poller``
    options: --parcels (one layer; --campaign names its campaign), else the layer imported for
    --campaign (an override for every acquisition), else [ingest] parcels, else the imported campaign
    layers by each acquisition's date ([campaigns] calendar), else none (cubes only)."""
    from ingest.campaign_layers import imported_campaigns
    from ingest.parcel_campaign import campaign_dir

    root = settings.paths.data_dir / "parcels"
    campaign = getattr(args, "campaign", None)
    calendar = settings.campaigns.calendar()
    if args.parcels:
        return {"parcels_path": args.parcels, "campaign": campaign, "calendar": calendar}
    if campaign is not None:
        path = campaign_dir(root, campaign) / "parcels.parquet"
        if not path.is_file():
            raise FileNotFoundError(f"--campaign {campaign}: no parcel layer imported at {path} "
                                    f"(sitsmon ingest parcels import LAYER --campaign {campaign})")
        return {"parcels_path": path, "campaign": campaign, "calendar": calendar}
    imported = imported_campaigns(root)
    if settings.ingest.parcels:
        if imported:
            logger.warning("[ingest] parcels is set: every acquisition is reduced with %s, not with the layers "
                           "imported for campaigns %s (unset it to use them)", settings.ingest.parcels,
                           ", ".join(map(str, imported)))
        return {"parcels_path": settings.ingest.parcels, "calendar": calendar}
    if imported:
        return {"parcels_root": root, "calendar": calendar}
    return {}


def _sentinelhub_source(args: argparse.Namespace, settings: Settings) -> Any:
    """The Sentinel Hub catalogue (credentials from SH_CLIENT_ID / SH_CLIENT_SECRET), pixels from its Process API."""
    from ingest.http import RetryPolicy
    from ingest.sources.sentinelhub import SentinelHubSource

    s = settings.ingest
    retries = getattr(args, "max_retries", None)
    return SentinelHubSource(
        os.environ.get("SH_CLIENT_ID", ""), os.environ.get("SH_CLIENT_SECRET", ""),
        base_url=args.sentinelhub_url or s.sentinelhub_url, token_url=getattr(args, "token_url", None),
        policy=RetryPolicy(max_retries=retries if retries is not None else s.max_retries),
        requests_per_second=getattr(args, "rps", None) or s.requests_per_second,
        asset_template=getattr(args, "sentinelhub_assets", None) or s.sentinelhub_asset_template or None,
        cache_dir=settings.paths.data_dir / "sentinelhub-process")  # Process API answers, kept 3 days


def _poller(args: argparse.Namespace, settings: Settings, publisher: Any):
    import ingest

    s = settings.ingest
    urls = args.stac_url if args.stac_url is not None else list(settings.stac.urls)
    extra = [] if args.stac_url is not None else _configured_sources(settings, args.max_retries, args.rps)
    if args.sentinelhub or s.sentinelhub:
        extra.append(_sentinelhub_source(args, settings))
    if not urls and not extra:
        raise ValueError("no catalogue to search: give --stac-url, --sentinelhub, or set [stac] urls "
                         "or [[ingest.sources]]")
    aois = []
    for path in args.aoi or s.aois:
        data = json.loads(Path(path).read_text())
        if data.get("type") == "FeatureCollection":
            aois += [f["geometry"] for f in data["features"]]
        else:
            aois.append(data.get("geometry", data))
    data_dir = settings.paths.data_dir
    ledger = args.ledger or s.ledger_url or str(data_dir / "ingest-ledger.sqlite")
    return ingest.build_poller(
        urls, args.cubes or settings.storage.cubes_url or s.cubes_dir or data_dir / "cubes",
        args.series or settings.storage.series_url or s.series_dir or data_dir / "series", ledger,
        tiles=tuple(args.tiles if args.tiles is not None else s.tiles), aois=tuple(aois),
        collections=tuple(args.collections or s.collections),
        start=getattr(args, "since", None) or s.since or None,
        lookback_days=getattr(args, "lookback_days", None) or s.lookback_days,
        interval_s=getattr(args, "interval", None) or s.poll_interval_s,
        **campaign_parcels(args, settings), grids_from=args.grids or s.grids or None, publisher=publisher,
        chunk=args.chunk or s.chunk,
        workers=args.workers or s.workers, max_retries=args.max_retries if args.max_retries is not None else s.max_retries,
        requests_per_second=args.rps or s.requests_per_second, extra_sources=extra,
    )


def _emit(report: Any, strict: bool = True) -> int:
    """Print the report (JSON on stdout, problems on stderr); every search failing is an error."""
    print(json.dumps(report.to_dict()), flush=True)
    for item_id, why in report.quarantined:
        print(f"sitsmon ingest: quarantined {item_id}: {why}", file=sys.stderr)
    if report.errors and report.seen == 0 and strict:
        from ingest.errors import SourceError

        raise SourceError(f"every search failed ({len(report.errors)}); first: {report.errors[0]}")
    for line in report.errors:
        print(f"sitsmon ingest: source error: {line}", file=sys.stderr)
    return 1 if report.errors else 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import UTC, datetime

    from ingest.ledger import open_ledger
    from ingest.types import ItemStatus

    url = args.ledger or settings.ingest.ledger_url or str(settings.paths.data_dir / "ingest-ledger.sqlite")
    if "://" not in url and not Path(url).exists():
        raise FileNotFoundError(f"no ledger at {url}")
    ledger = open_ledger(url)
    try:
        out = {
            "counts": ledger.counts(),
            "quarantined": [{"collection": e.collection, "item_id": e.item_id, "tile_id": e.tile_id,
                             "source": e.source, "reason": e.reason}
                            for e in ledger.entries(status=ItemStatus.QUARANTINED, tile_id=args.tile)],
            "watermarks": [{"source": a, "collection": b, "area": c,
                            "watermark": datetime.fromtimestamp(d, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
                           for a, b, c, d in ledger.watermarks()],
        }
    finally:
        ledger.close()
    out["cubes"] = _cube_health(Path(args.cubes or settings.ingest.cubes_dir or settings.paths.data_dir / "cubes"))
    print(json.dumps(out, indent=2))
    bad = [c for c in out["cubes"] if c["problem"]]
    for c in bad:
        print(f"sitsmon ingest status: cube {c['path']} is incomplete or damaged: {c['problem']}", file=sys.stderr)
    return 1 if bad else 0


def _cube_health(cubes: Path) -> list[dict[str, Any]]:
    """Per cube: committed steps per sensor, or what is wrong with it (read only, no lock taken)."""
    from ingest.cube import check_cube, open_cube, remedy

    out = []
    for path in sorted(cubes.glob("*.zarr")) if cubes.is_dir() else []:
        problem = check_cube(path)
        steps: dict[str, int] = {}
        if problem is None:
            for sensor in ("S2", "S1"):
                steps[sensor] = int(open_cube(path, sensor, sort=False).sizes["time"])
        else:
            problem += f" ({remedy(path)})"
        out.append({"tile_id": path.stem, "path": str(path), "steps": steps, "problem": problem or ""})
    return out


def _lock_dirs(args: argparse.Namespace, settings: Settings) -> list[Path]:
    """The data dirs an ingest writer writes into: the folders holding its cubes and series."""
    s, data_dir = settings.ingest, settings.paths.data_dir
    series = Path(args.series or s.series_dir or data_dir / "series")
    if args.ingest_action in ("import", "statistics"):
        return [series.absolute().parent]
    cubes = Path(args.cubes or s.cubes_dir or data_dir / "cubes")
    return [cubes.absolute().parent, series.absolute().parent]


def _import(args: argparse.Namespace, settings: Settings) -> int:
    from contracts.sensors import parse_sensor_set
    from ingest.importer import import_series

    sensors = parse_sensor_set(args.sensors)
    series = args.series or settings.ingest.series_dir or settings.paths.data_dir / "series"
    publisher = _publisher(args.bus or settings.bus.backend, settings)
    try:
        report = import_series(args.path, series, tile_id=args.tile_id, sensors=sensors, publisher=publisher)
    finally:
        if hasattr(publisher, "flush"):
            publisher.flush()
        if hasattr(publisher, "close"):
            publisher.close()
    print(json.dumps({"path": report.path, "rows": report.rows, "parcels": report.parcels,
                      "slots": report.slots, "new_rows": report.new_rows, "import_id": report.import_id,
                      "already_imported": report.already_imported, "duplicates": report.duplicates,
                      "rejected": [list(r) for r in report.rejected[:1000]],
                      "rejected_count": len(report.rejected)}))
    for line, why in report.rejected[:20]:  # reasons quote at most 40 characters of a cell
        print(f"sitsmon ingest import: {args.path} line {line} rejected: {why}", file=sys.stderr)
    if len(report.rejected) > 20:
        print(f"sitsmon ingest import: {args.path}: {len(report.rejected) - 20} more rejected lines (see the JSON)",
              file=sys.stderr)
    return 0 if report.rows or not report.rejected else 1


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Writers (poll, backfill, import) hold the data dir's ingest lock for their whole run."""
    if args.ingest_action == "status":
        return _status(args, settings)
    if args.ingest_action == "check":
        return _check(args, settings)
    if args.ingest_action == "parcels":  # writes only its campaign's folder, each file moved in place
        return _parcels_import(args, settings)
    from ingest.locks import writer_locks

    ledger = getattr(args, "ledger", None) or settings.ingest.ledger_url or None
    with writer_locks(_lock_dirs(args, settings), "ingest", wait=args.wait, command=f"sitsmon ingest {args.ingest_action}",
                      ledger_url=ledger if args.ingest_action != "import" else None):
        return _run_writer(args, settings)


def _run_writer(args: argparse.Namespace, settings: Settings) -> int:
    action = args.ingest_action
    if action == "import":
        return _import(args, settings)
    if action == "statistics":
        return _statistics(args, settings)
    poller = _poller(args, settings, None)  # validates the options before any bus is opened
    publisher = _publisher(args.bus or settings.bus.backend, settings)
    poller.publisher = publisher
    try:
        if action == "backfill":
            from tqdm import tqdm

            start, end = _time(args.start), _time(args.end, end=True)
            scheduler = settings.dask.scheduler if args.scheduler is None else args.scheduler
            with tqdm(total=0, unit="slot", desc="backfill", file=sys.stderr) as bar:
                if scheduler:
                    report = _backfill_distributed(args, settings, scheduler, start, end, bar)
                else:
                    report = poller.backfill(start, end, progress=bar)
            return _emit(report)
        if args.once:
            return _emit(poller.poll_once())
        stop = threading.Event()
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            poller.run_forever(stop=stop.is_set, sleep=stop.wait, on_report=lambda r: _emit(r, strict=False))
        finally:
            signal.signal(signal.SIGTERM, previous)
        return 0
    finally:
        poller.ledger.close()
        if hasattr(publisher, "flush"):
            publisher.flush()
        if hasattr(publisher, "close"):
            publisher.close()


def task_poller(args: argparse.Namespace, settings: Settings) -> Any:
    """The poller of a distributed backfill's task (built in each worker process), with its own bus
    publisher; a picklable ``functools.partial`` of it is what the tasks carry."""
    poller = _poller(args, settings, None)
    poller.publisher = _publisher(args.bus or settings.bus.backend, settings)
    return poller


def _backfill_distributed(args: argparse.Namespace, settings: Settings, scheduler: str, start_s: int, end_s: int,
                          bar: Any) -> Any:
    """``ingest backfill --scheduler``: this process holds the data dir's lock and searches; the tasks
    ingest (:mod:`ingest.distributed`)."""
    import functools

    from contracts.dask import DaskOptions
    from ingest.distributed import backfill_distributed

    d = settings.dask
    options = DaskOptions(scheduler=scheduler, workers=d.workers if args.workers is None else args.workers,
                          retries=d.retries)
    block_days = d.block_days if args.block_days is None else args.block_days
    return backfill_distributed(functools.partial(task_poller, args, settings), start_s, end_s, options=options,
                                block_days=block_days, progress=bar,
                                say=lambda line: print(f"sitsmon ingest: {line}", file=sys.stderr, flush=True))
