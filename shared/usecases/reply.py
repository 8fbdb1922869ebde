"""What one queue message comes to, as a value: the results to write, in order; messages to send on
the same trigger queue; a storm duplicate joining its holder's final result; and whether the
message itself fails (the host then redelivers it, or moves it to the poison queue)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..domain.results import Result, Subject


@dataclass(frozen=True)
class Send:
    """A message on the request's own trigger queue: itself later, one request of a fanned-out
    event, or the next tracking check."""

    document: dict[str, Any]
    delay_s: float = 0


@dataclass(frozen=True)
class Join:
    """A storm duplicate answered with its holder's action: it gets that action's final result."""

    subject: Subject
    action_id: str
    holder_request_id: str


@dataclass(frozen=True)
class Reply:
    results: tuple[Result, ...] = ()
    sends: tuple[Send, ...] = ()
    then: tuple[Send, ...] = ()  # sent only by whoever writes the reply's once-only result
    join: Join | None = None
    failure: Exception | None = None  # raised after the results: a transient fault

    @property
    def outcomes(self) -> tuple[str, ...]:
        return tuple(result.outcome for result in self.results)
