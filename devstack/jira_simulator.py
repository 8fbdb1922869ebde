"""A Jira REST API simulator: Jira Cloud (REST v3 and v2) or Jira Data Center (REST v2).

Follows Atlassian's public documentation:
 - Get issue, ``fields``/``expand``: https://developer.atlassian.com/cloud/jira/platform/rest/v3/api-group-issues/#api-rest-api-3-issue-issueidorkey-get
 - Get changelogs (Cloud): https://developer.atlassian.com/cloud/jira/platform/rest/v3/api-group-issues/#api-rest-api-3-issue-issueidorkey-changelog-get
 - Add comment: https://developer.atlassian.com/cloud/jira/platform/rest/v3/api-group-issue-comments/#api-rest-api-3-issue-issueidorkey-comment-post
   (v2: https://developer.atlassian.com/cloud/jira/platform/rest/v2/api-group-issue-comments/)
 - Atlassian Document Format: https://developer.atlassian.com/cloud/jira/platform/apis/document/structure/
 - Basic auth with an API token: https://developer.atlassian.com/cloud/jira/platform/basic-auth-for-rest-apis/
 - Rate limiting (429, ``Retry-After``, ``X-RateLimit-*``): https://developer.atlassian.com/cloud/jira/platform/rate-limiting/
 - Data Center REST v2: https://developer.atlassian.com/server/jira/platform/rest-apis/ and
   https://docs.atlassian.com/software/jira/docs/api/REST/9.17.0/ ; personal access tokens:
   https://developer.atlassian.com/server/jira/platform/personal-access-token/

Deployments (fixed per simulator):
 - ``cloud``: ``/rest/api/3`` and ``/rest/api/2``; HTTP Basic ``email:api_token`` only (Cloud has no
   personal access tokens). ``expand=changelog`` embeds at most the 100 most recent histories with
   ``total`` counting all; ``GET /rest/api/{2|3}/issue/{key}/changelog?startAt&maxResults`` pages
   through every history, oldest first, 100 at most a page (``isLast``, ``nextPage``, ``values``).
 - ``datacenter``: ``/rest/api/2`` only (``/rest/api/3`` is 404, as Jersey answers an unknown path);
   Basic ``username:password`` or ``Authorization: Bearer <personal access token>``. The Data Center
   REST reference has no per-issue changelog resource (it is Cloud-only), so that path is 404 and
   ``expand=changelog`` embeds every history (``maxResults`` = ``total``). User objects carry
   ``name``/``key``, not ``accountId``.

A request is decided in this order: authentication (401), the account refused outright (403), route
(404, or 405 for a known path), rate limit (429 with ``Retry-After``), injected faults, then the
call: an unknown issue, or one the account cannot browse, is 404 "Issue does not exist or you do not
have permission to see it."; a comment on an issue the account may browse but not comment on is 403.
Errors use Jira's ErrorCollection ``{"errorMessages": [...], "errors": {...}}``.

Choices where the docs are silent: a missing or wrong credential is 401 with
``WWW-Authenticate``; a v3 comment whose body is not an ADF document (a plain string, say) is 400
``{"errorMessages": [], "errors": {"comment": "Comment body is not valid!"}}``; a v2 comment body
must be a non-empty string; a body over 32,767 characters is 400; ``fields`` names that do not
exist are left out, as Jira does. Each answer carries a request id (``Atl-Traceid`` on Cloud,
``X-AREQUESTID`` on Data Center).

Control API (no auth; JSON): see ``devstack.jira_control`` (reset, users, issues, transition,
history, visibility, permissions, comments, requests, faults, config, accounts).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import secrets
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from .jira_control import control
from .jira_store import CLOUD, COMMENT_MAX_CHARS, DATA_CENTER, Account, Issue, JiraStore, adf_to_text
from .simbase import ApiRequest, SimError, TicketSimulator
from .simkit import basic_credentials, bearer_token, header

logger = logging.getLogger(__name__)

NOT_FOUND = "Issue does not exist or you do not have permission to see it."
SEED_USERS = (
    {"accountId": "5b10a2844c20165700ede21a", "name": "containment-bot",
     "displayName": "Containment Bot", "emailAddress": "containment-bot@contoso.com"},
    {"accountId": "5b10a2844c20165700ede21b", "name": "ana.approver",
     "displayName": "Ana Approver", "emailAddress": "ana.approver@contoso.com"},
    {"accountId": "5b10a2844c20165700ede21c", "name": "hidden.hannah",
     "displayName": "Hannah Hidden", "emailAddress": "hannah@contoso.com", "emailVisible": False},
)  # fmt: skip
BOT_ACCOUNT_ID = SEED_USERS[0]["accountId"]


class JiraError(SimError):
    """An answer with Jira's ErrorCollection body."""

    def __init__(
        self,
        status: int,
        messages: Sequence[str] = (),
        errors: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status, {"errorMessages": list(messages), "errors": dict(errors or {})}, headers)


