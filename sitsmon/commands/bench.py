"""``sitsmon bench <target>``: benchmarks that print JSON and measure their own floor.

Each target lives in ``sitsmon/commands/bench_<target>.py`` with the usual ``register(sub)``.
These machines are noisy: every benchmark measures its floor (memory bandwidth, the raw read and
write, the naive method) in the same run, so that ratios, not absolute times, are compared.
"""

from __future__ import annotations

import argparse
import importlib

BENCH_TARGETS = ("encoder", "ingest", "monitor", "api")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "bench",
        help="benchmarks (JSON) with their floors measured in the same run",
        description="Run a benchmark and print JSON. Each one measures its own floor in the same run.",
    )
    targets = parser.add_subparsers(dest="bench_target", metavar="TARGET", required=True)
    for target in BENCH_TARGETS:
        module = importlib.import_module(f"sitsmon.commands.bench_{target}")
        module.register(targets)
