"""Errors of the shared contracts; they inherit ``ValueError`` (bad input), so each stage may wrap them
in its own error type (``SeriesError``, ``ImportFormatError``) without losing the message."""

from __future__ import annotations


class ContractError(ValueError):
    """A value or a table breaks one of the shared data contracts."""


class InterchangeError(ContractError):
    """An interchange file is refused as a whole (unreadable, missing column, plainly wrong unit)."""
