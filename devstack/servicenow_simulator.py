"""A ServiceNow Table API simulator.

Follows ServiceNow's public documentation:
 - Table API (GET list, GET record, PATCH; ``sysparm_query``, ``sysparm_fields``,
   ``sysparm_display_value``, ``sysparm_exclude_reference_link``, ``sysparm_limit``,
   ``sysparm_offset``, ``X-Total-Count``): https://www.servicenow.com/docs/r/api-reference/rest-apis/c_TableAPI.html
 - Encoded queries and invalid queries (``glide.invalid_query.returns_no_rows``): the same page, and
   https://www.servicenow.com/docs/r/api-reference/server-api-reference/c_GlideQueryConditionScopedAPI.html
 - Status codes: https://www.servicenow.com/docs/r/api-reference/rest-api-explorer/r_RESTAPIHTTPResponseCodes.html
 - Rate limits (429, ``Retry-After``, ``X-RateLimit-*``, error body):
   https://www.servicenow.com/docs/r/api-reference/rest-api-explorer/inbound-REST-API-rate-limiting.html

Paths: ``/api/now/table/{table}`` and ``/api/now/table/{table}/{sys_id}`` (also ``/api/now/v1/...``
and ``/api/now/v2/...``; v1 answers a query with no rows 404, v2 and the default 200 with ``[]``).
Auth: HTTP Basic. Errors: ``{"error": {"message", "detail"}, "status": "failure"}``.

A request is decided in this order: authentication (401 "User Not Authenticated"), route (400
"Requested URI does not represent any resource", 405 for another method), rate limit (429 with
``Retry-After``), injected faults, unknown table (400 "Invalid table <name>"), a table the ACLs deny
(403 "User Not Authorized"), then the call. Row-level ACLs filter: a hidden record is left out of a
query and is 404 "No Record found" by sys_id, as for one that does not exist.

Display values: ``false`` (default) gives stored values, a reference as ``{"link", "value"}``;
``true`` gives display values, a reference as ``{"display_value", "link"}``; ``all`` gives
``{"display_value", "value"}`` for every field, plus ``link`` for a reference.
``sysparm_exclude_reference_link=true`` drops the links (a reference is then a plain string under
``false``/``true``). Dot-walked fields (``requested_for.email``) are keyed by their path. Invalid
``sysparm_fields`` names are ignored, as documented.

Choices where the docs are silent: ``sysparm_limit``/``sysparm_offset`` that are not whole numbers
are 400; a PATCH body that is not a JSON object is 400; ``sys_`` fields in a PATCH are ignored, as
are unknown ones; a journal field (``work_notes``, ``comments``) reads as ``""`` and its display
value lists its entries newest first; POST and DELETE are not simulated (405).

Control API (no auth; JSON): see ``devstack.servicenow_control``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

from .servicenow_control import control, seed
from .servicenow_query import parse_query
from .servicenow_store import Record, ServiceNowStore
from .simbase import ApiRequest, SimError, TicketSimulator
from .simkit import basic_credentials, header

logger = logging.getLogger(__name__)

_PATH = re.compile(r"/api/now(?:/(v1|v2))?/table/([^/]+)(?:/([^/]+))?")
INTEGRATION_USER = "svc_containment"


class SnError(SimError):
    """An answer with ServiceNow's error body."""

    def __init__(
        self, status: int, message: str, detail: str | None, headers: Mapping[str, str] | None = None
    ):
        super().__init__(
            status, {"error": {"message": message, "detail": detail}, "status": "failure"}, headers
        )


@dataclasses.dataclass
class _Call:
    version: str | None
    table: str
    sys_id: str | None
    params: dict[str, str]
    body: bytes
    user: str
    base: str


