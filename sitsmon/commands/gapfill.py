"""`sitsmon gapfill`: fill S2 cloud gaps of parcel series at given times, with an uncertainty.

Fit the gap filler on the visible clear S2 views of OBS (seasonal climatology + anomaly smoother + S1
regression, its NDVI corrected by boosted trees fitted on the same clear views) and write S2 bands
B02..B12, NDVI and an NDVI uncertainty at every (parcel_id, time) of QUERIES, with the 68 %
(uncertainty) and 90 % (interval90) bands calibrated on held-out errors. Every output row is flagged
filled=1; queries beyond a parcel's first/last clear view are filled from S1 and the seasonal prior
(status=extrapolated, wider bands) when an S1 view is near, else come back empty with
status=out_of_range.

The output is written to a temporary file and renamed into place; an output that is one of the inputs
is refused before anything is read.
"""

from __future__ import annotations

import argparse
import sys

from contracts.interchange import DUPLICATE_POLICY
from sitsmon.commands import add_command, doc_paragraphs
from sitsmon.commands.detect import INPUT_RULE
from sitsmon.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    lead, tail = doc_paragraphs(__doc__)
    parser = add_command(sub, "gapfill", run, description=f"{lead} {INPUT_RULE} {DUPLICATE_POLICY} {tail}",
                         help="fill S2 cloud gaps at query times (S1-fused smoother), with an uncertainty")
    parser.add_argument("--observations", required=True, help="observations, interchange CSV or Parquet")
    parser.add_argument("--parcels", required=True, help="parcels table (parcel_id, land_use, ...)")
    parser.add_argument("--at", required=True, dest="queries", help="CSV/Parquet with parcel_id, time")
    parser.add_argument("--out", required=True, help="output CSV")
    parser.add_argument("--no-s1", action="store_true", help="do not use S1 (smoother only)")
    parser.add_argument(
        "--sensors", default=None, metavar="S2,S1",
        help="use only these sensors' rows (S2 for a file without VV/VH; implies --no-s1); default both, "
             "and a missing band column of either refuses the file",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    from contracts.sensors import Sensor, parse_sensor_set
    from sitsmon.outputs import atomic_output, refuse_overwrite

    sensors = parse_sensor_set(args.sensors)
    if sensors is not None and Sensor.S2 not in sensors:
        raise ValueError("--sensors must include S2: gap filling fills S2 values")
    refuse_overwrite({"--out": args.out},
                     {"--observations": args.observations, "--parcels": args.parcels, "--at": args.queries})

    from alerts import gapfill as gf
    from alerts.series import check_known_parcels, read_observations, read_parcels, read_table

    obs = read_observations(args.observations, sensors=sensors)
    parcels = read_parcels(args.parcels)
    check_known_parcels(obs, parcels)
    queries = read_table(args.queries)
    use_s1 = not args.no_s1 and (sensors is None or Sensor.S1 in sensors)
    model = gf.fit(obs, gf.GapFillParams(use_s1=use_s1))
    out = gf.fill(model, obs, queries)
    with atomic_output(args.out) as tmp:
        out.to_csv(tmp, index=False)
    bad = int((~out["status"].isin(["ok", "extrapolated"])).sum())
    print(f"sitsmon gapfill: {len(out)} rows ({bad} not filled, see status) -> {args.out}", file=sys.stderr)
    return 0
