"""A small client for the MDE machine-action API (see docs/mde-api.md).

The transport (``_call``) owns the session, the auth header, timeouts and the mapping of error
responses to typed errors; the endpoint methods only validate identifiers and build paths.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote

import requests

from .errors import (
    ActionAlreadyPending,
    InvalidRequest,
    MdeApiError,
    MdeNotFound,
    MdePermanentError,
    MdeThrottledLocally,
    MdeTransientError,
)
from .identity import TokenProvider

logger = logging.getLogger(__name__)

MACHINE_ID = re.compile(r"[0-9a-f]{40}")
_GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
ISOLATION_TYPES = ("Full", "Selective", "UnManagedDevice")
FINAL_STATUSES = frozenset({"succeeded", "failed", "timeout", "cancelled", "canceled"})
IsolationType = Literal["Full", "Selective", "UnManagedDevice"]


def validate_machine_id(value: object) -> str:
    """A 40-hex MDE machine id, lower-cased; anything else is refused before it nears a URL."""
    if isinstance(value, str) and MACHINE_ID.fullmatch(value.lower()):
        return value.lower()
    raise InvalidRequest("InvalidMachineId", "machineId must be 40 hexadecimal characters")


def validate_action_id(value: object) -> str:
    """A MachineAction id is a GUID."""
    if isinstance(value, str) and _GUID.fullmatch(value):
        return value
    raise InvalidRequest("InvalidActionId", "a machine action id must be a GUID")


def odata_string(value: str) -> str:
    """An OData string literal: quotes doubled, so a value can never end the literal early."""
    return "'" + value.replace("'", "''") + "'"


def is_final(status: str) -> bool:
    """True for a MachineAction status that will not change any more."""
    return status.lower() in FINAL_STATUSES


@dataclass(frozen=True)
class MachineAction:
    """A MachineAction as MDE returned it; ``raw`` is carried unchanged into result messages."""

    raw: Mapping[str, Any]

    @property
    def id(self) -> str:
        return str(self.raw.get("id", ""))

    @property
    def type(self) -> str:
        return str(self.raw.get("type", ""))

    @property
    def status(self) -> str:
        return str(self.raw.get("status", ""))

    @property
    def machine_id(self) -> str:
        return str(self.raw.get("machineId", ""))

    @property
    def created(self) -> str:
        return str(self.raw.get("creationDateTimeUtc", ""))


# status -> error class for responses that are not 2xx; anything unlisted >= 500 is transient.
_ERRORS_BY_STATUS: dict[int, type[MdeApiError]] = {
    400: MdePermanentError,
    401: MdePermanentError,
    403: MdePermanentError,
    404: MdeNotFound,
    408: MdeTransientError,
    409: MdePermanentError,
    429: MdeTransientError,
}


def _error_from_response(method: str, url: str, response: requests.Response) -> MdeApiError:
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    code = str(error.get("code") or response.reason or "HttpError")
    message = str(error.get("message") or f"HTTP {response.status_code}")[:500]
    target = error.get("target")
    target = str(target) if target is not None else None
    facts: dict[str, Any] = {"method": method, "url": url, "status": response.status_code, "target": target}
    if response.status_code == 400 and (
        code == "ActiveRequestAlreadyExists" or "already in progress" in message.lower()
    ):
        return ActionAlreadyPending(code, message, **facts)
    cls = _ERRORS_BY_STATUS.get(response.status_code)
    if cls is None:
        cls = MdeTransientError if response.status_code >= 500 else MdePermanentError
    if cls is MdeTransientError:
        return MdeTransientError(code, message, retry_after=_retry_after(response), **facts)
    return cls(code, message, **facts)


MAX_RETRY_AFTER_S = 3600.0  # the longest MDE window: a larger value is not a real wait


def _retry_after(response: requests.Response) -> float | None:
    raw = response.headers.get("Retry-After")
    try:
        return min(MAX_RETRY_AFTER_S, max(0.0, float(raw))) if raw is not None else None
    except ValueError:
        return None


ApiGroup = Literal["isolate", "unisolate", "cancel", "machineactions", "machines", "findbyip"]
CALLS_PER_MINUTE = 100  # MDE's limit per API, for every app of a tenant (mde-api.md)
CALLS_PER_HOUR = 1500
OPTIONAL_SHARE = 0.5  # best-effort reads leave the other half of a group's budget to what must run
YIELD_SHARE = 0.8  # above this share of a minute, a release's calls yield to containment's...
RELEASE_FLOOR_SHARE = 0.05  # ...except for this share of the minute, which releases always get


class CallBudget:
    """What this process has spent of MDE's per-API limits, and what MDE told it to wait for.

    Two uses: a best-effort read (the device state on a result) is only made while the group has
    spare budget, so containment's own calls on a shared group (a release's state read and an
    isolation's policy look-up both count against ``machines``) are never the ones that meet a 429;
    and after a 429 a call to that group is not made again before its ``Retry-After`` has passed
    (it would only earn another 429). Per process: other instances are not seen, so this avoids
    429s rather than rules them out; the pipeline still handles every 429 MDE returns.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        per_minute: int = CALLS_PER_MINUTE,
        per_hour: int = CALLS_PER_HOUR,
    ) -> None:
        self._clock = clock
        self.per_minute = per_minute
        self.per_hour = per_hour
        self._lock = threading.Lock()
        self._calls: dict[str, deque[float]] = {}
        self._blocked_until: dict[str, float] = {}

    def spend(self, group: str) -> None:
        now = self._clock()
        with self._lock:
            self._record(group, now)

    def _record(self, group: str, now: float) -> None:
        calls = self._calls.setdefault(group, deque())
        calls.append(now)
        while calls and calls[0] <= now - 3600:
            calls.popleft()

    def throttled(self, group: ApiGroup, retry_after: float | None) -> None:
        """MDE answered 429: nothing to this group before ``Retry-After`` (60 s if it gave none)."""
        until = self._clock() + (60.0 if retry_after is None else retry_after)
        with self._lock:
            self._blocked_until[group] = max(until, self._blocked_until.get(group, 0.0))

    def wait_s(self, group: ApiGroup) -> float:
        """Seconds until MDE accepts calls to this group again, as far as this process knows."""
        with self._lock:
            return max(0.0, self._blocked_until.get(group, 0.0) - self._clock())

    def spent(self, group: str, window_s: float) -> int:
        now = self._clock()
        with self._lock:
            return self._count(group, now, window_s)

    def _count(self, group: str, now: float, window_s: float) -> int:
        return sum(1 for t in self._calls.get(group, ()) if t > now - window_s)

    def has_spare(self, group: ApiGroup) -> bool:
        """True when an optional call fits: not throttled, and under half of both windows."""
        return (
            self.wait_s(group) == 0.0
            and self.spent(group, 60) < self.per_minute * OPTIONAL_SHARE
            and self.spent(group, 3600) < self.per_hour * OPTIONAL_SHARE
        )

    def admit_release(self, group: ApiGroup) -> bool:
        """May a release make its (essential) call to an API that containment also needs? Yes while
        the API has used under 80 % of its minute; above that, only within the releases' floor of
        5 % of the minute (5 calls of 100), which is counted here. So during a storm that keeps the
        API busy, containment gets the rest and releases still move, at the floor's pace."""
        now = self._clock()
        with self._lock:
            if self._count(group, now, 60) < self.per_minute * YIELD_SHARE:
                return True
            floor = f"release-floor:{group}"
            if self._count(floor, now, 60) < max(1.0, self.per_minute * RELEASE_FLOOR_SHARE):
                self._record(floor, now)
                return True
            return False


