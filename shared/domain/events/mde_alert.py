"""An MDE alert as ``GET /api/alerts`` returns it: one alert, one device."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..model import ContainmentRequest
from .common import DeviceMention, build_comment, device_refs, isolation_requests, make_source, reference
from .severity import normalise_severity

SYSTEM = "mde"
# MDE alert ids: "da637472900382838869_1364969609" (older ones have no letter prefix).
ALERT_ID = re.compile(r"[a-z]{0,2}\d{10,}_-?\d+")
_DEVICE_KEYS = ("machineId", "computerDnsName")


def matches(document: Mapping[str, Any]) -> bool:
    """MDE-only field names: ``alertCreationTime`` (Graph says ``createdDateTime``), or a device
    key together with ``detectionSource`` or an MDE-style alert id."""
    if "alertCreationTime" in document:
        return True
    if not any(key in document for key in _DEVICE_KEYS):
        return False
    alert_id = document.get("id")
    return "detectionSource" in document or (isinstance(alert_id, str) and bool(ALERT_ID.fullmatch(alert_id)))


def parse(document: Mapping[str, Any], base: str) -> list[ContainmentRequest]:
    """The alert's device (``machineId``, else ``computerDnsName``) as one isolation request."""
    alert_id = document.get("id")
    severity = normalise_severity(document.get("severity"))
    what = reference("MDE alert", alert_id)
    mention = DeviceMention("alert", document.get("machineId"), document.get("computerDnsName"))
    return isolation_requests(
        device_refs([mention], what),
        base=base,
        source=make_source(SYSTEM, alert_id, None),
        comment=build_comment(severity, document.get("title"), what),
        severity=severity,
    )
