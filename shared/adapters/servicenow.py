"""A thin ServiceNow Table API client: read a record by number, list who approved it, add a work
note.

Reads ask for ``sysparm_display_value=all``, so every field comes back as ``{"display_value",
"value"}`` (a reference adds ``link``). Table names, record numbers, sys_ids and field names are
validated with full-match patterns before they go into a URL or an encoded query, so no ``^`` or
``=`` can reach ``sysparm_query`` from a caller's value.

ServiceNow drops the invalid part of an encoded query (an unknown field, say) and answers with the
rest, which may be every row of the table. So the client checks that each row it returns does
match what it asked for, and refuses the answer (``ServiceNowInvalidQuery``) when one does not.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import requests

from ..errors import InvalidRequest
from .ticket_http import TicketBadRequest, TicketTransport, basic_auth, full_match

TABLE = re.compile(r"[a-z][a-z0-9_]{0,79}")
NUMBER = re.compile(r"[A-Za-z0-9]{1,40}")
SYS_ID = re.compile(r"[0-9a-f]{32}")
FIELD = re.compile(r"[a-z][a-z0-9_]{0,79}(?:\.[a-z][a-z0-9_]{0,79}){0,4}")  # dot-walking allowed
APPROVAL_FIELDS = ("sys_id", "sysapproval", "approver", "approver.user_name", "approver.email",
                   "approver.name", "state", "sys_updated_on")  # fmt: skip
WORK_NOTE_MAX_CHARS = 65536
PAGE = 100
MAX_PAGES = 50


def validate_table(value: object) -> str:
    return full_match(
        TABLE, value, "InvalidServiceNowTable", "a ServiceNow table name is [a-z][a-z0-9_]{0,79}"
    )


def validate_number(value: object) -> str:
    message = "a ServiceNow record number is 1 to 40 letters and digits"
    return full_match(NUMBER, value, "InvalidServiceNowNumber", message)


def validate_sys_id(value: object) -> str:
    message = "a ServiceNow sys_id is 32 lowercase hexadecimal characters"
    return full_match(SYS_ID, value, "InvalidServiceNowSysId", message)


def validate_fields(fields: Sequence[str]) -> list[str]:
    if isinstance(fields, str):
        raise InvalidRequest("InvalidServiceNowField", "give a sequence of field names")
    message = "a ServiceNow field name is [a-z][a-z0-9_]*, maybe dot-walked"
    return list(dict.fromkeys(full_match(FIELD, f, "InvalidServiceNowField", message) for f in fields))


def value_of(row: dict[str, Any], field: str) -> str | None:
    """The stored value of a field in a ``sysparm_display_value=all`` row."""
    cell = row.get(field)
    value = cell.get("value") if isinstance(cell, dict) else None
    return value if isinstance(value, str) else None


def _error_message(body: Any) -> str | None:
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None
    parts = [str(error[k]) for k in ("message", "detail") if error.get(k)]
    return ": ".join(parts) or None


class ServiceNowClient:
    """One ServiceNow instance, HTTP Basic with a service account. Create once and reuse."""

    def __init__(
        self,
        base_url: str,
        *,
        username: str,
        password: str,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = (5.0, 30.0),
        retries: int = 2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        auth = basic_auth(username, password, settings=("SERVICENOW_USERNAME", "SERVICENOW_PASSWORD"))
        self._http = TicketTransport(
            "ServiceNow",
            base_url,
            setting="SERVICENOW_BASE_URL",
            auth=auth,
            error_message=_error_message,
            session=session,
            timeout=timeout,
            retries=retries,
            sleep=sleep,
        )

    def record(self, table: str, number: str, fields: Sequence[str]) -> dict[str, Any] | None:
        """``GET /api/now/table/{table}?sysparm_query=number={number}&sysparm_limit=1`` with
        display values ``all``; ``sys_id`` and ``number`` are always among the fields. None when
        there is no such record (or the account may not see it)."""
        path = f"/api/now/table/{validate_table(table)}"
        number = validate_number(number)
        params = {
            "sysparm_query": f"number={number}",
            "sysparm_limit": "1",
            "sysparm_display_value": "all",
            "sysparm_fields": ",".join(dict.fromkeys(["sys_id", "number", *validate_fields(fields)])),
        }
        rows = self._rows(path, params)
        if not rows:
            return None
        # Ignoring case: the docs call query values case-sensitive, an instance's collation may not be.
        if (value_of(rows[0], "number") or "").upper() != number.upper():
            raise self._ignored_query(path, params, f"asked for {number}, ServiceNow answered another record")
        return rows[0]

    def approvals(self, record_sys_id: str) -> list[dict[str, Any]]:
        """The approved ``sysapproval_approver`` rows of a record, oldest update first, display
        values ``all``: ``approver`` (a sys_user reference), ``approver.user_name``,
        ``approver.email``, ``approver.name``, ``state``, ``sys_updated_on``, ``sysapproval``."""
        sys_id = validate_sys_id(record_sys_id)
        path = "/api/now/table/sysapproval_approver"
        query = f"sysapproval={sys_id}^state=approved^ORDERBYsys_updated_on"
        found: list[dict[str, Any]] = []
        for _ in range(MAX_PAGES):
            params = {
                "sysparm_query": query,
                "sysparm_display_value": "all",
                "sysparm_limit": str(PAGE),
                "sysparm_offset": str(len(found)),
                "sysparm_fields": ",".join(APPROVAL_FIELDS),
            }
            rows = self._rows(path, params)
            if any((value_of(r, "sysapproval"), value_of(r, "state")) != (sys_id, "approved") for r in rows):
                raise self._ignored_query(path, params, "a row does not match the approval query")
            found.extend(rows)
            if len(rows) < PAGE:
                return found
        raise self._http.invalid_response("GET", self._http.url(path), "the approvals did not end")

    def add_work_note(self, table: str, sys_id: str, text: str) -> dict[str, Any]:
        """``PATCH /api/now/table/{table}/{sys_id}`` with ``{"work_notes": text}``: one journal
        entry. Returns the updated record's ``sys_id``, ``number``, ``sys_updated_on``."""
        path = f"/api/now/table/{validate_table(table)}/{validate_sys_id(sys_id)}"
        if not isinstance(text, str) or not text.strip() or len(text) > WORK_NOTE_MAX_CHARS:
            raise InvalidRequest(
                "InvalidServiceNowWorkNote", f"a work note is 1 to {WORK_NOTE_MAX_CHARS} characters"
            )
        params = {"sysparm_fields": "sys_id,number,sys_updated_on"}
        data = self._http.request("PATCH", path, params=params, json={"work_notes": text})
        result = data.get("result") if isinstance(data, dict) else None
        if not isinstance(result, dict):
            raise self._http.invalid_response(
                "PATCH", self._http.url(path, params), "no record in the answer", True
            )
        return result

    def _rows(self, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
        data = self._http.request("GET", path, params=params)
        rows = data.get("result") if isinstance(data, dict) else None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise self._http.invalid_response(
                "GET", self._http.url(path, params), "no result list in the answer"
            )
        return rows

    def _ignored_query(self, path: str, params: dict[str, str], message: str) -> TicketBadRequest:
        """ServiceNow dropped part of the query (an unknown field in this table, most likely)."""
        return TicketBadRequest(
            "ServiceNowInvalidQuery",
            message,
            system="ServiceNow",
            method="GET",
            url=self._http.url(path, params),
        )
