"""Checkpoints: one torch file with the config, band set, normalisation statistics, weights and version.

``load_model(path=None)`` returns the packaged default (:data:`DEFAULT_CHECKPOINT`) when ``path`` is None.
A checkpoint of another format version, or with a band set other than the one asked for, is refused
with :class:`sits.errors.CheckpointVersionError` / :class:`sits.errors.BandSetError`.
"""

from __future__ import annotations

import logging
from importlib import metadata
from pathlib import Path

import torch

from sits.errors import BandSetError, CheckpointError, CheckpointVersionError, ConfigError
from sits.models import EncoderConfig, SitsEncoder
from sits.tokens import BandSet, Normalization

logger = logging.getLogger(__name__)
FORMAT = "sitsmon-sits-checkpoint"
FORMAT_VERSION = 2  # 2: seasonal prior (clim_coef buffer) and the wider smoothing head
DEFAULT_CHECKPOINT = Path(__file__).parent / "checkpoints" / "default.pt"


def package_version() -> str:
    try:
        return metadata.version("sitsmon")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare tree
        return "0+unknown"


def save_checkpoint(model: SitsEncoder, path: str | Path, train: dict | None = None) -> Path:
    """Write ``model`` to ``path`` (weights in float32 on CPU). ``train``: JSON-able training metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "sitsmon_version": package_version(),
        "model_version": model.version,
        "config": model.config.to_dict(),
        "bands": {"s2": list(model.bands.s2), "s1": list(model.bands.s1)},
        "normalization": {"mean": list(model.normalization.mean), "std": list(model.normalization.std)},
        "state_dict": {k: v.detach().cpu().float() if v.is_floating_point() else v.detach().cpu()
                       for k, v in model.state_dict().items()},
        "train": dict(train or {}),
    }
    torch.save(blob, str(path))
    return path


def read_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        blob = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad checkpoint
        raise CheckpointError(f"cannot read checkpoint {path}: {e}") from e
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a sits checkpoint (format {blob.get('format') if isinstance(blob, dict) else None!r})")
    if blob.get("format_version") != FORMAT_VERSION:
        old = " (written before the seasonal gap-filling prior; retrain it with `sitsmon train`)" if blob.get("format_version") == 1 else ""
        raise CheckpointVersionError(
            f"{path}: checkpoint format version {blob.get('format_version')!r}, this sits reads {FORMAT_VERSION}{old}"
        )
    for key in ("config", "bands", "normalization", "state_dict", "model_version"):
        if key not in blob:
            raise CheckpointError(f"{path}: checkpoint lacks {key!r}")
    return blob


def load_model(path: str | Path | None = None, device: str | torch.device | None = None,
               bands: BandSet | None = None) -> SitsEncoder:
    """Load a checkpoint (the packaged default when ``path`` is None) in eval mode on ``device``
    ("auto"/None: CUDA when present, else CPU). ``bands``: refuse a checkpoint with another band set."""
    path = DEFAULT_CHECKPOINT if path is None else Path(path)
    blob = read_checkpoint(path)
    try:
        config = EncoderConfig.from_dict(dict(blob["config"]))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: invalid config: {e}") from e
    stored = BandSet(tuple(blob["bands"]["s2"]), tuple(blob["bands"]["s1"]))
    if stored != config.bands:
        raise BandSetError(f"{path}: band set {stored.all} disagrees with its config {config.bands.all}")
    if bands is not None and bands != stored:
        raise BandSetError(f"{path}: checkpoint bands {stored.all}, expected {bands.all}")
    norm = Normalization(stored, blob["normalization"]["mean"], blob["normalization"]["std"])
    model = SitsEncoder(config, norm)
    try:
        model.load_state_dict(blob["state_dict"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit the config: {e}") from e
    model.version = str(blob["model_version"])
    model.eval()
    return model.to(resolve_device(device))


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' asked for but CUDA is not available")
    return dev
