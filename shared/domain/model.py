"""The values every part of the service speaks in: identifiers, requests, machine actions, statuses.

Each fact is defined here once: the identifier patterns, the isolation types, MDE's final statuses
and the outcome each maps to. See docs/mde-api.md for the MDE side of these facts.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from ..errors import InvalidRequest

MACHINE_ID = re.compile(r"[0-9a-f]{40}")  # MDE machine ids, lower-cased
GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")  # action and client ids
REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")  # requestId in the schemas
DEVICE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # deviceName in the schemas
DEVICE_NAME_MAX = 255
CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")  # what the schemas' text patterns refuse

Action = Literal["Isolate", "Unisolate"]
OPPOSITE: dict[Action, Action] = {"Isolate": "Unisolate", "Unisolate": "Isolate"}
IsolationType = Literal["Full", "Selective", "UnManagedDevice"]
TicketSystem = Literal["jira", "servicenow"]
TICKET_SYSTEMS: tuple[TicketSystem, ...] = ("jira", "servicenow")
ISOLATION_TYPES: tuple[IsolationType, ...] = ("Full", "Selective", "UnManagedDevice")

# MDE's final statuses (lower-cased; older docs spell "Canceled") -> the outcome of a final result.
FINAL_OUTCOMES = {
    "succeeded": "Succeeded",
    "failed": "Failed",
    "timeout": "TimedOut",
    "cancelled": "Cancelled",
    "canceled": "Cancelled",
}


def validate_machine_id(value: object) -> str:
    """A 40-hex MDE machine id, lower-cased; anything else is refused before it nears a URL."""
    if isinstance(value, str) and MACHINE_ID.fullmatch(value.lower()):
        return value.lower()
    raise InvalidRequest("InvalidMachineId", "machineId must be 40 hexadecimal characters")


def validate_request_id(value: object) -> str:
    """A request id as the schemas define it, matched in full: it goes into MDE comments (the
    marker a redelivery finds its own action by), ledger rows and results."""
    if isinstance(value, str) and REQUEST_ID.fullmatch(value):
        return value
    raise InvalidRequest("InvalidRequestId", "requestId must be 1-128 of A-Z a-z 0-9 . _ : @ / + = -")


def validate_device_name(value: object) -> str:
    """A DNS name (FQDN or host name) as the schemas define it, matched in full: it goes into an
    OData filter."""
    if isinstance(value, str) and len(value) <= DEVICE_NAME_MAX and DEVICE_NAME.fullmatch(value):
        return value
    raise InvalidRequest("InvalidDeviceName", "deviceName must be a DNS name (letters, digits, _ . -)")


def validate_ip_address(value: object) -> str:
    """An IPv4 or IPv6 address, in its canonical text. An IPv6 zone (``fe80::1%eth0``) names an
    interface of some host, not a device, and would put a ``%`` into the URL: refused."""
    try:
        address = ipaddress.ip_address(value if isinstance(value, str) else "")
    except ValueError:
        raise InvalidRequest("InvalidIpAddress", "ipAddress is not an IP address") from None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        raise InvalidRequest("InvalidIpAddress", "ipAddress must not carry an IPv6 zone (%...)")
    return str(address)


def validate_action_id(value: object) -> str:
    """A MachineAction id is a GUID."""
    if isinstance(value, str) and GUID.fullmatch(value):
        return value
    raise InvalidRequest("InvalidActionId", "a machine action id must be a GUID")


def is_final(status: str) -> bool:
    """True for a MachineAction status that will not change any more."""
    return status.lower() in FINAL_OUTCOMES


def final_outcome(status: str) -> str | None:
    """The final outcome for an MDE status, or None while the action is still going."""
    return FINAL_OUTCOMES.get(status.lower())


@dataclass(frozen=True)
class Source:
    """Where a request came from: the correlation a SIEM or ticket flow matches results on."""

    system: str
    id: str | None = None
    url: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"system": self.system, "id": self.id, "url": self.url}

    @classmethod
    def from_dict(cls, value: object) -> Source:
        """A source as stored or sent by us; anything unreadable becomes ``unknown``."""
        data = value if isinstance(value, Mapping) else {}
        return cls(
            system=str(data.get("system") or "unknown"),
            id=_text_or_none(data.get("id")),
            url=_text_or_none(data.get("url")),
        )


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class DeviceRef:
    """How the request names the device; exactly one way is used, in this order of preference."""

    machine_id: str | None = None
    device_name: str | None = None
    ip_address: str | None = None
    timestamp: datetime | None = None


@dataclass(frozen=True)
class ContainmentRequest:
    """One isolate or unisolate request for one device."""

    action: Action
    request_id: str
    source: Source
    device: DeviceRef
    comment: str | None = None
    isolation_type: IsolationType = "Full"
    severity: str | None = None
    ticket_system: TicketSystem | None = None  # a release: the system of record to verify it with
    ticket_id: str | None = None
    requested_by: str | None = None  # as the message claims it, until verified with the ticket
    approved: bool = False  # likewise
    approved_by: str | None = None  # read from the ticket system
    attempt: int = 1  # deliveries after a 429 re-enqueue count up from here


@dataclass(frozen=True)
class MachineAction:
    """A MachineAction as MDE returned it; ``raw`` is carried unchanged into result messages."""

    raw: Mapping[str, Any]

    @property
    def id(self) -> str:
        return str(self.raw.get("id", ""))

    @property
    def type(self) -> str:
        return str(self.raw.get("type", ""))

    @property
    def status(self) -> str:
        return str(self.raw.get("status", ""))

    @property
    def machine_id(self) -> str:
        return str(self.raw.get("machineId", ""))

    @property
    def created(self) -> str:
        return str(self.raw.get("creationDateTimeUtc", ""))

    @property
    def comment(self) -> str:
        return str(self.raw.get("requestorComment") or "")

    @property
    def is_final(self) -> bool:
        return is_final(self.status)
