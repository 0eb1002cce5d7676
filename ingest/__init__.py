"""sitsmon pipeline stage: ingest (STAC sources -> per-tile Zarr cubes -> parcel series -> acquisition events).

Entry points for the wiring (plain values in, no settings): :func:`build_poller`, :func:`run_poll_once`.
Heavy modules are imported lazily so that ``import ingest`` stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

DAY_S = 86400


def build_poller(
    stac_urls: list[str] | tuple[str, ...],
    cubes_dir: str | Path,
    series_dir: str | Path,
    ledger_url: str | Path,
    *,
    tiles: tuple[str, ...] | list[str] = (),
    aois: tuple[dict[str, Any], ...] | list[dict[str, Any]] = (),
    collections: tuple[str, ...] | list[str] = ("sentinel-2-l2a", "sentinel-1-grd"),
    start: str | None = None,
    lookback_days: float = 10.0,
    interval_s: float = 600.0,
    parcels_path: str | Path | None = None,
    grids_from: str | Path | None = None,
    publisher: Any = None,
    asset_root: str | Path | None = None,
    chunk: int = 1024,
    workers: int = 1,
    max_retries: int = 5,
    requests_per_second: float = 5.0,
    extra_sources: list[Any] | None = None,
    parcels_root: str | Path | None = None,
    campaign: int | None = None,
    calendar: Any = None,
):
    """A :class:`ingest.poller.Poller` from plain values.

    ``start``: ISO date/time of the first search where no watermark exists; ``grids_from``: an archive
    folder or ``archive.json`` whose tile grids to use (else grids come from the items);
    ``publisher``: anything with ``publish(topic, key, value)`` (the bus).
    Parcels (``ingest.campaign_layers``): ``parcels_path`` is one layer for every acquisition (rows of
    ``campaign``, else of their date's campaign under ``calendar``); without it, ``parcels_root`` holds
    the layers imported per campaign, each acquisition reduced with its campaign's; neither: no series.
    """
    from ingest.campaign_layers import ParcelLayers
    from ingest.grid import grids_from_manifest
    from ingest.http import RetryPolicy
    from ingest.items import parse_time
    from ingest.ledger import open_ledger
    from ingest.parcels import read_parcels
    from ingest.poller import Poller, WatchConfig
    from ingest.sources import StacApiSource

    policy = RetryPolicy(max_retries=max_retries)
    sources = [StacApiSource(u, policy, requests_per_second) for u in stac_urls] + list(extra_sources or [])
    start_s = parse_time(start if "T" in start else f"{start}T00:00:00Z", "start") if start else None
    watch = WatchConfig(tuple(tiles), tuple(aois), tuple(collections), int(lookback_days * DAY_S), interval_s, start_s)
    grids = grids_from_manifest(grids_from) if grids_from else {}
    if parcels_path:
        parcels = ParcelLayers(fixed=read_parcels(parcels_path)[0], campaign=campaign, calendar=calendar)
    elif parcels_root:
        parcels = ParcelLayers.by_campaign(parcels_root, calendar)
    else:
        parcels = None
    return Poller(sources, open_ledger(ledger_url), cubes_dir, series_dir, watch, grids=grids, parcels=parcels,
                  publisher=publisher, asset_root=asset_root, chunk=chunk, workers=workers)


def run_poll_once(stac_urls: list[str] | tuple[str, ...], cubes_dir: str | Path, series_dir: str | Path,
                  ledger_url: str | Path, **kwargs: Any) -> dict[str, Any]:
    """One poll (see :func:`build_poller` for the options); returns the report as a JSON-able dict."""
    poller = build_poller(stac_urls, cubes_dir, series_dir, ledger_url, **kwargs)
    try:
        return poller.poll_once().to_dict()
    finally:
        poller.ledger.close()


__all__ = ["build_poller", "run_poll_once"]
