"""``create_app(config)``: the API and the UI of one data dir; errors of the stores map to HTTP here."""

from __future__ import annotations

import json
import logging
import os
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from alerts.errors import AlertNotFoundError, TransitionError
from dashboards.config import DashboardConfig
from dashboards.errors import BadRequestError, ConflictError, NotFoundError, UnavailableError
from dashboards.routes import alerts, health, lights, me, ops, parcels, tiles
from dashboards.services import Services

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
MAX_BODY_BYTES = 1_000_000
# Reachable without a token: they hold no data (the UI asks for a token before any API call).
# How `serve(workers=N)` hands the config to its worker processes (not a SITSMON_ setting).
CONFIG_ENV = "DASHBOARDS_APP_CONFIG"
PUBLIC_PATHS = frozenset({"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/", "/static"})


class RefuseOversized:
    """Refuses a request whose declared body is over :data:`MAX_BODY_BYTES` (413) before it is routed:
    bodies are small JSON (a status note, ids, a polygon).

    A plain ASGI middleware, not ``@app.middleware("http")``: Starlette's BaseHTTPMiddleware behind that
    decorator passes every answer through a memory stream and an extra task, which cost a five-year
    series answer (160 kB) about a millisecond of CPU (docs/dashboard-performance.md)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
            if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
                refused = JSONResponse({"detail": f"request body over {MAX_BODY_BYTES} bytes"}, status_code=413)
                await refused(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(config: DashboardConfig, *, with_model: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.services = Services.open(config, with_model=with_model)
        logger.info("dashboard serving %s", config.data_dir)
        try:
            yield
        finally:
            app.state.services.close()

    app = FastAPI(
        title="sitsmon dashboard",
        summary="Parcels, series, chips, alerts and traffic lights of a sitsmon data dir",
        version="0.1.0",
        lifespan=lifespan,
    )
    for module in (health, me, tiles, parcels, alerts, lights, ops):
        app.include_router(module.router)

    app.add_middleware(RefuseOversized)

    def _error(status: int):
        async def handler(request: Request, exc: Exception) -> JSONResponse:
            return JSONResponse({"detail": str(exc) or type(exc).__name__}, status_code=status)
        return handler

    app.add_exception_handler(NotFoundError, _error(404))
    app.add_exception_handler(AlertNotFoundError, _error(404))
    app.add_exception_handler(TransitionError, _error(409))
    app.add_exception_handler(ConflictError, _error(409))
    app.add_exception_handler(BadRequestError, _error(422))
    app.add_exception_handler(UnavailableError, _error(503))

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def config_to_env(config: DashboardConfig, *, with_model: bool) -> str:
    fields = {name: getattr(config, name) for name in config.__dataclass_fields__}
    return json.dumps({"config": {k: str(v) if isinstance(v, Path) else v for k, v in fields.items()},
                       "with_model": with_model})


def app_from_env() -> FastAPI:
    """The app of a uvicorn worker process, from the config :func:`config_to_env` wrote."""
    raw = os.environ.get(CONFIG_ENV)
    if not raw:
        raise RuntimeError(f"{CONFIG_ENV} is not set (start the workers with dashboards.serve)")
    spec = json.loads(raw)
    paths = {"data_dir", "series_dir", "cubes_dir", "parcels_path", "users_db", "traffic_lights", "monitor_health"}
    config = DashboardConfig(**{k: Path(v) if k in paths and v is not None else v for k, v in spec["config"].items()})
    return create_app(config, with_model=spec["with_model"])
