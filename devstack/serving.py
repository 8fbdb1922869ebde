"""A ThreadingHTTPServer on a background thread: how the dev stack's HTTP stand-ins are served."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

logger = logging.getLogger(__name__)


class JsonHandler(BaseHTTPRequestHandler):
    """GET, POST, PATCH, PUT and DELETE go to ``dispatch(method)``; answers are JSON. The request
    line is logged at DEBUG only: it holds path and query, never a header (where tokens and secrets
    travel)."""

    def do_GET(self) -> None:
        self.dispatch("GET")

    def do_POST(self) -> None:
        self.dispatch("POST")

    def do_PATCH(self) -> None:
        self.dispatch("PATCH")

    def do_PUT(self) -> None:
        self.dispatch("PUT")

    def do_DELETE(self) -> None:
        self.dispatch("DELETE")

    def dispatch(self, method: str) -> None:
        raise NotImplementedError

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send_json(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)


class BackgroundServer:
    """Serves ``handler`` with ``app`` reachable as ``self.server.app`` from each request."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], app: Any, name: str) -> None:
        self._handler = handler
        self._app = app
        self._name = name
        self._server: ThreadingHTTPServer | None = None

    def start(self, host: str, port: int) -> str:
        """Listen and serve; returns ``http://host:port``."""
        self._server = ThreadingHTTPServer((host, port), self._handler)
        self._server.app = self._app  # type: ignore[attr-defined]
        threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name=self._name, daemon=True
        ).start()
        return f"http://{host}:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
