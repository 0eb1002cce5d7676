"""`sitsmon eval`: the evaluation harness (mowing, harvest, solar, gapfill); prints JSON."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

from sitsmon.settings import Settings

DEFAULT_DATA = Path("/work/shared/data/grassland-sk-dev")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "eval",
        help="evaluate detectors and gap filling; prints JSON metrics",
        description=(
            "mowing: 5-fold cross-validation by plot on a real dataset (±12 days one-to-one, DOY 75-300). "
            "gapfill: NDVI MAE vs linear interpolation with 20%% of clear views hidden and with one "
            "45-day window per plot-year hidden. harvest, solar: on synthetic truth "
            "(ingest.synth.simulate_parcel_series)."
        ),
    )
    parser.add_argument("task", choices=("mowing", "harvest", "solar", "gapfill"))
    parser.add_argument(
        "--data", type=Path, default=None, help="dataset folder (observations.csv, parcels.csv, events.csv)"
    )
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds (mowing)")
    parser.add_argument("--seed", type=int, default=0, help="seed of folds, holdouts and synthetic data")
    parser.add_argument(
        "--seeds", type=int, default=1, help="gapfill: number of holdout seeds (seed, seed+1, ...)"
    )
    parser.add_argument("--parcels", type=int, default=600, help="synthetic parcels (harvest, solar)")
    parser.add_argument("--tolerance", type=float, default=None, help="matching tolerance in days")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="mowing: a 2-point parameter grid (smoke test, not for reporting)",
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.set_defaults(handler=run)


def _load(folder: Path):
    from alerts.series import read_observations, read_parcels, read_table

    for name in ("observations.csv", "parcels.csv"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name} not found (use --data)")
    events = read_table(folder / "events.csv") if (folder / "events.csv").is_file() else None
    return read_observations(folder / "observations.csv"), read_parcels(folder / "parcels.csv"), events


def _synthetic(args: argparse.Namespace, solar: bool):
    from alerts.series import normalise_observations
    from ingest.synth import SynthConfig, simulate_parcel_series

    cfg = SynthConfig(
        seed=args.seed,
        n_tiles=1,
        tile_size_px=1024 if args.parcels > 1500 else 512,
        parcels_per_tile=args.parcels,
        start=date(2024, 3, 1),
        end=date(2024, 10, 31),
        solar_parcel_share=0.05 if solar else 0.004,
    )
    parcels, obs, events = simulate_parcel_series(cfg)
    parcels = parcels[["parcel_id", "land_use"]].copy()
    parcels["parcel_id"] = parcels["parcel_id"].astype(str)
    return normalise_observations(obs, source="synthetic"), parcels, events, cfg


def _progress(done: int, total: int) -> None:
    print(f"\r  {done}/{total} parameter sets", end="" if done < total else "\n", file=sys.stderr, flush=True)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from alerts import evaluation as ev

    if args.task == "mowing":
        obs, parcels, events = _load(args.data or DEFAULT_DATA)
        if events is None:
            raise FileNotFoundError("events.csv (reference mowing dates) is required for eval mowing")
        result = ev.evaluate_mowing(
            obs,
            parcels,
            events,
            folds=args.folds,
            seed=args.seed,
            grid={"min_drop": (0.18, 0.21)} if args.quick else None,
            tolerance_days=args.tolerance or 12.0,
            progress=_progress,
        )
    elif args.task == "gapfill":
        obs, _, _ = _load(args.data or DEFAULT_DATA)
        runs = []
        for s in range(args.seed, args.seed + args.seeds):
            for mode in ("random", "window"):
                runs.append(ev.evaluate_gapfill(obs, mode=mode, seed=s))
        result = {"task": "gapfill", "runs": runs}
    else:
        obs, parcels, events, cfg = _synthetic(args, solar=args.task == "solar")
        result = ev.evaluate_synthetic(
            args.task,
            obs,
            parcels,
            events,
            tolerance_days=args.tolerance or (30.0 if args.task == "solar" else 12.0),
        )
        result["synthetic"] = {
            "seed": cfg.seed,
            "parcels": cfg.parcels_per_tile,
            "start": str(cfg.start),
            "end": str(cfg.end),
        }
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0
