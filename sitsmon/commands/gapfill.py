"""`sitsmon gapfill`: fill S2 cloud gaps of parcel series at given times, with an uncertainty."""

from __future__ import annotations

import argparse
import sys

from sitsmon.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "gapfill",
        help="fill S2 cloud gaps at query times (S1-fused smoother), with an uncertainty",
        description=(
            "Fit the gap filler on the visible clear S2 views of OBS (seasonal climatology + anomaly "
            "smoother + S1 regression) and write S2 bands B02..B12, NDVI and an NDVI uncertainty at "
            "every (parcel_id, time) of QUERIES, with the 68 % (uncertainty) and 90 % (interval90) bands "
            "calibrated on held-out errors. Every output row is flagged filled=1; queries beyond a parcel's "
            "first/last clear view are filled from S1 and the seasonal prior (status=extrapolated, wider "
            "bands) when an S1 view is near, else come back empty with status=out_of_range."
        ),
    )
    parser.add_argument("--observations", required=True, help="observations, interchange CSV or Parquet")
    parser.add_argument("--parcels", required=True, help="parcels table (parcel_id, land_use, ...)")
    parser.add_argument("--at", required=True, dest="queries", help="CSV/Parquet with parcel_id, time")
    parser.add_argument("--out", required=True, help="output CSV")
    parser.add_argument("--no-s1", action="store_true", help="do not use S1 (smoother only)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from alerts import gapfill as gf
    from alerts.series import check_known_parcels, read_observations, read_parcels, read_table

    obs = read_observations(args.observations)
    parcels = read_parcels(args.parcels)
    check_known_parcels(obs, parcels)
    queries = read_table(args.queries)
    model = gf.fit(obs, gf.GapFillParams(use_s1=not args.no_s1))
    out = gf.fill(model, obs, queries)
    out.to_csv(args.out, index=False)
    bad = int((~out["status"].isin(["ok", "extrapolated"])).sum())
    print(f"sitsmon gapfill: {len(out)} rows ({bad} not filled, see status) -> {args.out}", file=sys.stderr)
    return 0
