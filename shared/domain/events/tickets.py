"""Release tickets -> one release (unisolate) request: canonical, Jira, ServiceNow.

Where a ticket keeps the device, the requester and the approval is site-specific: a field mapping
(``ticket_mappings``) of dotted paths (``issue.fields.customfield_10050``) into the JSON the
ticket system posts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from ...errors import InvalidRequest
from .. import messages
from ..model import MACHINE_ID, ContainmentRequest, DeviceRef, Source, TicketSystem, validate_machine_id
from .common import (
    clean_text,
    clean_url,
    derive_request_id,
    get_path,
    present,
    schema_properties,
    valid_device_name,
)
from .ticket_mappings import SETTING, DeviceKind, JiraMapping, ServiceNowMapping, TicketMappings

TICKET_ID_MAX = 128  # ticketId in release-request.schema.json
REQUESTED_BY_MAX = 256
RELEASE_COMMENT_MAX = 500
_SYS_ID = re.compile(r"[0-9a-f]{32}")


def detect_release_shape(document: Mapping[str, Any]) -> str:
    """``canonical``, ``jira`` or ``servicenow``; anything else is ``UnknownEventShape``.

    * canonical: only fields of ``release-request.schema.json`` (and at least one);
    * jira: ``webhookEvent`` starting ``jira:`` (a system webhook), or an ``issue`` object with
      ``key`` and ``fields`` (a Jira Automation "Send web request" with "Issue data (Jira format)");
    * servicenow: a top-level ``sys_id`` (every ServiceNow record has one).
    """
    if document and set(document) <= schema_properties("release-request.schema.json"):
        return "canonical"
    webhook_event = document.get("webhookEvent")
    if isinstance(webhook_event, str) and webhook_event.startswith("jira:"):
        return "jira"
    issue = document.get("issue")
    if isinstance(issue, Mapping) and "key" in issue and isinstance(issue.get("fields"), Mapping):
        return "jira"
    if "sys_id" in document:
        return "servicenow"
    raise InvalidRequest(
        "UnknownEventShape",
        "not a release request we recognise; expected one of: canonical release request, "
        "Jira issue_updated webhook (or Jira Automation issue data), ServiceNow record (with sys_id)",
    )


def parse_ticket(
    document: Mapping[str, Any], fallback_request_id: str, mappings: TicketMappings
) -> ContainmentRequest:
    """A release request from any supported ticket shape (see ``detect_release_shape``)."""
    shape = detect_release_shape(document)
    if shape == "canonical":
        return messages.parse_release(dict(document), fallback_request_id)
    if shape == "jira":
        return parse_jira(document, fallback_request_id, mappings.jira)
    return parse_servicenow(document, fallback_request_id, mappings.servicenow)


def parse_jira(
    document: Mapping[str, Any], fallback_request_id: str, mapping: JiraMapping
) -> ContainmentRequest:
    """A Jira issue as a release request.

    Approval: a system webhook fires on every update of the issue, so it approves only when this
    very update moved the status to an approved value (a ``changelog`` item ``status`` with that
    ``toString``); otherwise editing an old approved ticket would release a device that has since
    been isolated again. A Jira Automation payload has no changelog: the rule's trigger (e.g.
    "Issue transitioned") is the event, so the current status (``statusField``) is checked.
    """
    webhook_event = document.get("webhookEvent")
    if webhook_event is not None and webhook_event != "jira:issue_updated":
        raise InvalidRequest(
            "UnsupportedJiraEvent",
            f"Jira event {clean_text(webhook_event, 64)!r} is not a release; send jira:issue_updated",
        )
    ticket_id = _ticket_id(document, mapping.ticket_id_field, "Jira issue")
    approved_values = {value.casefold() for value in mapping.approved_statuses}
    if webhook_event is not None:
        approved = any(
            value.casefold() in approved_values for value in _status_transitions(document.get("changelog"))
        )
    else:
        status = field_text(get_path(document, mapping.status_field))
        approved = status is not None and status.casefold() in approved_values
    issue = document.get("issue")
    self_url = issue.get("self") if isinstance(issue, Mapping) else None
    return _release(
        system="jira",
        ticket_id=ticket_id,
        url=_jira_browse_url(self_url, ticket_id),
        device=device_field(document, mapping.device_field, mapping.device_kind, f"Jira issue {ticket_id}"),
        requested_by=requester_field(document, mapping.requester_fields),
        approved=approved,
        comment=_comment(document, mapping.comment_field),
        fallback_request_id=fallback_request_id,
    )


def parse_servicenow(
    document: Mapping[str, Any], fallback_request_id: str, mapping: ServiceNowMapping
) -> ContainmentRequest:
    """A ServiceNow record as a release request; approved when an ``approvedWhen`` rule holds (a
    field's display value or stored value is one of the rule's values, case-insensitive)."""
    ticket_id = _ticket_id(document, mapping.ticket_id_field, "ServiceNow record")
    approved = any(
        {text.casefold() for text in field_texts(get_path(document, path))} & {v.casefold() for v in values}
        for path, values in mapping.approved_when
    )
    what = f"ServiceNow record {ticket_id}"
    return _release(
        system="servicenow",
        ticket_id=ticket_id,
        url=clean_url(field_text(get_path(document, mapping.url_field))) if mapping.url_field else None,
        device=device_field(document, mapping.device_field, mapping.device_kind, what),
        requested_by=requester_field(document, mapping.requester_fields),
        approved=approved,
        comment=_comment(document, mapping.comment_field),
        fallback_request_id=fallback_request_id,
    )


def _release(
    *,
    system: TicketSystem,
    ticket_id: str,
    url: str | None,
    device: DeviceRef,
    requested_by: str | None,
    approved: bool,
    comment: str | None,
    fallback_request_id: str,
) -> ContainmentRequest:
    return ContainmentRequest(
        action="Unisolate",
        request_id=derive_request_id(fallback_request_id, ticket_id),
        source=Source(system=system, id=ticket_id, url=url),
        device=device,
        comment=comment,
        ticket_system=system,
        ticket_id=ticket_id,
        requested_by=requested_by,
        approved=approved,
    )


def _status_transitions(changelog: object) -> list[str]:
    """The ``toString`` of every status change in a webhook's changelog."""
    items = changelog.get("items") if isinstance(changelog, Mapping) else None
    transitions = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, Mapping):
            continue
        if str(item.get("field", "")).lower() == "status" or item.get("fieldId") == "status":
            to_status = present(item.get("toString"))
            if to_status is not None:
                transitions.append(to_status)
    return transitions


