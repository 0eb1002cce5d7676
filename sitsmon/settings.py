"""Settings: one TOML file validated by pydantic, every value overridable by ``SITSMON_*``.

Nested values use a double underscore: ``SITSMON_BUS__BACKEND=kafka`` overrides ``[bus] backend``.
The TOML file is named by ``--config`` or ``SITSMON_CONFIG``; without one, defaults apply. The file
reaches pydantic-settings as a settings source (:class:`CheckedTomlSource`), never through the
environment. Library code never reads settings: the command line reads them and passes plain values down.

Typos are errors, not defaults: an unknown section or key in the file and an unknown ``SITSMON_*``
variable are refused with the nearest valid name (difflib). The valid names are derived from the
model (:func:`setting_names`), so a section or field added to :class:`Settings` is known at once;
``SITSMON_*`` variables that are not settings (test harness and debugging switches) are listed in
:data:`OTHER_VARIABLES`.
"""

from __future__ import annotations

import difflib
import os
import tomllib
import typing
from collections.abc import Mapping
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

CONFIG_ENV = "SITSMON_CONFIG"
ENV_PREFIX = "SITSMON_"
ENV_DELIMITER = "__"

OTHER_VARIABLES: frozenset[str] = frozenset({
    CONFIG_ENV,
    "SITSMON_SERVICES_DIR",  # tests/services.py: where the test services (Kafka, PostgreSQL) live
    "SITSMON_NO_SKIPS",  # tests/no_skips.py: a skipped test fails the run
    "SITSMON_SITS_REFERENCE",  # sits: force the plain reference path instead of the fused kernels
    "SITSMON_MONITOR_KILL_AT",  # monitor/crash.py: kill points of the crash tests
    "SITSMON_TEST_ARTEFACTS",  # tests/dashboards: where browser screenshots go
    # scripts/setup.sh: which torch build, from where, into which venv (README "torch: CPU by default")
    "SITSMON_TORCH", "SITSMON_TORCH_CUDA", "SITSMON_TORCH_INDEX", "SITSMON_TORCH_CPU_INDEX",
    "SITSMON_TORCH_PROBE_S", "SITSMON_TORCH_STRICT", "SITSMON_VENV",
})
"""``SITSMON_*`` environment variables that are not settings (add yours here)."""

Port = Annotated[int, Field(ge=1, le=65535, description="TCP port, 1-65535")]
PortOrAny = Annotated[int, Field(ge=0, le=65535, description="TCP port, 1-65535; 0: any free port")]


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
    port: int = Field(8100, ge=0, le=65534,
                      description="STAC API port (0: any free port); the COG server takes port + 1")
    urls: list[str] = Field(default_factory=list, description="STAC API URLs to poll")


class IngestSourceSettings(BaseModel):
    """One ``[[ingest.sources]]`` entry: a STAC API in its catalogue dialect (docs/catalogues.md)."""

    model_config = ConfigDict(extra="forbid")
    url: str = Field(description="STAC API root URL")
    dialect: Literal["synthetic", "earth-search", "planetary-computer", "cdse"] = "synthetic"
    name: str = Field("", description="ledger and watermark name; empty: the URL")
    collections: list[str] = Field(default_factory=list, description="collections here; empty: [ingest] collections")
    calibration: dict[str, Literal["gamma0", "sigma0"]] = Field(
        default_factory=dict, description="S1 collections calibrated upstream (lifts the uncalibrated-GRD refusal)")
    token_env: str = Field("", description="environment variable holding the credential (planetary-computer: "
                                           "subscription key for the SAS endpoint; else an HTTP bearer token)")
    sas_url: str = Field("", description="planetary-computer SAS token endpoint; empty: the public one")
    s3_endpoint: str = Field("", description="S3 endpoint for s3:// asset hrefs (credentials: AWS_ACCESS_KEY_ID/"
                                             "AWS_SECRET_ACCESS_KEY); empty: cdse's eodata.dataspace.copernicus.eu")


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
    sources: list[IngestSourceSettings] = Field(
        default_factory=list, description="[[ingest.sources]]: STAC APIs with their dialects (besides [stac] urls)")


