"""Which parcel layer reduces an acquisition: the layer of the acquisition's campaign.

Declared parcels change every campaign (ids, outlines, land use). An acquisition of 2025 is reduced
with the outlines of campaign 2025 and one of 2026 with those of 2026, so each series row says which
campaign (which outlines) it belongs to (``ingest.series`` column ``campaign``). The campaign of an
acquisition is its date's campaign under the configured calendar (:mod:`contracts.campaigns`,
default calendar years); the layers are those of ``sitsmon ingest parcels import LAYER --campaign
YEAR`` (``<root>/<YEAR>/parcels.parquet``).

Three ways to run, in the order the command line picks them (``sitsmon ingest poll|backfill``):

- ``--parcels LAYER``: one layer for every acquisition, each row of its date's campaign (or of
  ``--campaign`` when given) — the single-layer setup of before campaigns;
- ``--campaign YEAR``: the layer imported for YEAR, for every acquisition, rows of campaign YEAR (an
  override: e.g. re-reducing last winter's acquisitions with this year's outlines on purpose);
- neither (and no ``[ingest] parcels``): by date, each acquisition with its campaign's layer.

An acquisition whose date lies in no configured campaign, or whose campaign has no layer imported,
is refused with :class:`~ingest.errors.CampaignLayerError` before anything of it is written
(:meth:`ParcelLayers.check`): the poll stops with the reason and the watermark stays, so importing
the missing layer and polling again ingests it; earlier cubes and series are untouched.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from contracts.campaigns import CALENDAR_YEAR, CampaignCalendar, CampaignError
from ingest.errors import CampaignLayerError, ParcelLayerError
from ingest.parcel_campaign import campaign_dir

__all__ = ["LAYER_FILE", "REDRAWN_SHARE", "ParcelLayers", "imported_campaigns", "unchanged_parcels"]

LAYER_FILE = "parcels.parquet"


def imported_campaigns(root: str | Path) -> list[int]:
    """The campaigns with a layer imported under ``root``, ascending."""
    base = Path(root)
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir() if p.name.isdigit() and (p / LAYER_FILE).is_file())


class ParcelLayers:
    """The parcel layer (GeoDataFrame) and the campaign of each acquisition; thread-safe, layers cached."""

    def __init__(self, *, root: str | Path | None = None, fixed: Any = None, campaign: int | None = None,
                 calendar: CampaignCalendar | None = None) -> None:
        if root is None and fixed is None:
            raise ValueError("ParcelLayers needs a campaign layers folder or a fixed layer")
        self.root = Path(root) if root is not None else None
        self.fixed = fixed  # one GeoDataFrame for every acquisition (None: by campaign from root)
        self.override = int(campaign) if campaign is not None else None
        self.calendar = calendar or CALENDAR_YEAR
        self._lock = threading.Lock()
        self._cache: dict[int, Any] = {}

    @classmethod
    def by_campaign(cls, root: str | Path, calendar: CampaignCalendar | None = None) -> ParcelLayers:
        return cls(root=root, calendar=calendar)

    def campaign_of(self, time_s: int) -> int:
        """The campaign an acquisition at ``time_s`` is reduced for (the override, else its date's)."""
        if self.override is not None:
            return self.override
        try:
            return self.calendar.campaign_of(time_s)
        except CampaignError as e:
            raise CampaignLayerError(f"{e}; nothing of it was ingested") from e

    def layer_path(self, campaign: int) -> Path | None:
        return campaign_dir(self.root, campaign) / LAYER_FILE if self.root is not None else None

    def layer(self, campaign: int) -> Any:
        """The GeoDataFrame of ``campaign`` (read once)."""
        if self.fixed is not None:
            return self.fixed
        with self._lock:
            hit = self._cache.get(int(campaign))
        if hit is not None:
            return hit
        path = self.layer_path(campaign)
        if path is None or not path.is_file():
            have = imported_campaigns(self.root) if self.root is not None else []
            raise CampaignLayerError(
                f"no parcel layer imported for campaign {campaign} (looked for {path}; imported: "
                f"{', '.join(map(str, have)) or 'none'}): run `sitsmon ingest parcels import LAYER --campaign "
                f"{campaign}`, then poll again; nothing of campaign {campaign} was ingested")
        from ingest.parcels import read_parcels

        try:
            gdf = read_parcels(path)[0]
        except ParcelLayerError as e:
            raise CampaignLayerError(f"campaign {campaign}: {e}") from e
        with self._lock:
            self._cache[int(campaign)] = gdf
        return gdf

    def check(self, times_s: Iterable[int], what: str = "") -> None:
        """Refuse, before anything is written, acquisitions outside every campaign or of a campaign
        without a layer; the message names each campaign once with its first acquisition day."""
        first: dict[int, int] = {}
        for t in times_s:
            c = self.campaign_of(int(t))
            if c not in first or t < first[c]:
                first[c] = int(t)
        problems = []
        for c in sorted(first):
            try:
                self.layer(c)
            except CampaignLayerError as e:
                day = datetime.fromtimestamp(first[c], UTC).date().isoformat()
                problems.append(f"{e} (first acquisition {day}{' ' + what if what else ''})")
        if problems:
            raise CampaignLayerError("; ".join(problems))


REDRAWN_SHARE = 0.02
"""A parcel whose outline differs from the previous campaign's by more than this share of their union
(symmetric difference / union) counts as redrawn. Re-exports of an unchanged LPIS layer move vertices
by centimetres (far below it); a redrawn field boundary moves by metres: on a 1 ha square parcel a
2 m shift of one side is 2 %, about two 10 m pixels of the zonal mean."""


def unchanged_parcels(old: Any, new: Any, redrawn_share: float = REDRAWN_SHARE) -> set[str]:
    """The parcel ids of ``new`` that continue ``old``: declared in both with the same land use and an
    outline that moved by at most ``redrawn_share`` of the pair's union (compared in ``new``'s UTM zone).

    ``old``/``new``: GeoDataFrames with ``parcel_id``, ``land_use`` and a CRS (campaign layers). A
    parcel new in ``new``, redrawn, or declared with another use is not in the answer: a monitor
    starts its state afresh (docs/streaming.md "Campaigns").
    """
    import shapely

    if old is new:
        return {str(p) for p in new["parcel_id"]}
    utm = new.estimate_utm_crs() if new.crs is not None and new.crs.is_geographic else new.crs
    a = old.to_crs(utm).assign(parcel_id=old["parcel_id"].astype(str)).set_index("parcel_id")
    b = new.to_crs(utm).assign(parcel_id=new["parcel_id"].astype(str)).set_index("parcel_id")
    shared = a.index.intersection(b.index)
    if "land_use" in a.columns and "land_use" in b.columns:
        same_use = (a.loc[shared, "land_use"].astype(str).str.lower().to_numpy()
                    == b.loc[shared, "land_use"].astype(str).str.lower().to_numpy())
        shared = shared[same_use]
    ga, gb = a.geometry.loc[shared].to_numpy(), b.geometry.loc[shared].to_numpy()
    union = shapely.area(shapely.union(ga, gb))
    moved = shapely.area(shapely.symmetric_difference(ga, gb))
    with np.errstate(invalid="ignore", divide="ignore"):
        keep = moved <= redrawn_share * union
    return {str(p) for p in shared[keep]}
