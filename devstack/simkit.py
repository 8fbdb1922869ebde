"""What the Jira and ServiceNow simulators share: a request log with credentials redacted, injected
faults, a sliding-window rate limit whose ``Retry-After`` is exact, and HTTP Basic parsing."""

from __future__ import annotations

import base64
import binascii
import copy
import dataclasses
import json
import math
import threading
from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any


def redact(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers as logged: an ``Authorization`` value keeps its scheme only."""
    shown = {}
    for name, value in headers.items():
        if name.lower() == "authorization":
            value = f"{value.partition(' ')[0]} <redacted>"
        shown[name] = value
    return shown


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A request header by case-insensitive name."""
    return next((v for k, v in headers.items() if k.lower() == name.lower()), None)


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """``(user, secret)`` from an ``Authorization: Basic ...`` header, or None."""
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, secret = decoded.partition(":")
    return (user, secret) if colon else None


def bearer_token(header: str | None) -> str | None:
    scheme, _, token = (header or "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def utc_now_iso(clock: Callable[[], float]) -> str:
    return datetime.fromtimestamp(clock(), UTC).isoformat()


class Recorder:
    """Every API request in arrival order: method, path, query, headers (credentials redacted),
    body text and JSON, the account it authenticated as, and the status answered."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: list[dict[str, Any]] = []

    def record(
        self, method: str, path: str, query: Mapping[str, list[str]], headers: Mapping[str, str], body: bytes
    ) -> dict[str, Any]:
        text = body.decode("utf-8", errors="replace")
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = None
        entry = {
            "time": utc_now_iso(self._clock),
            "method": method,
            "path": path,
            "query": {k: v[0] if len(v) == 1 else list(v) for k, v in query.items()},
            "headers": redact(headers),
            "body": text,
            "json": parsed,
            "account": None,
            "status": None,
        }
        with self._lock:
            self._entries.append(entry)
        return entry

    def entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


@dataclasses.dataclass
class Fault:
    """The next ``count`` matching API calls (past authentication) answer ``status``."""

    status: int
    count: int = 1
    retry_after: int | None = None
    method: str = "*"
    path_contains: str = ""

    def matches(self, method: str, path: str) -> bool:
        return self.method in ("*", method) and self.path_contains in path

    def headers(self) -> dict[str, str]:
        """``Retry-After`` when set; a redirect (3xx) points at a login page, as an SSO proxy does."""
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}
        return headers | ({"Location": "/login"} if self.status < 400 else {})

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "count": self.count,
            "retryAfter": self.retry_after,
            "method": self.method,
            "pathContains": self.path_contains,
        }


def parse_fault(spec: Mapping[str, Any]) -> Fault:
    """``{"status", "count"?, "retryAfter"?, "method"?, "pathContains"?}``; a 429 without
    ``retryAfter`` gets 1 s."""
    status = int(spec["status"])
    if not 300 <= status <= 599:
        raise ValueError("status must be 300..599")
    retry_after = spec.get("retryAfter", 1 if status == 429 else None)
    count = int(spec.get("count", 1))
    if count < 1:
        raise ValueError("count must be >= 1")
    return Fault(
        status=status,
        count=count,
        retry_after=int(retry_after) if retry_after is not None else None,
        method=str(spec.get("method", "*")).upper(),
        path_contains=str(spec.get("pathContains", "")),
    )


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[Fault] = []

    def add(self, specs: Any) -> None:
        parsed = [parse_fault(s) for s in (specs if isinstance(specs, list) else [specs])]
        with self._lock:
            self._pending.extend(parsed)

    def take(self, method: str, path: str) -> Fault | None:
        """Spend one use of the first fault matching this call."""
        with self._lock:
            fault = next((f for f in self._pending if f.matches(method, path)), None)
            if fault is None:
                return None
            fault.count -= 1
            if fault.count == 0:
                self._pending.remove(fault)
            return dataclasses.replace(fault)

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.as_json() for f in self._pending]

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()


class RateLimit:
    """At most ``limit`` admitted calls in any ``window_s`` seconds (off while ``limit`` is None).
    A refused call is not counted, so its ``Retry-After`` (whole seconds, at least 1) is exactly
    when a slot frees."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.limit: int | None = None
        self.window_s = 3600.0
        self._admitted: deque[float] = deque()

    def configure(self, limit: int | None, window_s: float | None = None) -> None:
        if limit is not None and limit < 1:
            raise ValueError("limit must be >= 1 (or null to turn the limit off)")
        if window_s is not None and window_s <= 0:
            raise ValueError("window_s must be > 0")
        with self._lock:
            self.limit = limit
            self.window_s = float(window_s) if window_s is not None else self.window_s
            self._admitted.clear()

    def admit(self) -> int | None:
        """None when admitted; otherwise the seconds to wait."""
        with self._lock:
            now = self._clock()
            while self._admitted and self._admitted[0] <= now - self.window_s:
                self._admitted.popleft()
            if self.limit is not None and len(self._admitted) >= self.limit:
                return max(1, math.ceil(self._admitted[0] + self.window_s - now))
            self._admitted.append(now)
            return None

    def remaining(self) -> int | None:
        with self._lock:
            return None if self.limit is None else max(0, self.limit - len(self._admitted))

    def reset(self) -> None:
        self.configure(None, 3600.0)


class ControlNotFound(LookupError):
    """A control call names no such endpoint or object (answered 404)."""


def run_control(lock: threading.RLock, call: Callable[[], Any]) -> tuple[int, dict[str, str], Any]:
    """Run one control call under the simulator's lock: 200 with a copy of its answer (so it is not
    serialised while another request changes the state), 404 or 400 ``{"error"}``."""
    try:
        with lock:
            return 200, {}, copy.deepcopy(call())
    except ControlNotFound as e:
        return 404, {}, {"error": str(e)}
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        return 400, {}, {"error": f"{type(e).__name__}: {e}"}


def many(body: Any) -> list[Mapping[str, Any]]:
    """A control body that is one object or a list of them."""
    items = body if isinstance(body, list) else [body]
    if not all(isinstance(i, dict) for i in items):
        raise ValueError("expected an object or a list of objects")
    return items


def when(clock: Callable[[], float], body: Mapping[str, Any]) -> float:
    """``body["at"]`` (epoch seconds or ISO 8601) or now."""
    at = body.get("at")
    if at is None:
        return clock()
    if isinstance(at, int | float):
        return float(at)
    return datetime.fromisoformat(str(at)).timestamp()