class BusSettings(BaseModel):
    backend: Literal["memory", "kafka"] = "memory"
    bootstrap_servers: str = Field("127.0.0.1:29092", description="host:port[,host:port...] of the Kafka brokers")
    api_version: str = Field("", description="Kafka API version, e.g. '0.9'; empty: auto-detect")
    group_id: str = "sitsmon-monitor"
    path: Path | None = Field(None, description="in-process bus file (memory backend); empty: <data_dir>/bus.sqlite")
    session_timeout_s: float = Field(
        10.0, ge=1.0, description="how long the group waits for a silent worker (a killed process) before its "
                                  "partitions go to the others; Kafka brokers accept 6-30 s by default "
                                  "(group.min/max.session.timeout.ms)")
    max_poll_interval_s: float = Field(
        300.0, gt=0, description="a worker that has not polled for this long (one batch of [monitor] max_records "
                                 "folds) leaves the group")

    @field_validator("bootstrap_servers")
    @classmethod
    def _ports_of_servers(cls, value: str) -> str:
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
                raise ValueError(f"each server must be host:port with a port in 1-65535, got {server.strip()!r}")
        return value


class EncoderSettings(BaseModel):
    checkpoint: Path | None = Field(None, description="model checkpoint; empty: the packaged default")
    device: Literal["auto", "cpu", "cuda"] = "auto"


class MonitorSettings(BaseModel):
    topic: str = Field("sits.acquisitions", description="the acquisition events' topic")
    alerts_topic: str = Field("sits.alerts", description="the topic the monitor publishes its alerts to")
    detectors: list[str] = Field(default_factory=lambda: ["mowing", "harvest", "solar"])
    parcels: str = Field("", description="parcel layer of the watched tiles; empty: [ingest] parcels")
    checkpoint_days: float = Field(10.0, gt=0, description="a rewind point every N days of acquisition time")
    retention_days: float = Field(120.0, gt=0, description="how far back a late acquisition can be folded in")
    save_every: int = Field(10, gt=0, description="write the whole state every N acquisitions (the applied log: every one)")
    max_records: int = Field(50, gt=0, description="acquisition events per poll")
    metrics_port: int | None = Field(None, ge=0, le=65535, description="Prometheus metrics port (0: any free)")
    watch_areas: list[Path] = Field(default_factory=list, description="GeoJSON areas monitored per pixel from the cube")
    health_stale_s: float = Field(120.0, gt=0, description="a worker of another host without a heartbeat this long is stale")
    health_prune_s: float = Field(86400.0, gt=0, description="delete health files of workers no longer running after this long")


class AlertsSettings(BaseModel):
    store_url: str = Field("", description="sqlite path or postgresql:// URL; empty: under data_dir")
    webhook_url: str = ""
    webhook_secret: SecretStr = SecretStr("")


class DashboardSettings(BaseModel):
    host: str = "127.0.0.1"
    port: Port = 8000
    users_db: Path | None = Field(None, description="users and hashed tokens (SQLite); empty: <data_dir>/dashboard.sqlite")
    with_model: bool = Field(True, description="compute the encoder's expected NDVI on the parcel chart")
    stream_poll_s: float = Field(1.0, gt=0, description="how often the live alert stream polls the store")
    workers: int = Field(1, ge=1, le=64, description="uvicorn worker processes of `sitsmon serve` (one core each)")


class DaskSettings(BaseModel):
    scheduler: str = Field("", description="`monitor replay` and `ingest backfill` on Dask: empty: this process; 'local': a LocalCluster; "
                                           "else a scheduler address (tcp://host:8786)")
    workers: int = Field(0, ge=0, description="LocalCluster worker processes (0: one per core)")
    retries: int = Field(2, ge=0, description="re-runs of a replay task that raised (a lost worker's tasks are rescheduled)")
    block_days: float = Field(30.0, ge=0, description="`ingest backfill` on Dask: days of acquisitions per task of a "
                                                       "tile (0: one task per tile)")