def _jira_browse_url(self_url: object, key: str) -> str | None:
    """``https://site/rest/api/2/issue/10001`` -> ``https://site/browse/KEY`` (the page a human
    opens; a server install's context path before ``/rest/api/`` is kept)."""
    url = clean_url(self_url)
    if url is None or "/rest/api/" not in url:
        return None
    return clean_url(f"{url.split('/rest/api/')[0]}/browse/{quote(key, safe='')}")


def _ticket_id(document: Mapping[str, Any], path: str, what: str) -> str:
    ticket_id = clean_text(field_text(get_path(document, path)), TICKET_ID_MAX)
    if ticket_id is None:
        raise InvalidRequest("NoTicketId", f"{what} has no ticket id in {path}")
    return ticket_id


def device_field(document: Mapping[str, Any], path: str, kind: DeviceKind, what: str) -> DeviceRef:
    """The device a ticket field names (an empty reference when the field is empty); a value that
    names no device in a usable way is refused, saying which field holds it."""
    value = get_path(document, path)
    if isinstance(value, list):
        if len(value) > 1:
            raise InvalidRequest(
                "SeveralDevices", f"{what} names {len(value)} devices in {path}; one per ticket"
            )
        value = value[0] if value else None
    if _unresolved_reference(value):
        raise InvalidRequest(
            "UnresolvedReference",
            f"{what}: {path} arrived as a reference (sys_id) without its display value; send display "
            f"values (sysparm_display_value=all) or set {SETTING} deviceField to a field holding the "
            "device name or MDE machine id",
        )
    text = field_text(value)
    if text is None:
        return DeviceRef()
    if kind == "machineId" or (kind == "auto" and MACHINE_ID.fullmatch(text.lower())):
        return DeviceRef(machine_id=validate_machine_id(text))
    name = valid_device_name(text)
    if name is None:
        raise InvalidRequest(
            "InvalidDeviceName",
            f"{what}: {path} holds {clean_text(text, 80)!r}, neither a 40-hex machine id nor a DNS name",
        )
    return DeviceRef(device_name=name)


def requester_field(document: Mapping[str, Any], paths: tuple[str, ...]) -> str | None:
    """The requester: the first of ``paths`` that holds one."""
    for path in paths:
        requester = clean_text(field_text(get_path(document, path)), REQUESTED_BY_MAX)
        if requester is not None:
            return requester
    return None


def _comment(document: Mapping[str, Any], path: str | None) -> str | None:
    return clean_text(field_text(get_path(document, path)), RELEASE_COMMENT_MAX) if path else None


def field_text(value: object) -> str | None:
    """The text of a field: a string, or the readable part of an object field (ServiceNow
    ``{"display_value", "value", "link"}``, a Jira option ``{"value"}`` or user
    ``{"emailAddress", "displayName"}``)."""
    if isinstance(value, Mapping):
        for key in ("display_value", "value", "name", "emailAddress", "displayName"):
            text = field_text(value.get(key)) if not isinstance(value.get(key), Mapping) else None
            if text is not None:
                return text
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return present(value)


def field_texts(value: object) -> list[str]:
    """Every text a field offers: a reference's display value (which may be translated) and its
    stored value (``{"display_value": "Genehmigt", "value": "approved"}``), so either can match."""
    if isinstance(value, Mapping):
        return [
            text for key in ("display_value", "value") if (text := field_text(value.get(key))) is not None
        ]
    text = field_text(value)
    return [text] if text is not None else []


def _unresolved_reference(value: object) -> bool:
    """A ServiceNow reference sent as ``{"link", "value"}`` only: its value is the referenced
    record's sys_id, which would be looked up as a device name and never match."""
    if not isinstance(value, Mapping) or "display_value" in value or "link" not in value:
        return False
    reference_value = value.get("value")
    return isinstance(reference_value, str) and bool(_SYS_ID.fullmatch(reference_value))
