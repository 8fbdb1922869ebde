"""Clients for the dev stack's control APIs (``/_control/...``): what tests, the demo and the
benchmark use to set up the simulators, inject faults and read what the services received. Each
method is one control call; a control error raises ``requests.HTTPError``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import requests

JsonObject = dict[str, Any]


class _ControlClient:
    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Any = None, params: Mapping[str, str] | None = None) -> Any:
        response = requests.request(
            method, f"{self.url}/_control/{path}", json=body, params=params, timeout=self.timeout
        )
        response.raise_for_status()
        return response.json()

    def reset(self) -> None:
        self._call("POST", "reset", {})

    def requests(self, *, method: str | None = None, path_contains: str = "") -> list[JsonObject]:
        """API requests recorded so far (Authorization redacted), optionally filtered."""
        recorded: list[JsonObject] = self._call("GET", "requests")
        return [r for r in recorded if method in (None, r["method"]) and path_contains in str(r["path"])]

    def fault(
        self,
        status: int,
        *,
        count: int = 1,
        retry_after: int | None = None,
        method: str = "*",
        path_contains: str = "",
    ) -> None:
        """The next ``count`` matching API calls answer ``status`` (with ``Retry-After`` if given)."""
        spec: JsonObject = {"status": status, "count": count, "method": method, "pathContains": path_contains}
        if retry_after is not None:
            spec["retryAfter"] = retry_after
        self._call("POST", "faults", spec)

    def faults(self) -> list[JsonObject]:
        pending: list[JsonObject] = self._call("GET", "faults")
        return pending


class JiraControl(_ControlClient):
    """``devstack.jira_control``'s endpoints."""

    def user(
        self,
        account_id: str,
        display_name: str,
        email: str | None = None,
        *,
        email_visible: bool = True,
        name: str | None = None,
    ) -> JsonObject:
        spec = {"accountId": account_id, "displayName": display_name, "emailAddress": email,
                "emailVisible": email_visible, "name": name or account_id}  # fmt: skip
        created: list[JsonObject] = self._call("POST", "users", spec)
        return created[0]

    def upsert_issue(
        self, key: str, fields: Mapping[str, Any] | None = None, *, id: str | None = None
    ) -> JsonObject:
        """Create the issue or update the given fields (status by name, users by accountId)."""
        spec: JsonObject = {"key": key, "fields": dict(fields or {})}
        if id is not None:
            spec["id"] = id
        issues: list[JsonObject] = self._call("POST", "issues", spec)
        return issues[0]

    def issue(self, key: str) -> JsonObject:
        found: JsonObject = self._call("GET", f"issues/{key}")
        return found

    def transition(self, key: str, status: str, by: str, *, at: float | str | None = None) -> JsonObject:
        """``by`` (an accountId) moves the issue to ``status``: one history with a status item."""
        issue: JsonObject = self._call(
            "POST", f"issues/{key}/transition", {"status": status, "by": by, "at": at}
        )
        return issue

    def add_history(
        self,
        key: str,
        by: str,
        items: Sequence[Mapping[str, Any]],
        *,
        count: int = 1,
        at: float | str | None = None,
    ) -> JsonObject:
        body = {"by": by, "items": [dict(i) for i in items], "count": count, "at": at}
        issue: JsonObject = self._call("POST", f"issues/{key}/history", body)
        return issue

    def set_visible(self, key: str, visible: bool, *, login: str | None = None) -> None:
        body: JsonObject = {"visible": visible}
        if login is not None:
            body["login"] = login
        self._call("POST", f"issues/{key}/visibility", body)

    def set_can_comment(self, key: str, allowed: bool) -> None:
        self._call("POST", f"issues/{key}/permissions", {"canComment": allowed})

    def comments(self, key: str | None = None) -> list[JsonObject]:
        found: list[JsonObject] = self._call("GET", "comments", params={"issue": key} if key else None)
        return found

    def rate_limit(self, limit: int | None, window_s: float | None = None) -> None:
        self._call("POST", "config", {"rateLimit": limit, "rateWindowS": window_s})

    def account(
        self, login: str, token: str, account_id: str, *, pat: str | None = None, forbidden: bool = False
    ) -> None:
        spec = {"login": login, "token": token, "accountId": account_id, "pat": pat, "forbidden": forbidden}
        self._call("POST", "accounts", spec)


