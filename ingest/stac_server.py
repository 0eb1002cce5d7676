"""A real STAC API over an archive folder, for the embedded default, the demo and the tests.

Two servers on 127.0.0.1:
- the STAC API: ``rustac serve`` (Rust, in memory) loaded with the archive's Collections and Items;
- the asset server: Starlette ``StaticFiles`` over the archive folder, which answers HTTP Range
  requests, so readers fetch COG headers and tiles as they would from a public bucket.

Item asset hrefs are rewritten to the asset server's URL before loading, so what a client sees is
what Earth Search or Planetary Computer would serve: absolute HTTP hrefs.
"""

from __future__ import annotations

import logging
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from ingest.archive import Archive, ArchiveError, open_archive

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0


class StacServerError(RuntimeError):
    """The local STAC API or asset server could not start."""


@dataclass(frozen=True, slots=True)
class StacEndpoint:
    """Where a running local STAC API answers: ``url`` (STAC API root) and ``assets_url`` (COGs)."""

    url: str
    assets_url: str
    archive: Archive


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def write_catalog_files(archive: Archive, out_dir: Path, href_base: str | None) -> list[Path]:
    """Write the Collections (JSON) and Items (NDJSON, hrefs rewritten) that a server loads."""
    import json

    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for collection in archive.collections():
        path = out_dir / f"{collection['id']}.collection.json"
        path.write_text(json.dumps(collection), encoding="utf-8")
        paths.append(path)
    for cid in archive.collection_ids:
        path = out_dir / f"{cid}.items.ndjson"
        with path.open("w", encoding="utf-8") as f:
            for item in archive.iter_items(cid, href_base):
                f.write(json.dumps(item, separators=(",", ":")) + "\n")
        paths.append(path)
    return paths


def _rustac_executable() -> str:
    beside = Path(sys.executable).parent / "rustac"
    found = str(beside) if beside.exists() else shutil.which("rustac")
    if not found:
        raise StacServerError("the rustac executable is not installed (pip install rustac)")
    return found


def _wait_until_up(url: str, process: subprocess.Popen, what: str, tail: list[str]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            time.sleep(0.2)  # let the drain thread collect the last lines
            raise StacServerError(f"{what} exited with status {process.returncode}: {' | '.join(tail[-3:])}")
        try:
            if httpx.get(url, timeout=2.0).status_code < 500:
                return
        except httpx.HTTPError as e:
            last_error = e
        time.sleep(0.1)
    raise StacServerError(f"{what} did not answer on {url} within {START_TIMEOUT_S:.0f} s ({last_error})")


@contextmanager
def _process(cmd: list[str], ready_url: str, what: str) -> Iterator[None]:
    """Run ``cmd`` until the context exits; ready once ``ready_url`` answers below 500."""
    logger.info("starting %s: %s", what, " ".join(cmd))
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    # Drain output in the background: a full pipe would block the server.
    tail: list[str] = []
    drain = threading.Thread(target=_drain, args=(process, tail), daemon=True)
    drain.start()
    try:
        _wait_until_up(ready_url, process, what, tail)
        yield
    finally:
        stop_process(process)
        drain.join(timeout=5)


def stop_process(process: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """Stop a server process: SIGTERM, so it can close its sockets, then SIGKILL after ``timeout_s``."""
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _drain(process: subprocess.Popen, tail: list[str]) -> None:
    assert process.stdout is not None
    for raw in process.stdout:
        tail.append(raw.decode(errors="replace").rstrip())
        del tail[:-20]
    process.stdout.close()


@contextmanager
def _asset_server(root: Path, host: str, port: int) -> Iterator[str]:
    """Serve ``root`` read-only over HTTP with Range support, in its own process."""
    url = f"http://{host}:{port}/"
    cmd = [sys.executable, "-m", "ingest.asset_server", "--root", str(root), "--host", host, "--port", str(port)]
    with _process(cmd, url + "archive.json", "asset server"):
        yield url


@contextmanager
def _rustac_server(files: list[Path], host: str, port: int) -> Iterator[str]:
    url = f"http://{host}:{port}"
    cmd = [_rustac_executable(), "serve", "--addr", f"{host}:{port}", *map(str, files)]
    with _process(cmd, url + "/", "rustac STAC API"):
        yield url


@contextmanager
def running_stac_api(
    archive_path: str | Path,
    host: str = "127.0.0.1",
    port: int = 0,
    assets_port: int = 0,
    local_hrefs: bool = False,
) -> Iterator[StacEndpoint]:
    """Start the STAC API and the asset server over an archive; stop both on exit.

    ``port``/``assets_port`` 0 pick free ports. ``local_hrefs`` serves items whose assets point at
    absolute local paths instead of the HTTP asset server (for readers on the same machine).
    """
    archive = open_archive(archive_path)
    port = port or free_port(host)
    assets_port = assets_port or free_port(host)
    with ExitStack() as stack:
        assets_url = stack.enter_context(_asset_server(archive.root, host, assets_port))
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sitsmon-stac-")))
        files = write_catalog_files(archive, work, None if local_hrefs else assets_url)
        url = stack.enter_context(_rustac_server(files, host, port))
        logger.info("STAC API on %s, assets on %s", url, assets_url)
        yield StacEndpoint(url=url, assets_url=assets_url, archive=archive)


def serve_until_stopped(
    archive_path: str | Path, host: str, port: int, assets_port: int, on_ready=None
) -> None:
    """Run :func:`running_stac_api` until SIGINT or SIGTERM (the ``sitsmon stac serve`` loop)."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with running_stac_api(archive_path, host, port, assets_port) as endpoint:
            if on_ready is not None:
                on_ready(endpoint)
            stop.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


__all__ = [
    "ArchiveError",
    "StacEndpoint",
    "StacServerError",
    "free_port",
    "running_stac_api",
    "serve_until_stopped",
    "write_catalog_files",
]
