"""Errors of the ``sits`` package: one base, :class:`SitsError`, a :class:`ValueError`.

Every public entry point validates its input and raises one of these with the shapes, indices or
versions involved, never a silent broadcast.
"""

from __future__ import annotations


class SitsError(ValueError):
    """Base error of the ``sits`` package (bad input to the modelling library)."""


class UnsortedTimesError(SitsError):
    """Token times are not in non-decreasing order (or fall before the state's ``t_last``)."""


class NonFiniteInputError(SitsError):
    """A value, time or tensor holds NaN or infinity where a finite number is required."""


class EmptySeriesError(SitsError):
    """A series (or a batch) holds no token."""


class ShapeError(SitsError):
    """A tensor's shape does not match what the operation or the model expects."""


class StateShapeError(ShapeError):
    """An encoder state does not match the model (layers, heads, head size, batch)."""


class CheckpointError(SitsError):
    """A checkpoint is unreadable or lacks required entries."""


class CheckpointVersionError(CheckpointError):
    """A checkpoint (or a saved state) was written by an incompatible format version."""


class BandSetError(SitsError):
    """The band set of a checkpoint, state or input does not match the one expected."""


class ConfigError(SitsError):
    """An invalid model or training configuration."""
