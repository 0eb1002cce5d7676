"""Errors of the dashboard stage; ``main.py`` maps each to one HTTP status in one place."""

from __future__ import annotations


class DashboardError(Exception):
    """Base error of the dashboard stage."""


class NotFoundError(DashboardError, KeyError):
    """An id (parcel, tile, alert, acquisition date) that the stores do not hold."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


class BadRequestError(DashboardError, ValueError):
    """Malformed input that the schema could not catch (bbox order, date range, …)."""


class UserStoreError(DashboardError, RuntimeError):
    """The users database cannot be opened or written."""


class UnavailableError(DashboardError, RuntimeError):
    """A store the request needs is missing (no parcel layer, no cube for the tile)."""


class ConflictError(DashboardError, RuntimeError):
    """The request is well-formed but contradicts the resource's state (409), e.g. cancelling a job that ended."""
