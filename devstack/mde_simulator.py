"""An MDE machine-action API simulator that follows docs/mde-api.md (the contract).

Useful on its own::

    python -m devstack.mde_simulator --port 8081 --signing-secret "$DEV_SIGNING_SECRET" --time-scale 1 \\
        [--host 127.0.0.1] [--pending-s 5] [--in-progress-s 10] [--action-timeout-s 259200] \\
        [--duplicate-mode 400|201-existing] [--rate-per-minute 100] [--rate-per-hour 1500] \\
        [--audience URL ...] [--machines machines.json]

Tokens come from ``devstack.identity_endpoint`` (same ``--signing-secret``). Any host name works:
only the path is routed, so point the client's base URL at ``http://127.0.0.1:8081``.

API (``/api/...``): every call in mde-api.md. A request is decided in this order:
 1. authentication: a missing, malformed, expired or badly signed token, or one whose ``aud`` is
    not accepted, gets 401 ``Unauthorized`` (mde-api.md leaves 401 vs 403 open for a wrong
    audience; we answer 401);
 2. route: an unknown path or method gets 404 ``NotFound``;
 3. roles: isolate/unisolate/cancel need ``Machine.Isolate``; reads need ``Machine.Read.All`` or
    ``Machine.ReadWrite.All``; else 403 ``Forbidden``;
 4. rate limit per API group (``isolate``, ``unisolate``, ``cancel``, ``machineactions``,
    ``machines``, ``findbyip``): sliding windows of a minute and an hour. 401/403 answers are not
    counted. A call answered 429 is not counted either, so its ``Retry-After`` (whole real seconds,
    rounded up, at least 1) is exactly when a slot frees: a retry then succeeds, a retry earlier
    gets another 429;
 5. injected faults (control API);
 6. validation and the call itself.

Choices where mde-api.md is silent or unconfirmed:
 - A POST without ``Content-Type: application/json`` gets 400 ``InvalidRequestBody`` (not 415: the
   contract lists no 415). A body that is not a JSON object, an unknown property (``comment``), a
   non-string ``Comment`` or a bad ``IsolationType`` -> 400 ``InvalidRequestBody``; a missing or
   blank ``Comment`` -> 400 ``MissingRequiredParameter``. ``Selective`` on a non-Windows machine
   -> 400 ``OsPlatformNotSupported``. ``scope`` echoes ``IsolationType``; unisolate's is null.
 - A malformed id (machine id not 40 lowercase hex, action id not a GUID) gets the same 404
   ``ResourceNotFound`` as an unknown one. ``GET /api/machines/{name}`` matches DNS names
   case-insensitively and, when stale duplicate records share the name, returns the latest seen.
 - ``$filter``: ``field op literal`` terms joined by ``and``; ``eq``/``ne`` on any listed field,
   ``gt/ge/lt/le`` on ``creationDateTimeUtc``/``lastSeen``; ``startswith(field,'text')`` on text
   fields (MDE documents it for computerDnsName); literals ``'text'`` (``''`` is a
   quote), numbers, datetimes, ``null``. Text compares ignoring case. Anything else (``or``,
   brackets, ``machineTags/any(...)``, unknown fields) -> 400 ``InvalidInput``. ``$top``
   (0..10000) and ``$skip`` are honoured; other ``$`` options -> 400 ``InvalidInput``.
 - findbyip treats a machine as holding ``lastIpAddress`` from ``firstSeen`` to ``lastSeen`` (to
   now while it is ``Active``) and matches when that span, widened by 15 minutes, contains the
   timestamp. A timestamp over 30 days old (wall clock) or unparsable, or a bad IP -> 400
   ``InvalidInput``.
 - Cancel of a final action -> 400 ``BadRequest``. Offline actions time out after
   ``action_timeout_s`` (default 3 days, simulated). The isolated flag flips when an action
   succeeds, in creation order. Actions of a machine that is not ``Active`` stay ``Pending``; they
   start ``pending_s`` after creation or when the machine is made ``Active`` (control API),
   whichever is later.
 - ``time_scale`` divides every simulated duration (action timing, rate windows); changing it at
   runtime re-times actions already under way. Timestamps themselves are wall-clock UTC.

Control API (no auth; JSON in and out):
    GET  /_control/config             current knobs
    POST /_control/config             {"time_scale", "pending_s", "in_progress_s", "action_timeout_s",
                                       "duplicate_mode": "400"|"201-existing", "rate_per_minute",
                                       "rate_per_hour"} (any subset)
    POST /_control/faults             {"api": "isolate"|...|"*", "status": 500, "count": 1,
                                       "retryAfter": 3, "delay_s": 0, "code"?, "message"?} or a list;
                                       the next ``count`` calls (past auth and rate limit) sleep
                                       ``delay_s`` real seconds, then (if ``status``) fail with the
                                       standard error body; 429/503 carry Retry-After (429 default 1)
    GET  /_control/faults             faults still pending
    GET  /_control/machines           machines with sim-only ``isolated`` and ``simFinalStatus``
    POST /_control/machines           a list of Machine JSON (or {"machines": [...], "replace": true})
                                       upserted by ``id``; ``simFinalStatus`` (Succeeded, Failed,
                                       TimeOut, Cancelled) is the final status of that machine's actions
    GET  /_control/actions            every action, as the API would show it now
    POST /_control/actions/{id}/complete  {"status": "Succeeded"|"Failed"|"TimeOut"|"Cancelled"}
    GET  /_control/requests           every API request in order: method, path, query, headers
                                       (Authorization redacted), authorized, claims {aud, roles, appid},
                                       body (raw text), json, status, api, time
    GET  /_control/stats              {"calls": {api: n}, "throttled": {api: n}, "faulted": {api: n}}
    POST /_control/reset              clears actions, requests, faults, rate windows and stats; machines
                                       back to the seed, knobs back to the constructor's
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import ipaddress
import json
import logging
import math
import operator
import re
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import jwt

from .serving import BackgroundServer, JsonHandler
from .tokens import TokenError, verify_token

logger = logging.getLogger(__name__)

DEFAULT_AUDIENCES = frozenset(
    {
        "https://api.securitycenter.microsoft.com",
        "https://api.security.microsoft.com",
        "https://api.securitycenter.windows.com",
    }
)  # a trailing slash is accepted too (devstack.tokens ignores it)
WRITE_ROLES = frozenset({"Machine.Isolate"})
READ_ROLES = frozenset({"Machine.Read.All", "Machine.ReadWrite.All"})
API_GROUPS = ("isolate", "unisolate", "cancel", "machineactions", "machines", "findbyip")
ISOLATION_TYPES = ("Full", "Selective", "UnManagedDevice")
ACTIVE_STATUSES = frozenset({"Pending", "InProgress"})
FINAL_STATUSES = frozenset({"Succeeded", "Failed", "TimeOut", "Cancelled"})
DUPLICATE_MODES = ("400", "201-existing")
METADATA = "https://api.security.microsoft.com/api/$metadata"
MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0
ERROR_CODES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "DisallowedOperation",
    404: "ResourceNotFound",
    429: "TooManyRequests",
    500: "InternalServerError",
    503: "ServiceUnavailable",
}
_MACHINE_ID = re.compile(r"[0-9a-f]{40}")
_GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
# startswith(field,'text'): the documented way to find a machine by the start of its DNS name.
_STARTSWITH = re.compile(r"\s*startswith\(\s*([A-Za-z]+)\s*,\s*('(?:[^']|'')*')\s*\)\s*")
_TERM = re.compile(r"\s*([A-Za-z]+)\s+(eq|ne|gt|ge|lt|le)\s+('(?:[^']|'')*'|[^\s'()]+)\s*")
_AND = re.compile(r"and\s+")
OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
    "startswith": lambda left, right: str(left).startswith(right),
}
ACTION_FILTER_FIELDS = frozenset({"id", "status", "machineId", "type", "requestor", "creationDateTimeUtc"})
MACHINE_FILTER_FIELDS = frozenset(
    {
        "id",
        "computerDnsName",
        "aadDeviceId",
        "lastIpAddress",
        "healthStatus",
        "rbacGroupId",
        "osPlatform",
        "onboardingStatus",
        "lastSeen",
    }
)
DATETIME_FIELDS = frozenset({"creationDateTimeUtc", "lastSeen"})
SIM_ONLY = ("isolated", "simFinalStatus")
TITLES = {"Isolate": "Isolate device", "Unisolate": "Release device from isolation"}

# id, DNS name, OS, health, IP, last seen / first seen (days ago), RBAC group, tags.
# ws-sales-0099 was re-imaged twice: two stale records share its name with the live one.
# fmt: off
_SEED: tuple[tuple[Any, ...], ...] = (
    ("c28460d93e441d30869ebb33920c06acbb6fd75e", "ws-fin-0142.contoso.local", "Windows10", "Active",
     "10.1.2.3", 0.003, 410, (41, "Finance"), ["Finance", "VIP"]),
    ("142b3441161eb63d57b41d1338407a04c781740d", "ws-eng-0007.contoso.local", "Windows11", "Active",
     "10.1.5.20", 0.01, 200, (42, "Engineering"), []),
    ("63b87ad1411d2aa6afc5dcd92f0f66ccdb94157e", "srv-sql-01.contoso.local", "WindowsServer2022", "Active",
     "10.2.0.10", 0.002, 700, (43, "Servers"), ["Tier0"]),
    ("944974c69e94e0df3a5a09da21b5f138ab0d9b67", "mac-design-03.contoso.local", "macOS", "Active",
     "10.1.7.44", 0.02, 90, (44, "Design"), []),
    ("558db1eed236b0379165c418e4cee86401cc34ca", "lnx-web-02.contoso.local", "Linux", "Active",
     "10.2.1.15", 0.005, 300, (43, "Servers"), ["DMZ"]),
    ("9c4f08247909332d14a6ae9170a78b792337ff0b", "ws-hr-0031.contoso.local", "Windows10", "Inactive",
     "10.1.3.31", 3, 500, (45, "HR"), []),
    ("58e7b99603ae8ab07c70b95172007a23b6d37fdc", "ws-sales-0099.contoso.local", "Windows11", "Active",
     "10.1.4.99", 0.004, 12, (46, "Sales"), []),
    ("6d5c1606d2324576df7b946297bf8da409e5d926", "ws-sales-0099.contoso.local", "Windows10", "Inactive",
     "10.1.4.87", 13, 160, (46, "Sales"), []),
    ("5d6b1fed3f5b134e2c85ba7e7d339ad582c96b31", "WS-SALES-0099.contoso.local", "Windows10", "Inactive",
     "10.1.4.61", 161, 600, (46, "Sales"), []),
)
# fmt: on


def seed_machines(now: float) -> list[dict[str, Any]]:
    """The seed machine set, with ``lastSeen``/``firstSeen`` relative to ``now``."""
    machines = []
    for mid, dns, os_platform, health, ip, seen_ago, first_ago, (group_id, group), tags in _SEED:
        machines.append(
            _machine_defaults(now)
            | {
                "id": mid,
                "computerDnsName": dns,
                "osPlatform": os_platform,
                "healthStatus": health,
                "lastIpAddress": ip,
                "lastSeen": _iso(now - seen_ago * DAY),
                "firstSeen": _iso(now - first_ago * DAY),
                "rbacGroupId": group_id,
                "rbacGroupName": group,
                "machineTags": tags,
                "aadDeviceId": str(uuid.uuid5(uuid.NAMESPACE_DNS, mid)),
            }
        )
    return machines


def _machine_defaults(now: float) -> dict[str, Any]:
    return {
        "id": None,
        "computerDnsName": None,
        "firstSeen": _iso(now),
        "lastSeen": _iso(now),
        "osPlatform": "Windows11",
        "osVersion": None,
        "osProcessor": "x64",
        "version": "23H2",
        "osBuild": 22631,
        "lastIpAddress": None,
        "lastExternalIpAddress": "203.0.113.10",
        "agentVersion": "10.8760.22621.1",
        "healthStatus": "Active",
        "onboardingStatus": "Onboarded",
        "deviceValue": "Normal",
        "rbacGroupId": 0,
        "rbacGroupName": None,
        "riskScore": "Low",
        "exposureLevel": "Low",
        "isAadJoined": True,
        "aadDeviceId": None,
        "machineTags": [],
        "defenderAvStatus": "Updated",
        "managedBy": "Intune",
        "managedByStatus": "Success",
        "isolated": False,
        "simFinalStatus": None,
    }


def _iso(ts: float) -> str:
    """MDE's timestamp shape: UTC, seven fractional digits, ``Z``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def _parse_datetime(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.strip("'"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclasses.dataclass