class MdeClient:
    """Calls the MDE API with app-only tokens. Create once per process and reuse."""

    def __init__(
        self,
        base_url: str,
        token_provider: TokenProvider,
        *,
        timeout: tuple[float, float] = (5.0, 30.0),
        retries: int = 2,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        budget: CallBudget | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._tokens = token_provider
        self._timeout = timeout
        self._retries = retries
        self._session = session or requests.Session()
        self._sleep = sleep
        self.budget = budget or CallBudget()

    def _call(self, group: ApiGroup, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """One API call. 5xx and network errors are retried a few times with jittered backoff;
        429 is not (the pipeline re-enqueues the request for ``Retry-After``)."""
        for attempt in range(self._retries + 1):
            try:
                return self._call_once(group, method, path, body)
            except MdeTransientError as e:
                if e.status == 429 or attempt == self._retries:
                    raise
                self._sleep(random.uniform(0.5, 1.5) * 2**attempt)  # noqa: S311 - jitter, not crypto
        raise AssertionError("unreachable")

    def _call_once(self, group: ApiGroup, method: str, path: str, body: Mapping[str, Any] | None) -> Any:
        url = f"{self._base_url}{path}"
        wait = self.budget.wait_s(group)
        if wait > 0:  # MDE said when: calling earlier only earns another 429
            raise MdeThrottledLocally(
                "TooManyRequests",
                f"MDE throttled the {group} API; {wait:.1f} s of its Retry-After left",
                retry_after=wait,
                method=method,
                url=url,
                status=429,
            )
        self.budget.spend(group)
        headers = {"Authorization": f"Bearer {self._tokens.get_token()}", "Accept": "application/json"}
        try:
            response = self._session.request(
                method, url, json=body, headers=headers, timeout=self._timeout, allow_redirects=False
            )
        except requests.Timeout as e:
            raise MdeTransientError("Timeout", str(e), method=method, url=url) from e
        except requests.RequestException as e:
            raise MdeTransientError("ConnectionError", str(e), method=method, url=url) from e
        if response.status_code >= 300:
            error = _error_from_response(method, url, response)
            if response.status_code == 429:
                self.budget.throttled(group, getattr(error, "retry_after", None))
            logger.warning("MDE call failed %s", error)
            raise error
        try:
            return response.json()
        except ValueError as e:
            raise MdeTransientError(
                "InvalidResponse",
                "MDE returned a non-JSON success body",
                method=method,
                url=url,
                status=response.status_code,
            ) from e

    def _action(
        self, group: ApiGroup, method: str, path: str, body: Mapping[str, Any] | None = None
    ) -> MachineAction:
        data = self._call(group, method, path, body)
        if not isinstance(data, dict) or not data.get("id"):
            raise MdeTransientError(
                "InvalidResponse", "MDE returned no machine action", method=method, url=path
            )
        return MachineAction(data)

    def isolate(self, machine_id: str, comment: str, isolation_type: IsolationType) -> MachineAction:
        """``POST /api/machines/{id}/isolate``."""
        if isolation_type not in ISOLATION_TYPES:
            raise InvalidRequest("InvalidIsolationType", f"unknown isolation type {isolation_type!r}")
        path = f"/api/machines/{validate_machine_id(machine_id)}/isolate"
        return self._action("isolate", "POST", path, {"Comment": comment, "IsolationType": isolation_type})

    def unisolate(self, machine_id: str, comment: str) -> MachineAction:
        """``POST /api/machines/{id}/unisolate``."""
        path = f"/api/machines/{validate_machine_id(machine_id)}/unisolate"
        return self._action("unisolate", "POST", path, {"Comment": comment})

    def get_action(self, action_id: str) -> MachineAction:
        """``GET /api/machineactions/{id}``."""
        return self._action("machineactions", "GET", f"/api/machineactions/{validate_action_id(action_id)}")

    def cancel_action(self, action_id: str, comment: str) -> MachineAction:
        """``POST /api/machineactions/{id}/cancel``."""
        path = f"/api/machineactions/{validate_action_id(action_id)}/cancel"
        return self._action("cancel", "POST", path, {"Comment": comment})

    def list_actions(self, machine_id: str, action_type: str) -> list[MachineAction]:
        """Actions of one type on one machine, newest first (sorted here: the API has no $orderby)."""
        if not re.fullmatch(r"[A-Za-z]{1,40}", action_type):
            raise InvalidRequest("InvalidActionType", "action type must be a plain word")
        odata_filter = (
            f"machineId eq {odata_string(validate_machine_id(machine_id))} "
            f"and type eq {odata_string(action_type)}"
        )
        data = self._call(
            "machineactions", "GET", f"/api/machineactions?$filter={quote(odata_filter, safe='')}"
        )
        actions = [MachineAction(a) for a in _values(data)]
        return sorted(actions, key=lambda a: a.created, reverse=True)

    def get_machine(self, machine_id: str) -> dict[str, Any]:
        """``GET /api/machines/{id}``."""
        data = self._call("machines", "GET", f"/api/machines/{validate_machine_id(machine_id)}")
        if not isinstance(data, dict):
            raise MdeTransientError("InvalidResponse", "machine is not an object", method="GET", url="")
        return data

    def find_machines_by_dns_name(self, dns_name: str) -> list[dict[str, Any]]:
        """``GET /api/machines?$filter=computerDnsName eq '...'`` (exact, OData-escaped)."""
        odata_filter = f"computerDnsName eq {odata_string(dns_name)}"
        return _values(self._call("machines", "GET", f"/api/machines?$filter={quote(odata_filter, safe='')}"))

    def find_machines_by_dns_prefix(self, prefix: str) -> list[dict[str, Any]]:
        """``GET /api/machines?$filter=startswith(computerDnsName,'...')``: for a bare host name,
        whose records carry the FQDN. Callers keep exact first-label matches only."""
        odata_filter = f"startswith(computerDnsName,{odata_string(prefix)})"
        return _values(self._call("machines", "GET", f"/api/machines?$filter={quote(odata_filter, safe='')}"))

    def find_machines_by_ip(self, ip_address: str, timestamp: datetime) -> list[dict[str, Any]]:
        """``GET /api/machines/findbyip(ip='..',timestamp=..)``: devices seen with that IP +-15 min."""
        ip = str(ipaddress.ip_address(ip_address))
        when = timestamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        path = f"/api/machines/findbyip(ip='{ip}',timestamp={when})"
        return _values(self._call("findbyip", "GET", path))


def _values(data: Any) -> list[dict[str, Any]]:
    values = data.get("value") if isinstance(data, dict) else None
    if not isinstance(values, list):
        raise MdeTransientError("InvalidResponse", "collection without a value array", method="GET", url="")
    return [v for v in values if isinstance(v, dict)]
