"""The Jira simulator's state (users, issues, histories, comments) and how Jira Cloud (REST v3 and
v2) or Jira Data Center (REST v2) renders it. Vendor pages are cited in ``devstack.jira_simulator``.

Rendering rules taken from the vendor docs: user objects on Cloud carry ``accountId`` and, unless
the profile hides it, ``emailAddress``; Data Center users carry ``name``/``key`` instead of an
``accountId``. Histories are ``{id, author, created, items[{field, fieldtype, from, fromString,
to, toString}]}`` (Cloud items also carry ``fieldId``). Timestamps look like
``2024-01-18T06:27:50.429+0000``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

CLOUD, DATA_CENTER = "cloud", "datacenter"
EMBEDDED_CHANGELOG_MAX = 100  # Cloud embeds at most this many (the most recent) histories
CHANGELOG_PAGE_MAX = 100  # the changelog endpoint's maxResults cap and default
COMMENT_MAX_CHARS = 32767
ISSUE_KEY = re.compile(r"([A-Z][A-Z0-9_]+)-([1-9][0-9]*)")
STATUS_CATEGORIES = {
    "new": {"id": 2, "key": "new", "colorName": "blue-gray", "name": "To Do"},
    "indeterminate": {"id": 4, "key": "indeterminate", "colorName": "yellow", "name": "In Progress"},
    "done": {"id": 3, "key": "done", "colorName": "green", "name": "Done"},
}
SEED_STATUSES = {
    "To Do": ("10000", "new"),
    "Waiting for approval": ("10001", "new"),
    "In Progress": ("3", "indeterminate"),
    "Approved": ("10002", "done"),
    "Declined": ("10003", "done"),
    "Done": ("10004", "done"),
}
USER_FIELDS = ("reporter", "assignee", "creator")
RICH_TEXT_FIELDS = ("description", "environment")
ADF_BLOCKS = frozenset(
    {"paragraph", "heading", "bulletList", "orderedList", "listItem", "codeBlock", "blockquote", "rule",
     "panel", "table", "tableRow", "tableHeader", "tableCell", "mediaSingle", "media", "expand"}
)  # fmt: skip
ADF_INLINES = frozenset({"text", "hardBreak", "mention", "emoji", "inlineCard", "date", "status"})


def jira_time(ts: float) -> str:
    """Jira's timestamp form: ``2024-01-18T06:27:50.429+0000``."""
    moment = datetime.fromtimestamp(ts, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


@dataclasses.dataclass
class Account:
    """A credential: ``login`` (Cloud: the email; Data Center: the user name) with ``token`` (API
    token or password), optionally a Data Center ``pat``; ``forbidden`` makes Jira refuse it (403)."""

    login: str
    token: str
    account_id: str
    pat: str | None = None
    forbidden: bool = False


@dataclasses.dataclass
class User:
    account_id: str
    name: str  # the Data Center user name
    display_name: str
    email: str | None = None
    email_visible: bool = True
    active: bool = True


@dataclasses.dataclass
class History:
    id: int
    author: str  # account id
    created: float
    items: list[dict[str, Any]]


@dataclasses.dataclass
class Comment:
    id: int
    author: str
    created: float
    text: str
    adf: dict[str, Any] | None  # as posted on v3; None when posted as plain text on v2
    api_version: str


@dataclasses.dataclass
class Issue:
    id: int
    key: str
    fields: dict[str, Any]  # status as its name; user fields as account ids
    created: float
    histories: list[History] = dataclasses.field(default_factory=list)
    comments: list[Comment] = dataclasses.field(default_factory=list)
    hidden_from: set[str] = dataclasses.field(default_factory=set)  # logins; "*" hides from all
    can_comment: bool = True

    def visible_to(self, login: str) -> bool:
        return not ({"*", login} & self.hidden_from)


class JiraStore:
    """Plain state; the simulator serialises access with its lock."""

    def __init__(self, deployment: str) -> None:
        if deployment not in (CLOUD, DATA_CENTER):
            raise ValueError(f"deployment must be {CLOUD!r} or {DATA_CENTER!r}")
        self.deployment = deployment
        self.users: dict[str, User] = {}
        self.issues: dict[int, Issue] = {}
        self.statuses: dict[str, tuple[str, str]] = dict(SEED_STATUSES)
        self._next = {"issue": 10000, "history": 20000, "comment": 30000}

    def next_id(self, kind: str) -> int:
        self._next[kind] += 1
        return self._next[kind]

    # -- changes ----------------------------------------------------------------------------------

    def upsert_user(self, spec: Mapping[str, Any]) -> User:
        account_id = str(spec["accountId"])
        user = self.users.get(account_id) or User(account_id, account_id, account_id)
        user.name = str(spec.get("name", user.name))
        user.display_name = str(spec.get("displayName", user.display_name))
        user.email = spec.get("emailAddress", user.email)
        user.email_visible = bool(spec.get("emailVisible", user.email_visible))
        user.active = bool(spec.get("active", user.active))
        self.users[account_id] = user
        return user

    def upsert_issue(self, spec: Mapping[str, Any], now: float) -> Issue:
        """Create the issue (``key`` required) or update the fields given; a status set here is
        set without a history entry (use ``transition`` for that)."""
        key = str(spec["key"])
        if not ISSUE_KEY.fullmatch(key):
            raise ValueError(f"not a Jira issue key: {key!r}")
        issue = self.find(key)
        if issue is None:
            issue = Issue(int(spec.get("id") or self.next_id("issue")), key, self._default_fields(), now)
            self.issues[issue.id] = issue
        fields = dict(spec.get("fields") or {})
        for name in ("status", *USER_FIELDS):
            if name in fields and fields[name] is not None:
                self._check(name, fields[name])
        issue.fields.update(fields)
        issue.fields["updated"] = now
        return issue

    def _default_fields(self) -> dict[str, Any]:
        return {
            "summary": "",
            "status": "To Do",
            "issuetype": {"id": "10002", "name": "Service Request", "subtask": False},
            "reporter": None,
            "assignee": None,
            "labels": [],
        }

    def _check(self, name: str, value: Any) -> None:
        if name == "status" and value not in self.statuses:
            self.statuses[str(value)] = (str(10100 + len(self.statuses)), "indeterminate")
        if name in USER_FIELDS and value not in self.users:
            raise ValueError(f"{name}: unknown accountId {value!r} (create the user first)")

    def find(self, id_or_key: str) -> Issue | None:
        """By numeric id, or by key (Jira matches keys ignoring case)."""
        if id_or_key.isdigit():
            return self.issues.get(int(id_or_key))
        return next((i for i in self.issues.values() if i.key.upper() == id_or_key.upper()), None)

    def transition(self, issue: Issue, status: str, by: str, at: float) -> History:
        """Move the issue to ``status`` as ``by`` did: one history with the status item."""
        self._check("status", status)
        old = str(issue.fields["status"])
        item = {
            "field": "status",
            "fieldtype": "jira",
            "fieldId": "status",
            "from": self.statuses[old][0],
            "fromString": old,
            "to": self.statuses[status][0],
            "toString": status,
        }
        issue.fields["status"] = status
        issue.fields["updated"] = at
        return self.add_history(issue, by, [item], at)

    def add_history(self, issue: Issue, by: str, items: Sequence[Mapping[str, Any]], at: float) -> History:
        if by not in self.users:
            raise ValueError(f"unknown accountId {by!r} (create the user first)")
        history = History(self.next_id("history"), by, at, [dict(i) for i in items])
        issue.histories.append(history)
        return history

    def add_comment(
        self, issue: Issue, author: str, text: str, adf: dict[str, Any] | None, version: str, at: float
    ) -> Comment:
        comment = Comment(self.next_id("comment"), author, at, text, adf, version)
        issue.comments.append(comment)
        return comment

    # -- rendering --------------------------------------------------------------------------------

    def render_user(self, account_id: str | None, base: str, version: str) -> dict[str, Any] | None:
        user = self.users.get(account_id or "")
        if user is None:
            return None
        shown: dict[str, Any]
        if self.deployment == CLOUD:
            shown = {"self": f"{base}/rest/api/{version}/user?accountId={user.account_id}"}
            shown["accountId"] = user.account_id
        else:
            shown = {"self": f"{base}/rest/api/2/user?username={user.name}", "name": user.name}
            shown["key"] = user.name.lower()
        if user.email and user.email_visible:
            shown["emailAddress"] = user.email
        shown.update(displayName=user.display_name, active=user.active, timeZone="Etc/UTC")
        if self.deployment == CLOUD:
            shown["accountType"] = "atlassian"
        return shown

    def render_status(self, name: str, base: str, version: str) -> dict[str, Any]:
        status_id, category = self.statuses[name]
        cat = STATUS_CATEGORIES[category]
        return {
            "self": f"{base}/rest/api/{version}/status/{status_id}",
            "description": "",
            "name": name,
            "id": status_id,
            "statusCategory": {"self": f"{base}/rest/api/{version}/statuscategory/{cat['id']}", **cat},
        }

    def render_field(self, name: str, value: Any, base: str, version: str) -> Any:
        if name == "status":
            return self.render_status(str(value), base, version)
        if name in USER_FIELDS:
            return self.render_user(value, base, version)
        if name in ("created", "updated") and isinstance(value, float):
            return jira_time(value)
        if name in RICH_TEXT_FIELDS and isinstance(value, str) and version == "3":
            return text_to_adf(value)
        return value

    def render_fields(self, issue: Issue, wanted: Sequence[str], base: str, version: str) -> dict[str, Any]:
        """Jira's ``fields`` parameter: ``*all``/``*navigable``/absent is every field, ``-name``
        leaves one out, names keep only those; unknown names are ignored."""
        present = {"created": issue.created, **issue.fields}
        names = [w for w in wanted if not w.startswith("-")]
        if not names or "*all" in names or "*navigable" in names:
            chosen = list(present)
        else:
            chosen = [n for n in dict.fromkeys(names) if n in present]
        chosen = [n for n in chosen if f"-{n}" not in wanted]
        return {n: self.render_field(n, present[n], base, version) for n in chosen}

    def render_history(self, history: History, base: str, version: str) -> dict[str, Any]:
        items = [dict(i) for i in history.items]
        if self.deployment == DATA_CENTER:
            for item in items:
                item.pop("fieldId", None)
        return {
            "id": str(history.id),
            "author": self.render_user(history.author, base, version),
            "created": jira_time(history.created),
            "items": items,
        }

    def embedded_changelog(self, issue: Issue, base: str, version: str) -> dict[str, Any]:
        """Cloud embeds the most recent 100 histories (oldest first among them); Data Center
        embeds them all."""
        total = len(issue.histories)
        shown = issue.histories[-EMBEDDED_CHANGELOG_MAX:] if self.deployment == CLOUD else issue.histories
        return {
            "startAt": 0,
            "maxResults": len(shown),
            "total": total,
            "histories": [self.render_history(h, base, version) for h in shown],
        }

    def changelog_page(
        self, issue: Issue, start_at: int, max_results: int, base: str, version: str
    ) -> dict[str, Any]:
        """Cloud's ``GET /rest/api/3/issue/{key}/changelog``: oldest first, at most 100 a page."""
        size = min(max(max_results, 1), CHANGELOG_PAGE_MAX)
        values = issue.histories[start_at : start_at + size]
        total = len(issue.histories)
        url = f"{base}/rest/api/{version}/issue/{issue.key}/changelog"
        page: dict[str, Any] = {"self": f"{url}?startAt={start_at}&maxResults={size}"}
        is_last = start_at + len(values) >= total
        if not is_last:
            page["nextPage"] = f"{url}?startAt={start_at + size}&maxResults={size}"
        page.update(maxResults=size, startAt=start_at, total=total, isLast=is_last)
        page["values"] = [self.render_history(h, base, version) for h in values]
        return page

    def render_comment(self, issue: Issue, comment: Comment, base: str, version: str) -> dict[str, Any]:
        author = self.render_user(comment.author, base, version)
        body: Any = comment.text
        if version == "3":
            body = comment.adf if comment.adf is not None else text_to_adf(comment.text)
        return {
            "self": f"{base}/rest/api/{version}/issue/{issue.id}/comment/{comment.id}",
            "id": str(comment.id),
            "author": author,
            "body": body,
            "updateAuthor": author,
            "created": jira_time(comment.created),
            "updated": jira_time(comment.created),
            "jsdPublic": True,
        }


def text_to_adf(text: str) -> dict[str, Any]:
    """Plain text as an ADF document: blank lines separate paragraphs, newlines are hard breaks."""
    content = []
    for block in text.split("\n\n"):
        nodes: list[dict[str, Any]] = []
        for i, line in enumerate(block.split("\n")):
            if i:
                nodes.append({"type": "hardBreak"})
            if line:
                nodes.append({"type": "text", "text": line})
        content.append({"type": "paragraph", "content": nodes})
    return {"type": "doc", "version": 1, "content": content}


def adf_to_text(doc: Any) -> str | None:
    """The plain text of a valid ADF document (``type: doc``, ``version: 1``, known node types,
    non-empty text nodes), or None when it is not one."""
    if not isinstance(doc, dict) or doc.get("type") != "doc" or doc.get("version") != 1:
        return None
    blocks = doc.get("content")
    if not isinstance(blocks, list):
        return None
    texts = [_node_text(b, ADF_BLOCKS) for b in blocks]
    return None if any(t is None for t in texts) else "\n\n".join(t for t in texts if t is not None)


def _node_text(node: Any, allowed: frozenset[str]) -> str | None:
    if not isinstance(node, dict) or node.get("type") not in allowed:
        return None
    kind = node["type"]
    if kind == "text":
        text = node.get("text")
        return text if isinstance(text, str) and text else None
    if kind == "hardBreak":
        return "\n"
    children = node.get("content", [])
    if not isinstance(children, list):
        return None
    inner = ADF_INLINES if kind in ("paragraph", "heading", "codeBlock") else ADF_BLOCKS | ADF_INLINES
    parts = [_node_text(c, inner) for c in children]
    return None if any(p is None for p in parts) else "".join(p for p in parts if p is not None)
