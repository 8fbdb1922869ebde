"""What a release may rely on: an approval read from the ticket system of record, never from the
message (pure: the ticket documents are passed in).

Jira: the issue's current status is one of ``approvedStatuses``, and the transition into it is in
the changelog: its author is the approver, its history id the approval. ServiceNow: ``approvedWhen``
holds on the record, and the approver is its approved ``sysapproval_approver`` row (or the mapped
``approverField``). In both, the requester and the device come from the ticket.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidRequest
from .events.common import get_path
from .events.ticket_mappings import DeviceKind, JiraMapping, ServiceNowMapping
from .events.tickets import device_field, field_text, requester_field
from .model import ContainmentRequest, DeviceRef


@dataclass(frozen=True)
class Approval:
    """A release's authority: who approved it, for whom, which device, and the approval's own id
    (an approval releases once)."""

    system: str  # jira | servicenow | unverified
    ticket_id: str
    approval_id: str | None  # None: unverified (trusted by the policy's opt-in)
    approved_by: str | None
    requested_by: str | None
    device: DeviceRef
    url: str | None = None

    @property
    def verified(self) -> bool:
        return self.approval_id is not None

    def details(self) -> dict[str, Any]:
        """What a result says about the approval."""
        return {
            "ticketId": self.ticket_id,
            "ticketSystem": self.system,
            "requestedBy": self.requested_by,
            "approvedBy": self.approved_by,
        }


def jira_approval(issue: Mapping[str, Any], mapping: JiraMapping) -> Approval:
    """The approval an issue (``GET /rest/api/{2|3}/issue/{key}?expand=changelog``) carries now."""
    document = {"issue": issue}
    key = str(issue.get("key") or "")
    what = f"Jira issue {key}"
    status = field_text(get_path(document, mapping.status_field))
    approved = {s.casefold() for s in mapping.approved_statuses}
    if status is None or status.casefold() not in approved:
        raise InvalidRequest(
            "NotApproved", f"{what} is {status!r}, not one of {list(mapping.approved_statuses)}"
        )
    history = _transition_into(issue.get("changelog"), status)
    if history is None:
        raise InvalidRequest("ApprovalNotFound", f"{what}: no transition into {status!r} in its changelog")
    return Approval(
        system="jira",
        ticket_id=key,
        approval_id=f"jira:{key}:{history.get('id')}",
        approved_by=_jira_user(history.get("author")),
        requested_by=requester_field(document, mapping.requester_fields),
        device=_ticket_device(document, mapping.device_field, mapping.device_kind, what),
    )


def _ticket_device(document: Mapping[str, Any], path: str, kind: DeviceKind, what: str) -> DeviceRef:
    device = device_field(document, path, kind, what)
    if device == DeviceRef():
        raise InvalidRequest("NoDevice", f"{what} names no device in {path} (TICKET_MAPPINGS deviceField)")
    return device


def _transition_into(changelog: object, status: str) -> Mapping[str, Any] | None:
    """The latest history that moved the issue into ``status``."""
    histories = changelog.get("histories") if isinstance(changelog, Mapping) else None
    found = None
    for history in histories if isinstance(histories, list) else []:
        items = history.get("items") if isinstance(history, Mapping) else None
        for item in items if isinstance(items, list) else []:
            moved = isinstance(item, Mapping) and str(item.get("field", "")).lower() == "status"
            if moved and str(item.get("toString", "")).casefold() == status.casefold():
                if found is None or str(history.get("created", "")) >= str(found.get("created", "")):
                    found = history
    return found


def _jira_user(user: object) -> str | None:
    """A Jira user as the result names them: the email, or the account id where the profile hides
    the email (Jira Cloud omits it then)."""
    if not isinstance(user, Mapping):
        return None
    email, account = field_text(user.get("emailAddress")), field_text(user.get("accountId"))
    return email or (f"accountId:{account}" if account else field_text(user.get("displayName")))


def servicenow_approval(
    record: Mapping[str, Any], approvals: Sequence[Mapping[str, Any]], mapping: ServiceNowMapping
) -> Approval:
    """The approval a record (read with ``sysparm_display_value=all``) carries now; ``approvals``:
    its approved ``sysapproval_approver`` rows."""
    number = field_text(stored_value(record.get("number"))) or ""
    what = f"ServiceNow record {number}"
    holds = [
        {t.casefold() for t in _texts(get_path(record, path))} & {v.casefold() for v in values}
        for path, values in mapping.approved_when
    ]
    if not any(holds):
        rules = ", ".join(f"{path} in {list(values)}" for path, values in mapping.approved_when)
        raise InvalidRequest("NotApproved", f"{what} is not approved ({rules})")
    sys_id = field_text(stored_value(record.get("sys_id"))) or number
    if mapping.approver_field is not None:
        approver = field_text(get_path(record, mapping.approver_field))
        approval_id = f"servicenow:{sys_id}:{mapping.approver_field}:{approver}"
    else:
        row = max(approvals, key=lambda r: str(stored_value(r.get("sys_updated_on")) or ""), default=None)
        approver = _approver(row) if row is not None else None
        approval_id = f"servicenow:{sys_id}:{field_text(stored_value(row.get('sys_id')))}" if row else ""
    if not approver:
        raise InvalidRequest("ApprovalNotFound", f"{what}: no approver is recorded for its approval")
    return Approval(
        system="servicenow",
        ticket_id=number,
        approval_id=approval_id,
        approved_by=approver,
        requested_by=requester_field(record, mapping.requester_fields),
        device=_ticket_device(record, mapping.device_field, mapping.device_kind, what),
    )


def _approver(row: Mapping[str, Any]) -> str | None:
    """The approver of an approval row: the user's email when it was read, else the name."""
    return field_text(row.get("approver.email")) or field_text(row.get("approver"))


def stored_value(field: object) -> object:
    """A field read with ``sysparm_display_value=all`` is ``{"display_value", "value"}``: the value."""
    return field.get("value") if isinstance(field, Mapping) else field


def _texts(field: object) -> list[str]:
    """Both texts of a field (a translated display value and the stored value), so either matches."""
    if isinstance(field, Mapping):
        texts = (field_text(field.get(key)) for key in ("display_value", "value"))
        return [text for text in texts if text is not None]
    text = field_text(field)
    return [text] if text is not None else []


def unverified_approval(request: ContainmentRequest) -> Approval:
    """What the message itself claims: relied on only under ``release.trustUnverifiedRequests``."""
    ticket = request.ticket_id or "(no ticket)"
    if not request.approved:
        raise InvalidRequest("NotApproved", f"release.requireApproval: ticket {ticket} is not approved")
    if not request.requested_by:
        raise InvalidRequest("NoRequester", f"the release for ticket {ticket} names no requester")
    if request.device == DeviceRef():
        raise InvalidRequest("NoDevice", f"the release for ticket {ticket} names no device")
    return Approval(
        "unverified", ticket, None, None, request.requested_by, request.device, request.source.url
    )


def ascii_identity(value: str | None) -> str | None:
    """An address as allow-lists compare it: ASCII only, lower-cased. Anything that is not plain
    ASCII already (a look-alike such as "contoso" with a long s, U+017F, which NFKC folds into an
    ASCII "s") never
    matches: ``None``."""
    if value is None:
        return None
    text = value.strip()
    if not text.isascii() or unicodedata.normalize("NFKC", text) != text:
        return None
    return text.lower()
