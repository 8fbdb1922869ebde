"""Queue events -> canonical requests (pure: no HTTP, no queue, no clock, no settings reads).

The isolation queue accepts, without configuration, the canonical request and five alert shapes
(see ``docs/messages.md``); the release queue accepts the canonical release request, Jira and
ServiceNow tickets, read through a field mapping that is passed in (``TicketMappings``).

Detection is by markers only one shape carries; a document matching none, or more than one, is
refused with ``UnknownEventShape`` / ``AmbiguousEventShape`` rather than guessed at.

Request ids: an event naming devices gets one request per device, with request id
``f"{fallback_request_id}:{machine id or lower-cased name}"`` (``fallback_request_id`` is the
queue-message-based id the pipeline passes, so a redelivery derives the same ids); a streaming
batch inserts the alert id before the device. Ids that would break the schema's
``[A-Za-z0-9._:@/+=-]{1,128}`` keep a readable prefix plus a hash (``derive_request_id``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from .. import canonical
from ..canonical import ContainmentRequest
from ..errors import InvalidRequest
from . import graph_alert, mde_alert, sentinel, streaming
from .common import derive_request_id, schema_properties
from .severity import SEVERITIES, normalise_severity
from .tickets import (
    DEFAULT_TICKET_MAPPINGS_JSON,
    JiraMapping,
    ServiceNowMapping,
    TicketMappings,
    detect_release_shape,
    load_ticket_mappings,
    parse_ticket,
)

__all__ = [
    "ALERT_SHAPES",
    "DEFAULT_TICKET_MAPPINGS_JSON",
    "SEVERITIES",
    "JiraMapping",
    "ServiceNowMapping",
    "TicketMappings",
    "derive_request_id",
    "detect_alert_shape",
    "detect_release_shape",
    "load_ticket_mappings",
    "matching_alert_shapes",
    "normalise_severity",
    "parse_alert_event",
    "parse_release_event",
]

_Parser = Callable[[Mapping[str, Any], str], list[ContainmentRequest]]


def _is_canonical(document: Mapping[str, Any]) -> bool:
    # Only canonical field names (and at least one): schema errors then say exactly what is wrong.
    return bool(document) and set(document) <= schema_properties("isolation-request.schema.json")


def _parse_canonical(document: Mapping[str, Any], fallback_request_id: str) -> list[ContainmentRequest]:
    request = canonical.parse_isolation(dict(document), fallback_request_id)
    return [dataclasses.replace(request, severity=normalise_severity(request.severity))]


# shape -> (detector, parser). Detectors are exclusive by construction (tests check it on the
# whole fixture corpus); the order only decides how an ambiguity is listed.
_SHAPES: dict[str, tuple[Callable[[Mapping[str, Any]], bool], _Parser]] = {
    "canonical": (_is_canonical, _parse_canonical),
    "mde-alert": (mde_alert.matches, mde_alert.parse),
    "graph-alert-v2": (graph_alert.matches, graph_alert.parse),
    "sentinel-incident": (sentinel.incident_matches, sentinel.parse_incident),
    "sentinel-alert": (sentinel.alert_matches, sentinel.parse_alert),
    "defender-streaming": (streaming.matches, streaming.parse),
}
ALERT_SHAPES = tuple(_SHAPES)


def matching_alert_shapes(document: Mapping[str, Any]) -> list[str]:
    """Every alert shape whose markers ``document`` carries (normally exactly one)."""
    return [shape for shape, (detects, _) in _SHAPES.items() if detects(document)]


def detect_alert_shape(document: Mapping[str, Any]) -> str:
    """The shape of an isolation-queue event: one of ``ALERT_SHAPES``.

    Raises ``InvalidRequest`` ``UnknownEventShape`` (naming what is accepted) when no shape's
    markers are present, ``AmbiguousEventShape`` when several are.
    """
    shapes = matching_alert_shapes(document)
    if len(shapes) == 1:
        return shapes[0]
    if shapes:
        raise InvalidRequest(
            "AmbiguousEventShape", f"the event carries the markers of several shapes: {', '.join(shapes)}"
        )
    raise InvalidRequest(
        "UnknownEventShape",
        "not an event we recognise; expected one of: canonical isolation request, MDE alert, "
        "Graph security alert v2, Sentinel incident, Sentinel alert, Defender streaming export",
    )


def parse_alert_event(document: dict[str, Any], fallback_request_id: str) -> list[ContainmentRequest]:
    """An isolation-queue event -> one isolation request per device it names (at least one).

    All requests of one event share its ``source`` (system, alert or incident id, link); each
    carries the normalised severity and a comment ``[Severity] Title (Source id)``. Raises
    ``InvalidRequest`` for an unknown shape, an event naming no device (``NoDevice``) or a device
    by neither a valid machine id nor a valid DNS name (``InvalidDevice``).
    """
    _, parse = _SHAPES[detect_alert_shape(document)]
    return parse(document, fallback_request_id)


def parse_release_event(
    document: dict[str, Any], fallback_request_id: str, mappings: TicketMappings
) -> ContainmentRequest:
    """A release-queue event (canonical, Jira, ServiceNow) -> one release request.

    ``approved`` is set from the ticket per ``mappings``; the pipeline refuses unapproved ones.
    """
    return parse_ticket(document, fallback_request_id, mappings)
