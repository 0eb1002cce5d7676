"""`sitsmon serve`: the dashboard (API and web UI) over the data dir, until Ctrl-C."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sitsmon.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "serve", help="the dashboard: API and web UI over the data dir",
        description="Serve the dashboard (FastAPI + uvicorn) of [paths] data_dir on [dashboard] host:port. "
                    "Every route but /health and the OpenAPI document needs a token: `sitsmon users add`.",
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="data dir to serve (default: [paths] data_dir)")
    parser.add_argument("--host", default=None, help="bind address (default: [dashboard] host)")
    parser.add_argument("--port", type=int, default=None, help="port (default: [dashboard] port)")
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes, one core each (default: [dashboard] workers)")
    parser.set_defaults(handler=run)


def dashboard_config(settings: Settings, data_dir: Path | None = None):
    """The dashboard's plain config from the settings (also used by `sitsmon demo` and `users`)."""
    from dashboards.config import DashboardConfig

    root = (data_dir or settings.paths.data_dir).resolve()
    return DashboardConfig.from_data_dir(
        root,
        alerts_url=settings.alerts.store_url,
        series_dir=settings.ingest.series_dir,
        cubes_dir=settings.ingest.cubes_dir,
        parcels=settings.ingest.parcels or None,
        ledger_url=settings.ingest.ledger_url,
        users_db=settings.dashboard.users_db,
        stream_poll_s=settings.dashboard.stream_poll_s,
        campaign_windows=tuple((w.campaign, w.start.isoformat(), w.end.isoformat())
                               for w in settings.campaigns.windows),
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    import dashboards

    config = dashboard_config(settings, args.data_dir)
    if not config.data_dir.is_dir():
        raise FileNotFoundError(f"data dir {config.data_dir} does not exist ([paths] data_dir / --data-dir)")
    host = args.host or settings.dashboard.host
    port = settings.dashboard.port if args.port is None else args.port
    print(f"sitsmon dashboard on http://{host}:{port} serving {config.data_dir} (Ctrl-C to stop)",
          file=sys.stderr, flush=True)
    workers = settings.dashboard.workers if args.workers is None else args.workers
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    dashboards.serve(config.data_dir, host, port, config=config, with_model=settings.dashboard.with_model,
                     workers=workers)
    return 0