class StorageSettings(BaseModel):
    """Object storage for the data stores (docs/storage.md); credentials only from the environment
    (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` or another botocore source), never here."""

    endpoint_url: str = Field("", description="S3-compatible endpoint, e.g. http://minio:9000; empty: AWS "
                                              "(or AWS_ENDPOINT_URL)")
    region: str = Field("", description="bucket region; empty: botocore's default")
    anon: bool = Field(False, description="unsigned requests (a public bucket, read only)")
    cubes_url: str = Field("", description="tile cubes on object storage (s3://bucket/prefix); empty: [ingest] cubes_dir")
    series_url: str = Field("", description="parcel series on object storage; empty: [ingest] series_dir")
    states_url: str = Field("", description="monitor states and rewind points on object storage; "
                                            "empty: <data_dir>/monitor")

    @field_validator("cubes_url", "series_url", "states_url")
    @classmethod
    def _s3_url(cls, value: str) -> str:
        if value and not (value.startswith("s3://") and len(value) > len("s3://") and not value[5:].startswith("/")):
            raise ValueError(f"must be s3://bucket[/prefix], got {value!r}")
        return value.rstrip("/")


class CampaignWindowSettings(BaseModel):
    """One ``[[campaigns.windows]]`` entry: campaign ``campaign`` runs from ``start`` to ``end`` (UTC days, inclusive)."""

    model_config = ConfigDict(extra="forbid")
    campaign: int = Field(ge=1900, le=2200, description="the campaign (claim year)")
    start: date = Field(description="first day (YYYY-MM-DD)")
    end: date = Field(description="last day (YYYY-MM-DD, inclusive)")


class CampaignsSettings(BaseModel):
    """The campaign calendar (contracts/campaigns.py): which campaign's parcel layer reduces an acquisition,
    and which campaign a series row, a monitor state and a traffic light belong to."""

    windows: list[CampaignWindowSettings] = Field(
        default_factory=list, description="[[campaigns.windows]]: campaign, start, end; empty: each calendar year "
                                          "is a campaign")

    @model_validator(mode="after")
    def _calendar(self) -> CampaignsSettings:
        self.calendar()  # overlapping or repeated windows are refused when the file is read
        return self

    def calendar(self):
        from contracts.campaigns import CampaignCalendar

        return CampaignCalendar.of((w.campaign, w.start, w.end) for w in self.windows)


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
    monitor: MonitorSettings = MonitorSettings()
    alerts: AlertsSettings = AlertsSettings()
    dashboard: DashboardSettings = DashboardSettings()
    dask: DaskSettings = DaskSettings()
    storage: StorageSettings = StorageSettings()
    campaigns: CampaignsSettings = CampaignsSettings()

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
        check_environment(os.environ, settings_cls)
        toml_file = settings_cls.model_config.get("toml_file") or os.environ.get(CONFIG_ENV)
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file:
            sources.append(CheckedTomlSource(settings_cls, toml_file=Path(toml_file)))
        return tuple(sources)

    @classmethod
    def from_file(cls, toml_file: str | Path | None) -> Settings:
        """Settings with ``toml_file`` as their TOML source (None: ``$SITSMON_CONFIG``, else defaults).

        The file is handed to pydantic-settings the way it documents: as the ``toml_file`` of the
        model's configuration, here of a subclass made for this one load.
        """
        if toml_file is None:
            return cls()
        bound = type(cls.__name__, (cls,), {
            "__module__": cls.__module__, "__qualname__": cls.__qualname__,
            "model_config": SettingsConfigDict(**{**cls.model_config, "toml_file": Path(toml_file)}),
        })
        return bound()


