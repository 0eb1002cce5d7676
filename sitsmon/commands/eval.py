"""`sitsmon eval`: the evaluation harness (mowing, harvest, solar, gapfill, lights); prints JSON.

mowing: 5-fold cross-validation by plot on a real dataset (±12 days one-to-one, DOY 75-300). gapfill:
NDVI MAE vs linear interpolation with 20% of clear views hidden and with one 45-day window per plot-year
hidden. harvest, solar: on synthetic truth (ingest.synth.simulate_parcel_series). lights: the traffic
lights per campaign (shares, red and green precision) on the real dataset and on the demo archive's
truth, the decision constants chosen by plot-blocked k-fold and leave-one-year-out CV, rule only vs rule
+ encoder.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

from sitsmon.commands import add_command, doc_paragraphs
from sitsmon.settings import Settings

DEFAULT_DATASET = "grassland-sk-dev"  # under settings.paths.reference_data


def register(sub: argparse._SubParsersAction) -> None:
    parser = add_command(sub, "eval", run, description=doc_paragraphs(__doc__)[0],
                         help="evaluate detectors and gap filling; prints JSON metrics")
    parser.add_argument("task", choices=("mowing", "harvest", "solar", "gapfill", "lights"))
    parser.add_argument(
        "--data", type=Path, default=None, help="dataset folder (observations.csv, parcels.csv, events.csv)"
    )
    parser.add_argument(
        "--folds", type=int, default=5, help="cross-validation folds by parcel (mowing, harvest; harvest: 0 or 1 = none)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of folds, holdouts and synthetic data")
    parser.add_argument(
        "--seeds", type=int, default=1,
        help="gapfill: number of holdout seeds; harvest: of synthetic worlds (seed, seed+1, ...)"
    )
    parser.add_argument(
        "--parcels", type=int, default=None,
        help="synthetic parcels (harvest, solar: 600; lights: [synth] parcels_per_tile, the demo's 2500)",
    )
    parser.add_argument("--tolerance", type=float, default=None, help="matching tolerance in days")
    parser.add_argument(
        "--pixels",
        type=int,
        default=0,
        metavar="N",
        help="solar: also run the pixel-level detector on N small synthetic archives (COGs, 256 px tiles)",
    )
    parser.add_argument(
        "--pixels-s2-only",
        action="store_true",
        help="solar --pixels: give the pixel-level detector S2 only (default: S2 and S1 VV)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="mowing: a 2-point parameter grid (smoke test, not for reporting)",
    )
    parser.add_argument(
        "--archive", type=Path, default=None,
        help="lights: a demo data dir (archive/ and series/ of `sitsmon demo`): score its ingested parcel "
        "series against archive/truth instead of the parcel-level simulation of the same archive",
    )
    parser.add_argument("--rules", type=Path, default=None, help="lights: traffic-light rules TOML (default: shipped)")
    parser.add_argument("--scheme", default=None, help="lights: scheme of --rules (default: its default)")
    parser.add_argument(
        "--no-encoder", action="store_true",
        help="lights: rule only (skip the rule + encoder variant); gapfill: skip the encoder head comparison"
    )
    parser.add_argument(
        "--target", type=float, default=0.92,
        help="lights: precision the CV selection asks of red and green on the training folds (default 0.92)",
    )
    parser.add_argument(
        "--only", choices=("real", "synthetic"), default=None, help="lights: one of the two datasets"
    )
    parser.add_argument(
        "--sensors", default=None, metavar="S2",
        help="lights: use only these sensors' rows (e.g. S2: the S2-only path, as on plots without S1)",
    )
    parser.add_argument(
        "--fit-calibration", type=Path, default=None, metavar="FILE",
        help="lights: after the CV, fit the calibrated mowing light on the whole real set and write its "
        "model and thresholds to FILE (JSON, with provenance): how alerts/confidence_mowing.json was made",
    )
    parser.add_argument(
        "--variants", default=None, metavar="LIST",
        help="lights: which cross-validations run, comma-separated, of rule, rule_encoder, calibrated, "
        "calibrated_encoder, head, s1_veto, s2_gap, s2_visibility (default: all; the encoder ones only without "
        "--no-encoder; s1_veto and s2_gap on the demo archive, s2_gap with --sensors S2; s2_visibility: the "
        "S2-only limit measured from the data's own detected cuts, its constants chosen in fold)",
    )
    parser.add_argument(
        "--selection", choices=("point", "wilson", "worst_year"), default="point",
        help="lights, calibrated variants: the inner precision test: the point estimate ≥ --target (shipped), "
        "its lower Wilson bound (--wilson-z), or ≥ --target in every training campaign",
    )
    parser.add_argument("--wilson-z", type=float, default=1.0, help="lights --selection wilson: standard errors")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")


def _load(folder: Path):
    from alerts.series import read_observations, read_parcels, read_table

    for name in ("observations.csv", "parcels.csv"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name} not found (use --data)")
    events = read_table(folder / "events.csv") if (folder / "events.csv").is_file() else None
    return read_observations(folder / "observations.csv"), read_parcels(folder / "parcels.csv"), events


def _synthetic(args: argparse.Namespace, solar: bool, seed: int | None = None):
    from alerts.series import normalise_observations
    from ingest.synth import SynthConfig, simulate_parcel_series

    n_parcels = args.parcels or 600
    cfg = SynthConfig(
        seed=args.seed if seed is None else seed,
        n_tiles=1,
        tile_size_px=1024 if n_parcels > 1500 else 512,
        parcels_per_tile=n_parcels,
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
    from alerts.evaluation_synthetic import evaluate_synthetic
    from sitsmon.outputs import atomic_output, refuse_overwrite

    folder = args.data or settings.paths.reference_data / DEFAULT_DATASET
    refuse_overwrite({"--out": args.out, "--fit-calibration": getattr(args, "fit_calibration", None)},
                     {f"--data ({name})": folder / name for name in ("observations.csv", "parcels.csv", "events.csv")})
    if args.task == "mowing":
        obs, parcels, events = _load(args.data or settings.paths.reference_data / DEFAULT_DATASET)
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
    elif args.task == "lights":
        result = _lights(args, settings)
    elif args.task == "gapfill":
        obs, _, _ = _load(args.data or settings.paths.reference_data / DEFAULT_DATASET)
        model, held_out = None, None
        if not args.no_encoder:
            import sits
            from sits.checkpoint import DEFAULT_CHECKPOINT, read_checkpoint

            path = settings.encoder.checkpoint or None
            model = sits.load_model(path)
            held_out = read_checkpoint(path or DEFAULT_CHECKPOINT).get("train", {}).get("val_parcels")
        runs = []
        for s in range(args.seed, args.seed + args.seeds):
            for mode in ("random", "window"):
                runs.append(ev.evaluate_gapfill(obs, mode=mode, seed=s, encoder=model, model_parcels=held_out))
        result = {"task": "gapfill", "runs": runs}
    elif args.task == "harvest":
        runs = []
        for s in range(args.seed, args.seed + args.seeds):
            obs, parcels, events, cfg = _synthetic(args, solar=False, seed=s)
            one = evaluate_synthetic("harvest", obs, parcels, events, tolerance_days=args.tolerance or 12.0,
                                        cv_folds=args.folds, cv_seed=s, progress=_progress)
            one["synthetic"] = {"seed": cfg.seed, "parcels": cfg.parcels_per_tile, "start": str(cfg.start),
                                "end": str(cfg.end)}
            runs.append(one)
        result = runs[0] if len(runs) == 1 else {"task": "harvest", "runs": runs}
        if args.folds > 1:
            result = {"summary": [_harvest_summary(r) for r in runs], **result}
    else:
        obs, parcels, events, cfg = _synthetic(args, solar=True)
        result = evaluate_synthetic("solar", obs, parcels, events, tolerance_days=args.tolerance or 30.0)
        if args.pixels > 0:
            result["pixel_level"] = _solar_pixels(args)
        result["synthetic"] = {
            "seed": cfg.seed,
            "parcels": cfg.parcels_per_tile,
            "start": str(cfg.start),
            "end": str(cfg.end),
        }
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if args.out:
        with atomic_output(args.out) as tmp:
            tmp.write_text(text)
    return 0


def _harvest_summary(run: dict) -> dict:
    """One world's held-out F1s per sensor set: by interval (primary; constants chosen by it) and by
    point date (of the same detections, and with the constants chosen by it), and interval lengths."""
    out: dict = {"seed": run["synthetic"]["seed"]}
    for name in ("all_sensors", "s1_only", "s2_only"):
        cv = run["cv"][name]
        by_point = cv["selected_by_point"]["held_out"]
        out[name] = {
            "interval_f1": cv["held_out"]["interval"]["f1"],
            "point_f1": cv["held_out"]["f1"],
            "point_f1_selected_by_point": by_point["f1"],
            "interval_f1_selected_by_point": by_point["interval"]["f1"],
            "interval_median_days": cv["held_out"]["interval"]["lengths"]["median_days"],
            "interval_p90_days": cv["held_out"]["interval"]["lengths"]["p90_days"],
            "per_fold_interval_f1": [f["interval_f1"] for f in cv["per_fold"]],
            "per_fold_point_f1": [f["point_f1"] for f in cv["per_fold"]],
        }
    return out


def _lights(args: argparse.Namespace, settings: Settings) -> dict:
    from alerts.evaluation_lights import evaluate_lights
    from alerts.lights_cv import add_variants
    from alerts.lights_rules import load_rules

    scheme = load_rules(args.rules).scheme(args.scheme)
    model = None
    if not args.no_encoder:
        import sits

        model = sits.load_model(settings.encoder.checkpoint or None)

    def progress(what: str) -> None:
        print(f"  lights: {what}", file=sys.stderr, flush=True)

    variants = _variants(getattr(args, "variants", None))
    cv_kw = {"folds": args.folds, "seed": args.seed, "target": args.target, "progress": progress,
             "variants": variants}
    kw = {"scheme": scheme, "model": model, **cv_kw}
    sel_kw = {"selection": getattr(args, "selection", "point"), "wilson_z": getattr(args, "wilson_z", 1.0)}
    out: dict = {"task": "lights", "scheme": scheme.name, "target_precision": args.target}
    keep = _sensor_filter(getattr(args, "sensors", None))
    if keep:
        out["sensors"] = sorted(keep)
    cases: dict[str, list] = {}
    if args.only in (None, "real"):
        folder = args.data or settings.paths.reference_data / DEFAULT_DATASET
        obs, parcels, events = _load(folder)
        if events is None:
            raise FileNotFoundError(f"{folder / 'events.csv'} (reference events) is required for eval lights")
        obs = obs[obs["sensor"].isin(keep)].reset_index(drop=True) if keep else obs
        kept: list = []
        out["real"] = {"data": str(folder), **evaluate_lights(obs, parcels, events, keep_cases=kept, **kw)}
        cases["real"] = kept[0]
        add_variants(out["real"], kept[0], obs, scheme, model, **sel_kw, **cv_kw)
    if args.only in (None, "synthetic"):
        obs, parcels, events, source = _lights_synthetic(args, settings)
        obs = obs[obs["sensor"].isin(keep)].reset_index(drop=True) if keep else obs
        kept = []
        out["synthetic"] = {"source": source, **evaluate_lights(obs, parcels, events, keep_cases=kept, **kw)}
        cases["synthetic"] = kept[0]
        add_variants(out["synthetic"], kept[0], obs, scheme, model, calibration_unseen=True, **sel_kw, **cv_kw)
    if len(cases) > 1 and "s2_visibility" in variants:
        from alerts.lights_cv import cross_validate_s2_visibility_joint

        out["joint_s2_visibility"] = cross_validate_s2_visibility_joint(
            cases, scheme, **{k: v for k, v in cv_kw.items() if k != "variants"})
    if len(cases) > 1 and "rule" in variants:
        from alerts.evaluation_lights import LIGHT_GRID, NO_ENCODER, joint_choice, with_params

        progress("joint choice of the constants over both datasets (rule only)")
        out["joint_choice_rule_only"] = joint_choice(
            cases, with_params(scheme, {"decision": "rule"}), [*LIGHT_GRID, *NO_ENCODER], args.target)
    if getattr(args, "fit_calibration", None) and "real" in cases:
        out["fitted_calibration"] = _fit_calibration(args, scheme, cases["real"], out)
    return out


def _fit_calibration(args: argparse.Namespace, scheme, cases: list, out: dict) -> dict:
    """The calibrated light fitted on every real parcel-year (after the CV above), written to
    ``--fit-calibration`` with its provenance and the CV figures it comes with."""
    from alerts.confidence_cv import fit_shipped
    from alerts.evaluation_lights import with_params
    from sitsmon.outputs import atomic_output

    chosen = fit_shipped(cases, with_params(scheme, {"decision": "rule"}), target=args.target, seed=args.seed)
    model = chosen.pop("model")
    cv = out["real"].get("cv_calibrated", {})
    provenance = {
        "command": "sitsmon " + " ".join(sys.argv[1:]) if sys.argv[1:] else "sitsmon eval lights",
        "data": out["real"]["data"], "sensors": out.get("sensors", "all"), "parcel_years": len(cases),
        "fitted_on": "every parcel-year of the real set, after the cross-validation",
        "thresholds": chosen, "target_precision": args.target,
        "cv_pooled": {k: cv[k]["pooled"] for k in ("plot_kfold", "leave_one_year_out") if k in cv},
    }
    body = {"model": {**model.as_dict(), "provenance": provenance}}
    with atomic_output(args.fit_calibration) as tmp:
        tmp.write_text(json.dumps(body, indent=2, default=str))
    return {"file": str(args.fit_calibration), **chosen}


def _variants(text: str | None) -> tuple[str, ...]:
    """``--variants`` of eval lights (all when not given); an unknown name is refused."""
    from alerts.lights_cv import VARIANTS

    if not text:
        return VARIANTS
    names = tuple(x.strip() for x in text.split(",") if x.strip())
    bad = [x for x in names if x not in VARIANTS]
    if bad:
        raise ValueError(f"--variants: unknown variant {bad[0]!r}; choose from {', '.join(VARIANTS)}")
    return names


def _sensor_filter(text: str | None) -> set[str]:
    """``--sensors`` of eval lights as a set (empty: every sensor)."""
    if not text:
        return set()
    from contracts.sensors import parse_sensor_set

    return {str(getattr(s, "value", s)) for s in parse_sensor_set(text) or ()}


def _lights_synthetic(args: argparse.Namespace, settings: Settings):
    """The demo archive's truth: its ingested parcel series (``--archive``) or the parcel-level
    simulation of the same config (``[synth]`` settings: same parcels, management and weather)."""
    import pandas as pd

    from alerts.series import normalise_observations, read_parcels, read_table

    if args.archive:
        from ingest.series import read_series

        root = args.archive
        table = read_series(root / "series")
        if table.num_rows == 0:
            raise FileNotFoundError(f"{root / 'series'}: no parcel series (run `sitsmon demo --data-dir {root}`)")
        obs = normalise_observations(table.to_pandas(), source=str(root / "series"))
        parcels = read_parcels(root / "archive" / "parcels" / "parcels.parquet")
        events = read_table(root / "archive" / "truth" / "events.csv")
        return obs, parcels[["parcel_id", "land_use"]], events, f"ingested series of {root}"
    from ingest.synth import SynthConfig, simulate_parcel_series

    s = settings.synth
    cfg = SynthConfig(seed=s.seed, n_tiles=s.tiles, tile_size_px=s.tile_size_px,
                      parcels_per_tile=args.parcels or s.parcels_per_tile,
                      start=date.fromisoformat(s.start), end=date.fromisoformat(s.end))
    parcels, obs, events = simulate_parcel_series(cfg)
    parcels = pd.DataFrame(parcels[["parcel_id", "land_use"]]).astype({"parcel_id": str})
    source = (f"simulate_parcel_series(seed={cfg.seed}, parcels={cfg.parcels_per_tile}, "
              f"{cfg.start}..{cfg.end}): the demo archive's parcels and truth")
    return normalise_observations(obs, source="synthetic"), parcels, events, source


def _archive_cube(root: Path):
    """The S2 cube of a synthetic archive's single tile, read from its COGs (docs/archive-format.md):
    (time, band, y, x) float32 reflectance on the 10 m grid (20 m bands repeated), clear mask from SCL
    (vegetation, bare soil, water, unclassified), times in days, transform and CRS."""
    import numpy as np
    import rasterio

    from alerts.series import S2_BANDS, to_days

    items = [
        json.loads(line)
        for line in (root / "items/sentinel-2-l2a.ndjson").read_text().splitlines()
        if line.strip()
    ]
    items.sort(key=lambda it: it["properties"]["datetime"])
    cube, clear, times = [], [], []
    transform = crs = None
    for it in items:
        bands = []
        for b in S2_BANDS:
            with rasterio.open(root / it["assets"][b]["href"]) as r:
                a = r.read(1).astype(np.float32)
                if r.transform.a > 10.0:
                    a = np.kron(a, np.ones((2, 2), np.float32))
                else:
                    transform, crs = r.transform, r.crs
            bands.append(np.where(a == 0, np.nan, a * 1e-4 - 0.1).astype(np.float32))
        with rasterio.open(root / it["assets"]["SCL"]["href"]) as r:
            scl = np.kron(r.read(1), np.ones((2, 2), np.uint8))
        cube.append(np.stack(bands))
        clear.append(np.isin(scl, (4, 5, 6, 7)))
        times.append(to_days(it["properties"]["datetime"]))
    return np.stack(cube), np.asarray(times), np.stack(clear), transform, crs


def _archive_vv(root: Path, shape: tuple[int, ...]) -> dict:
    """S1 VV of a synthetic archive's single tile in dB, (time1, y, x) on the S2 10 m grid, with its
    times in days: the ``s1_vv``/``s1_times`` arguments of ``detect_solar_pixels``."""
    import numpy as np
    import rasterio

    from alerts.series import to_days

    items = [
        json.loads(line)
        for line in (root / "items/sentinel-1-grd.ndjson").read_text().splitlines()
        if line.strip()
    ]
    items.sort(key=lambda it: it["properties"]["datetime"])
    vv, times = [], []
    for it in items:
        with rasterio.open(root / it["assets"]["vv"]["href"]) as r:
            a = r.read(1).astype(np.float32)
        if a.shape != tuple(shape):
            raise ValueError(f"S1 grid {a.shape} differs from the S2 grid {tuple(shape)} in {root}")
        with np.errstate(invalid="ignore", divide="ignore"):
            vv.append(np.where(a > 0, 10.0 * np.log10(a), np.nan))
        times.append(to_days(it["properties"]["datetime"]))
    if not vv:
        return {}
    return {"s1_vv": np.stack(vv), "s1_times": np.asarray(times)}


def _solar_season_archive(root: Path, seed: int, tile_size_px: int = 256, parcels_per_tile: int = 60,
                          **options) -> Path:
    """A one-tile synthetic archive over the 2024 season of solar works (March to October) at ``root``,
    the pixel-level solar evaluation's input (``options``: more :class:`ingest.synth.SynthConfig` fields)."""
    from ingest.synth import SynthConfig, generate_archive

    generate_archive(root, SynthConfig(seed=seed, n_tiles=1, tile_size_px=tile_size_px, parcels_per_tile=parcels_per_tile,
                                       start=date(2024, 3, 1), end=date(2024, 10, 31), **options))
    return root


