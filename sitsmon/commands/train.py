"""`sitsmon train`: self-supervised training of the dual-form encoder on parcel or pixel series.

Reads interchange files (CSV or Parquet, docs/data-contracts.md "Interchange format"), the parcel-series store or
pixel samples of the tile cubes that `sitsmon ingest` writes (``sitsmon.training_data``), trains the
forecast and gap-filling heads, writes a checkpoint (config, band set, normalisation statistics,
weights, version), and with ``--evaluate`` reports gap-filling / forecast quality on held-out parcels against persistence
and linear interpolation (``sits.evaluate``). Prints a JSON summary on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from sitsmon.settings import Settings

logger = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "train", help="train the encoder on parcel series (self-supervised)",
        description="Train the time-aware dual-form encoder (forecast + cloud-gap reconstruction, Gaussian NLL) "
                    "on interchange parcel series, write a checkpoint, optionally evaluate it on held-out parcels.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path,
                        help="interchange observations file (.csv/.parquet) or a folder holding observations.csv|parquet")
    source.add_argument("--series", type=Path,
                        help="a parcel-series store written by `sitsmon ingest` (every tile in it)")
    source.add_argument("--cubes", type=Path,
                        help="a folder of <tile>.zarr cubes written by `sitsmon ingest`: train on pixel samples")
    parser.add_argument("--pixels", type=int, default=2000,
                        help="with --cubes: pixels drawn at random (--seed) per tile (default 2000)")
    parser.add_argument("--out", type=Path, default=None,
                        help="checkpoint to write (default: <paths.data_dir>/models/encoder.pt)")
    parser.add_argument("--epochs", type=int, default=30, help="passes over the series (default 30)")
    parser.add_argument("--batch-size", type=int, default=16, help="windows per step (default 16)")
    parser.add_argument("--window", type=int, default=160, help="tokens per training window (default 160)")
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default 3e-3)")
    parser.add_argument("--seed", type=int, default=0, help="seed: same seed, data and device give the same weights")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None,
                        help="default: [encoder] device setting (auto: CUDA when present)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--mechanism", choices=["retention", "linear"], default="retention")
    parser.add_argument("--rotation", action="store_true", help="rotate queries/keys by day (retention)")
    parser.add_argument("--no-bidirectional", dest="bidirectional", action="store_false",
                        help="no backward stack (batch gap filling then uses the causal head only)")
    parser.add_argument("--bands", default=None,
                        help="comma-separated S2 bands (default: every S2 band with values in the data)")
    parser.add_argument("--val-frac", type=float, default=0.2,
                        help="share of parcels held out of training for --evaluate (default 0.2; 0: train on all)")
    parser.add_argument("--smooth-l1", type=float, default=1.0,
                        help="weight of an L1 term on the smoothing head's mean (the MAE it is judged by; default 1, as the packaged checkpoint)")
    parser.add_argument("--no-seasonal-prior", dest="seasonal_prior", action="store_false",
                        help="do not fit the day-of-year climatology prior of the gap-filling heads")
    parser.add_argument("--tune-split", action="store_true",
                        help="model selection: carve a validation split (--val-frac of the TRAINING parcels, seed+1) "
                             "out of the training parcels, train on the rest and --evaluate on it; the held-out "
                             "parcels are neither trained on nor evaluated")
    parser.add_argument("--evaluate", action="store_true",
                        help="report MAE per band and NDVI on held-out clear S2 observations vs persistence and "
                             "linear interpolation")
    parser.add_argument("--eval-checkpoint", type=Path, default=None,
                        help="skip training: evaluate this checkpoint ('default' for the packaged one)")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace, settings: Settings) -> int:
    import torch

    from sits.checkpoint import load_model, save_checkpoint
    from sits.data import bands_present, series_from_frame, split_ids
    from sits.errors import ConfigError
    from sits.evaluate import evaluate
    from sits.models import EncoderConfig
    from sits.tokens import BandSet
    from sits.train import TrainConfig, fit, train_metadata
    from sitsmon.outputs import refuse_overwrite

    data = args.data
    data_files = [data] if data is not None and not data.is_dir() else (
        [data / "observations.csv", data / "observations.parquet"] if data is not None else [])
    refuse_overwrite({"--out": args.out}, {f"--data ({Path(f).name})": f for f in data_files})
    if not 0.0 <= args.val_frac < 1.0:
        raise ConfigError(f"--val-frac must be in [0, 1); got {args.val_frac}")
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads must be >= 1; got {args.threads}")
        torch.set_num_threads(args.threads)
    device = args.device or settings.encoder.device
    df, source = _training_frame(args)
    present = bands_present(df)
    if args.bands:
        s2 = tuple(b.strip() for b in args.bands.split(",") if b.strip())
        missing = [b for b in s2 if b not in present.s2]
        if missing:
            raise ConfigError(f"bands {missing} have no values in {source}")
        bands = BandSet(s2, present.s1)
    else:
        bands = present
    series = series_from_frame(df, bands)
    train_ids, val_ids = split_ids([s.id for s in series], args.val_frac, args.seed)
    if args.tune_split:
        train_ids, val_ids = split_ids(sorted(train_ids), args.val_frac, args.seed + 1)
    val_series = [s for s in series if s.id in val_ids]
    train_series = [s for s in series if s.id in train_ids]
    summary: dict = {"data": source, "bands": list(bands.all), "parcels": len(series),
                     "split": "tuning (validation carved from the training parcels)" if args.tune_split else "held-out",
                     "train_parcels": len(train_series), "val_parcels": len(val_series)}

    if args.eval_checkpoint is not None:
        path = None if str(args.eval_checkpoint) == "default" else args.eval_checkpoint
        model = load_model(path, device=device if device != "auto" else None, bands=bands)
        summary["checkpoint"] = str(path or "default")
        summary["model_version"] = model.version
    else:
        config = EncoderConfig(s2_bands=bands.s2, s1_bands=bands.s1, d_model=args.d_model, n_heads=args.heads,
                               n_layers=args.layers, mechanism=args.mechanism, rotation=args.rotation,
                               bidirectional=args.bidirectional, recon_prior=True)
        train = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, window=args.window, lr=args.lr,
                            smooth_l1_weight=args.smooth_l1, seasonal_prior=args.seasonal_prior, seed=args.seed, device=device)

        def progress(rec: dict) -> None:
            print(f"sitsmon train: epoch {rec['epoch']}/{train.epochs} recon_nll {rec['recon_nll']:.4f} "
                  f"forecast_nll {rec['forecast_nll']:.4f}"
                  + (f" smooth_nll {rec['smooth_nll']:.4f}" if "smooth_nll" in rec else "")
                  + f" ({rec['elapsed_s']:.0f} s)", file=sys.stderr, flush=True)

        t0 = time.perf_counter()
        model, history = fit(train_series, config, train, progress=progress)
        out = args.out or settings.paths.under("models") / "encoder.pt"
        meta = train_metadata(train, len(train_series), history)
        meta.update(data=source, val_parcels=sorted(val_ids), device=str(device))
        save_checkpoint(model, out, meta)
        summary.update(checkpoint=str(out), model_version=model.version, epochs=train.epochs,
                       train_seconds=round(time.perf_counter() - t0, 1), final=history[-1],
                       checkpoint_bytes=Path(out).stat().st_size)
    if args.evaluate:
        if not val_series:
            raise ConfigError("--evaluate needs held-out parcels: use --val-frac > 0")
        summary["evaluation"] = evaluate(model, val_series, seed=args.seed)
        if model.config.bidirectional:
            summary["evaluation_causal"] = evaluate(model, val_series, seed=args.seed, causal=True)
    print(json.dumps(summary, indent=2))
    return 0


def _training_frame(args: argparse.Namespace):
    """The observation table to train on and a description of where it came from."""
    from sits.data import read_interchange
    from sitsmon.training_data import frame_from_cubes, frame_from_series_store

    if args.series is not None:
        return frame_from_series_store(args.series), f"series store {args.series}"
    if args.cubes is not None:
        return (frame_from_cubes(args.cubes, args.pixels, args.seed),
                f"{args.pixels} pixels per tile of the cubes in {args.cubes} (seed {args.seed})")
    return read_interchange(args.data), str(args.data)