class ServiceNowSimulator(TicketSimulator):
    """In-process ServiceNow: ``start()`` returns the instance URL (no trailing slash); ``stop()``."""

    name = "servicenow-simulator"

    def __init__(
        self,
        *,
        accounts: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._initial_accounts = dict(accounts or {INTEGRATION_USER: secrets.token_urlsafe(24)})
        super().__init__(clock)
        self.reset()

    def reset_state(self) -> None:
        self.store = ServiceNowStore()
        self.accounts = dict(self._initial_accounts)
        self.denied_tables: set[str] = set()
        self.invalid_query_returns_no_rows = False
        seed(self)

    def control(self, method: str, path: str, query: Mapping[str, list[str]], body: Any) -> Any:
        return control(self, method, path, {k: v[0] for k, v in query.items()}, body)

    def fault_error(self, status: int, headers: dict[str, str]) -> SimError:
        return SnError(status, "Injected fault", f"HTTP {status}", headers)

    # -- one HTTP request -------------------------------------------------------------------------

    def serve(self, request: ApiRequest) -> tuple[int, dict[str, str], Any]:
        user = request.entry["account"] = self._authenticate(request.headers)
        method = request.method
        found = _PATH.fullmatch(request.path)
        if found is None:
            raise SnError(400, "Requested URI does not represent any resource", None)
        version, table, sys_id = found.groups()
        if (method, sys_id is None) not in (("GET", True), ("GET", False), ("PATCH", False), ("PUT", False)):
            raise SnError(405, "Method not Supported", f"HTTP method {method} is not supported here")
        self._throttle()
        self.raise_injected_fault(method, request.path)
        params = {k: v[0] for k, v in request.query.items()}
        base = f"http://{header(request.headers, 'Host')}"
        call = _Call(version, table, sys_id, params, request.body, user, base)
        with self.lock:
            if table not in self.store.tables:
                raise SnError(400, f"Invalid table {table}", None)
            if table in self.denied_tables:
                raise SnError(403, "User Not Authorized", "Failed API level ACL Validation")
            if sys_id is None:
                return self._list(call)
            return 200, {}, {"result": self._one(call, method)}

    def _authenticate(self, headers: Mapping[str, str]) -> str:
        credentials = basic_credentials(header(headers, "Authorization"))
        with self.lock:
            if credentials is not None:
                password = self.accounts.get(credentials[0])
                if password is not None and secrets.compare_digest(password, credentials[1]):
                    return credentials[0]
        raise SnError(
            401,
            "User Not Authenticated",
            "Required to provide Auth information",
            {"WWW-Authenticate": 'BASIC realm="Service-now"'},
        )

    def _throttle(self) -> None:
        wait = self.rate_limit.admit()
        if wait is None:
            return
        limit = self.rate_limit.limit
        headers = {
            "Retry-After": str(wait),
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Reset": str(int(self.clock()) + wait),
            "X-RateLimit-Rule": "b3b7a4f1c3a21010a3e4d7a5e001c2d1",
        }
        detail = f"Rate limit of {limit} requests per {self.rate_limit.window_s:g} s for Table API exceeded"
        raise SnError(429, "Rate limit exceeded", detail, headers)

    # -- API calls (called with the lock held) ----------------------------------------------------

    def _list(self, call: _Call) -> tuple[int, dict[str, str], Any]:
        query_text = call.params.get("sysparm_query")
        if query_text is None:  # name-value pairs filter instead, when there is no encoded query
            pairs = [f"{k}={v}" for k, v in call.params.items() if not k.startswith("sysparm_")]
            query_text = "^".join(p.replace("^", "^^") for p in pairs)
        query = parse_query(query_text, lambda path: self.store.valid_path(call.table, path))
        rows = self.store.select(call.table, query, self.invalid_query_returns_no_rows)
        offset = _whole(call.params, "sysparm_offset", 0)
        limit = _whole(call.params, "sysparm_limit", 10000)
        page = rows[offset : offset + limit]
        if call.version == "v1" and not page:
            raise SnError(404, "No Record found", "Records not found")
        result = [self._render(call, r) for r in page]
        return 200, {"X-Total-Count": str(len(rows))}, {"result": result}

    def _one(self, call: _Call, method: str) -> dict[str, Any]:
        record = self.store.tables[call.table].get(call.sys_id or "")
        if record is None or call.sys_id in self.store.hidden:
            raise SnError(
                404, "No Record found", "Record doesn't exist or ACL restricts the record retrieval"
            )
        if method in ("PATCH", "PUT"):
            changes = _json_object(call.body)
            self.store.upsert(call.table, call.sys_id, changes, call.user, self.clock())
            logger.info(
                "record updated table=%s sys_id=%s fields=%s", call.table, call.sys_id, sorted(changes)
            )
        return self._render(call, record)

    def _render(self, call: _Call, record: Record) -> dict[str, Any]:
        mode = call.params.get("sysparm_display_value", "false").lower()
        mode = mode if mode in ("true", "false", "all") else "false"
        links = call.params.get("sysparm_exclude_reference_link", "false").lower() != "true"
        wanted = [f.strip() for f in call.params.get("sysparm_fields", "").split(",") if f.strip()]
        fields = (
            [f for f in dict.fromkeys(wanted) if self.store.valid_path(call.table, f)] if wanted else record
        )
        return {f: self.store.render(call.table, record, f, mode, links, call.base) for f in fields}


def _whole(params: Mapping[str, str], name: str, default: int) -> int:
    text = params.get(name)
    if text is None:
        return default
    if not text.isdigit():
        raise SnError(400, f"Invalid value for {name}", f"{name} must be a whole number, got {text!r}")
    return int(text)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise SnError(400, "Exception while reading request", "The payload is not valid JSON.")
    return parsed
