"""`sitsmon synth`: write a realistic synthetic Sentinel-1/Sentinel-2 archive with ground truth.

Write a synthetic Sentinel-2 L2A and Sentinel-1 archive laid out as docs/archive-format.md describes:
STAC collections and items (NDJSON in published order), one COG per band, a GeoParquet parcel layer and
the ground truth (events, solar sites, parcel-level series). Defaults come from the [synth] settings.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from datetime import date
from pathlib import Path

from sitsmon.commands import add_command, doc_paragraphs
from sitsmon.settings import Settings

logger = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    parser = add_command(sub, "synth", run, description=doc_paragraphs(__doc__)[0],
                         help="write a synthetic S1/S2 archive (STAC items, COGs, parcels, ground truth)")
    parser.add_argument(
        "--out", type=Path, help="archive folder (default: <data_dir>/archive); must be absent or empty"
    )
    parser.add_argument("--seed", type=int, help="random seed; the same seed gives the same archive")
    parser.add_argument("--tiles", type=int, help="number of tiles (MGRS squares of zone 33U)")
    parser.add_argument("--tile-size", type=int, help="tile side in 10 m pixels (even, at least 32)")
    parser.add_argument("--parcels", type=int, help="declared parcels per tile")
    parser.add_argument("--start", help="first acquisition date, YYYY-MM-DD")
    parser.add_argument("--end", help="last acquisition date, YYYY-MM-DD (inclusive)")
    parser.add_argument(
        "--quicklooks", action="store_true", help="also write PNG quicklooks (true colour, NDVI, VV)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out folder")
    parser.add_argument("--workers", type=int, default=2, help="threads writing COGs (default 2)")
    parser.add_argument(
        "--dialect", choices=("synthetic", "earth-search", "planetary-computer", "cdse"), default="synthetic",
        help="publish the items as that catalogue does: asset keys, extensions, hrefs, S1 collection "
             "(docs/catalogues.md; default synthetic, docs/archive-format.md)",
    )


def _date(flag: str, text: str) -> date:
    from ingest.synth import SynthConfigError

    try:
        return date.fromisoformat(str(text))
    except ValueError as e:
        raise SynthConfigError(f"{flag} {text!r} is not a date (YYYY-MM-DD)") from e


def run(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.synth import SynthConfig, generate_archive

    s = settings.synth
    config = SynthConfig(
        seed=s.seed if args.seed is None else args.seed,
        n_tiles=s.tiles if args.tiles is None else args.tiles,
        tile_size_px=s.tile_size_px if args.tile_size is None else args.tile_size,
        parcels_per_tile=s.parcels_per_tile if args.parcels is None else args.parcels,
        start=_date("--start", s.start if args.start is None else args.start),
        end=_date("--end", s.end if args.end is None else args.end),
        quicklooks=bool(args.quicklooks),
        workers=args.workers,
    )
    out = args.out if args.out is not None else settings.paths.under("archive")
    t0 = time.perf_counter()
    manifest = generate_archive(
        out, config, progress=sys.stderr.isatty() or args.verbose > 0, overwrite=args.overwrite,
        dialect=args.dialect,
    )
    counts = manifest["counts"]
    s1_collection = (manifest.get("collections") or ["", "sentinel-1-grd"])[1]
    print(
        f"synth: wrote {len(manifest['tiles'])} tile(s), {counts['parcels']} parcels, "
        f"{counts['sentinel-2-l2a']} S2 + {counts[s1_collection]} S1 ({s1_collection}) items, "
        f"{counts['events']} truth events, {counts['solar_sites']} solar sites to {out} "
        f"({args.dialect} dialect) in {time.perf_counter() - t0:.1f} s"
    )
    return 0