@dataclasses.dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: str
    cloud_only: bool = False


_ROUTES = (
    _Route("GET", re.compile(r"/rest/api/(2|3)/issue/([^/]+)"), "_get_issue"),
    _Route("GET", re.compile(r"/rest/api/(2|3)/issue/([^/]+)/changelog"), "_get_changelog", cloud_only=True),
    _Route("GET", re.compile(r"/rest/api/(2|3)/issue/([^/]+)/comment"), "_list_comments"),
    _Route("POST", re.compile(r"/rest/api/(2|3)/issue/([^/]+)/comment"), "_add_comment"),
    _Route("GET", re.compile(r"/rest/api/(2|3)/(myself)"), "_myself"),
)


@dataclasses.dataclass
class _Call:
    version: str
    arg: str
    query: dict[str, list[str]]
    headers: Mapping[str, str]
    body: bytes
    account: Account
    base: str


class JiraSimulator(TicketSimulator):
    """In-process Jira: ``start()`` returns the base URL (no trailing slash); ``stop()``."""

    name = "jira-simulator"

    def __init__(
        self,
        *,
        deployment: str = CLOUD,
        accounts: Sequence[Account] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.deployment = deployment
        self._initial_accounts = [dataclasses.replace(a) for a in accounts or [_default_account(deployment)]]
        super().__init__(clock)
        self.reset()

    def reset_state(self) -> None:
        self.store = JiraStore(self.deployment)
        for user in SEED_USERS:
            self.store.upsert_user(user)
        self.accounts = {a.login.lower(): dataclasses.replace(a) for a in self._initial_accounts}

    def control(self, method: str, path: str, query: Mapping[str, list[str]], body: Any) -> Any:
        return control(self, method, path, query, body)

    def answer_headers(self) -> dict[str, str]:
        return {"Atl-Traceid" if self.deployment == CLOUD else "X-AREQUESTID": uuid.uuid4().hex}

    def fault_error(self, status: int, headers: dict[str, str]) -> SimError:
        return JiraError(status, [f"Injected fault ({status})."], headers=headers)

    # -- one HTTP request -------------------------------------------------------------------------

    def serve(self, request: ApiRequest) -> tuple[int, dict[str, str], Any]:
        account = self._authenticate(request.headers)
        request.entry["account"] = account.login
        if account.forbidden:
            raise JiraError(403, ["You do not have permission to access this resource."])
        route, match = self._route(request.method, request.path)
        self._throttle()
        self.raise_injected_fault(request.method, request.path)
        base = f"http://{header(request.headers, 'Host') or '127.0.0.1'}"
        call = _Call(
            match.group(1), match.group(2), request.query, request.headers, request.body, account, base
        )
        with self.lock:
            status, payload = getattr(self, route.handler)(call)
        return status, {}, payload

    def _authenticate(self, headers: Mapping[str, str]) -> Account:
        authorization = header(headers, "Authorization")
        basic = basic_credentials(authorization)
        token = bearer_token(authorization)
        with self.lock:
            if basic is not None:
                account = self.accounts.get(basic[0].lower())
                if account is not None and secrets.compare_digest(account.token, basic[1]):
                    return account
            elif token is not None and self.deployment == DATA_CENTER:
                for account in self.accounts.values():
                    if account.pat is not None and secrets.compare_digest(account.pat, token):
                        return account
        realm = 'Basic realm="protected-area"' if self.deployment == CLOUD else 'OAuth realm="jira"'
        raise JiraError(
            401,
            ["You are not authenticated. Authentication required to perform this operation."],
            headers={"WWW-Authenticate": realm},
        )

    def _route(self, method: str, path: str) -> tuple[_Route, re.Match[str]]:
        known = False
        for route in _ROUTES:
            match = route.pattern.fullmatch(path)
            if match is None or (match.group(1) == "3" and self.deployment == DATA_CENTER):
                continue
            if route.cloud_only and self.deployment == DATA_CENTER:
                continue
            if route.method == method:
                return route, match
            known = True
        if known:
            raise JiraError(405, [f"Method {method} is not allowed for {path}."])
        raise JiraError(404, [f"null for uri: {path}"])

    def _throttle(self) -> None:
        wait = self.rate_limit.admit()
        if wait is None:
            return
        reset = datetime.fromtimestamp(self.clock() + wait, UTC).strftime("%Y-%m-%dT%H:%MZ")
        headers = {
            "Retry-After": str(wait),
            "X-RateLimit-Limit": str(self.rate_limit.limit),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": reset,
            "RateLimit-Reason": "jira-burst-based",
        }
        raise JiraError(429, ["Rate limit exceeded."], headers=headers)

    # -- API calls (called with the lock held) ----------------------------------------------------

    def _issue(self, call: _Call) -> Issue:
        issue = self.store.find(call.arg)
        if issue is None or not issue.visible_to(call.account.login.lower()):
            raise JiraError(404, [NOT_FOUND])
        return issue

    def _get_issue(self, call: _Call) -> tuple[int, Any]:
        issue = self._issue(call)
        wanted = [f.strip() for value in call.query.get("fields", []) for f in value.split(",") if f.strip()]
        expand = {e.strip() for value in call.query.get("expand", []) for e in value.split(",")}
        document: dict[str, Any] = {
            "expand": "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations",
            "id": str(issue.id),
            "self": f"{call.base}/rest/api/{call.version}/issue/{issue.id}",
            "key": issue.key,
            "fields": self.store.render_fields(issue, wanted, call.base, call.version),
        }
        if "changelog" in expand:
            document["changelog"] = self.store.embedded_changelog(issue, call.base, call.version)
        return 200, document

    def _get_changelog(self, call: _Call) -> tuple[int, Any]:
        issue = self._issue(call)
        start_at = _int_param(call.query, "startAt", 0)
        max_results = _int_param(call.query, "maxResults", 100)
        if start_at < 0:
            raise JiraError(400, ["startAt must not be negative."])
        return 200, self.store.changelog_page(issue, start_at, max_results, call.base, call.version)

    def _list_comments(self, call: _Call) -> tuple[int, Any]:
        issue = self._issue(call)
        start_at = _int_param(call.query, "startAt", 0)
        max_results = min(max(_int_param(call.query, "maxResults", 5000), 1), 5000)
        shown = issue.comments[start_at : start_at + max_results]
        return 200, {
            "startAt": start_at,
            "maxResults": max_results,
            "total": len(issue.comments),
            "comments": [self.store.render_comment(issue, c, call.base, call.version) for c in shown],
        }

    def _add_comment(self, call: _Call) -> tuple[int, Any]:
        issue = self._issue(call)
        content_type = (header(call.headers, "Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise JiraError(415, ["Unsupported media type: the body must be application/json."])
        if not issue.can_comment:
            raise JiraError(403, ["You do not have the permission to comment on this issue."])
        text, adf = _comment_body(call.body, call.version)
        author = call.account.account_id
        comment = self.store.add_comment(issue, author, text, adf, call.version, self.clock())
        logger.info("comment added issue=%s comment_id=%s", issue.key, comment.id)
        return 201, self.store.render_comment(issue, comment, call.base, call.version)

    def _myself(self, call: _Call) -> tuple[int, Any]:
        return 200, self.store.render_user(call.account.account_id, call.base, call.version)


def _comment_body(raw: bytes, version: str) -> tuple[str, dict[str, Any] | None]:
    """(plain text, ADF document or None) of a comment request, or the 400 Jira answers."""
    try:
        request = json.loads(raw) if raw else None
    except ValueError:
        raise JiraError(400, ["Unexpected character in the request body: not valid JSON."]) from None
    body = request.get("body") if isinstance(request, dict) else None
    if body is None or body == "":
        raise JiraError(400, [], {"comment": "Comment body can not be empty!"})
    if version == "3":
        text = adf_to_text(body)
        adf: dict[str, Any] | None = body
    else:
        text, adf = (body if isinstance(body, str) else None), None
    if text is None:
        raise JiraError(400, [], {"comment": "Comment body is not valid!"})
    if len(text) > COMMENT_MAX_CHARS:
        too_long = (
            f"The entered text is too long. It exceeds the allowed limit of {COMMENT_MAX_CHARS:,} characters."
        )
        raise JiraError(400, [], {"comment": too_long})
    return text, adf


def _int_param(query: Mapping[str, list[str]], name: str, default: int) -> int:
    values = query.get(name)
    if not values:
        return default
    try:
        return int(values[0])
    except ValueError:
        raise JiraError(400, [f"The value '{values[0]}' is not valid for {name}."]) from None


def _default_account(deployment: str) -> Account:
    login = "containment-bot@contoso.com" if deployment == CLOUD else "containment-bot"
    pat = secrets.token_urlsafe(24) if deployment == DATA_CENTER else None
    return Account(login, secrets.token_urlsafe(24), BOT_ACCOUNT_ID, pat)
