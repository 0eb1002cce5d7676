"""``sitsmon stac serve`` (a real STAC API over an archive) and ``sitsmon stac search``."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from sitsmon.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "stac",
        help="serve an archive as a STAC API, or search one",
        description="Serve a synthetic archive as a real STAC API (rustac) with its COGs over HTTP, "
        "or search any STAC API.",
    )
    stac_sub = parser.add_subparsers(dest="stac_command", metavar="ACTION", required=True)

    serve = stac_sub.add_parser(
        "serve",
        help="start a STAC API and a COG server over an archive (until Ctrl-C)",
        description="Start rustac's STAC API over the archive's Collections and Items, and an HTTP "
        "server (with Range requests) for its COGs; item asset hrefs point at that server.",
    )
    serve.add_argument("--archive", type=Path, required=True, help="archive folder written by `sitsmon synth`")
    serve.add_argument("--host", default=None, help="address to bind (default: settings stac.host, 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="STAC API port (default: settings stac.port)")
    serve.add_argument("--assets-port", type=int, default=None, help="COG server port (default: API port + 1)")
    serve.set_defaults(handler=run_serve)

    search = stac_sub.add_parser(
        "search",
        help="search a STAC API and list the items found",
        description="Search a STAC API with pystac-client and print one line per item (or JSON).",
    )
    search.add_argument("--url", required=True, help="STAC API root URL")
    search.add_argument("--collections", nargs="+", default=None, help="collection ids")
    search.add_argument("--datetime", default=None, help="RFC 3339 interval, e.g. 2024-05-01/2024-06-01")
    search.add_argument("--bbox", type=float, nargs=4, default=None, metavar=("W", "S", "E", "N"))
    search.add_argument("--max-items", type=int, default=None, help="stop after this many items")
    search.add_argument("--json", action="store_true", help="print item ids and dates as JSON")
    search.set_defaults(handler=run_search)


def run_serve(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.stac_server import serve_until_stopped

    host = args.host or settings.stac.host
    port = args.port or settings.stac.port
    assets_port = args.assets_port or port + 1

    def announce(endpoint) -> None:
        print(f"STAC API  {endpoint.url}", flush=True)
        print(f"COGs      {endpoint.assets_url}", flush=True)
        print("Ctrl-C to stop", file=sys.stderr, flush=True)

    serve_until_stopped(args.archive, host, port, assets_port, on_ready=announce)
    return 0


def run_search(args: argparse.Namespace, settings: Settings) -> int:
    from pystac_client import Client

    client = Client.open(args.url)
    search = client.search(
        collections=args.collections,
        datetime=args.datetime,
        bbox=args.bbox,
        max_items=args.max_items,
        limit=100,
    )
    items = list(search.items_as_dicts())
    items.sort(key=lambda item: (item["properties"].get("datetime") or "", item["id"]))
    if args.json:
        print(json.dumps([{"id": i["id"], "collection": i.get("collection"),
                           "datetime": i["properties"].get("datetime")} for i in items]))
        return 0
    for item in items:
        print(f"{item['properties'].get('datetime', '?'):<28} {item.get('collection', '?'):<16} {item['id']}")
    counts = Counter(item.get("collection") for item in items)
    summary = ", ".join(f"{n} {c}" for c, n in sorted(counts.items())) or "no items"
    print(f"{len(items)} items ({summary})", file=sys.stderr)
    return 0
