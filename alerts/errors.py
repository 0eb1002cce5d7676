"""Errors of the ``alerts`` stage: one base error, specific ones also inherit the builtin they resemble."""

from __future__ import annotations


class AlertsError(Exception):
    """Base error of the alerts stage."""


class SeriesError(AlertsError, ValueError):
    """A parcel series or an interchange file is malformed (missing columns, bad times, bad values)."""


class UnknownParcelError(AlertsError, KeyError):
    """An observation or query names a parcel that the parcel layer does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "unknown parcel"


class UnsupportedLandUseError(AlertsError, ValueError):
    """A detector was asked to run on a land use it does not handle."""


class QueryOutOfRangeError(AlertsError, ValueError):
    """A gap-fill query lies outside the time range of the parcel's series."""


class TransitionError(AlertsError, ValueError):
    """An alert status change that the lifecycle does not allow; the message says why."""


class AlertNotFoundError(AlertsError, KeyError):
    """No alert with this id in the store."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "alert not found"


class StoreError(AlertsError, RuntimeError):
    """The alert store failed (connection, schema)."""


class SinkError(AlertsError, ConnectionError):
    """A sink could not deliver (after its retries); the alert went to the dead-letter instead."""