def _solar_pixels(args: argparse.Namespace) -> dict:
    import tempfile

    import geopandas as gpd

    from alerts.detectors import detect_solar_pixels
    from alerts.evaluation import score_solar_polygons
    from alerts.series import S2_BANDS

    runs, all_events, all_sites = [], [], []
    with tempfile.TemporaryDirectory(prefix="sitsmon-eval-solar-") as tmp:
        for k in range(args.pixels):
            seed = args.seed + 100 + k
            root = _solar_season_archive(Path(tmp) / f"archive{k}", seed, solar_parcel_share=0.05)
            cube, times, clear, transform, crs = _archive_cube(root)
            s1 = {} if getattr(args, "pixels_s2_only", False) else _archive_vv(root, cube.shape[2:])
            events = detect_solar_pixels(
                cube, times, S2_BANDS, transform, clear=clear, crs=str(crs), area_id=f"a{k}", **s1
            )
            sites = gpd.read_file(root / "truth/solar_sites.geojson").to_crs(crs)
            runs.append({"seed": seed, "sites": len(sites), **score_solar_polygons(events, sites)})
            all_events.append(events)
            all_sites.append(sites)
            print(f"  pixel-level archive {k + 1}/{args.pixels}", file=sys.stderr)
    tp = sum(r["tp"] for r in runs)
    sensors = "S2" if getattr(args, "pixels_s2_only", False) else "S2+S1"
    fp = sum(r["fp"] for r in runs)
    fn = sum(r["fn"] for r in runs)
    p = tp / (tp + fp) if tp + fp else 0.0
    rc = tp / (tp + fn) if tp + fn else 0.0
    return {
        "tolerance_days": 30.0,
        "sensors": sensors,
        "archive_seeds": [r["seed"] for r in runs],
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": round(p, 4),
        "recall": round(rc, 4),
        "f1": round(2 * p * rc / (p + rc), 4) if p + rc else 0.0,
        "runs": runs,
    }
