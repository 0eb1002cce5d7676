"""Catalogue sources: a STAC API through pystac-client, the Sentinel Hub catalogue through ``sentinelhub``.

Every source yields raw item dicts (STAC JSON); the poller validates them and quarantines bad ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol


class Source(Protocol):
    """A searchable catalogue. ``name`` keys the watermarks and the ledger rows."""

    name: str

    def search(
        self, collection: str, bbox: tuple[float, float, float, float] | None, start_s: int, end_s: int,
        intersects: dict[str, Any] | None = None,
    ) -> Iterator[Any]:
        """Raw items of ``collection`` acquired in [start_s, end_s] (UTC seconds) over bbox (EPSG:4326)."""
        ...


from ingest.sources.stac_api import StacApiSource  # noqa: E402

__all__ = ["Source", "StacApiSource"]
