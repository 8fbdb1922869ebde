"""A Microsoft Graph security alert (``alerts_v2``): devices from its evidence."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..model import ContainmentRequest
from .common import (
    DeviceMention,
    build_comment,
    clean_url,
    device_refs,
    fqdn,
    isolation_requests,
    make_source,
    present,
    reference,
)
from .severity import normalise_severity

SYSTEM = "graph"
ALERT_TYPE = "#microsoft.graph.security.alert"
DEVICE_EVIDENCE = "#microsoft.graph.security.deviceEvidence"
_GRAPH_TYPES = "#microsoft.graph.security."


def matches(document: Mapping[str, Any]) -> bool:
    """Graph's own type annotations: the alert's ``@odata.type``, an ``alerts_v2`` ``@odata.context``,
    or evidence typed ``#microsoft.graph.security.*`` (MDE's own alerts type evidence with
    ``entityType`` instead)."""
    if document.get("@odata.type") == ALERT_TYPE:
        return True
    context = document.get("@odata.context")
    if isinstance(context, str) and "security/alerts_v2" in context:
        return True
    return any(
        isinstance(item, Mapping) and str(item.get("@odata.type", "")).startswith(_GRAPH_TYPES)
        for item in _evidence(document)
    )


def parse(document: Mapping[str, Any], base: str) -> list[ContainmentRequest]:
    """One request per device: ``deviceEvidence`` items, and any other evidence (file, process...)
    carrying ``mdeDeviceId``: an alert on a file names the device it was found on that way."""
    alert_id = document.get("id")
    severity = normalise_severity(document.get("severity"))
    what = reference("Defender alert", alert_id)
    mentions: list[DeviceMention] = []
    for index, item in enumerate(_evidence(document)):
        if not isinstance(item, Mapping):
            continue
        where = f"evidence[{index}]"
        if item.get("@odata.type") == DEVICE_EVIDENCE:
            name = present(item.get("deviceDnsName")) or fqdn(item.get("hostName"), item.get("dnsDomain"))
            mentions.append(DeviceMention(where, item.get("mdeDeviceId"), name))
        elif present(item.get("mdeDeviceId")):
            mentions.append(DeviceMention(where, item.get("mdeDeviceId")))
    return isolation_requests(
        device_refs(mentions, what),
        base=base,
        # The alert's own page; else its incident's.
        source=make_source(
            SYSTEM, alert_id, clean_url(document.get("alertWebUrl")) or document.get("incidentWebUrl")
        ),
        comment=build_comment(severity, document.get("title"), what),
        severity=severity,
    )


def _evidence(document: Mapping[str, Any]) -> list[Any]:
    evidence = document.get("evidence")
    return evidence if isinstance(evidence, list) else []
