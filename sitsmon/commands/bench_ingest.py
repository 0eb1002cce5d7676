"""`sitsmon bench ingest`: pipeline read/mask/write throughput vs the raw COG -> Zarr floor, as JSON.

Ingest one synthetic S2 acquisition (10 bands + SCL COGs) into a Zarr cube and compare with reading the
same COGs with rasterio and writing the same Zarr chunks without logic. Prints JSON: Mpix/s per phase,
ratio to the floor (budget >= 0.5), peak memory, zonal statistics throughput.
"""

from __future__ import annotations

import argparse
import json

from sitsmon.commands import add_command, doc_paragraphs
from sitsmon.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = add_command(sub, "ingest", run, description=doc_paragraphs(__doc__)[0],
                         help="ingest throughput (Mpix/s) next to the raw read+write floor")
    parser.add_argument("--size", type=int, default=4096,
                        help="tile side in pixels (10980 = a full S2 tile; default 4096, ~14%% of one)")
    parser.add_argument("--chunk", type=int, default=1024, help="Zarr chunk side (default 1024)")
    parser.add_argument("--threads", type=int, default=None, help="reader threads of the floor (default: CPUs)")
    parser.add_argument("--parcels", type=int, default=None, help="parcels in the zonal statistics run")
    parser.add_argument("--workdir", default=None, help="where to write (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the workload and outputs")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.bench import run_benchmark

    if args.size < 64 or args.chunk < 16:
        raise ValueError(f"--size must be >= 64 and --chunk >= 16, got {args.size} and {args.chunk}")
    result = run_benchmark(size=args.size, chunk=args.chunk, threads=args.threads, workdir=args.workdir,
                           n_parcels=args.parcels, keep=args.keep)
    print(json.dumps(result, indent=2))
    return 0
