"""``TICKET_MAPPINGS``: where each ticket system keeps what a release needs (the device, the
requester, the approval), as field paths. Parsed once at startup; anything left out of the setting
keeps its default (``DEFAULT_TICKET_MAPPINGS_JSON``). docs/messages.md documents every field.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from ...errors import ConfigError

SETTING = "TICKET_MAPPINGS"
DeviceKind = Literal["auto", "machineId", "deviceName"]
DEVICE_KINDS: tuple[DeviceKind, ...] = ("auto", "machineId", "deviceName")
PATH = re.compile(r"[^.\s]+(?:\.[^.\s]+)*")  # a dotted field path
TABLE = re.compile(r"[a-z][a-z0-9_]{0,79}")  # a ServiceNow table name


@dataclass(frozen=True)
class JiraMapping:
    """Where a Jira issue keeps what a release needs."""

    device_field: str = "issue.fields.customfield_10050"
    device_kind: DeviceKind = "auto"
    requester_fields: tuple[str, ...] = (
        "issue.fields.reporter.emailAddress",
        "issue.fields.reporter.displayName",
    )
    approved_statuses: tuple[str, ...] = ("Approved for release",)
    status_field: str = "issue.fields.status.name"
    ticket_id_field: str = "issue.key"
    comment_field: str | None = "issue.fields.summary"

    def issue_fields(self) -> tuple[str, ...]:
        """The issue fields to read from Jira: every ``issue.fields.<id>`` the mapping names."""
        paths = (self.device_field, self.status_field, self.comment_field or "", *self.requester_fields)
        found = {p.split(".")[2] for p in paths if p.startswith("issue.fields.") and p.count(".") >= 2}
        return tuple(sorted(found | {"status"}))


@dataclass(frozen=True)
class ServiceNowMapping:
    """Where a ServiceNow record keeps what a release needs."""

    device_field: str = "cmdb_ci"
    device_kind: DeviceKind = "auto"
    requester_fields: tuple[str, ...] = ("requested_for",)
    # Approved when any of these fields holds one of its values (case-insensitive).
    approved_when: tuple[tuple[str, tuple[str, ...]], ...] = (("approval", ("approved",)),)
    ticket_id_field: str = "number"
    comment_field: str | None = "short_description"
    url_field: str | None = None
    table: str = "sc_req_item"  # where the records live (e.g. incident, change_request)
    approver_field: str | None = None  # None: the record's approved row in sysapproval_approver

    def record_fields(self) -> tuple[str, ...]:
        """The record fields to read from ServiceNow: every field the mapping names."""
        paths = (
            self.device_field,
            self.comment_field,
            self.url_field,
            self.approver_field,
            *self.requester_fields,
        )
        named = {p for p in paths if p} | {path for path, _ in self.approved_when}
        return tuple(sorted(named | {"number", "sys_id"}))


@dataclass(frozen=True)
class TicketMappings:
    """The field mappings of every ticket system (``TICKET_MAPPINGS``)."""

    jira: JiraMapping = field(default_factory=JiraMapping)
    servicenow: ServiceNowMapping = field(default_factory=ServiceNowMapping)


DEFAULT_TICKET_MAPPINGS_JSON = """{
  "jira": {
    "deviceField": "issue.fields.customfield_10050",
    "deviceKind": "auto",
    "requesterFields": ["issue.fields.reporter.emailAddress", "issue.fields.reporter.displayName"],
    "approvedStatuses": ["Approved for release"],
    "statusField": "issue.fields.status.name",
    "ticketIdField": "issue.key",
    "commentField": "issue.fields.summary"
  },
  "servicenow": {
    "deviceField": "cmdb_ci",
    "deviceKind": "auto",
    "requesterFields": ["requested_for"],
    "approvedWhen": {"approval": ["approved"]},
    "ticketIdField": "number",
    "commentField": "short_description",
    "urlField": null,
    "table": "sc_req_item",
    "approverField": null
  }
}"""


def load_ticket_mappings(raw: str | None) -> TicketMappings:
    """``TICKET_MAPPINGS`` (JSON text, or unset for the defaults) -> validated mappings.

    Raises ``ConfigError`` naming the setting and the offending field; unknown fields are errors
    too, so a typo (``deviceFeild``) fails at startup instead of silently using the default.
    """
    if raw is None or not raw.strip():
        return TicketMappings()
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise ConfigError(f"{SETTING} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{SETTING} must be a JSON object with the keys jira and/or servicenow")
    _no_unknown(data, {"jira", "servicenow"}, "")
    return TicketMappings(
        jira=_jira_mapping(_section(data, "jira")),
        servicenow=_servicenow_mapping(_section(data, "servicenow")),
    )


def _section(data: dict[str, Any], name: str) -> dict[str, Any]:
    section = data.get(name, {})
    if not isinstance(section, dict):
        raise ConfigError(f"{SETTING}: {name} must be a JSON object")
    return section


def _jira_mapping(section: dict[str, Any]) -> JiraMapping:
    default = JiraMapping()
    fields = {
        "deviceField", "deviceKind", "requesterFields", "approvedStatuses",
        "statusField", "ticketIdField", "commentField",
    }  # fmt: skip
    _no_unknown(section, fields, "jira.")
    return JiraMapping(
        device_field=_path(section, "deviceField", default.device_field, "jira"),
        device_kind=_device_kind(section, default.device_kind, "jira"),
        requester_fields=_strings(section, "requesterFields", default.requester_fields, "jira", path=True),
        approved_statuses=_strings(section, "approvedStatuses", default.approved_statuses, "jira"),
        status_field=_path(section, "statusField", default.status_field, "jira"),
        ticket_id_field=_path(section, "ticketIdField", default.ticket_id_field, "jira"),
        comment_field=_optional_path(section, "commentField", default.comment_field, "jira"),
    )


def _servicenow_mapping(section: dict[str, Any]) -> ServiceNowMapping:
    default = ServiceNowMapping()
    fields = {
        "deviceField", "deviceKind", "requesterFields", "approvedWhen",
        "ticketIdField", "commentField", "urlField", "table", "approverField",
    }  # fmt: skip
    _no_unknown(section, fields, "servicenow.")
    return ServiceNowMapping(
        device_field=_path(section, "deviceField", default.device_field, "servicenow"),
        device_kind=_device_kind(section, default.device_kind, "servicenow"),
        requester_fields=_strings(
            section, "requesterFields", default.requester_fields, "servicenow", path=True
        ),
        approved_when=_approved_when(section, default.approved_when),
        ticket_id_field=_path(section, "ticketIdField", default.ticket_id_field, "servicenow"),
        comment_field=_optional_path(section, "commentField", default.comment_field, "servicenow"),
        url_field=_optional_path(section, "urlField", default.url_field, "servicenow"),
        table=_table(section, default.table),
        approver_field=_optional_path(section, "approverField", default.approver_field, "servicenow"),
    )


def _table(section: dict[str, Any], default: str) -> str:
    value = section.get("table", default)
    if not isinstance(value, str) or not TABLE.fullmatch(value):
        raise ConfigError(f"{SETTING}: servicenow.table must be a table name such as {default!r}")
    return value


def _no_unknown(section: dict[str, Any], known: set[str], prefix: str) -> None:
    unknown = sorted(set(section) - known)
    if unknown:
        raise ConfigError(
            f"{SETTING}: unknown field {prefix}{unknown[0]}; expected one of {', '.join(sorted(known))}"
        )


def _path(section: dict[str, Any], key: str, default: str, system: str) -> str:
    value = section.get(key, default)
    if not isinstance(value, str) or not PATH.fullmatch(value):
        raise ConfigError(f"{SETTING}: {system}.{key} must be a dotted field path such as {default!r}")
    return value


def _optional_path(section: dict[str, Any], key: str, default: str | None, system: str) -> str | None:
    if section.get(key, default) is None:
        return None
    return _path(section, key, default or "u_ticket_url", system)


def _device_kind(section: dict[str, Any], default: DeviceKind, system: str) -> DeviceKind:
    value = section.get("deviceKind", default)
    if value not in DEVICE_KINDS:
        raise ConfigError(f"{SETTING}: {system}.deviceKind must be one of {', '.join(DEVICE_KINDS)}")
    return cast(DeviceKind, value)


def _strings(
    section: dict[str, Any], key: str, default: tuple[str, ...], where: str, *, path: bool = False
) -> tuple[str, ...]:
    value = section.get(key, list(default))
    name = f"{where}.{key}"
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{SETTING}: {name} must be a non-empty list")
    for item in value:
        if not isinstance(item, str) or not item.strip() or (path and not PATH.fullmatch(item)):
            what = "dotted field paths" if path else "non-empty strings"
            raise ConfigError(f"{SETTING}: {name} must hold {what}, not {item!r}")
    return tuple(value)


def _approved_when(
    section: dict[str, Any], default: tuple[tuple[str, tuple[str, ...]], ...]
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    value = section.get("approvedWhen", {path: list(values) for path, values in default})
    if not isinstance(value, dict) or not value:
        raise ConfigError(
            f"{SETTING}: servicenow.approvedWhen must be a non-empty object of field -> approved values"
        )
    rules = []
    for path in value:
        if not PATH.fullmatch(path):
            raise ConfigError(f"{SETTING}: servicenow.approvedWhen has an invalid field path {path!r}")
        rules.append((path, _strings(value, path, (), "servicenow.approvedWhen")))
    return tuple(rules)
