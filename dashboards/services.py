"""The readers and stores one app instance holds (opened in the lifespan, closed at shutdown)."""

from __future__ import annotations

from dataclasses import dataclass

from alerts.store import AlertStore, open_store
from dashboards.backfill import BackfillJobs
from dashboards.chips import Chips
from dashboards.config import DashboardConfig
from dashboards.parcels import Parcels
from dashboards.security import UserStore
from dashboards.series import SeriesReader


@dataclass
class Services:
    config: DashboardConfig
    users: UserStore
    alerts: AlertStore
    parcels: Parcels
    series: SeriesReader
    chips: Chips
    backfill: BackfillJobs

    @classmethod
    def open(cls, config: DashboardConfig, with_model: bool = True) -> Services:
        users = UserStore(config.users_db)
        try:
            alerts = open_store(config.alerts_url)
            backfill = BackfillJobs(config.users_db, config.data_dir, config.parcels_path)
        except Exception:
            users.close()
            raise
        return cls(
            config=config,
            users=users,
            alerts=alerts,
            parcels=Parcels(config.parcels_path, config.traffic_lights),
            series=SeriesReader(config.series_dir, with_model=with_model),
            chips=Chips(config.cubes_dir, max_px=config.chip_max_px),
            backfill=backfill,
        )

    def close(self) -> None:
        self.backfill.close()
        self.alerts.close()
        self.users.close()
