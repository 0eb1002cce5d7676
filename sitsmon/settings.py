"""Settings: one TOML file validated by pydantic, every value overridable by ``SITSMON_*``.

Nested values use a double underscore: ``SITSMON_BUS__BACKEND=kafka`` overrides ``[bus] backend``.
The TOML file is named by ``--config`` or ``SITSMON_CONFIG``; without one, defaults apply.
Library code never reads settings: the command line reads them and passes plain values down.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

CONFIG_ENV = "SITSMON_CONFIG"


# The project's shared reference data sits beside the repository (``../shared/data``).
_REPO_SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


class PathsSettings(BaseModel):
    data_dir: Path = Field(Path("sitsmon-data"), description="root of everything sitsmon writes")
    reference_data: Path = Field(
        _REPO_SHARED_DATA, description="real reference datasets (e.g. grassland-sk-dev) for `sitsmon eval`/`train`"
    )

    def under(self, name: str) -> Path:
        return self.data_dir / name


class SynthSettings(BaseModel):
    seed: int = 42
    tiles: int = 1
    tile_size_px: int = Field(1024, description="pixels per side of a synthetic tile at 10 m")
    parcels_per_tile: int = 2500
    start: str = "2024-03-01"
    end: str = "2024-10-31"


class StacSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8100
    urls: list[str] = Field(default_factory=list, description="STAC API URLs to poll")


class IngestSettings(BaseModel):
    tiles: list[str] = Field(default_factory=list, description="MGRS tile ids to watch (empty: all)")
    collections: list[str] = Field(default_factory=lambda: ["sentinel-2-l2a", "sentinel-1-grd"])
    poll_interval_s: float = 600.0
    lookback_days: float = 10.0
    max_retries: int = 5
    requests_per_second: float = 5.0
    ledger_url: str = Field("", description="sqlite path or postgresql:// URL; empty: under data_dir")
    aois: list[Path] = Field(default_factory=list, description="GeoJSON files of areas of interest (EPSG:4326)")
    since: str = Field("", description="first search start where no watermark exists (ISO date)")
    parcels: str = Field("", description="parcel layer (GeoParquet, GeoPackage, GeoJSON) for the parcel series")
    grids: str = Field("", description="archive folder or archive.json with the tile grids; empty: from items")
    cubes_dir: Path | None = Field(None, description="tile cubes; empty: <data_dir>/cubes")
    series_dir: Path | None = Field(None, description="parcel series; empty: <data_dir>/series")
    chunk: int = Field(1024, gt=0, description="cube chunk size in pixels")
    workers: int = Field(2, gt=0, description="tiles ingested in parallel")
    sentinelhub: bool = Field(False, description="also search the Sentinel Hub catalogue")
    sentinelhub_url: str = "https://services.sentinel-hub.com"
    sentinelhub_asset_template: str = Field("", description="href template of Sentinel Hub band COGs")


class BusSettings(BaseModel):
    backend: Literal["memory", "kafka"] = "memory"
    bootstrap_servers: str = "127.0.0.1:29092"
    api_version: str = Field("", description="Kafka API version, e.g. '0.9'; empty: auto-detect")
    group_id: str = "sitsmon-monitor"
    path: Path | None = Field(None, description="in-process bus file (memory backend); empty: <data_dir>/bus.sqlite")


class EncoderSettings(BaseModel):
    checkpoint: Path | None = Field(None, description="model checkpoint; empty: the packaged default")
    device: Literal["auto", "cpu", "cuda"] = "auto"


class AlertsSettings(BaseModel):
    store_url: str = Field("", description="sqlite path or postgresql:// URL; empty: under data_dir")
    webhook_url: str = ""
    webhook_secret: SecretStr = SecretStr("")


class DashboardSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    users_db: Path | None = Field(None, description="users and hashed tokens (SQLite); empty: <data_dir>/dashboard.sqlite")
    with_model: bool = Field(True, description="compute the encoder's expected NDVI on the parcel chart")
    stream_poll_s: float = Field(1.0, gt=0, description="how often the live alert stream polls the store")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SITSMON_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    paths: PathsSettings = PathsSettings()
    synth: SynthSettings = SynthSettings()
    stac: StacSettings = StacSettings()
    ingest: IngestSettings = IngestSettings()
    bus: BusSettings = BusSettings()
    encoder: EncoderSettings = EncoderSettings()
    alerts: AlertsSettings = AlertsSettings()
    dashboard: DashboardSettings = DashboardSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Precedence, highest first: explicit arguments, SITSMON_* variables, the TOML file.
        toml_file = os.environ.get(CONFIG_ENV)
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)


class SettingsError(ValueError):
    """The configuration file is missing or invalid."""


@lru_cache(maxsize=8)
def get_settings(config: str | None = None) -> Settings:
    """Settings from ``config`` (or ``$SITSMON_CONFIG``) and the environment, validated once."""
    from pydantic import ValidationError

    path = config or os.environ.get(CONFIG_ENV)
    if path and not Path(path).is_file():
        raise SettingsError(f"configuration file not found: {path}")
    previous = os.environ.get(CONFIG_ENV)
    try:
        if path:
            os.environ[CONFIG_ENV] = str(path)
        return Settings()
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SettingsError(f"invalid setting {where}: {first['msg']} (in {path or 'environment'})") from e
    finally:
        if previous is None:
            os.environ.pop(CONFIG_ENV, None)
        else:
            os.environ[CONFIG_ENV] = previous
