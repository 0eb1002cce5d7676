"""`sitsmon stac`: not built yet (see the open issues)."""

from __future__ import annotations

import argparse

from sitsmon.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("stac", help="(not built yet)", description="Not built yet.")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    raise NotImplementedError("sitsmon stac is not built yet")
