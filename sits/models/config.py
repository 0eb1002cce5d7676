"""Model configuration (a frozen dataclass, validated; stored in every checkpoint)."""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, dataclass

from sits.errors import ConfigError
from sits.tokens import ALL_S2_BANDS, S1_BANDS, BandSet

MECHANISMS = ("retention", "linear", "softmax")


@dataclass(frozen=True, slots=True)
class EncoderConfig:
    """Encoder hyper-parameters.

    ``halflife_min``/``halflife_max``: days, the range of per-head decay half-lives (multi-scale).
    ``rotation``: rotate q/k by day (retention only). ``linear_decay``: time decay in linear attention.
    ``bidirectional``: add a backward stack (run on the time-reversed series) and a smoothing head for
    batch gap filling (uses the future too: backfill and dashboards; streaming stays causal).
    ``recon_prior``: the causal reconstruction head corrects the last clear S2 values (persistence prior)
    instead of predicting from scratch (``sitsmon train`` turns it on).
    """

    s2_bands: tuple[str, ...] = ALL_S2_BANDS
    s1_bands: tuple[str, ...] = S1_BANDS
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    mechanism: str = "retention"
    ffn_mult: int = 2
    halflife_min: float = 4.0
    halflife_max: float = 365.0
    rotation: bool = False
    linear_decay: bool = True
    n_orbits: int = 256
    head_hidden: int = 64
    chunk_size: int = 64
    bidirectional: bool = False
    recon_prior: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "s2_bands", tuple(self.s2_bands))
        object.__setattr__(self, "s1_bands", tuple(self.s1_bands))
        BandSet(self.s2_bands, self.s1_bands)  # validates the band names
        if self.mechanism not in MECHANISMS:
            raise ConfigError(f"mechanism must be one of {MECHANISMS}; got {self.mechanism!r}")
        for name in ("d_model", "n_heads", "n_layers", "ffn_mult", "n_orbits", "head_hidden", "chunk_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ConfigError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if not (0 < self.halflife_min <= self.halflife_max):
            raise ConfigError(f"need 0 < halflife_min <= halflife_max; got {self.halflife_min}, {self.halflife_max}")
        if self.bidirectional and self.mechanism == "softmax":
            raise ConfigError("bidirectional gap filling needs a stateful mechanism (retention or linear)")
        if self.rotation and (self.mechanism != "retention" or (self.d_model // self.n_heads) % 2):
            raise ConfigError("rotation needs the retention mechanism and an even head size")

    @property
    def bands(self) -> BandSet:
        return BandSet(self.s2_bands, self.s1_bands)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["s2_bands"], d["s1_bands"] = list(self.s2_bands), list(self.s1_bands)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> EncoderConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown encoder config keys {sorted(unknown)}")
        return cls(**d)

    def fingerprint(self) -> str:
        """Short hash of the configuration (cached: configs are immutable)."""
        return _fingerprint(self)


@functools.lru_cache(maxsize=64)
def _fingerprint(config: EncoderConfig) -> str:
    return hashlib.sha1(json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest()[:12]
