"""`sitsmon detect`: run the detectors offline on interchange files and export alerts."""

from __future__ import annotations

import argparse
import logging
import sys

from contracts.interchange import DUPLICATE_POLICY
from sitsmon.settings import Settings

INPUT_RULE = (
    "Observations follow the interchange rule (contracts.interchange): a missing band column refuses the "
    "file unless --sensors says which sensors' rows to use; rows with text or an infinity in a value column, "
    "a value outside its physical range, or a bad id, time or sensor refuse the file, naming their lines; "
    "reflectance in digital numbers or backscatter in dB refuse it too."
)

logger = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "detect",
        help="run the detectors on interchange files (offline), write alerts",
        description=(
            "Run mowing, harvest and solar-construction detectors on a parcel observation table "
            "(interchange CSV/Parquet) and write one row per detected event. The detectors are the "
            "same incremental code the monitor runs, fed one acquisition at a time. "
            f"{INPUT_RULE} {DUPLICATE_POLICY} Outputs are written to a temporary file and renamed into "
            "place; an output that is one of the inputs or the store is refused before anything is read. "
            "With --store the whole run is stored in one transaction, before the files are written."
        ),
    )
    parser.add_argument("--observations", required=True, help="observations, interchange CSV or Parquet")
    parser.add_argument("--parcels", required=True, help="parcels table (parcel_id, land_use, ...)")
    parser.add_argument("--out", required=True, help="output file: .csv or .geojson")
    parser.add_argument(
        "--detectors", default="mowing,harvest,solar", help="comma-separated detectors (default: all)"
    )
    parser.add_argument(
        "--sensors", default=None, metavar="S2,S1",
        help="use only these sensors' rows (e.g. S1 for a file without S2 bands); default both, and a "
             "missing band column of either refuses the file",
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
        "--campaign", type=int, default=None,
        help="campaign year (default: the campaign of the last observation); where the observations carry a "
             "campaign column (the series store's), only that campaign's rows are judged"
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


def _store_url(args: argparse.Namespace, settings: Settings) -> str | None:
    if not args.store:
        return None
    url = settings.alerts.store_url if args.store == "settings" else args.store
    return url or str(settings.paths.under("alerts.sqlite"))


def run(args: argparse.Namespace, settings: Settings) -> int:
    from contracts.sensors import parse_sensor_set
    from sitsmon.outputs import refuse_overwrite

    sensors = parse_sensor_set(args.sensors)
    store_url = _store_url(args, settings)
    checkpoint = args.checkpoint or (settings.encoder.checkpoint if args.with_model else None)
    refuse_overwrite(
        {"--out": args.out, "--lights": args.lights, "--store": store_url},
        {"--observations": args.observations, "--parcels": args.parcels, "--checkpoint": checkpoint,
         "--lights-rules": getattr(args, "lights_rules", None)},
    )
    if args.lights:  # a bad rules file is refused before anything is read or written
        from alerts.lights_rules import load_rules

        load_rules(args.lights_rules).scheme(args.lights_scheme)

    from alerts.detectors import make_detectors
    from alerts.series import read_observations, read_parcels
    from alerts.sinks.files import parcel_geometries, write_csv, write_geojson
    from alerts.types import Alert
    from sitsmon.outputs import atomic_output

    names = [n.strip() for n in args.detectors.split(",") if n.strip()]
    detectors = make_detectors(names)
    obs = read_observations(args.observations, sensors=sensors)
    parcels = read_parcels(args.parcels)
    events, skipped = _detect_per_campaign(obs, parcels, detectors)
    expected = None
    if args.with_model:
        import sits
        from alerts.expectation import add_model_expectations, annotate_events

        model = sits.load_model(args.checkpoint or settings.encoder.checkpoint)
        expected = add_model_expectations(obs, model)
        events = annotate_events(events, expected, model.version)
    from alerts.intervals import add_intervals

    events = add_intervals(events, obs)  # start, confirmation, bottom, end of each event (evidence["interval"])
    alerts = [Alert.from_event(e, tile_id=args.tile_id) for e in events]
    if store_url:
        from alerts.store import open_store

        with open_store(store_url) as store:
            new = store.upsert_many(alerts)  # one transaction: all of the run or nothing
        print(
            f"sitsmon detect: {new} new alerts, {len(alerts) - new} already stored (updated)", file=sys.stderr
        )
    with atomic_output(args.out) as tmp:
        if str(args.out).lower().endswith((".geojson", ".json")):
            n = write_geojson(alerts, tmp, parcel_geometries(parcels))
        else:
            n = write_csv(alerts, tmp)
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

    campaign, obs = _campaign_rows(args, obs)
    last = obs["time"].max()
    as_of = date.fromisoformat(args.as_of) if args.as_of else last.date()
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
    from sitsmon.outputs import atomic_output

    with atomic_output(args.lights) as tmp:
        lights.to_csv(tmp, index=False)
    counts = lights["light"].value_counts().to_dict()
    print(
        f"sitsmon detect: traffic lights {counts} (campaign {campaign}, as of {as_of}) -> {args.lights}",
        file=sys.stderr,
    )


def _campaign_rows(args: argparse.Namespace, obs):
    """The campaign judged and its rows: ``--campaign`` (else the campaign of the last observation, else
    the year of ``--as-of``). Observations with a ``campaign`` column (rows of the series store, one per
    campaign's outline) are cut to that campaign, so a parcel id reused with a new outline is judged on
    its own campaign's rows only; a table without the column is taken whole, as before campaigns."""
    from datetime import date

    import pandas as pd

    has = "campaign" in obs.columns and pd.to_numeric(obs["campaign"], errors="coerce").notna().any()
    if args.campaign is not None:
        campaign = int(args.campaign)
    elif args.as_of:
        campaign = date.fromisoformat(args.as_of).year
    elif has:
        last = obs.loc[obs["time"] == obs["time"].max(), "campaign"]
        campaign = int(pd.to_numeric(last, errors="coerce").dropna().max())
    else:
        campaign = obs["time"].max().year
    if not has:
        return campaign, obs
    rows = obs[pd.to_numeric(obs["campaign"], errors="coerce") == campaign]
    if rows.empty:
        have = sorted(int(c) for c in pd.to_numeric(obs["campaign"], errors="coerce").dropna().unique())
        raise ValueError(f"--campaign {campaign}: no observation of that campaign (the observations hold "
                         f"campaigns {', '.join(map(str, have))})")
    return campaign, rows


def _detect_per_campaign(obs, parcels, detectors):
    """``run_detectors`` on each campaign's rows apart when the observations carry several campaigns (a
    parcel id reused with a new outline is two series: one detector run must not join them)."""
    import pandas as pd

    from alerts.detectors import run_detectors

    campaigns = pd.to_numeric(obs["campaign"], errors="coerce") if "campaign" in obs.columns else None
    if campaigns is None or campaigns.nunique(dropna=True) <= 1:
        return run_detectors(obs, parcels, detectors)
    events, skipped = [], {}
    for _, rows in obs.groupby(campaigns.fillna(-1), sort=True):
        ev, sk = run_detectors(rows.reset_index(drop=True), parcels, detectors)
        events += ev
        for det, pids in sk.items():
            skipped[det] = sorted(set(skipped.get(det, [])) | set(pids))
    events.sort(key=lambda e: (e.parcel_id, e.date, e.event))
    return events, skipped
