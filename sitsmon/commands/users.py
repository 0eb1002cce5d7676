"""`sitsmon users add|list|revoke`: the dashboard's users, roles, regions and bearer tokens."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sitsmon.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("users", help="dashboard users and tokens",
                            description="Add, list or revoke dashboard users. Tokens are shown once and stored hashed.")
    parser.add_argument("--data-dir", type=Path, default=None, help="data dir (default: [paths] data_dir)")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="add a user and print its token")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=["viewer", "controller", "operator", "admin"])
    add.add_argument("--tiles", default="*", help="comma-separated tile ids of the user's region ('*': all)")
    add.add_argument("--region-polygon", type=Path, default=None, metavar="FILE",
                     help="GeoJSON (WGS84) polygon narrowing the region to the parcels it intersects")
    actions.add_parser("list", help="list users (never tokens)")
    revoke = actions.add_parser("revoke", help="revoke a user's token")
    revoke.add_argument("name")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from dashboards.security import UserStore
    from sitsmon.commands.serve import dashboard_config

    config = dashboard_config(settings, args.data_dir)
    store = UserStore(config.users_db)
    try:
        if args.action == "add":
            from dashboards.security import region_polygon_from_geojson

            tiles = [t.strip() for t in args.tiles.split(",") if t.strip()]
            polygon = None
            if args.region_polygon is not None:
                try:
                    text = args.region_polygon.read_text()
                except OSError as e:
                    raise ValueError(f"--region-polygon {args.region_polygon}: cannot read ({e.strerror})") from e
                polygon = region_polygon_from_geojson(text, f"--region-polygon {args.region_polygon}")
            token = store.add(args.name, args.role, tiles, polygon=polygon)
            print(json.dumps({"name": args.name, "role": args.role, "tiles": sorted(tiles),
                              "region_polygon": polygon is not None, "token": token}))
        elif args.action == "list":
            for user in store.list():
                print(json.dumps(user.as_dict()))
        else:
            store.revoke(args.name)
            print(json.dumps({"name": args.name, "revoked": True}))
    finally:
        store.close()
    return 0
