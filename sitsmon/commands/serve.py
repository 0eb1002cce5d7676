"""`sitsmon serve`: not built yet (see the open issues)."""

from __future__ import annotations

import argparse

from sitsmon.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("serve", help="(not built yet)", description="Not built yet.")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    raise NotImplementedError("sitsmon serve is not built yet")