class ServiceNowControl(_ControlClient):
    """``devstack.servicenow_control``'s endpoints; records come back with display_value=all."""

    def user(self, user_name: str, name: str | None = None, email: str | None = None) -> JsonObject:
        spec = {
            "user_name": user_name,
            **({"name": name} if name else {}),
            **({"email": email} if email else {}),
        }
        created: list[JsonObject] = self._call("POST", "users", spec)
        return created[0]

    def ci(self, name: str, sys_class_name: str = "cmdb_ci_computer") -> JsonObject:
        created: list[JsonObject] = self._call(
            "POST", "cis", {"name": name, "sys_class_name": sys_class_name}
        )
        return created[0]

    def upsert_record(
        self,
        fields: Mapping[str, Any],
        *,
        table: str = "sc_req_item",
        number: str | None = None,
        sys_id: str | None = None,
    ) -> JsonObject:
        """Create or update a record; a reference field takes a sys_id."""
        spec: JsonObject = {"table": table, "fields": dict(fields)}
        spec.update({k: v for k, v in (("number", number), ("sys_id", sys_id)) if v is not None})
        created: list[JsonObject] = self._call("POST", "records", spec)
        return created[0]

    def records(self, table: str = "sc_req_item", number: str | None = None) -> list[JsonObject]:
        params = {"table": table, **({"number": number} if number else {})}
        found: list[JsonObject] = self._call("GET", "records", params=params)
        return found

    def approve(
        self,
        record: str,
        approver: str,
        *,
        state: str = "approved",
        table: str = "sc_req_item",
        update_record: bool = True,
        at: float | str | None = None,
    ) -> JsonObject:
        """Create or update ``approver``'s (sys_id or user_name) approval row for ``record``
        (sys_id or number)."""
        body = {"record": record, "approver": approver, "state": state, "table": table,
                "updateRecord": update_record, "at": at}  # fmt: skip
        row: JsonObject = self._call("POST", "approvals", body)
        return row

    def work_notes(self, sys_id: str | None = None) -> list[JsonObject]:
        found: list[JsonObject] = self._call(
            "GET", "work_notes", params={"sys_id": sys_id} if sys_id else None
        )
        return found

    def set_visible(self, sys_id: str, visible: bool) -> None:
        self._call("POST", "visibility", {"sys_id": sys_id, "visible": visible})

    def configure(self, **knobs: Any) -> JsonObject:
        """``rateLimit``, ``rateWindowS``, ``invalidQueryReturnsNoRows``, ``deniedTables``."""
        config: JsonObject = self._call("POST", "config", knobs)
        return config

    def account(self, username: str, password: str) -> None:
        self._call("POST", "accounts", {"username": username, "password": password})


class MdeControl:
    """The MDE simulator's control API."""

    def __init__(self, url: str, signing_secret: str = "") -> None:
        self.url = url
        self.signing_secret = signing_secret  # to mint tokens for calls made as someone else
        self._http = requests.Session()

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        response = self._http.request(method, f"{self.url}/_control/{path}", json=body, timeout=30)
        response.raise_for_status()
        return response.json()

    def reset(self) -> None:
        self._call("POST", "reset", {})

    def config(self, **knobs: Any) -> None:
        self._call("POST", "config", knobs)

    def fault(self, **fault: Any) -> None:
        self._call("POST", "faults", fault)

    def complete(self, action_id: str, status: str) -> None:
        self._call("POST", f"actions/{action_id}/complete", {"status": status})

    def machines(self, machines: list[dict[str, Any]], *, replace: bool = False) -> None:
        """Add or update machines by id; ``replace`` drops every other machine first."""
        self._call("POST", "machines", {"machines": machines, "replace": True} if replace else machines)

    def machine_records(self) -> list[dict[str, Any]]:
        machines = self._call("GET", "machines")
        return list(machines if isinstance(machines, list) else machines["machines"])

    def requests(self, api: str | None = None) -> list[dict[str, Any]]:
        """What the simulator received, oldest first; only one API's calls when ``api`` is given."""
        recorded = self._call("GET", "requests")
        recorded = recorded if isinstance(recorded, list) else recorded.get("requests", [])
        return [r for r in recorded if api is None or r.get("api") == api]

    def stats(self) -> dict[str, Any]:
        return dict(self._call("GET", "stats"))

    def actions(self) -> list[dict[str, Any]]:
        actions = self._call("GET", "actions")
        return list(actions if isinstance(actions, list) else actions.get("actions", []))


class IdentityControl:
    """The managed-identity endpoint's control API."""

    def __init__(self, identity_url: str) -> None:
        self.url = identity_url.split("/msi/")[0]

    def stats(self) -> dict[str, Any]:
        response = requests.get(f"{self.url}/_control/stats", timeout=10)
        response.raise_for_status()
        return dict(response.json())

    def reset(self) -> None:
        requests.post(f"{self.url}/_control/reset", json={}, timeout=10).raise_for_status()
