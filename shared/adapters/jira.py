"""A thin Jira REST client: read an issue with its complete changelog, add a comment.

Jira Cloud speaks REST v3 (comments in Atlassian Document Format) and v2 (plain text); Jira Data
Center speaks v2. Cloud authenticates with HTTP Basic ``email:api_token``; Data Center with a
personal access token as ``Authorization: Bearer`` (``user_email=None``) or Basic.

``expand=changelog`` embeds at most 100 histories on Cloud. When the embedded changelog is short
of its ``total``, the client pages through ``GET /rest/api/{2|3}/issue/{id}/changelog`` (Cloud
only: Data Center has no such resource, and embeds every history). Identifiers are validated with
full-match patterns before they go into a URL; a bad one is an ``InvalidRequest`` and no call is
made.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import requests

from ..errors import ConfigError, InvalidRequest
from .ticket_http import TicketPermanentError, TicketTransport, basic_auth, bearer_auth, full_match

# A project key (an uppercase letter, then uppercase letters, digits or underscores), a dash, the
# issue number; or a numeric issue id.
ISSUE_KEY = re.compile(r"[A-Z][A-Z0-9_]{1,254}-[1-9][0-9]{0,17}")
ISSUE_ID = re.compile(r"[1-9][0-9]{0,17}")
_ISSUE_REF = re.compile(f"{ISSUE_KEY.pattern}|{ISSUE_ID.pattern}")
# A system field id (status, summary, reporter, fixVersions, ...) or customfield_<number>.
FIELD_ID = re.compile(r"customfield_[0-9]{1,18}|[a-z][A-Za-z0-9]{0,63}")
COMMENT_MAX_CHARS = 32767  # Jira's default text field limit
CHANGELOG_PAGE = 100  # the changelog endpoint's largest page
MAX_CHANGELOG_PAGES = 1000  # a bound on a changelog that never ends


class JiraIncompleteChangelog(TicketPermanentError):
    """The embedded changelog is truncated and the changelog endpoint is not there to page."""


def validate_issue_key(value: object) -> str:
    """A Jira issue key (``SEC-42``) or numeric id; anything else is refused before any call."""
    return full_match(
        _ISSUE_REF, value, "InvalidJiraIssueKey", "a Jira issue key is PROJECT-123 (or a numeric id)"
    )


def validate_field_ids(fields: Sequence[str]) -> list[str]:
    """Field ids, de-duplicated in order; at least one."""
    if isinstance(fields, str) or not fields:
        raise InvalidRequest("InvalidJiraField", "give a sequence of at least one Jira field id")
    message = "a Jira field id is a system field name or customfield_N"
    return list(dict.fromkeys(full_match(FIELD_ID, f, "InvalidJiraField", message) for f in fields))


def adf_document(text: str) -> dict[str, Any]:
    """Plain text as an Atlassian Document: paragraphs at blank lines, hard breaks at newlines."""
    paragraphs = []
    for block in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n").strip("\n")):
        content: list[dict[str, Any]] = []
        for line in block.split("\n"):
            if content:
                content.append({"type": "hardBreak"})
            if line:
                content.append({"type": "text", "text": line})
        paragraphs.append({"type": "paragraph", "content": content})
    return {"type": "doc", "version": 1, "content": paragraphs}


def _error_message(body: Any) -> str | None:
    """Jira's ErrorCollection (``errorMessages`` and ``errors``) or Jersey's ``message``."""
    if not isinstance(body, dict):
        return None
    parts = (
        [str(m) for m in body.get("errorMessages") or [] if m]
        if isinstance(body.get("errorMessages"), list)
        else []
    )
    errors = body.get("errors")
    if isinstance(errors, dict):
        parts += [f"{k}: {v}" for k, v in errors.items()]
    if isinstance(body.get("message"), str):
        parts.append(body["message"])
    return "; ".join(parts) or None


class JiraClient:
    """Jira Cloud or Data Center. Create once per process and reuse."""

    def __init__(
        self,
        base_url: str,
        *,
        api_version: Literal[2, 3] = 3,
        user_email: str | None,
        api_token: str,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = (5.0, 30.0),
        retries: int = 2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if api_version not in (2, 3):
            raise ConfigError("JIRA_API_VERSION must be 2 or 3")
        self.api_version = api_version
        if user_email is None:
            auth = bearer_auth(api_token, setting="JIRA_API_TOKEN")
        else:
            auth = basic_auth(user_email, api_token, settings=("JIRA_USER_EMAIL", "JIRA_API_TOKEN"))
        self._http = TicketTransport(
            "Jira",
            base_url,
            setting="JIRA_BASE_URL",
            auth=auth,
            error_message=_error_message,
            request_id_headers=("Atl-Traceid", "X-AREQUESTID"),
            session=session,
            timeout=timeout,
            retries=retries,
            sleep=sleep,
        )
        self._api = f"/rest/api/{api_version}"

    def issue(self, key: str, fields: Sequence[str]) -> dict[str, Any]:
        """``GET /rest/api/{v}/issue/{key}?fields=...&expand=changelog``: the issue document, its
        ``changelog`` made complete: ``{"startAt": 0, "maxResults": n, "total": n, "histories":
        [...oldest first]}``."""
        ref = validate_issue_key(key)
        params = {"fields": ",".join(validate_field_ids(fields)), "expand": "changelog"}
        path = f"{self._api}/issue/{ref}"
        document = self._http.request("GET", path, params=params)
        if not isinstance(document, dict) or not isinstance(document.get("fields"), dict):
            raise self._http.invalid_response("GET", self._http.url(path, params), "the issue has no fields")
        document["changelog"] = self._complete_changelog(document, ref)
        return document

    def add_comment(self, key: str, text: str) -> dict[str, Any]:
        """``POST /rest/api/{v}/issue/{key}/comment``: ADF on v3, plain text on v2. Returns the
        created comment (Jira answers 201)."""
        ref = validate_issue_key(key)
        if not isinstance(text, str) or not text.strip() or len(text) > COMMENT_MAX_CHARS:
            raise InvalidRequest(
                "InvalidJiraComment", f"a comment is 1 to {COMMENT_MAX_CHARS} characters of text"
            )
        body = {"body": adf_document(text) if self.api_version == 3 else text}
        path = f"{self._api}/issue/{ref}/comment"
        created = self._http.request("POST", path, json=body)
        if not isinstance(created, dict) or not created.get("id"):
            raise self._http.invalid_response("POST", self._http.url(path), "no comment in the answer", True)
        return created

    def _complete_changelog(self, document: dict[str, Any], ref: str) -> dict[str, Any]:
        changelog = document.get("changelog")
        histories = changelog.get("histories") if isinstance(changelog, dict) else None
        if not isinstance(changelog, dict) or not isinstance(histories, list):
            url = self._http.url(f"{self._api}/issue/{ref}")
            raise self._http.invalid_response("GET", url, "the issue has no changelog")
        total = changelog.get("total", len(histories))
        if changelog.get("startAt", 0) == 0 and isinstance(total, int) and total <= len(histories):
            return _complete(_oldest_first(histories))
        issue_id = str(document.get("id", ""))
        return _complete(self._page_changelog(issue_id if ISSUE_ID.fullmatch(issue_id) else ref))

    def _page_changelog(self, ref: str) -> list[dict[str, Any]]:
        """Every history from the changelog endpoint, oldest first."""
        path = f"{self._api}/issue/{ref}/changelog"
        histories: list[dict[str, Any]] = []
        for _ in range(MAX_CHANGELOG_PAGES):
            params = {"startAt": str(len(histories)), "maxResults": str(CHANGELOG_PAGE)}
            try:
                page = self._http.request("GET", path, params=params)
            except TicketPermanentError as e:
                if e.status != 404:
                    raise
                raise JiraIncompleteChangelog(
                    "JiraIncompleteChangelog",
                    "the issue's changelog is truncated and Jira has no changelog endpoint to page it",
                    system="Jira", method="GET", url=e.url, status=404, request_id=e.request_id,
                ) from e  # fmt: skip
            values = page.get("values") if isinstance(page, dict) else None
            if not isinstance(values, list) or not all(isinstance(v, dict) for v in values):
                raise self._http.invalid_response(
                    "GET", self._http.url(path, params), "a changelog page has no values"
                )
            histories.extend(values)
            total = page.get("total")
            if (
                not values
                or page.get("isLast") is True
                or (isinstance(total, int) and len(histories) >= total)
            ):
                return histories
        raise self._http.invalid_response("GET", self._http.url(path), "the changelog did not end")


def _oldest_first(histories: list[Any]) -> list[dict[str, Any]]:
    """Embedded histories in id order (ids grow with time), when every id is a number."""
    items = [h for h in histories if isinstance(h, dict)]
    if all(isinstance(h.get("id"), str) and h["id"].isdigit() for h in items):
        return sorted(items, key=lambda h: int(h["id"]))
    return items


def _complete(histories: list[dict[str, Any]]) -> dict[str, Any]:
    return {"startAt": 0, "maxResults": len(histories), "total": len(histories), "histories": histories}