class SettingsError(ValueError):
    """The configuration file is missing or invalid."""


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model a field holds (also through ``X | None``), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    models = [a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
    return models[0] if len(models) == 1 else None


def setting_names(model: type[BaseModel] = None, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:  # type: ignore[assignment]
    """Every settable path of the model, sections included (``("bus",)``, ``("bus", "backend")``)."""
    model = model or Settings
    out: list[tuple[str, ...]] = []
    for name, field in model.model_fields.items():
        path = (*prefix, name)
        out.append(path)
        sub = _model_of(field.annotation)
        if sub is not None:
            out.extend(setting_names(sub, path))
    return out


def _nearest(word: str, options: list[str]) -> str:
    match = difflib.get_close_matches(word, options, n=1, cutoff=0.5)
    return f"; did you mean {match[0]}?" if match else f" (valid: {', '.join(sorted(options)[:30])})"


def check_keys(data: Mapping[str, Any], where: str, model: type[BaseModel] = None,  # type: ignore[assignment]
               prefix: tuple[str, ...] = ()) -> None:
    """Raise SettingsError for the first key of ``data`` (a parsed TOML document) that the model does
    not have, naming ``where`` and the nearest valid key."""
    model = model or Settings
    for key, value in data.items():
        field = model.model_fields.get(key)
        dotted = ".".join((*prefix, key))
        if field is None:
            section = f"[{'.'.join(prefix)}] " if prefix else ""
            kind = "key" if prefix else "section"
            raise SettingsError(
                f"unknown setting {kind} {section}{key} in {where}{_nearest(key, list(model.model_fields))}"
            )
        sub = _model_of(field.annotation)
        if sub is not None and isinstance(value, Mapping):
            check_keys(value, where, sub, (*prefix, key))
        elif sub is not None and typing.get_origin(field.annotation) is list and isinstance(value, list):
            for entry in value:  # an array of tables ([[ingest.sources]])
                if not isinstance(entry, Mapping):
                    raise SettingsError(f"setting {dotted} in {where} must be an array of tables ([[{dotted}]])")
                check_keys(entry, where, sub, (*prefix, key))
        elif sub is not None:
            raise SettingsError(f"setting {dotted} in {where} must be a table ([{dotted}]), got {value!r}"[:300])


def check_environment(environ: Mapping[str, str], model: type[BaseModel] = None) -> None:  # type: ignore[assignment]
    """Raise SettingsError for the first ``SITSMON_*`` variable that is neither a setting nor listed
    in :data:`OTHER_VARIABLES`, with the nearest valid name."""
    valid = {ENV_PREFIX + ENV_DELIMITER.join(p).upper() for p in setting_names(model or Settings)} | OTHER_VARIABLES
    for name in sorted(environ):
        upper = name.upper()
        if upper.startswith(ENV_PREFIX) and upper not in valid:
            raise SettingsError(f"unknown environment variable {name}{_nearest(upper, sorted(valid))}")


class CheckedTomlSource(TomlConfigSettingsSource):
    """The TOML file as a settings source: a malformed file or an unknown key is a SettingsError
    naming the file (and the nearest valid key)."""

    def __init__(self, settings_cls: type[BaseSettings], toml_file: Path) -> None:
        if toml_file.is_dir():  # the base class would skip anything that is not a file, silently
            raise SettingsError(f"configuration file {toml_file} is a directory, expected a file")
        if not toml_file.exists():
            raise SettingsError(f"configuration file not found: {toml_file}")
        self._model = settings_cls  # the base class reads the file inside __init__: set before it
        super().__init__(settings_cls, toml_file=toml_file)

    def _read_file(self, file_path: Path) -> dict[str, Any]:
        try:
            with open(file_path, "rb") as f:
                data = tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            raise SettingsError(f"malformed TOML in configuration file {file_path}: {e}") from e
        except OSError as e:
            raise SettingsError(f"cannot read configuration file {file_path}: {e.strerror or e}") from e
        check_keys(data, str(file_path), self._model)
        return data


@lru_cache(maxsize=8)
def get_settings(config: str | None = None) -> Settings:
    """Settings from ``config`` (or ``$SITSMON_CONFIG``) and the environment, validated once."""
    from pydantic import ValidationError

    path = config or os.environ.get(CONFIG_ENV)
    if path and not Path(path).exists():
        raise SettingsError(f"configuration file not found: {path}")
    try:
        return Settings.from_file(path)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SettingsError(f"invalid setting {where}: {first['msg']} (in {path or 'environment'})") from e
