"""DashboardConfig: where the stores lie and the service's limits, as plain values.

Built by ``sitsmon serve`` (or ``sitsmon demo``) from the settings; the app never reads the
environment itself. :meth:`DashboardConfig.from_data_dir` lays the paths out the way ``sitsmon demo``
and ``sitsmon ingest`` write them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class DashboardConfig:
    data_dir: Path
    alerts_url: str
    series_dir: Path
    cubes_dir: Path
    parcels_path: Path | None
    ledger_url: str
    users_db: Path
    traffic_lights: Path
    monitor_health: Path
    max_page_size: int = 500
    default_page_size: int = 50
    stream_poll_s: float = 1.0
    chip_max_px: int = 512
    # ``[[campaigns.windows]]`` as (campaign, "YYYY-MM-DD", "YYYY-MM-DD") triples, plain values so the
    # config travels to uvicorn workers as JSON; empty: each calendar year is a campaign
    campaign_windows: tuple = ()
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= self.default_page_size <= self.max_page_size:
            raise ValueError(f"default_page_size {self.default_page_size} must lie in 1..{self.max_page_size}")
        if self.stream_poll_s <= 0:
            raise ValueError("stream_poll_s must be > 0")
        object.__setattr__(self, "campaign_windows", tuple(tuple(w) for w in self.campaign_windows))
        self.calendar()  # overlapping or malformed windows are refused here, not at the first request

    def calendar(self):
        """The campaign calendar (contracts/campaigns.py): which days a campaign's alerts fall on."""
        from contracts.campaigns import CampaignCalendar

        return CampaignCalendar.of(self.campaign_windows)

    @classmethod
    def from_data_dir(
        cls,
        data_dir: str | Path,
        *,
        alerts_url: str = "",
        series_dir: str | Path | None = None,
        cubes_dir: str | Path | None = None,
        parcels: str | Path | None = None,
        ledger_url: str = "",
        users_db: str | Path | None = None,
        **limits,
    ) -> DashboardConfig:
        root = Path(data_dir)
        if parcels:
            parcels_path: Path | None = Path(parcels)
        else:
            demo = root / "archive" / "parcels" / "parcels.parquet"
            parcels_path = demo if demo.exists() else None
        return cls(
            data_dir=root,
            alerts_url=alerts_url or str(root / "alerts.sqlite"),
            series_dir=Path(series_dir) if series_dir else root / "series",
            cubes_dir=Path(cubes_dir) if cubes_dir else root / "cubes",
            parcels_path=parcels_path,
            ledger_url=ledger_url or str(root / "ingest-ledger.sqlite"),
            users_db=Path(users_db) if users_db else root / "dashboard.sqlite",
            traffic_lights=root / "traffic-lights.csv",
            monitor_health=root / "monitor" / "health.json",
            **limits,
        )
