"""The narrow interfaces the use cases speak to. Adapters (shared/adapters) implement them on MDE,
Azure Table storage and Azure Storage queues; tests/fakes.py implements them in memory."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from .domain.breaker import BreakerResult
from .domain.model import IsolationType, MachineAction
from .domain.tracking import Submission

ApiGroup = Literal["isolate", "unisolate", "cancel", "machineactions", "machines", "findbyip"]
Machine = dict[str, Any]  # an MDE Machine record as the API returned it


class Mde(Protocol):
    """The MDE machine-action API. Errors are the typed ``Mde*`` errors of shared/errors.py; a 429
    (or a call refused because MDE's ``Retry-After`` is still running) is ``MdeThrottled``."""

    def isolate(self, machine_id: str, comment: str, isolation_type: IsolationType) -> MachineAction: ...

    def unisolate(self, machine_id: str, comment: str) -> MachineAction: ...

    def get_action(self, action_id: str) -> MachineAction: ...

    def cancel_action(self, action_id: str, comment: str) -> MachineAction: ...

    def list_actions(self, machine_id: str, action_type: str | None = None) -> list[MachineAction]:
        """Actions on one machine (of one type, when given), newest first."""
        ...

    def get_machine(self, machine_id: str) -> Machine: ...

    def find_machines_by_dns_name(self, dns_name: str) -> list[Machine]: ...

    def find_machines_by_dns_prefix(self, prefix: str) -> list[Machine]: ...

    def find_machines_by_ip(self, ip_address: str, timestamp: datetime) -> list[Machine]: ...

    def has_spare(self, group: ApiGroup) -> bool:
        """May a best-effort call go to this API now (without taking what containment needs)?"""
        ...

    def admit_release(self, group: ApiGroup) -> bool:
        """May a release's essential call go to this API now (containment comes first)?"""
        ...

    def app_id(self) -> str:
        """The client id MDE records as ``requestor`` of this service's actions ('' if unknown)."""
        ...


class Jira(Protocol):
    """A Jira site's REST API (Cloud v3 or Data Center v2); errors are ``Ticket*`` errors."""

    def issue(self, key: str, fields: Sequence[str]) -> dict[str, Any]:
        """The issue with those fields and its complete changelog."""
        ...

    def add_comment(self, key: str, text: str) -> dict[str, Any]: ...


class ServiceNow(Protocol):
    """A ServiceNow instance's Table API; errors are ``Ticket*`` errors."""

    def record(self, table: str, number: str, fields: Sequence[str]) -> dict[str, Any] | None:
        """The record with that number (display values ``all``), or None."""
        ...

    def approvals(self, record_sys_id: str) -> list[dict[str, Any]]:
        """The record's approved ``sysapproval_approver`` rows."""
        ...

    def add_work_note(self, table: str, sys_id: str, text: str) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Claim:
    """The answer of ``Claims.claim``.

    ``won``: this request holds the device's isolation claim and may go on (``state`` ``submitted``
    with ``action_id`` when it already submitted: a redelivery). Otherwise a storm duplicate:
    ``request_id``/``action_id``/``state`` are the holder's (``action_id`` ``None`` while
    ``claimed``).
    """

    won: bool
    request_id: str
    action_id: str | None
    state: Literal["claimed", "submitted"]
    at: datetime


class Claims(Protocol):
    """Per-device isolation claims (storm de-duplication)."""

    def claim(self, machine_id: str, request_id: str, now: datetime, window: timedelta) -> Claim: ...

    def abandon(self, machine_id: str, request_id: str) -> None:
        """Give up this request's claim before submitting; another request's claim is left alone."""
        ...

    def record_isolation(self, machine_id: str, request_id: str, action_id: str, now: datetime) -> None:
        """The isolation went to MDE: storm duplicates now get ``action_id``."""
        ...

    def record_release(self, machine_id: str, request_id: str, action_id: str, now: datetime) -> None:
        """The device was released: the next alert is a new isolation, not a storm duplicate."""
        ...


class Submissions(Protocol):
    """What this service submitted to MDE and is following: the only source of a final result."""

    def record(self, submission: Submission) -> None: ...

    def get(self, action_id: str, request_id: str) -> Submission | None: ...


class Approvals(Protocol):
    """Ticket approvals already relied on: an approval releases once."""

    def use(self, approval_id: str, request_id: str, now: datetime) -> tuple[str, bool]:
        """Record that ``request_id`` releases with this approval: (the request that holds it,
        whether this call recorded it). Another holder means the approval was used already."""
        ...


class Breaker(Protocol):
    """The blast-radius breaker shared by every instance."""

    def check(self, request_id: str, now: datetime) -> BreakerResult | None:
        """Held when the breaker is open now (made before any look-up; writes nothing). None when
        it is closed, when this request already holds a slot, or when its state cannot be read
        (``take_slot`` then decides, and holds)."""
        ...

    def take_slot(self, request_id: str, machine_id: str, now: datetime) -> BreakerResult: ...


class Finals(Protocol):
    """Final results written exactly once per (action, request), and the storm duplicates that
    wait for an action's final result."""

    def claim(self, action_id: str, key: str, now: datetime) -> Literal["won", "done", "busy"]:
        """The right to write this result: exactly one of several racing writers wins; ``done`` when
        it was written; ``busy`` while another writer holds the claim (taken over once it is stale)."""
        ...

    def release(self, action_id: str, key: str) -> None: ...

    def mark_reported(
        self, action_id: str, key: str, outcome: str, action: Mapping[str, Any], now: datetime
    ) -> None: ...

    def final_of(self, action_id: str, request_id: str) -> tuple[str, dict[str, Any]] | None: ...

    def add_duplicate(self, action_id: str, request_id: str, subject: Mapping[str, Any]) -> None: ...

    def duplicates(self, action_id: str) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class AuditEntry:
    """One decision or outcome, for the SOC's audit trail."""

    request_id: str
    action: str
    outcome: str
    at: datetime
    machine_id: str | None = None
    action_id: str | None = None
    details: Mapping[str, Any] | None = None


class Audit(Protocol):
    def record(self, entry: AuditEntry) -> None: ...


class Outbox(Protocol):
    """Messages this service writes: to a trigger queue (fan-out, a later retry, the next tracking
    check) and result messages."""

    def send(self, queue: str, document: dict[str, Any], delay_s: float = 0) -> None: ...

    def publish(self, result: dict[str, Any]) -> None: ...


Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Ports:
    """Everything a use case talks to, built once per process (shared/bootstrap.py)."""

    mde: Mde
    claims: Claims
    breaker: Breaker
    finals: Finals
    audit: Audit
    outbox: Outbox
    approvals: Approvals
    submissions: Submissions
    clock: Clock
    rng: random.Random
    jira: Jira | None = None  # None: not configured (JIRA_BASE_URL unset)
    servicenow: ServiceNow | None = None  # None: not configured (SERVICENOW_BASE_URL unset)
