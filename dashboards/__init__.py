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


DEMO_USERS = (("demo-admin", "admin"), ("demo-controller", "controller"), ("demo-operator", "operator"),
              ("demo-viewer", "viewer"))


def demo_logins(data_dir: str | Path, users_db: str | Path | None = None) -> dict[str, str]:
    """Fresh tokens for the demo's four users (every tile), ``{name: token}``; older demo tokens stop
    working. For `sitsmon demo` to print before :func:`serve`."""
    from dashboards.security import ALL_TILES, UserStore

    store = UserStore(users_db or Path(data_dir) / "dashboard.sqlite")
    try:
        return {name: store.reissue(name, role, [ALL_TILES]) for name, role in DEMO_USERS}
    finally:
        store.close()


__all__ = ["create_app", "demo_logins", "serve", "__version__"]
