"""Models: the dual-form encoder (``encoder``), its configuration, its streaming step (``streaming``),
date features, the heads' priors, and the records it returns (``outputs``)."""

from sits.models.config import MECHANISMS, EncoderConfig
from sits.models.encoder import SitsEncoder
from sits.models.outputs import Encoded, GapFill, StepOutput

__all__ = ["MECHANISMS", "EncoderConfig", "Encoded", "GapFill", "SitsEncoder", "StepOutput"]
