"""Isolation leases: a device this service isolated is never forgotten (pure decisions).

When an isolation of ours has succeeded, a lease message waits on the queue for ``leaseHours``
(delayed messages, chained past a storage queue's 7-day limit). When it comes due and the device is
still isolated by us, the SOC gets a ``LeaseExpired`` result, and the next period starts: the
reminder repeats until a release. A release, or an isolation that ended otherwise, ends the lease
without a result. Nothing is ever released automatically.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ..errors import InvalidRequest
from .model import GUID, REQUEST_ID, MachineAction

MAX_PERIOD = 100_000
_NOT_IN_EFFECT = frozenset({"failed", "timeout", "cancelled", "canceled"})


@dataclass(frozen=True)
class LeaseKey:
    """A lease message: the isolation's submission key and which period it ends."""

    action_id: str
    request_id: str
    period: int

    def to_message(self) -> dict[str, Any]:
        return {"lease": {"actionId": self.action_id, "requestId": self.request_id, "period": self.period}}

    @classmethod
    def from_message(cls, document: dict[str, Any]) -> LeaseKey:
        body = document.get("lease")
        fields = body if isinstance(body, dict) else {}
        action_id, request_id, period = fields.get("actionId"), fields.get("requestId"), fields.get("period")
        if not (isinstance(action_id, str) and GUID.fullmatch(action_id)):
            raise InvalidRequest("InvalidLeaseMessage", "a lease message names an action id (a GUID)")
        if not (isinstance(request_id, str) and REQUEST_ID.fullmatch(request_id)):
            raise InvalidRequest("InvalidLeaseMessage", "a lease message names a request id")
        if isinstance(period, bool) or not isinstance(period, int) or not 1 <= period <= MAX_PERIOD:
            raise InvalidRequest("InvalidLeaseMessage", f"a lease period is 1 to {MAX_PERIOD}")
        return cls(action_id, request_id, period)

    def next(self) -> LeaseKey:
        return LeaseKey(self.action_id, self.request_id, self.period + 1)


def isolated_since(action: MachineAction) -> datetime | None:
    """When the isolation took effect: MDE's last update of the succeeded action (some examples
    spell it ``lastUpdateTimeUtc``), else its creation."""
    for field in ("lastUpdateDateTimeUtc", "lastUpdateTimeUtc", "creationDateTimeUtc"):
        value = action.raw.get(field)
        if isinstance(value, str) and value:
            try:  # MDE writes seven fractional digits and a Z: "2026-11-23T10:00:00.1234567Z"
                when = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
            return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    return None


def due(since: datetime, period: int, lease: timedelta) -> datetime:
    return since + period * lease


def lease_end(isolation: MachineAction, history: Iterable[MachineAction]) -> str | None:
    """Why the lease has ended (the isolation is no longer in effect), or None while it is."""
    if isolation.status.lower() != "succeeded":
        return f"the isolation is {isolation.status}"
    for action in history:
        released = action.type == "Unisolate" and action.status.lower() not in _NOT_IN_EFFECT
        if released and action.created > isolation.created:
            who = action.raw.get("requestor")
            return f"released by action {action.id} ({action.status}, requestor {who})"
    return None
