"""Errors of the streaming monitor; each message names the tile, slot or path it is about."""

from __future__ import annotations


class MonitorError(RuntimeError):
    """Base error of the monitor stage."""


class BadEventError(MonitorError):
    """An acquisition message that cannot be processed (not JSON, wrong schema, unknown tile or slot)."""


class StateStoreError(MonitorError):
    """A tile state that cannot be read or written (missing, corrupt, another schema)."""


class StateVersionError(StateStoreError):
    """A state written by another model or detector version: never mixed with the current one."""


class LateArrivalError(MonitorError):
    """An acquisition older than every retained checkpoint: refused and recorded for ``monitor replay``."""