class SimConfig:
    """Knobs; durations are simulated seconds (divided by ``time_scale`` in real time)."""

    time_scale: float = 1.0
    pending_s: float = 5.0
    in_progress_s: float = 10.0
    action_timeout_s: float = 3 * DAY
    duplicate_mode: str = "400"
    rate_per_minute: int = 100
    rate_per_hour: int = 1500

    def validated(self) -> SimConfig:
        if self.time_scale <= 0 or min(self.pending_s, self.in_progress_s, self.action_timeout_s) < 0:
            raise ValueError("time_scale must be > 0 and durations >= 0")
        if self.duplicate_mode not in DUPLICATE_MODES:
            raise ValueError(f"duplicate_mode must be one of {DUPLICATE_MODES}")
        if min(self.rate_per_minute, self.rate_per_hour) < 1:
            raise ValueError("rate limits must be >= 1")
        return self


class ApiError(Exception):
    """An error answer: status, MDE error code, message and extra headers."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message
        self.headers = dict(headers or {})


@dataclasses.dataclass
class _Action:
    data: dict[str, Any]  # the public MachineAction
    created: float
    ready_at: float  # when the device could first pick the action up (inf while it is offline)
    started: float = math.inf


@dataclasses.dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    api: str
    roles: frozenset[str]
    handler: str


def _route(method: str, pattern: str, api: str, roles: frozenset[str], handler: str) -> _Route:
    return _Route(method, re.compile(pattern, re.IGNORECASE), api, roles, handler)


_ROUTES = (
    _route("POST", r"/api/machines/([^/]+)/isolate", "isolate", WRITE_ROLES, "_isolate"),
    _route("POST", r"/api/machines/([^/]+)/unisolate", "unisolate", WRITE_ROLES, "_unisolate"),
    _route("POST", r"/api/machineactions/([^/]+)/cancel", "cancel", WRITE_ROLES, "_cancel"),
    _route("GET", r"/api/machineactions/([^/]+)", "machineactions", READ_ROLES, "_get_action"),
    _route("GET", r"/api/machineactions()", "machineactions", READ_ROLES, "_list_actions"),
    _route("GET", r"/api/machines/findbyip\((.*)\)", "findbyip", READ_ROLES, "_find_by_ip"),
    _route("GET", r"/api/machines/([^/]+)", "machines", READ_ROLES, "_get_machine"),
    _route("GET", r"/api/machines()", "machines", READ_ROLES, "_list_machines"),
)


@dataclasses.dataclass
class _Call:
    arg: str
    query: dict[str, str]
    headers: Mapping[str, str]
    body: bytes
    claims: dict[str, Any]


class MdeSimulator:
    """In-process MDE API: ``start()`` returns the base URL (no trailing slash); ``stop()``."""

    def __init__(
        self,
        *,
        signing_secret: str,
        time_scale: float = 1.0,
        pending_s: float = 5.0,
        in_progress_s: float = 10.0,
        action_timeout_s: float = 3 * DAY,
        duplicate_mode: str = "400",
        rate_per_minute: int = 100,
        rate_per_hour: int = 1500,
        audiences: Iterable[str] = DEFAULT_AUDIENCES,
        machines: Sequence[Mapping[str, Any]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.signing_secret = signing_secret
        self.audiences = set(audiences)
        self._initial_config = SimConfig(
            time_scale,
            pending_s,
            in_progress_s,
            action_timeout_s,
            duplicate_mode,
            rate_per_minute,
            rate_per_hour,
        ).validated()
        self._seed = [dict(m) for m in machines] if machines is not None else None
        self._clock = clock
        self._lock = threading.RLock()
        self._server = BackgroundServer(_Handler, self, "mde-simulator")
        self.url = ""
        self.reset()

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self.url = self._server.start(host, port) + ""
        logger.info("MDE simulator listening url=%s", self.url)
        return self.url

    def stop(self) -> None:
        self._server.stop()

    def reset(self) -> None:
        with self._lock:
            now = self._clock()
            self.config = dataclasses.replace(self._initial_config)
            self.machines: dict[str, dict[str, Any]] = {}
            self.actions: dict[str, _Action] = {}
            self._upsert_machines(self._seed if self._seed is not None else seed_machines(now), now)
            self.requests: list[dict[str, Any]] = []
            self.faults: list[dict[str, Any]] = []
            self._windows: dict[str, deque[float]] = defaultdict(deque)
            self.stats: dict[str, dict[str, int]] = {"calls": {}, "throttled": {}, "faulted": {}}

    # -- one HTTP request -------------------------------------------------------------------------

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], Any]:
        """Answer one request: (status, extra headers, JSON body)."""
        url = urlsplit(target)
        path = unquote(url.path).rstrip("/") or "/"
        query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        if path.startswith("/_control/"):
            return self._control(method, path, body)
        route, arg = _match(method, path)
        entry = self._log_entry(method, path, query, headers, body, route)
        try:
            claims = self._authenticate(headers)
            if route is None:
                raise ApiError(404, "NotFound", f"No resource for {method} {path}")
            if not route.roles & set(claims.get("roles") or []):
                raise ApiError(
                    403,
                    "Forbidden",
                    "The application does not have any of the required "
                    f"application permissions ({', '.join(sorted(route.roles))}) to access the resource.",
                )
            entry["authorized"] = True
            self._count(route.api)
            self._inject_fault(route.api)
            with self._lock:
                self._advance_all(self._clock())
                status, payload = getattr(self, route.handler)(_Call(arg, query, headers, body, claims))
            entry["status"] = status
            return status, {}, payload
        except ApiError as e:
            entry["status"] = e.status
            return e.status, e.headers, _error_body(e.code, e.message)

    def _log_entry(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        headers: Mapping[str, str],
        body: bytes,
        route: _Route | None,
    ) -> dict[str, Any]:
        shown = {k: ("Bearer <redacted>" if k.lower() == "authorization" else v) for k, v in headers.items()}
        text = body.decode("utf-8", errors="replace")
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = None
        entry = {
            "time": _iso(self._clock()),
            "method": method,
            "path": path,
            "query": query,
            "headers": shown,
            "authorized": False,
            "claims": _peek_claims(headers),
            "body": text,
            "json": parsed,
            "status": None,
            "api": route.api if route else None,
        }
        with self._lock:
            self.requests.append(entry)
        return entry

    def _authenticate(self, headers: Mapping[str, str]) -> dict[str, Any]:
        scheme, _, token = (headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "Unauthorized", "Authorization header with a Bearer token is required")
        try:
            return verify_token(token.strip(), secret=self.signing_secret, audiences=self.audiences)
        except TokenError as e:
            raise ApiError(401, "Unauthorized", f"Invalid token: {e.message}") from e

    def _count(self, api: str) -> None:
        """Admit one call to ``api`` or raise 429 with the real seconds until a slot frees."""
        with self._lock:
            now, cfg = self._clock(), self.config
            window = self._windows[api]
            while window and window[0] <= now - HOUR / cfg.time_scale:
                window.popleft()
            free_at = now
            for limit, span in ((cfg.rate_per_minute, MINUTE), (cfg.rate_per_hour, HOUR)):
                recent = [t for t in window if t > now - span / cfg.time_scale]
                if len(recent) >= limit:
                    free_at = max(free_at, recent[len(recent) - limit] + span / cfg.time_scale)
            if free_at > now:
                self.stats["throttled"][api] = self.stats["throttled"].get(api, 0) + 1
                retry_after = max(1, math.ceil(free_at - now))
                raise ApiError(
                    429,
                    "TooManyRequests",
                    "Rate limit exceeded. Try again later.",
                    {"Retry-After": str(retry_after)},
                )
            window.append(now)
            self.stats["calls"][api] = self.stats["calls"].get(api, 0) + 1

    def _inject_fault(self, api: str) -> None:
        with self._lock:
            fault = next((f for f in self.faults if f["api"] in (api, "*")), None)
            if fault is None:
                return
            fault["count"] -= 1
            if fault["count"] <= 0:
                self.faults.remove(fault)
            self.stats["faulted"][api] = self.stats["faulted"].get(api, 0) + 1
        if fault["delay_s"]:
            time.sleep(fault["delay_s"])
        status = fault["status"]
        if status:
            headers = {"Retry-After": str(fault["retryAfter"])} if fault["retryAfter"] is not None else {}
            code = fault.get("code") or ERROR_CODES.get(status, f"Error{status}")
            raise ApiError(status, code, fault.get("message") or "Injected fault.", headers)

    # -- the state machine ------------------------------------------------------------------------

    def _advance_all(self, now: float) -> None:
        for action in sorted(self.actions.values(), key=lambda a: a.created):
            self._advance(action, now)

    def _advance(self, action: _Action, now: float) -> None:
        cfg, data = self.config, action.data
        if data["status"] == "Pending":
            timeout_at = action.created + cfg.action_timeout_s / cfg.time_scale
            start_at = max(action.created + cfg.pending_s / cfg.time_scale, action.ready_at)
            if start_at <= now and start_at < timeout_at:
                action.started = start_at
                data.update(status="InProgress", lastUpdateDateTimeUtc=_iso(start_at))
            elif now >= timeout_at:
                self._finish(action, "TimeOut", timeout_at)
        if data["status"] == "InProgress":
            done_at = action.started + cfg.in_progress_s / cfg.time_scale
            if done_at <= now:
                machine = self.machines.get(data["machineId"], {})
                self._finish(action, machine.get("simFinalStatus") or "Succeeded", done_at)

    def _finish(self, action: _Action, status: str, at: float) -> None:
        data = action.data
        data.update(status=status, lastUpdateDateTimeUtc=_iso(at))
        if status == "Failed":
            data["errorHResult"] = -2147467259  # E_FAIL
        machine = self.machines.get(data["machineId"])
        if status == "Succeeded" and machine is not None and data["type"] in ("Isolate", "Unisolate"):
            machine["isolated"] = data["type"] == "Isolate"
        logger.info(
            "action final action_id=%s machine_id=%s status=%s", data["id"], data["machineId"], status
        )

    def _upsert_machines(self, machines: Iterable[Mapping[str, Any]], now: float) -> None:
        """Add or replace machines by id; call with the actions advanced to ``now``."""
        for given in machines:
            machine = _machine_defaults(now) | dict(given)
            mid = machine.get("id")
            if not isinstance(mid, str) or not _MACHINE_ID.fullmatch(mid) or not machine["computerDnsName"]:
                raise ValueError("a machine needs an id of 40 lowercase hex characters and a computerDnsName")
            if machine["simFinalStatus"] not in (None, *FINAL_STATUSES):
                raise ValueError(f"simFinalStatus must be one of {sorted(FINAL_STATUSES)}")
            for field in ("firstSeen", "lastSeen"):
                _parse_datetime(machine[field])  # findbyip reads them; refuse a bad one now
            was_online = _online(self.machines.get(mid, {}))
            self.machines[mid] = machine
            for action in self.actions.values():
                if action.data["machineId"] == mid and action.data["status"] == "Pending":
                    action.ready_at = (
                        (action.ready_at if was_online else now) if _online(machine) else math.inf
                    )

    # -- API calls --------------------------------------------------------------------------------

    def _isolate(self, call: _Call) -> tuple[int, Any]:
        body = _json_body(call, {"Comment", "IsolationType"})
        isolation_type = body.get("IsolationType", "Full")
        if isolation_type not in ISOLATION_TYPES:
            raise ApiError(
                400, "InvalidRequestBody", f"IsolationType must be one of {', '.join(ISOLATION_TYPES)}"
            )
        machine = self._machine(call.arg)
        if isolation_type == "Selective" and not str(machine["osPlatform"]).startswith("Windows"):
            raise ApiError(
                400, "OsPlatformNotSupported", "Selective isolation needs Windows 10 1709 or later"
            )
        return self._request_action(machine, "Isolate", body["Comment"], call.claims, isolation_type)

    def _unisolate(self, call: _Call) -> tuple[int, Any]:
        body = _json_body(call, {"Comment"})
        return self._request_action(self._machine(call.arg), "Unisolate", body["Comment"], call.claims, None)

    def _request_action(
        self,
        machine: dict[str, Any],
        action_type: str,
        comment: str,
        claims: Mapping[str, Any],
        scope: str | None,
    ) -> tuple[int, Any]:
        active = [
            a
            for a in self.actions.values()
            if a.data["machineId"] == machine["id"]
            and a.data["type"] == action_type
            and a.data["status"] in ACTIVE_STATUSES
        ]
        if active and self.config.duplicate_mode == "400":
            raise ApiError(400, "ActiveRequestAlreadyExists", "Action is already in progress")
        if active:
            return 201, _entity(max(active, key=lambda a: a.created).data)
        now = self._clock()
        data = {
            "id": str(uuid.uuid4()),
            "type": action_type,
            "title": f"{TITLES[action_type]} {machine['computerDnsName']}",
            "requestor": claims.get("appid"),
            "requestorComment": comment,
            "status": "Pending",
            "machineId": machine["id"],
            "computerDnsName": machine["computerDnsName"],
            "creationDateTimeUtc": _iso(now),
            "lastUpdateDateTimeUtc": _iso(now),
            "cancellationRequestor": None,
            "cancellationComment": None,
            "cancellationDateTimeUtc": None,
            "errorHResult": 0,
            "scope": scope,
            "externalId": None,
            "requestSource": "PublicApi",
            "relatedFileInfo": None,
            "commands": [],
            "troubleshootInfo": None,
        }
        self.actions[data["id"]] = _Action(data, now, now if _online(machine) else math.inf)
        logger.info(
            "action requested action_id=%s machine_id=%s type=%s", data["id"], machine["id"], action_type
        )
        return 201, _entity(data)

    def _cancel(self, call: _Call) -> tuple[int, Any]:
        body = _json_body(call, {"Comment"})
        data = self._action(call.arg).data
        if data["status"] in FINAL_STATUSES:
            raise ApiError(400, "BadRequest", f"Action is already in a final state ({data['status']})")
        now = _iso(self._clock())
        data.update(
            status="Cancelled",
            cancellationRequestor=call.claims.get("appid"),
            cancellationComment=body["Comment"],
            cancellationDateTimeUtc=now,
            lastUpdateDateTimeUtc=now,
        )
        return 200, _entity(data)

    def _get_action(self, call: _Call) -> tuple[int, Any]:
        return 200, _entity(self._action(call.arg).data)

    def _list_actions(self, call: _Call) -> tuple[int, Any]:
        rows = [a.data for a in sorted(self.actions.values(), key=lambda a: a.created)]
        return 200, _collection("MachineActions", _query(rows, call.query, ACTION_FILTER_FIELDS))

    def _get_machine(self, call: _Call) -> tuple[int, Any]:
        if _MACHINE_ID.fullmatch(call.arg):
            return 200, _public(self._machine(call.arg))
        named = [m for m in self.machines.values() if str(m["computerDnsName"]).lower() == call.arg.lower()]
        if not named:
            raise ApiError(404, "ResourceNotFound", f"Machine {call.arg} was not found")
        return 200, _public(max(named, key=lambda m: m["lastSeen"]))

    def _list_machines(self, call: _Call) -> tuple[int, Any]:
        rows = [_public(m) for m in self.machines.values()]
        return 200, _collection("Machines", _query(rows, call.query, MACHINE_FILTER_FIELDS))

    def _find_by_ip(self, call: _Call) -> tuple[int, Any]:
        match = re.fullmatch(r"ip='([^']*)',timestamp=([^,]+)", call.arg)
        try:
            ip = str(ipaddress.ip_address(match.group(1))) if match else ""
            when = _parse_datetime(match.group(2)) if match else None
        except ValueError:
            ip, when = "", None
        if not ip or when is None:
            raise ApiError(400, "InvalidInput", "Expected findbyip(ip='<address>',timestamp=<ISO 8601 UTC>)")
        if when < datetime.fromtimestamp(self._clock(), UTC) - timedelta(days=30):
            raise ApiError(400, "InvalidInput", "The timestamp must be within the last 30 days")
        now, window = datetime.fromtimestamp(self._clock(), UTC), timedelta(minutes=15)
        found = []
        for machine in self.machines.values():
            # An Active machine is still being seen, so its span reaches the present.
            last_seen = now if _online(machine) else _parse_datetime(machine["lastSeen"])
            first_seen = _parse_datetime(machine["firstSeen"])
            if machine["lastIpAddress"] == ip and first_seen - window <= when <= last_seen + window:
                found.append(_public(machine))
        return 200, _collection("Machines", found)

    def _machine(self, machine_id: str) -> dict[str, Any]:
        machine = self.machines.get(machine_id) if _MACHINE_ID.fullmatch(machine_id) else None
        if machine is None:
            raise ApiError(404, "ResourceNotFound", f"Machine {machine_id} was not found")
        return machine

    def _action(self, action_id: str) -> _Action:
        action = self.actions.get(action_id.lower()) if _GUID.fullmatch(action_id) else None
        if action is None:
            raise ApiError(404, "ResourceNotFound", f"Machine action {action_id} was not found")
        return action

    # -- control API ------------------------------------------------------------------------------

    def _control(self, method: str, path: str, raw: bytes) -> tuple[int, dict[str, str], Any]:
        try:
            body = json.loads(raw) if raw else {}
            with self._lock:
                now = self._clock()
                self._advance_all(now)
                # A copy, so the answer is not serialised while another request changes the state.
                return 200, {}, copy.deepcopy(self._control_call(method, path, body, now))
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            return 400, {}, _error_body("InvalidInput", str(e))
        except ApiError as e:
            return e.status, {}, _error_body(e.code, e.message)

    def _control_call(self, method: str, path: str, body: Any, now: float) -> Any:
        complete = re.fullmatch(r"/_control/actions/([^/]+)/complete", path)
        match (method, path):
            case ("GET", "/_control/config"):
                return dataclasses.asdict(self.config)
            case ("POST", "/_control/config"):
                self.config = dataclasses.replace(self.config, **body).validated()
                return dataclasses.asdict(self.config)
            case ("GET", "/_control/faults"):
                return self.faults
            case ("POST", "/_control/faults"):
                self.faults.extend(_fault(f) for f in (body if isinstance(body, list) else [body]))
                return self.faults
            case ("GET", "/_control/machines"):
                return list(self.machines.values())
            case ("POST", "/_control/machines"):
                given = body if isinstance(body, list) else body["machines"]
                if isinstance(body, dict) and body.get("replace"):
                    self.machines.clear()
                self._upsert_machines(given, now)
                return list(self.machines.values())
            case ("GET", "/_control/actions"):
                return [a.data for a in sorted(self.actions.values(), key=lambda a: a.created)]
            case ("POST", _) if complete:
                action = self._action(complete.group(1))
                status = body.get("status", "Succeeded")
                if status not in FINAL_STATUSES or action.data["status"] in FINAL_STATUSES:
                    raise ValueError(
                        f"status must be one of {sorted(FINAL_STATUSES)}, on an action not final"
                    )
                self._finish(action, status, now)
                return action.data
            case ("GET", "/_control/requests"):
                return self.requests
            case ("GET", "/_control/stats"):
                return self.stats
            case ("POST", "/_control/reset"):
                self.reset()
                return {"reset": True}
        raise ApiError(404, "NotFound", f"No control endpoint {method} {path}")


def _match(method: str, path: str) -> tuple[_Route | None, str]:
    for route in _ROUTES:
        found = route.pattern.fullmatch(path)
        if found and route.method == method:
            return route, found.group(1)
    return None, ""


def _online(machine: Mapping[str, Any]) -> bool:
    return machine.get("healthStatus") == "Active"


def _peek_claims(headers: Mapping[str, str]) -> dict[str, Any] | None:
    """aud/roles/appid of the presented token, unverified (for the request log only)."""
    _, _, token = (headers.get("Authorization") or "").partition(" ")
    try:
        claims = jwt.decode(token.strip(), options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return None
    return {k: claims.get(k) for k in ("aud", "roles", "appid")}


def _json_body(call: _Call, allowed: set[str]) -> dict[str, Any]:
    """The POST body: a JSON object of known, case-sensitive properties with a ``Comment``."""
    content_type = (call.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise ApiError(400, "InvalidRequestBody", "Content-Type must be application/json")
    try:
        body = json.loads(call.body)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ApiError(400, "InvalidRequestBody", "The request body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(400, "InvalidRequestBody", f"Unknown properties: {', '.join(unknown)}")
    comment = body.get("Comment")
    if comment is not None and not isinstance(comment, str):
        raise ApiError(400, "InvalidRequestBody", "Comment must be a string")
    if not comment or not comment.strip():
        raise ApiError(400, "MissingRequiredParameter", "Comment is required")
    return body


def _query(
    rows: list[dict[str, Any]], query: Mapping[str, str], fields: frozenset[str]
) -> list[dict[str, Any]]:
    """Apply the supported OData subset: $filter, $top, $skip."""
    unsupported = sorted(k for k in query if k.startswith("$") and k not in ("$filter", "$top", "$skip"))
    if unsupported:
        raise ApiError(400, "InvalidInput", f"Unsupported query options: {', '.join(unsupported)}")
    terms = _parse_filter(query["$filter"], fields) if "$filter" in query else []
    rows = [r for r in rows if all(_holds(r.get(f), op, lit, f in DATETIME_FIELDS) for f, op, lit in terms)]
    try:
        top, skip = int(query.get("$top", "10000")), int(query.get("$skip", "0"))
    except ValueError:
        raise ApiError(400, "InvalidInput", "$top and $skip must be integers") from None
    if not 0 <= top <= 10000 or skip < 0:
        raise ApiError(400, "InvalidInput", "$top must be between 0 and 10000 and $skip >= 0")
    return rows[skip : skip + top]


def _parse_filter(text: str, fields: frozenset[str]) -> list[tuple[str, str, str | None]]:
    """``field op literal [and ...]`` -> [(field, op, literal)]; a quoted literal is unescaped."""
    terms, pos = [], 0
    while True:
        term, pos = _parse_term(text, pos, fields)
        terms.append(term)
        if pos == len(text):
            return terms
        joined = _AND.match(text, pos)
        if joined is None:
            raise ApiError(400, "InvalidInput", f"Invalid $filter near position {pos}: {text!r}")
        pos = joined.end()


def _parse_term(text: str, pos: int, fields: frozenset[str]) -> tuple[tuple[str, str, str | None], int]:
    """One ``startswith(field,'text')`` or ``field op literal`` term at ``pos``, and where it ends."""
    prefix = _STARTSWITH.match(text, pos)
    if prefix is not None and prefix.group(1) in fields and prefix.group(1) not in DATETIME_FIELDS:
        return (prefix.group(1), "startswith", prefix.group(2)[1:-1].replace("''", "'")), prefix.end()
    term = _TERM.match(text, pos)
    if term is None or term.group(1) not in fields:
        raise ApiError(400, "InvalidInput", f"Invalid $filter near position {pos}: {text!r}")
    field, op, literal = term.groups()
    if op not in ("eq", "ne") and field not in DATETIME_FIELDS:
        raise ApiError(400, "InvalidInput", f"Operator {op} is not supported on {field}")
    if literal.startswith("'"):
        value: str | None = literal[1:-1].replace("''", "'")
    else:
        value = None if literal == "null" else literal
    return (field, op, value), term.end()


def _holds(value: Any, op: str, literal: str | None, is_datetime: bool) -> bool:
    """One filter term against one value: datetimes compare as instants, text ignoring case."""
    if literal is None or value is None:
        return op in ("eq", "ne") and (literal is None and value is None) == (op == "eq")
    left: Any
    right: Any
    if is_datetime:
        try:
            left, right = _parse_datetime(str(value)), _parse_datetime(literal)
        except ValueError:
            raise ApiError(400, "InvalidInput", f"Not a datetime: {literal!r}") from None
    else:
        left, right = str(value).casefold(), literal.casefold()
    return bool(OPERATORS[op](left, right))


def _fault(spec: Mapping[str, Any]) -> dict[str, Any]:
    api = spec.get("api", "*")
    if api not in (*API_GROUPS, "*"):
        raise ValueError(f"api must be one of {API_GROUPS} or '*'")
    status = int(spec.get("status", 0))
    retry_after = spec.get("retryAfter", 1 if status == 429 else None)
    return {
        "api": api,
        "status": status,
        "count": int(spec.get("count", 1)),
        "retryAfter": int(retry_after) if retry_after is not None else None,
        "delay_s": float(spec.get("delay_s", 0)),
        "code": spec.get("code"),
        "message": spec.get("message"),
    }


def _error_body(code: str, message: str) -> dict[str, Any]:
    """MDE's error shape; ``target`` is a fresh correlation id."""
    return {"error": {"code": code, "message": message, "target": str(uuid.uuid4())}}


