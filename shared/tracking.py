"""Following a Machine Action to its final status with delayed queue messages (pure decisions).

After a ``Submitted`` (or ``AlreadyPending``) result, the function puts a small tracking message on
its own trigger queue, invisible for the first delay of the schedule. Each delivery reads the action
once: final -> one final result; not final -> a new tracking message with the next, longer delay;
past the deadline -> ``TrackingExpired``. Nothing sleeps or polls in a loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .errors import InvalidRequest

# MDE status (lower-cased) -> final outcome of our result message.
FINAL_OUTCOMES = {
    "succeeded": "Succeeded",
    "failed": "Failed",
    "timeout": "TimedOut",
    "cancelled": "Cancelled",
    "canceled": "Cancelled",
}


@dataclass(frozen=True)
class Tracking:
    """The state a tracking message carries from one check to the next."""

    request_id: str
    action: str
    action_id: str
    machine: dict[str, Any]
    source: dict[str, Any]
    check: int
    deadline: datetime
    last_status: str
    details: dict[str, Any]  # isolationType, requestedBy: echoed on the final result

    def to_message(self) -> dict[str, Any]:
        return {
            "tracking": {
                "requestId": self.request_id,
                "action": self.action,
                "actionId": self.action_id,
                "machine": self.machine,
                "source": self.source,
                "check": self.check,
                "deadline": self.deadline.isoformat(),
                "lastStatus": self.last_status,
                "details": self.details,
            }
        }

    @classmethod
    def from_message(cls, document: dict[str, Any]) -> Tracking:
        body = document.get("tracking")
        try:
            if not isinstance(body, dict) or body["action"] not in ("Isolate", "Unisolate"):
                raise ValueError("not a tracking message")
            return cls(
                request_id=str(body["requestId"]),
                action=body["action"],
                action_id=str(body["actionId"]),
                machine=dict(body["machine"]),
                source=dict(body["source"]),
                check=int(body["check"]),
                deadline=datetime.fromisoformat(body["deadline"]),
                last_status=str(body["lastStatus"]),
                details=dict(body.get("details") or {}),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidRequest("InvalidTrackingMessage", f"malformed tracking message: {e}") from None

    def next_check(self, status: str) -> Tracking:
        return Tracking(
            request_id=self.request_id,
            action=self.action,
            action_id=self.action_id,
            machine=self.machine,
            source=self.source,
            check=self.check + 1,
            deadline=self.deadline,
            last_status=status,
            details=self.details,
        )


def delay_before_check(schedule: tuple[int, ...], check: int) -> int:
    """Seconds to wait before check number ``check`` (1-based); the last step repeats."""
    return schedule[min(check, len(schedule)) - 1]


def final_outcome(status: str) -> str | None:
    """The final outcome for an MDE status, or None while the action is still going."""
    return FINAL_OUTCOMES.get(status.lower())


def first_tracking(
    *,
    request_id: str,
    action: str,
    action_id: str,
    status: str,
    machine: dict[str, Any],
    source: dict[str, Any],
    details: dict[str, Any],
    now: datetime,
    deadline: timedelta,
) -> Tracking:
    """The tracking state right after submission."""
    return Tracking(
        request_id=request_id,
        action=action,
        action_id=action_id,
        machine=machine,
        source=source,
        check=1,
        deadline=now + deadline,
        last_status=status,
        details=details,
    )


def device_online(
    machine: dict[str, Any], now: datetime, offline_after: timedelta
) -> tuple[bool, str | None]:
    """(online, lastSeen) from a Machine: ``healthStatus`` Active and seen recently."""
    last_seen = machine.get("lastSeen")
    if machine.get("healthStatus") != "Active":
        return False, last_seen
    try:
        seen = datetime.fromisoformat(str(last_seen).replace("Z", "+00:00"))
    except ValueError:
        return True, last_seen  # Active and no usable lastSeen: trust healthStatus
    if seen.tzinfo is None:
        seen = seen.replace(tzinfo=now.tzinfo)
    return now - seen <= offline_after, last_seen
