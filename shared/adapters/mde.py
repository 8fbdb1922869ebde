"""The MDE machine-action API client: the ``Mde`` port over HTTP (docs/mde-api.md).

The transport (``_call``) owns the session, the auth header, timeouts, the call budget and the
mapping of error responses to typed errors; the endpoint methods only validate identifiers and
build paths.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import requests

from ..domain.model import (
    ISOLATION_TYPES,
    IsolationType,
    MachineAction,
    validate_action_id,
    validate_device_name,
    validate_ip_address,
    validate_machine_id,
)
from ..errors import (
    ActionAlreadyPending,
    InvalidRequest,
    MdeApiError,
    MdeNotFound,
    MdePermanentError,
    MdeThrottled,
    MdeThrottledLocally,
    MdeTransientError,
)
from ..ports import ApiGroup, Machine
from .budget import MAX_RETRY_AFTER_S, CallBudget
from .identity import TokenProvider

logger = logging.getLogger(__name__)


def odata_string(value: str) -> str:
    """An OData string literal: quotes doubled, so a value can never end the literal early."""
    return "'" + value.replace("'", "''") + "'"


# status -> error class for responses that are not 2xx; anything unlisted >= 500 is transient.
_ERRORS_BY_STATUS: dict[int, type[MdeApiError]] = {
    400: MdePermanentError,
    401: MdePermanentError,
    403: MdePermanentError,
    404: MdeNotFound,
    408: MdeTransientError,
    409: MdePermanentError,
    429: MdeThrottled,
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
    if issubclass(cls, MdeTransientError):
        return cls(code, message, retry_after=_retry_after(response), **facts)
    return cls(code, message, **facts)


def _retry_after(response: requests.Response) -> float | None:
    raw = response.headers.get("Retry-After")
    try:
        return min(MAX_RETRY_AFTER_S, max(0.0, float(raw))) if raw is not None else None
    except ValueError:
        return None


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
        app_id: str | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._app_id = app_id
        self._tokens = token_provider
        self._timeout = timeout
        self._retries = retries
        self._session = session or requests.Session()
        self._sleep = sleep
        self._budget = budget or CallBudget()

    def app_id(self) -> str:
        """The configured client id (AZURE_CLIENT_ID), else the ``appid`` of our own token."""
        if self._app_id is None:
            self._app_id = token_app_id(self._tokens.get_token())
        return self._app_id

    def has_spare(self, group: ApiGroup) -> bool:
        return self._budget.has_spare(group)

    def admit_release(self, group: ApiGroup) -> bool:
        return self._budget.admit_release(group)

    def _call(self, group: ApiGroup, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """One API call. 5xx and network errors are retried a few times with jittered backoff (a
        retry that heals is not logged); a 429 is not retried here: the caller waits in the queue."""
        for attempt in range(self._retries + 1):
            try:
                return self._call_once(group, method, path, body)
            except MdeThrottled as e:
                logger.info("MDE throttled %s", e)
                raise
            except MdeTransientError as e:
                if attempt == self._retries:
                    logger.warning("MDE call failed %s", e)
                    raise
                self._sleep(random.uniform(0.5, 1.5) * 2**attempt)  # noqa: S311 - jitter, not crypto
            except MdeApiError as e:
                logger.warning("MDE call failed %s", e)
                raise
        raise AssertionError("unreachable")

    def _call_once(self, group: ApiGroup, method: str, path: str, body: Mapping[str, Any] | None) -> Any:
        url = f"{self._base_url}{path}"
        wait = self._budget.wait_s(group)
        if wait > 0:  # MDE said when: calling earlier only earns another 429
            refused = MdeThrottledLocally(
                "TooManyRequests",
                f"MDE throttled the {group} API; {wait:.1f} s of its Retry-After left",
                retry_after=wait,
                method=method,
                url=url,
                status=429,
            )
            refused.frees_within = self._budget.refused(group)
            raise refused
        spent_at = self._budget.spend(group)
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
            if isinstance(error, MdeThrottled):
                error.frees_within = self._budget.throttled(group, error.retry_after, spent_at)
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

    def list_actions(self, machine_id: str, action_type: str | None = None) -> list[MachineAction]:
        """Actions on one machine (of one type, when given), newest first (sorted here)."""
        odata_filter = f"machineId eq {odata_string(validate_machine_id(machine_id))}"
        if action_type is not None:
            if not re.fullmatch(r"[A-Za-z]{1,40}", action_type):
                raise InvalidRequest("InvalidActionType", "action type must be a plain word")
            odata_filter += f" and type eq {odata_string(action_type)}"
        data = self._call(
            "machineactions", "GET", f"/api/machineactions?$filter={quote(odata_filter, safe='')}"
        )
        actions = [MachineAction(a) for a in _values(data)]
        return sorted(actions, key=lambda a: a.created, reverse=True)

    def get_machine(self, machine_id: str) -> Machine:
        """``GET /api/machines/{id}``."""
        data = self._call("machines", "GET", f"/api/machines/{validate_machine_id(machine_id)}")
        if not isinstance(data, dict):
            raise MdeTransientError("InvalidResponse", "machine is not an object", method="GET", url="")
        return data

    def find_machines_by_dns_name(self, dns_name: str) -> list[Machine]:
        """``GET /api/machines?$filter=computerDnsName eq '...'`` (exact, OData-escaped)."""
        odata_filter = f"computerDnsName eq {odata_string(validate_device_name(dns_name))}"
        return _values(self._call("machines", "GET", f"/api/machines?$filter={quote(odata_filter, safe='')}"))

    def find_machines_by_dns_prefix(self, prefix: str) -> list[Machine]:
        """``GET /api/machines?$filter=startswith(computerDnsName,'...')``: for a bare host name,
        whose records carry the FQDN. Callers keep exact first-label matches only."""
        odata_filter = f"startswith(computerDnsName,{odata_string(validate_device_name(prefix))})"
        return _values(self._call("machines", "GET", f"/api/machines?$filter={quote(odata_filter, safe='')}"))

    def find_machines_by_ip(self, ip_address: str, timestamp: datetime) -> list[Machine]:
        """``GET /api/machines/findbyip(ip='..',timestamp=..)``: devices seen with that IP +-15 min."""
        ip = validate_ip_address(ip_address)
        when = timestamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        path = f"/api/machines/findbyip(ip='{ip}',timestamp={when})"
        return _values(self._call("findbyip", "GET", path))


def token_app_id(token: str) -> str:
    """The client id in an access token's claims (``appid`` in v1 tokens, ``azp`` in v2); '' when
    it cannot be read. Our own token, from our own identity endpoint: read, not verified."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return ""
    found = claims.get("appid") or claims.get("azp") if isinstance(claims, dict) else None
    return found if isinstance(found, str) else ""


def _values(data: Any) -> list[dict[str, Any]]:
    values = data.get("value") if isinstance(data, dict) else None
    if not isinstance(values, list):
        raise MdeTransientError("InvalidResponse", "collection without a value array", method="GET", url="")
    return [v for v in values if isinstance(v, dict)]