def _entity(data: Mapping[str, Any]) -> dict[str, Any]:
    return {"@odata.context": f"{METADATA}#MachineActions/$entity", **data}


def _public(machine: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in machine.items() if k not in SIM_ONLY}


def _collection(entity_set: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"@odata.context": f"{METADATA}#{entity_set}", "value": rows}


class _Handler(JsonHandler):
    server_version = "devstack-mde/1.0"

    def dispatch(self, method: str) -> None:
        app: MdeSimulator = self.server.app  # type: ignore[attr-defined]
        status, headers, payload = app.handle(method, self.path, dict(self.headers.items()), self.read_body())
        self.send_json(status, payload, headers)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.mde_simulator",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--signing-secret", required=True, help="shared with the identity endpoint")
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--pending-s", type=float, default=5.0)
    parser.add_argument("--in-progress-s", type=float, default=10.0)
    parser.add_argument("--action-timeout-s", type=float, default=3 * DAY)
    parser.add_argument("--duplicate-mode", choices=DUPLICATE_MODES, default="400")
    parser.add_argument("--rate-per-minute", type=int, default=100)
    parser.add_argument("--rate-per-hour", type=int, default=1500)
    parser.add_argument("--audience", action="append", help="an accepted token audience (repeatable)")
    parser.add_argument("--machines", help="a JSON file with a list of machines to seed instead")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    machines = None
    if args.machines:
        with open(args.machines, encoding="utf-8") as f:
            machines = json.load(f)
    simulator = MdeSimulator(
        signing_secret=args.signing_secret,
        time_scale=args.time_scale,
        pending_s=args.pending_s,
        in_progress_s=args.in_progress_s,
        action_timeout_s=args.action_timeout_s,
        duplicate_mode=args.duplicate_mode,
        rate_per_minute=args.rate_per_minute,
        rate_per_hour=args.rate_per_hour,
        audiences=args.audience or DEFAULT_AUDIENCES,
        machines=machines,
    )
    simulator.start(args.host, args.port)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        simulator.stop()


if __name__ == "__main__":
    main()
