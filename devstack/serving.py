"""A ThreadingHTTPServer on a background thread: how the dev stack's HTTP stand-ins are served."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


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
