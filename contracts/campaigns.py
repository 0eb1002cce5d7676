"""The campaign calendar: which campaign (claim year) an acquisition belongs to.

Declared parcels change every campaign (ids, outlines, land use), so every parcel-series row, every
monitor state and every traffic light is keyed by its campaign (docs/data-contracts.md "Campaigns").
The campaign of an acquisition is decided by its date alone, so ingest (which reduces it with that
campaign's parcel outlines), the monitor and the dashboard agree without talking to one another:

- default: the calendar year (an acquisition of 2025-12-31 belongs to campaign 2025, one of
  2026-01-01 to 2026), what the EU IACS claim year is in most member states;
- configured windows (``[[campaigns.windows]] campaign = 2026, start = "2025-10-01", end = "2026-09-30"``,
  both days inclusive, UTC) for agencies whose campaign starts with the autumn sowing. Windows may
  not overlap; a date in no window belongs to no campaign, and asking for it is an error
  (:class:`CampaignError`), never a guess.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np

from contracts.errors import ContractError

__all__ = ["CALENDAR_YEAR", "CampaignCalendar", "CampaignError", "CampaignWindow"]

DAY_S = 86400


class CampaignError(ContractError):
    """An acquisition outside every configured campaign, a campaign without its parcel layer, or a
    malformed calendar."""


@dataclass(frozen=True, slots=True)
class CampaignWindow:
    """Campaign ``campaign`` runs from ``start`` to ``end``, both UTC days inclusive."""

    campaign: int
    start: date
    end: date

    def __post_init__(self) -> None:
        if not 1900 <= int(self.campaign) <= 2200:
            raise CampaignError(f"campaign must be a year, got {self.campaign!r}")
        if self.end < self.start:
            raise CampaignError(f"campaign {self.campaign}: end {self.end} is before start {self.start}")

    def contains(self, day: date) -> bool:
        return self.start <= day <= self.end

    def describe(self) -> str:
        return f"{self.campaign} ({self.start.isoformat()}..{self.end.isoformat()})"


@dataclass(frozen=True, slots=True)
class CampaignCalendar:
    """The configured campaign windows; none: every calendar year is its own campaign."""

    windows: tuple[CampaignWindow, ...] = ()

    def __post_init__(self) -> None:
        ordered = sorted(self.windows, key=lambda w: w.start)
        seen: set[int] = set()
        for w in ordered:
            if w.campaign in seen:
                raise CampaignError(f"campaign {w.campaign} is configured twice")
            seen.add(w.campaign)
        for a, b in zip(ordered, ordered[1:], strict=False):
            if b.start <= a.end:
                raise CampaignError(f"campaign windows overlap: {a.describe()} and {b.describe()}")
        object.__setattr__(self, "windows", tuple(ordered))

    @classmethod
    def of(cls, windows: Iterable[tuple[int, date | str, date | str]] | None = None) -> CampaignCalendar:
        """From ``(campaign, start, end)`` triples (ISO dates or dates); None or empty: calendar years."""
        out = []
        for campaign, start, end in windows or ():
            try:
                s = start if isinstance(start, date) else date.fromisoformat(str(start))
                e = end if isinstance(end, date) else date.fromisoformat(str(end))
            except ValueError as err:
                raise CampaignError(f"campaign {campaign}: dates must be YYYY-MM-DD ({err})") from err
            out.append(CampaignWindow(int(campaign), s, e))
        return cls(tuple(out))

    def campaign_of(self, time_s: int | float) -> int:
        """The campaign of an acquisition at ``time_s`` (seconds since 1970, UTC)."""
        day = datetime.fromtimestamp(int(time_s), UTC).date()
        if not self.windows:
            return day.year
        for w in self.windows:
            if w.contains(day):
                return w.campaign
        raise CampaignError(f"acquisition of {day.isoformat()} lies in no configured campaign "
                            f"(configured: {', '.join(w.describe() for w in self.windows)}); "
                            "add its campaign to [[campaigns.windows]]")

    def campaigns_of(self, time_s: np.ndarray, strict: bool = True) -> np.ndarray:
        """:meth:`campaign_of` of many times (int64 seconds) as int64; a date outside every configured
        campaign raises, or with ``strict=False`` is -1."""
        t = np.asarray(time_s, dtype=np.int64)
        if not self.windows:
            return t.astype("datetime64[s]").astype("datetime64[Y]").astype(np.int64) + 1970
        days = t // DAY_S
        out = np.full(len(t), -1, dtype=np.int64)
        for w in self.windows:
            lo = (w.start - date(1970, 1, 1)).days
            hi = (w.end - date(1970, 1, 1)).days
            out[(days >= lo) & (days <= hi)] = w.campaign
        if strict and (out < 0).any():
            self.campaign_of(int(t[np.flatnonzero(out < 0)[0]]))  # raises with the date and the windows
        return out

    def window(self, campaign: int) -> tuple[date, date]:
        """First and last day of ``campaign``."""
        if not self.windows:
            return date(int(campaign), 1, 1), date(int(campaign), 12, 31)
        for w in self.windows:
            if w.campaign == int(campaign):
                return w.start, w.end
        raise CampaignError(f"campaign {campaign} is not configured "
                            f"(configured: {', '.join(w.describe() for w in self.windows)})")

    def bounds_s(self, campaign: int) -> tuple[int, int]:
        """``[start, end)`` of ``campaign`` in seconds since 1970."""
        s, e = self.window(campaign)
        epoch = date(1970, 1, 1)
        return (s - epoch).days * DAY_S, ((e - epoch).days + 1) * DAY_S


CALENDAR_YEAR = CampaignCalendar()
