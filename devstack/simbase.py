"""The frame the Jira and ServiceNow simulators share: a background HTTP server, a lock, the request
log, injected faults, a rate limit, and the control endpoints every simulator has:

    POST /_control/reset         state back to the start; requests, faults and rate limit cleared
    GET  /_control/requests      every API request in order (Authorization redacted)
    GET  /_control/faults        faults still pending
    POST /_control/faults        {"status", "count"?, "retryAfter"?, "method"?, "pathContains"?} or a list

A subclass answers API calls in ``serve`` (raising ``SimError`` for an error answer) and its own
control endpoints in ``control``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .serving import BackgroundServer, JsonHandler
from .simkit import ControlNotFound, Faults, RateLimit, Recorder, run_control

logger = logging.getLogger(__name__)


class SimError(Exception):
    """An error answer: status, the vendor's error body, extra headers."""

    def __init__(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


@dataclasses.dataclass
class ApiRequest:
    """One API request as the simulator sees it; ``entry`` is its request log entry."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Mapping[str, str]
    body: bytes
    entry: dict[str, Any]


class TicketSimulator:
    """``start()`` returns the base URL (no trailing slash); ``stop()``."""

    name = "simulator"

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self.recorder = Recorder(clock)
        self.faults = Faults()
        self.rate_limit = RateLimit(clock)
        self._server = BackgroundServer(_Handler, self, self.name)
        self.url = ""

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self.url = self._server.start(host, port)
        logger.info("%s listening url=%s", self.name, self.url)
        return self.url

    def stop(self) -> None:
        self._server.stop()

    def reset(self) -> None:
        with self.lock:
            self.reset_state()
            self.recorder.clear()
            self.faults.clear()
            self.rate_limit.reset()

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], Any]:
        """Answer one request: (status, extra headers, JSON body)."""
        url = urlsplit(target)
        path = unquote(url.path).rstrip("/") or "/"
        query = parse_qs(url.query, keep_blank_values=True)
        if path.startswith("/_control/"):
            return run_control(self.lock, lambda: self._control(method, path, query, body))
        entry = self.recorder.record(method, path, query, headers, body)
        try:
            status, extra, payload = self.serve(ApiRequest(method, path, query, headers, body, entry))
        except SimError as e:
            status, extra, payload = e.status, e.headers, e.body
        entry["status"] = status
        return status, self.answer_headers() | extra, payload

    def _control(self, method: str, path: str, query: Mapping[str, list[str]], raw: bytes) -> Any:
        body = json.loads(raw) if raw else {}
        match (method, path):
            case ("POST", "/_control/reset"):
                self.reset()
                return {"reset": True}
            case ("GET", "/_control/requests"):
                return self.recorder.entries()
            case ("GET", "/_control/faults"):
                return self.faults.pending()
            case ("POST", "/_control/faults"):
                self.faults.add(body)
                return self.faults.pending()
        return self.control(method, path, query, body)

    # -- for subclasses ---------------------------------------------------------------------------

    def reset_state(self) -> None:
        """Put the simulated system back to its start (called with the lock held)."""

    def serve(self, request: ApiRequest) -> tuple[int, dict[str, str], Any]:
        """One API call: (status, extra headers, JSON body)."""
        raise SimError(404, {"error": f"no resource {request.method} {request.path}"})

    def control(self, method: str, path: str, query: Mapping[str, list[str]], body: Any) -> Any:
        """A control call of the subclass's own (called with the lock held)."""
        raise ControlNotFound(f"no control endpoint {method} {path}")

    def answer_headers(self) -> dict[str, str]:
        """Headers on every API answer."""
        return {}

    def fault_error(self, status: int, headers: dict[str, str]) -> SimError:
        """The error answer an injected fault gives, in the vendor's shape."""
        return SimError(status, {"error": "Injected fault."}, headers)

    def raise_injected_fault(self, method: str, path: str) -> None:
        """Answer with ``fault_error`` when an injected fault matches this call."""
        fault = self.faults.take(method, path)
        if fault is not None:
            raise self.fault_error(fault.status, fault.headers())


class _Handler(JsonHandler):
    server_version = "devstack-tickets/1.0"

    def dispatch(self, method: str) -> None:
        app: TicketSimulator = self.server.app  # type: ignore[attr-defined]
        status, headers, payload = app.handle(method, self.path, dict(self.headers.items()), self.read_body())
        self.send_json(status, payload, headers)
