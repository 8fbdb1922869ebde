"""Result messages (``result.schema.json``): what each request came to, as immutable values.

A ``Subject`` is what every result of one request is about (its correlation, the machine, the
details gathered on the way); a ``Result`` is one outcome of it. ``build_result`` turns one into the
message a SOC reads on the results queue.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from ..errors import ContainmentError
from .model import REQUEST_ID, Action, ContainmentRequest, MachineAction, Source

SCHEMA_VERSION = "1.0"


@dataclass(frozen=True)
class Delivery:
    """The queue message being processed."""

    queue: str
    message_id: str
    dequeue_count: int

    def fallback_request_id(self) -> str:
        """The request id of a message that names none: derived from the queue message, so a
        redelivery derives the same."""
        return f"msg-{self.message_id}"


@dataclass(frozen=True)
class MachineRef:
    """The machine a result names: its MDE id and DNS name, as far as they are known."""

    id: str | None = None
    computer_dns_name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "computerDnsName": self.computer_dns_name}

    @classmethod
    def from_dict(cls, value: object) -> MachineRef | None:
        if not isinstance(value, Mapping) or not value:
            return None
        machine_id, name = value.get("id"), value.get("computerDnsName")
        return cls(
            machine_id if isinstance(machine_id, str) else None, name if isinstance(name, str) else None
        )


@dataclass(frozen=True)
class Subject:
    """What a request's results are about: its correlation, the machine and the details."""

    action: Action
    request_id: str
    source: Source
    machine: MachineRef | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, request: ContainmentRequest) -> Subject:
        device = request.device
        machine = None
        if device.machine_id or device.device_name:
            machine = MachineRef(device.machine_id, device.device_name)
        details: dict[str, Any] = {}
        if request.action == "Isolate":
            details["isolationType"] = request.isolation_type
        else:  # who requested and approved it comes from the ticket system, once it is read
            details["ticketId"] = request.ticket_id
        return cls(request.action, request.request_id, request.source, machine, details)

    @classmethod
    def unknown(cls, action: Action, document: object, fallback_id: str) -> Subject:
        """For a message that could not be parsed: whatever correlation it offers."""
        value = document.get("requestId") if isinstance(document, Mapping) else None
        request_id = value if isinstance(value, str) and REQUEST_ID.fullmatch(value) else fallback_id
        return cls(action, request_id, Source(system="unknown"))

    def on(self, machine_id: str, dns_name: str | None) -> Subject:
        """The same subject, now about the machine the request resolved to."""
        return replace(self, machine=MachineRef(machine_id, dns_name))

    def named(self, dns_name: object) -> Subject:
        """The same subject with the machine's DNS name filled in, when it was not known yet."""
        if self.machine is None or self.machine.computer_dns_name or not isinstance(dns_name, str):
            return self
        return replace(self, machine=replace(self.machine, computer_dns_name=dns_name))

    def with_details(self, **details: Any) -> Subject:
        return replace(self, details={**self.details, **details})

    def to_record(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "requestId": self.request_id,
            "source": self.source.to_dict(),
            "machine": self.machine.to_dict() if self.machine else None,
            "details": dict(self.details),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Subject:
        action: Action = "Isolate" if record.get("action") == "Isolate" else "Unisolate"
        details = record.get("details")
        return cls(
            action,
            str(record["requestId"]),
            Source.from_dict(record.get("source")),
            MachineRef.from_dict(record.get("machine")),
            dict(details) if isinstance(details, Mapping) else {},
        )


@dataclass(frozen=True)
class Result:
    """One outcome of a request: ``sequence`` 1 for the first result, 2 for the action's final one,
    more for later reminders. A result with a ``once_key`` is written exactly once per (action,
    key), however often it is reached."""

    subject: Subject
    outcome: str
    sequence: int = 1
    machine_action: MachineAction | None = None
    error: ContainmentError | None = None
    once_key: str | None = None

    @classmethod
    def final(cls, subject: Subject, outcome: str, action: MachineAction) -> Result:
        """The final result of a request's action: once per (action, request)."""
        return cls(subject, outcome, 2, action, once_key=subject.request_id)


def build_result(result: Result, delivery: Delivery, now: datetime) -> dict[str, Any]:
    """One result message (``result.schema.json``); the subject's details add the optional fields
    (``isolationType``, ``requestedBy``, ``ticketId``, ``deviceOnline``, ``lastSeen``, ...)."""
    subject, action = result.subject, result.machine_action
    message: dict[str, Any] = {
        "schemaVersion": SCHEMA_VERSION,
        "resultId": str(uuid.uuid4()),
        "timestamp": now.isoformat().replace("+00:00", "Z"),
        "action": subject.action,
        "outcome": result.outcome,
        "sequence": result.sequence,
        "requestId": subject.request_id,
        "source": subject.source.to_dict(),
        "machine": subject.machine.to_dict() if subject.machine else None,
        "machineAction": dict(action.raw) if action else None,
        "error": result.error.to_result_error() if result.error else None,
        "delivery": {
            "queue": delivery.queue,
            "messageId": delivery.message_id,
            "dequeueCount": delivery.dequeue_count,
        },
    }
    for key, value in subject.details.items():
        message.setdefault(key, value)
    return message
