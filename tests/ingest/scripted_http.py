"""A real local HTTP server whose answers a test scripts: status, headers, body per request path."""

from __future__ import annotations

import json
import threading
from collections import defaultdict, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class LocalServer:
    """A ThreadingHTTPServer on a free loopback port, served from a daemon thread while in ``with``."""

    def _serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class ScriptedServer(LocalServer):
    """``script(path, status, body, headers)`` queues one answer; the last one of a path repeats."""

    def __init__(self) -> None:
        self.answers: dict[str, deque] = defaultdict(deque)
        self.requests: list[tuple[str, str, bytes]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                owner.requests.append((self.command, self.path, body))
                queue = owner.answers.get(path)
                if not queue:
                    status, payload, headers = 404, b'{"detail": "not found"}', {}
                else:
                    status, payload, headers = queue[0] if len(queue) == 1 else queue.popleft()
                if callable(payload):
                    payload = payload(owner, body)
                if isinstance(payload, dict | list):
                    payload = json.dumps(payload).encode()
                elif isinstance(payload, str):
                    payload = payload.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _answer

        self._serve(Handler)

    def script(self, path: str, status: int, body: Any = b"", headers: dict[str, str] | None = None) -> None:
        self.answers[path].append((status, body, headers or {}))

    def count(self, path: str) -> int:
        return sum(1 for _, p, _ in self.requests if p.split("?", 1)[0] == path)


def landing(url: str) -> dict[str, Any]:
    """A STAC API landing page that conforms to item search."""
    return {
        "type": "Catalog", "id": "scripted", "description": "scripted", "stac_version": "1.0.0",
        "conformsTo": ["https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search"],
        "links": [{"rel": "self", "href": url + "/"}, {"rel": "search", "href": url + "/search", "method": "POST",
                                                         "type": "application/geo+json"},
                  {"rel": "root", "href": url + "/"}],
    }
