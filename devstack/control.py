"""Clients for the dev stack's control APIs (``/_control/...``): what tests, the demo and the
benchmark use to set up the simulators, inject faults and read what the services received."""

from __future__ import annotations

from typing import Any

import requests


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
