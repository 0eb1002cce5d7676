"""Errors raised by the ingest stage: one base class, specific ones also inherit the builtin they resemble."""

from __future__ import annotations


class IngestError(Exception):
    """Base class of every error raised by :mod:`ingest`."""


class ConfigError(IngestError, ValueError):
    """Invalid ingest configuration (watched areas, sources, windows)."""


class SourceError(IngestError, ConnectionError):
    """A catalogue could not be searched (unreachable, too many failures, bad answers)."""


class RetryableHTTPError(SourceError):
    """A transient HTTP failure (timeout, 429, 5xx); ``retry_after`` in seconds when the server said."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class ItemError(IngestError, ValueError):
    """A STAC item cannot be ingested (malformed, wrong CRS, footprint outside the tile, all nodata)."""


class AssetError(IngestError, OSError):
    """An asset of an item is missing, unreachable or unreadable."""


class CubeError(IngestError, OSError):
    """A tile cube is missing or inconsistent."""


class LedgerError(IngestError, RuntimeError):
    """The item ledger cannot be opened or written."""


class ParcelLayerError(IngestError, ValueError):
    """The parcel layer cannot be read or has no usable parcel."""


class ImportFormatError(IngestError, ValueError):
    """An interchange file does not follow the format in docs/data-contracts.md."""


class ItemAssetError(AssetError):
    """An asset failure traced to one item: ``item_id`` says which (the slot is rebuilt without it)."""

    def __init__(self, message: str, item_id: str):
        super().__init__(message)
        self.item_id = item_id


class DataDirInUseError(IngestError, RuntimeError):
    """Another live writer holds the data dir (``holder_pid`` when known)."""

    def __init__(self, message: str, holder_pid: int | None = None):
        super().__init__(message)
        self.holder_pid = holder_pid


class CampaignLayerError(ParcelLayerError):
    """An acquisition cannot be reduced: its date lies in no configured campaign, or its campaign has
    no parcel layer imported. Raised before anything of the acquisition is written."""
