"""``MonitorConfig``: the plain values the monitor runs with (the command line builds it from settings)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from contracts import storage
from contracts.campaigns import CALENDAR_YEAR, CampaignCalendar
from ingest.events import ACQUISITIONS_TOPIC

ALERTS_TOPIC = "sits.alerts"
DEAD_LETTER_TOPIC = f"{ACQUISITIONS_TOPIC}.dlq"
DETECTORS = ("mowing", "harvest", "solar")


@dataclass(frozen=True)
class MonitorConfig:
    data_dir: Path
    series_dir: Path
    parcels: Path | None = None  # parcel layer (parcel_id, land_use[, tile_id]); None: every parcel is "unknown" use
    store_url: str = ""  # alert store; empty: <data_dir>/alerts.sqlite
    group_id: str = "sitsmon-monitor"
    topic: str = ACQUISITIONS_TOPIC
    alerts_topic: str = ALERTS_TOPIC
    dead_letter_topic: str = DEAD_LETTER_TOPIC
    detectors: tuple[str, ...] = DETECTORS
    checkpoint: Path | None = None  # encoder checkpoint; None: the packaged default
    device: str = "cpu"
    checkpoint_days: float = 10.0  # a rewind point every this many days of acquisition time
    retention_days: float = 120.0  # rewind points kept this far behind the newest acquisition
    save_every: int = 10  # write the full state every N acquisitions (the applied log is written every one)
    max_records: int = 50  # events per poll
    lights_every: int = 0  # traffic lights every N acquisitions (0: at the end of each drained batch)
    webhook_url: str = ""
    webhook_secret: str = ""
    metrics_port: int | None = None  # Prometheus text on this port (None: off)
    watch_areas: tuple[Path, ...] = ()  # GeoJSON areas monitored per pixel from the cube (monitor/watch_areas.py)
    cubes_dir: Path | str | None = None  # tile cubes (a folder or s3:// URL); None: <data_dir>/cubes
    health_stale_s: float = 120.0  # a worker of another host without a heartbeat this long reads "stale"
    health_prune_s: float = 86400.0  # health files of workers no longer running are deleted after this long
    states_url: str = ""  # encoder/detector states and rewind points, e.g. s3://bucket/prefix; empty: state_root
    campaign_layers: Path | None = None  # layers imported per campaign (<YEAR>/parcels.parquet); None: <data_dir>/parcels
    calendar: CampaignCalendar = CALENDAR_YEAR  # the campaign of each acquisition (contracts/campaigns.py)

    @property
    def parcels_root(self) -> Path:
        return Path(self.campaign_layers) if self.campaign_layers else self.data_dir / "parcels"

    @property
    def cubes_root(self) -> Path | str:
        return storage.location(self.cubes_dir) if self.cubes_dir else self.data_dir / "cubes"

    def cube_of(self, tile_id: str) -> Path | str:
        """The tile's cube: a folder, or an ``s3://`` URL (contracts/storage.py)."""
        return storage.join(self.cubes_root, f"{tile_id}.zarr")

    @property
    def state_root(self) -> Path:
        return self.data_dir / "monitor"

    @property
    def states_root(self) -> Path | str:
        """Where the tile states live: :attr:`state_root` or object storage (health files and locks stay local)."""
        return self.states_url or self.state_root

    @property
    def alert_store_url(self) -> str:
        return self.store_url or str(self.data_dir / "alerts.sqlite")

    @property
    def lights_path(self) -> Path:
        return self.data_dir / "traffic-lights.csv"
