"""`sitsmon detect`: run the detectors offline on interchange files and export alerts."""

from __future__ import annotations

import argparse
import logging
import sys

from sitsmon.settings import Settings

logger = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "detect",
        help="run the detectors on interchange files (offline), write alerts",
        description=(
            "Run mowing, harvest and solar-construction detectors on a parcel observation table "
            "(interchange CSV/Parquet) and write one row per detected event. The detectors are the "
            "same incremental code the monitor runs, fed one acquisition at a time."
        ),
    )
    parser.add_argument("--observations", required=True, help="observations, interchange CSV or Parquet")
    parser.add_argument("--parcels", required=True, help="parcels table (parcel_id, land_use, ...)")
    parser.add_argument("--out", required=True, help="output file: .csv or .geojson")
    parser.add_argument(
        "--detectors", default="mowing,harvest,solar", help="comma-separated detectors (default: all)"
    )
    parser.add_argument("--tile-id", default="", help="tile id to record in the alerts")
    parser.add_argument(
        "--store",
        default=None,
        help="also upsert the alerts into this store (SQLite path or postgresql:// URL; 'settings': alerts.store_url)",
    )
    parser.add_argument(
        "--with-model",
        action="store_true",
        help="add the encoder's expectation (forecast NDVI and residual) at each event to its evidence",
    )
    parser.add_argument(
        "--checkpoint", default=None, help="encoder checkpoint for --with-model (default: [encoder] checkpoint)"
    )
    parser.add_argument("--lights", default=None, help="also write the CAP traffic light per parcel (CSV)")
    parser.add_argument(
        "--campaign", type=int, default=None, help="campaign year (default: year of the last observation)"
    )
    parser.add_argument(
        "--as-of", default=None, help="assessment date YYYY-MM-DD (default: last observation)"
    )
    parser.add_argument(
        "--grassland-deadline", default=None,
        help="MM-DD from which grassland without mowing or grazing may be red (default: the rules' deadline)",
    )
    parser.add_argument(
        "--lights-rules", default=None, help="traffic-light rules TOML (schemes per land use; default: shipped)"
    )
    parser.add_argument("--lights-scheme", default=None, help="scheme of --lights-rules (default: its default)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from alerts.detectors import make_detectors, run_detectors
    from alerts.series import read_observations, read_parcels
    from alerts.sinks.files import parcel_geometries, write_csv, write_geojson
    from alerts.types import Alert

    names = [n.strip() for n in args.detectors.split(",") if n.strip()]
    detectors = make_detectors(names)
    obs = read_observations(args.observations)
    parcels = read_parcels(args.parcels)
    events, skipped = run_detectors(obs, parcels, detectors)
    expected = None
    if args.with_model:
        import sits
        from alerts.expectation import add_model_expectations, annotate_events

        model = sits.load_model(args.checkpoint or settings.encoder.checkpoint)
        expected = add_model_expectations(obs, model)
        events = annotate_events(events, expected, model.version)
    alerts = [Alert.from_event(e, tile_id=args.tile_id) for e in events]
    if str(args.out).lower().endswith((".geojson", ".json")):
        n = write_geojson(alerts, args.out, parcel_geometries(parcels))
    else:
        n = write_csv(alerts, args.out)
    if args.store:
        from alerts.store import open_store

        url = settings.alerts.store_url if args.store == "settings" else args.store
        if not url:
            url = str(settings.paths.under("alerts.sqlite"))
        with open_store(url) as store:
            new = store.upsert_many(alerts)
        print(
            f"sitsmon detect: {new} new alerts, {len(alerts) - new} already stored (updated)", file=sys.stderr
        )
    if args.lights:
        _write_lights(args, obs if expected is None else expected, parcels, events)
    for det, pids in skipped.items():
        if pids:
            logger.info("%s: %d parcels with a land use it does not handle", det, len(pids))
    print(
        f"sitsmon detect: {n} events from {obs['parcel_id'].nunique()} parcels -> {args.out}", file=sys.stderr
    )
    return 0


def _write_lights(args: argparse.Namespace, obs, parcels, events) -> None:
    """Lights per parcel (``obs`` with the encoder's expectation when --with-model: its residuals count)."""
    from datetime import date

    from alerts.lights_rules import load_rules
    from alerts.traffic_light import assess_frame

    last = obs["time"].max()
    as_of = date.fromisoformat(args.as_of) if args.as_of else last.date()
    campaign = args.campaign or as_of.year
    scheme = load_rules(args.lights_rules).scheme(args.lights_scheme)
    if args.grassland_deadline:
        try:
            month, day = (int(x) for x in args.grassland_deadline.split("-"))
            date(2024, month, day)
        except ValueError as e:
            raise ValueError(f"--grassland-deadline must be MM-DD, got {args.grassland_deadline!r}") from e
        rules = tuple(
            r.model_copy(update={"deadline": f"{month:02d}-{day:02d}"}) if "grassland" in r.land_uses else r
            for r in scheme.rules
        )
        scheme = scheme.model_copy(update={"rules": rules})
    lights = assess_frame(obs, parcels, events, campaign=campaign, as_of=as_of, rules=scheme)
    lights.to_csv(args.lights, index=False)
    counts = lights["light"].value_counts().to_dict()
    print(
        f"sitsmon detect: traffic lights {counts} (campaign {campaign}, as of {as_of}) -> {args.lights}",
        file=sys.stderr,
    )
