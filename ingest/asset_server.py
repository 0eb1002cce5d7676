"""A read-only HTTP server for an archive's files, answering Range requests (COG reads).

Runs as its own process (``python -m ingest.asset_server --root DIR --port N``), as a bucket would:
readers such as GDAL hold the GIL while they fetch, so a server thread in the reader's own process
would deadlock.
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles


def create_app(root: str) -> Starlette:
    return Starlette(routes=[Mount("/", app=StaticFiles(directory=root), name="assets")])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    uvicorn.run(create_app(args.root), host=args.host, port=args.port, log_level="warning", lifespan="off")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
