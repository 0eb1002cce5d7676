"""Models: the dual-form encoder and its configuration."""

from sits.models.config import MECHANISMS, EncoderConfig
from sits.models.encoder import Encoded, GapFill, SitsEncoder, StepOutput

__all__ = ["MECHANISMS", "EncoderConfig", "Encoded", "GapFill", "SitsEncoder", "StepOutput"]
