"""Microsoft Sentinel: an incident (automation rule / playbook payload) and an alert.

Hosts are taken from the incident's ``relatedEntities`` (kind ``Host``) or the alert's ``Entities``
(type ``host``). The MDE device id is used when Sentinel has it; otherwise the host's DNS name,
which the resolver then looks up exactly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ...errors import InvalidRequest
from ..model import ContainmentRequest
from .common import (
    SOURCE_ID_MAX,
    DeviceMention,
    build_comment,
    device_refs,
    fqdn,
    isolation_requests,
    make_source,
    present,
    reference,
)
from .severity import normalise_severity

SYSTEM = "sentinel"
_INCIDENT_PATH = "/providers/microsoft.securityinsights/incidents/"  # ARM ids are case-insensitive


def incident_matches(document: Mapping[str, Any]) -> bool:
    """The playbook trigger body (``object`` = the incident) or the bare incident resource: an ARM id
    under ``Microsoft.SecurityInsights/Incidents``, or ``object.properties.relatedEntities``."""
    wrapped = document.get("object")
    if isinstance(wrapped, Mapping):
        properties = wrapped.get("properties")
        return _is_incident_id(wrapped.get("id")) or (
            isinstance(properties, Mapping) and "relatedEntities" in properties
        )
    return _is_incident_id(document.get("id")) and isinstance(document.get("properties"), Mapping)


def _is_incident_id(value: object) -> bool:
    return isinstance(value, str) and _INCIDENT_PATH in value.lower()


def parse_incident(document: Mapping[str, Any], base: str) -> list[ContainmentRequest]:
    """One request per Host entity of the incident; the source id is the incident's ARM id (what a
    playbook needs to comment on or update the incident), the comment shows its number."""
    wrapped = document.get("object")
    incident: Mapping[str, Any] = wrapped if isinstance(wrapped, Mapping) else document
    properties = _mapping(incident.get("properties"))
    number = properties.get("incidentNumber")
    severity = normalise_severity(properties.get("severity"))
    what = reference("Sentinel incident", number if number is not None else incident.get("name"))
    mentions: list[DeviceMention] = []
    entities = properties.get("relatedEntities")
    for index, entity in enumerate(entities if isinstance(entities, list) else []):
        if not isinstance(entity, Mapping) or str(entity.get("kind", "")).lower() != "host":
            continue
        host = _mapping(entity.get("properties"))
        extra = _mapping(host.get("additionalData"))
        # DeviceDnsName is the name MDE itself reports; hostName + dnsDomain is Sentinel's view.
        name = present(extra.get("DeviceDnsName")) or fqdn(host.get("hostName"), host.get("dnsDomain"))
        mentions.append(DeviceMention(f"relatedEntities[{index}]", extra.get("MdatpDeviceId"), name))
    return isolation_requests(
        device_refs(mentions, what),
        base=base,
        source=make_source(SYSTEM, _incident_id(incident), properties.get("incidentUrl")),
        comment=build_comment(severity, properties.get("title"), what),
        severity=severity,
    )


def _incident_id(incident: Mapping[str, Any]) -> str | None:
    """The ARM id; the incident name (a GUID) when the ARM id is missing or longer than a source id
    may be (long resource group and workspace names): a cut ARM id would correlate with nothing."""
    arm_id = present(incident.get("id"))
    if arm_id is not None and len(arm_id) <= SOURCE_ID_MAX:
        return arm_id
    return present(incident.get("name")) or arm_id


def alert_matches(document: Mapping[str, Any]) -> bool:
    """``SystemAlertId``: the Sentinel alert's (SecurityAlert's) own name for its id."""
    return isinstance(document.get("SystemAlertId"), str)


def parse_alert(document: Mapping[str, Any], base: str) -> list[ContainmentRequest]:
    """One request per host entity of the alert. ``Entities`` may be a list or, as in the
    SecurityAlert table, a JSON string holding the list."""
    alert_id = document.get("SystemAlertId")
    severity = normalise_severity(document.get("Severity"))
    what = reference("Sentinel alert", alert_id)
    mentions: list[DeviceMention] = []
    for index, entity in enumerate(_entities(document.get("Entities"))):
        # {"$ref": "3"} entries point back at a host listed in full elsewhere in the list.
        if not isinstance(entity, Mapping) or str(entity.get("Type", "")).lower() != "host":
            continue
        name = fqdn(entity.get("HostName"), entity.get("DnsDomain"))
        mentions.append(DeviceMention(f"Entities[{index}]", entity.get("MdatpDeviceId"), name))
    return isolation_requests(
        device_refs(mentions, what),
        base=base,
        source=make_source(SYSTEM, alert_id, document.get("AlertLink")),
        comment=build_comment(severity, document.get("AlertDisplayName"), what),
        severity=severity,
    )


def _entities(value: object) -> list[Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            raise InvalidRequest("InvalidEntities", "Entities is a string but not a JSON list") from None
    return value if isinstance(value, list) else []


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
