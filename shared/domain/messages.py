"""Queue message bodies -> validated requests, and requests -> canonical queue messages (pure: no
I/O but reading our own schemas).

JSON Schema's ``pattern`` is a search, and its ``$`` also matches before a final newline, so a schema
alone lets ``"ws-eng-0007\n"`` through: after the schema, every identifier is matched in full in code
and no text may carry a control character."""

from __future__ import annotations

import base64
import binascii
import functools
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from ..errors import InvalidRequest
from .model import (
    CONTROL_CHARACTER,
    ContainmentRequest,
    DeviceRef,
    Source,
    validate_device_name,
    validate_ip_address,
    validate_machine_id,
    validate_request_id,
)

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
MAX_MESSAGE_BYTES = 64 * 1024  # a storage queue message is at most 64 KiB


@functools.cache
def _validator(name: str) -> Draft202012Validator:
    resources = [
        (path.name, Resource.from_contents(json.loads(path.read_text(encoding="utf-8"))))
        for path in SCHEMA_DIR.glob("*.schema.json")
    ]
    registry: Registry[Any] = Registry().with_resources(resources)
    schema = json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))
    return Draft202012Validator(schema, registry=registry)


def schema_errors(name: str, document: Any) -> list[str]:
    """Every violation of schema ``name`` (e.g. ``result.schema.json``), as readable lines."""
    return [
        f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message[:200]}"
        for e in sorted(_validator(name).iter_errors(document), key=lambda e: list(e.absolute_path))
    ]


def decode_body(body: bytes) -> dict[str, Any]:
    """A queue message body -> a JSON object. Plain JSON text and base64-encoded JSON both work."""
    if len(body) > MAX_MESSAGE_BYTES:
        raise InvalidRequest("MessageTooLarge", f"message is {len(body)} bytes; the limit is 64 KiB")
    document = _json(body)
    if document is None:
        try:
            document = _json(base64.b64decode(body.strip(), validate=True))
        except (binascii.Error, ValueError):
            document = None
    if document is None:
        raise InvalidRequest("InvalidJson", "message is neither JSON nor base64-encoded JSON")
    if not isinstance(document, dict):
        raise InvalidRequest("NotAnObject", f"message must be a JSON object, not {type(document).__name__}")
    return document


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None


def _validate(schema: str, document: dict[str, Any]) -> None:
    errors = schema_errors(schema, document)
    if errors:
        raise InvalidRequest("SchemaViolation", "; ".join(errors[:5]))
    for path, text in _texts(document):
        if CONTROL_CHARACTER.search(text):
            raise InvalidRequest("SchemaViolation", f"{path}: control characters are not allowed")


def _texts(value: Any, path: str = "") -> list[tuple[str, str]]:
    """Every string in a document, with its path (``source/id``)."""
    if isinstance(value, str):
        return [(path or "(root)", value)]
    if isinstance(value, dict):
        return [found for key, item in value.items() for found in _texts(item, f"{path}/{key}".lstrip("/"))]
    if isinstance(value, list):
        return [found for i, item in enumerate(value) for found in _texts(item, f"{path}/{i}")]
    return []


def _device(document: dict[str, Any]) -> DeviceRef:
    if "machineId" in document:
        return DeviceRef(machine_id=validate_machine_id(document["machineId"]))
    if "deviceName" in document:
        return DeviceRef(device_name=validate_device_name(document["deviceName"]))
    if "ipAddress" not in document:
        return DeviceRef()  # a release may leave the device to its ticket
    ip = validate_ip_address(document["ipAddress"])
    try:
        when = datetime.fromisoformat(document["timestamp"])
    except ValueError:
        raise InvalidRequest("InvalidTimestamp", "timestamp is not an ISO 8601 date-time") from None
    return DeviceRef(ip_address=ip, timestamp=when.astimezone(UTC))


def _source(document: dict[str, Any], default_id: str | None) -> Source:
    source = document.get("source") or {}
    return Source(
        system=source.get("system", "canonical"), id=source.get("id", default_id), url=source.get("url")
    )


def parse_isolation(document: dict[str, Any], fallback_request_id: str) -> ContainmentRequest:
    """A canonical isolation request (``isolation-request.schema.json``)."""
    _validate("isolation-request.schema.json", document)
    return ContainmentRequest(
        action="Isolate",
        request_id=validate_request_id(document.get("requestId", fallback_request_id)),
        source=_source(document, None),
        device=_device(document),
        comment=document.get("comment"),
        isolation_type=document.get("isolationType", "Full"),
        severity=document.get("severity"),
        attempt=document.get("attempt", 1),
    )


def parse_release(document: dict[str, Any], fallback_request_id: str) -> ContainmentRequest:
    """A canonical release request (``release-request.schema.json``): which ticket approves it, and
    what the sender claims about it (a claim only counts once the ticket system confirms it)."""
    _validate("release-request.schema.json", document)
    return ContainmentRequest(
        action="Unisolate",
        request_id=validate_request_id(document.get("requestId", fallback_request_id)),
        source=_source(document, document["ticketId"]),
        device=_device(document),
        comment=document.get("comment"),
        ticket_system=document.get("ticketSystem"),
        ticket_id=document["ticketId"],
        requested_by=document.get("requestedBy"),
        approved=document.get("approved", False),
        attempt=document.get("attempt", 1),
    )


def to_canonical(request: ContainmentRequest, **changes: Any) -> dict[str, Any]:
    """The canonical queue message for ``request``: how a request is re-enqueued (fan-out of a
    multi-device event, retry after 429). ``changes`` override fields, e.g. ``attempt=2``."""
    device = request.device
    document: dict[str, Any] = {
        "requestId": request.request_id,
        "source": {k: v for k, v in request.source.to_dict().items() if v is not None},
        "attempt": request.attempt,
    }
    if device.machine_id:
        document["machineId"] = device.machine_id
    if device.device_name:
        document["deviceName"] = device.device_name
    if device.ip_address and device.timestamp:
        document["ipAddress"] = device.ip_address
        document["timestamp"] = device.timestamp.isoformat()
    if request.comment:
        document["comment"] = request.comment
    if request.action == "Isolate":
        document["isolationType"] = request.isolation_type
        if request.severity:
            document["severity"] = request.severity
    else:
        document.update(ticketId=request.ticket_id, approved=request.approved)
        optional = {"ticketSystem": request.ticket_system, "requestedBy": request.requested_by}
        document.update({k: v for k, v in optional.items() if v is not None})
    document.update(changes)
    return document
