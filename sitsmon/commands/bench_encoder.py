"""`sitsmon bench encoder`: the encoder benchmark (update cost vs the machine's floors, recurrent
update vs Transformer re-encoding, state bytes, GPU updates/s). Prints JSON.

The lead's ``sitsmon/commands/bench.py`` calls :func:`register` with its own subparsers (``bench
encoder``); ``run(args, settings) -> int`` follows the command convention.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from sitsmon.settings import Settings

logger = logging.getLogger(__name__)


def _sizes(text: str) -> list[tuple[int, int]]:
    try:
        out = [tuple(int(x) for x in part.lower().split("x")) for part in text.split(",") if part.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"sizes must look like 64x4,128x8; got {text!r}") from e
    if not out or any(len(p) != 2 or p[0] % p[1] for p in out):
        raise argparse.ArgumentTypeError(f"sizes must look like 64x4,128x8 (d_model divisible by heads); got {text!r}")
    return out


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers; got {text!r}") from e


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "encoder", help="benchmark the dual-form encoder (prints JSON)",
        description="Recurrent update cost per parcel/pixel beside the memory-bandwidth and matmul floors "
                    "measured in the same run; recurrent update vs softmax Transformer re-encoding; state bytes; "
                    "GPU updates/s when CUDA is present.",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes and few repeats (a smoke run, ~1 min)")
    parser.add_argument("--sizes", type=_sizes, default=None, help="d_model x heads list (default 64x4,128x8)")
    parser.add_argument("--pixels", type=int, default=None, help="parcels/pixels per update (default 65536; quick 8192)")
    parser.add_argument("--layers", type=int, default=2, help="layers of the whole model (default 2)")
    parser.add_argument("--lengths", type=_ints, default=None, help="series lengths for the Transformer comparison "
                        "(default 50,100,200,400)")
    parser.add_argument("--parcels", type=int, default=None, help="parcels per call in the Transformer comparison (default 256)")
    parser.add_argument("--bandwidth-mb", type=int, default=None, help="array size of the bandwidth floor (default 1024)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="interleaved timed rounds, median reported (default 9; quick 3)")
    parser.add_argument("--update-rows", type=int, default=16384,
                        help="parcels per recurrent update call in the Transformer comparison (default 16384)")
    parser.add_argument("--omp-wait-policy", choices=("passive", "active", "inherit"), default="passive",
                        help="OMP_WAIT_POLICY for torch's and numba's OpenMP pools, set before torch loads "
                             "(default passive: idle threads sleep instead of spinning, which on a shared, "
                             "loaded machine keeps the two pools from stealing each other's cores; inherit: "
                             "leave the environment alone)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch and numba (default 2)")
    parser.add_argument("--gpu-pixels", type=int, default=1024 * 1024,
                        help="pixel states resident on the GPU (default 1024x1024, one synthetic tile)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON to this file")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace, settings: Settings) -> int:
    policy = getattr(args, "omp_wait_policy", "passive")
    if policy != "inherit":
        if "torch" in sys.modules and os.environ.get("OMP_WAIT_POLICY", "").lower() != policy:
            logger.warning("torch is already loaded: OMP_WAIT_POLICY=%s cannot take effect in this process", policy)
        else:
            os.environ["OMP_WAIT_POLICY"] = policy.upper()
    from sits.bench import run_benchmark

    quick = args.quick
    for name in ("pixels", "parcels", "repeats", "threads", "layers", "gpu_pixels", "bandwidth_mb", "update_rows"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1; got {value}")
    result = run_benchmark(
        sizes=args.sizes or ([(64, 4)] if quick else [(64, 4), (128, 8)]),
        pixels=args.pixels or (8192 if quick else 65536),
        layers=args.layers,
        lengths=args.lengths or ([50, 200] if quick else [50, 100, 200, 400]),
        parcels=args.parcels or (16 if quick else 256),
        bandwidth_mb=args.bandwidth_mb or (256 if quick else 1024),
        repeats=args.repeats or (3 if quick else 9),
        threads=args.threads,
        gpu_pixels=args.gpu_pixels if not quick else min(args.gpu_pixels, 65536),
        update_rows=args.update_rows,
    )
    result["quick"] = quick
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    sys.stdout.flush()
    return 0
