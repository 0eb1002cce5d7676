"""The ``sitsmon`` command line: one entry point, one subcommand per job.

Each subcommand lives in ``sitsmon/commands/<name>.py`` and exposes ``register(subparsers)``,
which adds its parser and sets ``handler`` to a function ``(args, settings) -> int``.
Bad input ends with one line on stderr naming the problem and a non-zero exit status;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

# torch and numba each keep an OpenMP pool; spinning idle threads steal each other's cores on a
# small machine (measured: the encoder layer step 2-8x slower). Set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from sitsmon import __version__
from sitsmon.settings import get_settings

# Order is the order of ``sitsmon --help``: the pipeline, then the tools around it.
COMMAND_MODULES = (
    "demo",
    "synth",
    "stac",
    "ingest",
    "monitor",
    "detect",
    "gapfill",
    "train",
    "eval",
    "serve",
    "users",
    "bench",
)

logger = logging.getLogger("sitsmon")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sitsmon",
        description="Streaming monitor for Sentinel-1/Sentinel-2 image time series.",
    )
    parser.add_argument("--version", action="version", version=f"sitsmon {__version__}")
    parser.add_argument("--config", help="TOML settings file (default: $SITSMON_CONFIG, else built-in)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"sitsmon.commands.{name}")
        module.register(sub)
    return parser


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _one_line(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    try:
        settings = get_settings(args.config)
        from contracts import storage

        storage.configure(settings.storage.endpoint_url, settings.storage.region, settings.storage.anon)
        return int(args.handler(args, settings) or 0)
    except KeyboardInterrupt:
        print(f"sitsmon {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the CLI's job is to turn failures into one line
        if args.debug:
            raise
        print(f"sitsmon {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
