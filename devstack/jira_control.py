"""The Jira simulator's own control endpoints (no auth; JSON in and out), beside the shared ones in
``devstack.simbase`` (reset: issues, comments and accounts back to the start, seed users kept;
requests; faults). Errors are ``{"error": message}`` with 400 (bad input) or 404 (no such issue or
endpoint).

    GET  /_control/users                      every user
    POST /_control/users                      {"accountId", "name"?, "displayName"?, "emailAddress"?,
                                              "emailVisible"?: bool, "active"?} or a list; upsert
    POST /_control/issues                     {"key", "id"?, "fields": {...}} or a list; create or update
                                              (status by name, reporter/assignee by accountId, custom
                                              fields as given: string, {"value"}, list or null)
    GET  /_control/issues/{key}               the issue as v3 renders it, every history and comment
    POST /_control/issues/{key}/transition    {"status", "by": accountId, "at"?} one history with a
                                              status item, and the new status
    POST /_control/issues/{key}/history       {"by", "items": [{field, fieldtype, from, fromString,
                                              to, toString}], "count"?: n, "at"?} n histories
    POST /_control/issues/{key}/visibility    {"visible": bool, "login"?} hide from one login or all
    POST /_control/issues/{key}/permissions   {"canComment": bool}
    GET  /_control/comments[?issue=KEY]       comments in order: issue, id, author, text, adf,
                                              apiVersion, created
    POST /_control/config                     {"rateLimit": n | null, "rateWindowS"?: seconds}
    POST /_control/accounts                   {"login", "token", "accountId", "pat"?, "forbidden"?}
                                              or a list; upsert by login

``at`` is epoch seconds or an ISO 8601 timestamp (default: now).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .jira_store import Account, Issue, jira_time
from .simkit import ControlNotFound, many, when

if TYPE_CHECKING:
    from .jira_simulator import JiraSimulator

_ISSUE_PATH = re.compile(r"/_control/issues/([^/]+)(?:/(transition|history|visibility|permissions))?")


def control(sim: JiraSimulator, method: str, path: str, query: Mapping[str, list[str]], body: Any) -> Any:
    """One control call (the simulator's lock is held)."""
    issue_path = _ISSUE_PATH.fullmatch(path)
    match (method, path):
        case ("GET", "/_control/users"):
            return [sim.store.render_user(a, sim.url, "3") for a in sim.store.users]
        case ("POST", "/_control/users"):
            users = [sim.store.upsert_user(u) for u in many(body)]
            return [sim.store.render_user(u.account_id, sim.url, "3") for u in users]
        case ("POST", "/_control/issues"):
            issues = [sim.store.upsert_issue(spec, sim.clock()) for spec in many(body)]
            return [_issue_view(sim, i) for i in issues]
        case ("GET", "/_control/comments"):
            return _comments(sim, query.get("issue", [None])[0])
        case ("POST", "/_control/config"):
            sim.rate_limit.configure(body.get("rateLimit"), body.get("rateWindowS"))
            return {"rateLimit": sim.rate_limit.limit, "rateWindowS": sim.rate_limit.window_s}
        case ("POST", "/_control/accounts"):
            for spec in many(body):
                account = Account(str(spec["login"]), str(spec["token"]), str(spec["accountId"]),
                                  spec.get("pat"), bool(spec.get("forbidden", False)))  # fmt: skip
                sim.accounts[account.login.lower()] = account
            return {"accounts": sorted(sim.accounts)}
        case (_, _) if issue_path:
            return _issue_call(sim, method, issue_path.group(1), issue_path.group(2), body)
    raise ControlNotFound(f"no control endpoint {method} {path}")


def _issue_call(sim: JiraSimulator, method: str, key: str, action: str | None, body: Any) -> Any:
    issue = sim.store.find(key)
    if issue is None:
        raise ControlNotFound(f"no issue {key}")
    match (method, action):
        case ("GET", None):
            pass
        case ("POST", "transition"):
            sim.store.transition(issue, str(body["status"]), str(body["by"]), when(sim.clock, body))
        case ("POST", "history"):
            items = body["items"]
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise ValueError("items must be a list of objects")
            for _ in range(int(body.get("count", 1))):
                sim.store.add_history(issue, str(body["by"]), items, when(sim.clock, body))
        case ("POST", "visibility"):
            who = str(body.get("login", "*")).lower()
            if body["visible"]:
                issue.hidden_from.discard(who)
            else:
                issue.hidden_from.add(who)
        case ("POST", "permissions"):
            issue.can_comment = bool(body["canComment"])
        case _:
            raise ControlNotFound(f"no control endpoint {method} .../{action}")
    return _issue_view(sim, issue)


def _issue_view(sim: JiraSimulator, issue: Issue) -> dict[str, Any]:
    store = sim.store
    return {
        "id": str(issue.id),
        "key": issue.key,
        "fields": store.render_fields(issue, [], sim.url, "3"),
        "histories": [store.render_history(h, sim.url, "3") for h in issue.histories],
        "comments": _comments(sim, issue.key),
        "hiddenFrom": sorted(issue.hidden_from),
        "canComment": issue.can_comment,
    }


def _comments(sim: JiraSimulator, key: str | None) -> list[dict[str, Any]]:
    issues = sorted(sim.store.issues.values(), key=lambda i: i.id)
    return [
        {
            "issue": issue.key,
            "id": str(c.id),
            "author": c.author,
            "text": c.text,
            "adf": c.adf,
            "apiVersion": c.api_version,
            "created": jira_time(c.created),
        }
        for issue in issues
        if key is None or issue.key.upper() == key.upper()
        for c in issue.comments
    ]
