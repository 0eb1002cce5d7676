"""The dashboard: a FastAPI service (API and web UI) over what the other stages stored.

``create_app(config)`` builds the app; ``serve(data_dir, host, port)`` runs it with uvicorn until
Ctrl-C (what ``sitsmon serve`` and ``sitsmon demo`` call).
"""

from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"


def create_app(config, **kwargs):
    from dashboards.main import create_app as _create

    return _create(config, **kwargs)


def serve(data_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, *, config=None,
          with_model: bool = True, log_level: str = "warning") -> None:
    """Serve the data dir's dashboard on ``host:port`` until interrupted (Ctrl-C)."""
    import uvicorn

    from dashboards.config import DashboardConfig

    cfg = config or DashboardConfig.from_data_dir(data_dir)
    uvicorn.run(create_app(cfg, with_model=with_model), host=host, port=port, log_level=log_level, timeout_graceful_shutdown=2)


__all__ = ["create_app", "serve", "__version__"]
