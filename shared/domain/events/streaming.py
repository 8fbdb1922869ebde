"""A Defender XDR streaming export batch (Event Hub -> queue): ``{"records": [...]}``.

Only ``AdvancedHunting-AlertEvidence`` records are used. Records are grouped by ``AlertId``: each
alert's devices become requests whose source id is that alert, so one batch can carry several.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...errors import InvalidRequest
from ..model import ContainmentRequest
from .common import (
    DeviceMention,
    build_comment,
    device_refs,
    isolation_requests,
    make_source,
    present,
    reference,
)
from .severity import normalise_severity

SYSTEM = "defender-streaming"
ALERT_EVIDENCE = "advancedhunting-alertevidence"  # compared lower-cased
_ADVANCED_HUNTING = "advancedhunting-"


def matches(document: Mapping[str, Any]) -> bool:
    """A ``records`` list of streaming-API records (``category`` ``AdvancedHunting-*``)."""
    return any(_category(record).startswith(_ADVANCED_HUNTING) for record in _records(document))


@dataclass
class _Alert:
    title: object = None
    severity: object = None
    mentions: list[DeviceMention] = field(default_factory=list)


def parse(document: Mapping[str, Any], base: str) -> list[ContainmentRequest]:
    """Requests for every device of every alert in the batch, alerts in order of first record.

    Request ids include the alert id (``{base}:{alertId}:{device}``): the same device named by two
    alerts of one batch gets two requests, and their ids must differ. Alerts whose evidence names
    no device (an e-mail alert) contribute nothing; a batch with no device at all is ``NoDevice``.
    """
    alerts: dict[str | None, _Alert] = {}
    evidence_records = 0
    for index, record in enumerate(_records(document)):
        if _category(record) != ALERT_EVIDENCE:
            continue
        evidence_records += 1
        properties = record.get("properties")
        if not isinstance(properties, Mapping):
            continue
        alert = alerts.setdefault(present(properties.get("AlertId")), _Alert())
        alert.title = alert.title or present(properties.get("Title"))
        alert.severity = alert.severity or present(properties.get("Severity"))
        if present(properties.get("DeviceId")) or present(properties.get("DeviceName")):
            alert.mentions.append(
                DeviceMention(f"records[{index}]", properties.get("DeviceId"), properties.get("DeviceName"))
            )
    if not evidence_records:
        raise InvalidRequest(
            "UnsupportedStreamingCategory",
            "the streaming batch holds no AdvancedHunting-AlertEvidence records; "
            "export the AlertEvidence table to this queue",
        )
    requests: list[ContainmentRequest] = []
    for alert_id, alert in alerts.items():
        if not alert.mentions:
            continue
        severity = normalise_severity(alert.severity)
        what = reference("Defender alert", alert_id)
        requests += isolation_requests(
            device_refs(alert.mentions, what),
            base=f"{base}:{alert_id}" if alert_id else base,
            source=make_source(SYSTEM, alert_id, None),
            comment=build_comment(severity, alert.title, what),
            severity=severity,
        )
    if not requests:
        raise InvalidRequest("NoDevice", "no alert evidence in the streaming batch names a device")
    return requests


def _records(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    records = document.get("records")
    if not isinstance(records, list):
        return []
    return [record for record in records if isinstance(record, Mapping)]


def _category(record: Mapping[str, Any]) -> str:
    category = record.get("category")
    return category.lower() if isinstance(category, str) else ""
