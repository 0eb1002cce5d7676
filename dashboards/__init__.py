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
          with_model: bool = True, log_level: str = "warning", workers: int = 1) -> None:
    """Serve the data dir's dashboard on ``host:port`` until interrupted (Ctrl-C).

    ``workers`` > 1: that many uvicorn worker processes share the port (the routes are CPU-bound
    Python, so one process uses one core); each builds its app from the config passed in
    :data:`dashboards.main.CONFIG_ENV`. Every store they share is on disk (SQLite in WAL mode,
    Parquet, Zarr), so no state lives in one worker only.
    """
    import os

    import uvicorn

    from dashboards.config import DashboardConfig
    from dashboards.main import CONFIG_ENV, config_to_env

    cfg = config or DashboardConfig.from_data_dir(data_dir)
    common = dict(host=host, port=port, log_level=log_level, timeout_graceful_shutdown=2)
    if workers <= 1:
        uvicorn.run(create_app(cfg, with_model=with_model), **common)
        return
    os.environ[CONFIG_ENV] = config_to_env(cfg, with_model=with_model)
    from uvicorn.supervisors import Multiprocess

    from dashboards.tcp_config import TcpConfig

    # the supervisor kills a worker that does not answer its ping within this many seconds; a worker
    # loading a million-parcel layer or fitting the gap filler holds the GIL for longer than the
    # default 5 s on a loaded machine, and was killed and restarted cold, again and again
    config = TcpConfig("dashboards.main:app_from_env", factory=True, workers=workers,
                       timeout_worker_healthcheck=120, **common)
    try:
        Multiprocess(config, sockets=[config.bind_socket()]).run()  # what uvicorn.run does for workers > 1
    except KeyboardInterrupt:
        pass


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
