"""Following a Machine Action to its final status with delayed queue messages (pure decisions).

After a ``Submitted`` (or ``AlreadyPending``) result, the function puts a small tracking message on
its own trigger queue, invisible for the first delay of the schedule. Each delivery reads the action
once: final -> one final result; not final -> a new tracking message with the next, longer delay;
past the deadline -> ``TrackingExpired``. Nothing sleeps or polls in a loop.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from ..errors import InvalidRequest
from .model import MachineAction
from .results import Subject


@dataclass(frozen=True)
class Tracking:
    """The state a tracking message carries from one check to the next."""

    subject: Subject  # echoed on the final result
    action_id: str
    check: int
    deadline: datetime
    last_status: str

    def to_message(self) -> dict[str, Any]:
        record = self.subject.to_record()
        return {
            "tracking": {
                "requestId": record["requestId"],
                "action": record["action"],
                "actionId": self.action_id,
                "machine": record["machine"] or {},
                "source": record["source"],
                "check": self.check,
                "deadline": self.deadline.isoformat(),
                "lastStatus": self.last_status,
                "details": record["details"],
            }
        }

    @classmethod
    def from_message(cls, document: dict[str, Any]) -> Tracking:
        body = document.get("tracking")
        try:
            if not isinstance(body, dict) or body["action"] not in ("Isolate", "Unisolate"):
                raise ValueError("not a tracking message")
            subject = Subject.from_record(
                {**body, "machine": dict(body["machine"]), "source": dict(body["source"])}
            )
            return cls(
                subject=subject,
                action_id=str(body["actionId"]),
                check=int(body["check"]),
                deadline=datetime.fromisoformat(body["deadline"]),
                last_status=str(body["lastStatus"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidRequest("InvalidTrackingMessage", f"malformed tracking message: {e}") from None

    def next_check(self, status: str) -> Tracking:
        return replace(self, check=self.check + 1, last_status=status)


def delay_before_check(schedule: tuple[int, ...], check: int) -> int:
    """Seconds to wait before check number ``check`` (1-based); the last step repeats."""
    return schedule[min(check, len(schedule)) - 1]


def first_tracking(subject: Subject, action: MachineAction, now: datetime, deadline: timedelta) -> Tracking:
    """The tracking state right after submission."""
    return Tracking(subject, action.id, check=1, deadline=now + deadline, last_status=action.status)


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
