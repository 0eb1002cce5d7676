"""Which implementation the fast entry points use.

Set ``SITSMON_SITS_REFERENCE=1`` in the environment (or use :func:`force_reference`) to route every
fast kernel (chunk, fused recurrent, CUDA) to the plain float32 reference in ``naive.py``: the switch
for debugging a kernel or a GPU. This is the one place where ``sits`` reads the environment (a kernel
switch, as in flash-linear-attention), never for configuration.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

REFERENCE_ENV = "SITSMON_SITS_REFERENCE"
_forced: list[bool] = []


def use_reference() -> bool:
    """True when the reference path is forced (environment variable or :func:`force_reference`)."""
    if _forced:
        return _forced[-1]
    return os.environ.get(REFERENCE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


@contextlib.contextmanager
def force_reference(enabled: bool = True) -> Iterator[None]:
    """Within the block, route fast kernels to the reference (``enabled=True``) or not."""
    _forced.append(enabled)
    try:
        yield
    finally:
        _forced.pop()
