"""`sitsmon bench monitor`: seconds per acquisition end to end for N parcels, stage shares, replay vs stream.

Stream a synthetic season of N parcels through the monitor on the in-process bus, one acquisition per
poll, and replay the same period. Prints JSON: parcels, end_to_end_s (median per acquisition after the
warm-up), each stage's share, the state-copy floor of the same run, replay throughput against streaming,
state bytes per parcel, peak RSS. Budget: 100 000 parcels in <= 5 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json

from sitsmon.commands import add_command, doc_paragraphs
from sitsmon.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = add_command(
        sub, "monitor", run, description=doc_paragraphs(__doc__)[0],
        help="end-to-end seconds per acquisition (read → encoder → detectors → store → sinks → commit)",
    )
    parser.add_argument("--parcels", type=int, default=100_000, help="parcels on the tile (default 100000)")
    parser.add_argument("--acquisitions", type=int, default=8, help="acquisitions streamed (default 8, 2 warm-up)")
    parser.add_argument("--workdir", default=None, help="where to write (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the workload and the states")
    parser.add_argument("--watch-pixels", type=int, default=1024,
                        help="pixels of a watch area: the stepped pixel solar detector alone and a tile of them "
                             "folded through the monitor (default 1024; 0: none)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.bench import run_benchmark

    if args.parcels < 10:
        raise ValueError(f"--parcels must be >= 10, got {args.parcels}")
    if args.watch_pixels < 0:
        raise ValueError(f"--watch-pixels must be >= 0, got {args.watch_pixels}")
    result = run_benchmark(args.parcels, args.acquisitions, workdir=args.workdir, keep=args.keep)
    if args.watch_pixels:
        from monitor.bench_watch import bench_watch_pixels

        # the stepped pixel detector alone, and a tile of that many watch pixels folded through the monitor
        result["watch_pixels"] = bench_watch_pixels(args.watch_pixels, batch=args.watch_pixels <= 250_000)
    print(json.dumps(result, indent=2))
    return 0
