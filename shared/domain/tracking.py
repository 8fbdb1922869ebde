"""Following a Machine Action to its final status with delayed queue messages (pure decisions).

After a ``Submitted`` (or ``AlreadyPending``) result, the function records the submission in the
ledger and puts a tracking message on its own trigger queue, invisible for the first step of the
schedule. The message carries only the submission's key (action id, request id): every field of the
final result comes from the ledger row and from MDE, so a forged message can name nothing but a
submission this service made. Each delivery reads the action once: final -> one final result; not
final -> the next message, later; past the deadline -> ``TrackingExpired``. Nothing sleeps or polls.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..errors import InvalidRequest
from .model import GUID, REQUEST_ID
from .results import Subject


@dataclass(frozen=True)
class Submission:
    """What the ledger keeps of a submitted action: the result's subject and the tracking window."""

    action_id: str
    subject: Subject
    submitted_at: datetime
    deadline: datetime
    reported: bool = False  # its final result was written (read with the submission)


@dataclass(frozen=True)
class TrackingKey:
    """A tracking message: the key of a submission, nothing else."""

    action_id: str
    request_id: str

    def to_message(self) -> dict[str, Any]:
        return {"tracking": {"actionId": self.action_id, "requestId": self.request_id}}

    @classmethod
    def from_message(cls, document: dict[str, Any]) -> TrackingKey:
        """The key, full-matched; anything else a message carries is ignored."""
        body = document.get("tracking")
        action_id = body.get("actionId") if isinstance(body, dict) else None
        request_id = body.get("requestId") if isinstance(body, dict) else None
        if not (isinstance(action_id, str) and GUID.fullmatch(action_id)):
            raise InvalidRequest("InvalidTrackingMessage", "a tracking message names an action id (a GUID)")
        if not (isinstance(request_id, str) and REQUEST_ID.fullmatch(request_id)):
            raise InvalidRequest("InvalidTrackingMessage", "a tracking message names a request id")
        return cls(action_id, request_id)


def delay_at(schedule: tuple[int, ...], elapsed_s: float) -> int:
    """Seconds until the next check, ``elapsed_s`` after submission: the schedule's steps are used
    one after another (30 s, then 60 s, ...), the last repeating, so checks thin out with time and
    never come closer together than the current step."""
    passed = 0.0
    for step in schedule:
        passed += step
        if elapsed_s < passed:
            return step
    return schedule[-1]


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
