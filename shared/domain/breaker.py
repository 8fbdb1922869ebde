"""The blast-radius breaker's arithmetic: at most N isolations per sliding window (pure; its state
lives in the ledger, which applies a transition with an ETag-conditional write)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from .policy_config import BreakerPolicy


@dataclass(frozen=True)
class BreakerSlot:
    """One isolation counted by the breaker."""

    at: datetime
    request_key: str  # a hash of the request id: a redelivery is not counted twice


@dataclass(frozen=True)
class BreakerState:
    """The breaker as stored: recent isolations and whether it is open."""

    slots: tuple[BreakerSlot, ...] = ()
    open: bool = False
    opened_at: datetime | None = None
    reset_by: str | None = None
    reset_at: datetime | None = None


@dataclass(frozen=True)
class BreakerResult:
    """The breaker's answer to one isolation.

    ``taken``: the isolation may be sent. Otherwise it is held: ``opened_at`` says since when the
    breaker is open. ``count``: isolations in the window (including this one when taken; ``None``
    when the state could not be read). ``repeat``: this request already held a slot (a
    redelivery), nothing new was counted. ``reason``: why an isolation is held although the breaker
    did not open (its state could not be read or written: that counts as open).
    """

    taken: bool
    count: int | None
    limit: int
    window: timedelta
    opened_at: datetime | None = None
    repeat: bool = False
    reason: str | None = None

    @classmethod
    def unavailable(cls, breaker: BreakerPolicy, reason: str) -> BreakerResult:
        """Held because the breaker's state could not be read or written: an isolation the breaker
        cannot count is not sent."""
        return cls(False, None, breaker.max_isolations, breaker.window, reason=reason)

    @property
    def held(self) -> bool:
        return not self.taken

    def to_details(self) -> dict[str, Any]:
        """The breaker's facts for a ``HeldForApproval`` result / audit entry."""
        facts: dict[str, Any] = {
            "count": self.count,
            "maxIsolations": self.limit,
            "windowMinutes": self.window.total_seconds() / 60,
            "openedAt": self.opened_at.isoformat() if self.opened_at else None,
        }
        if self.reason is not None:
            facts["reason"] = self.reason
        return {"breaker": facts}


def check_breaker(
    state: BreakerState, request_key: str, now: datetime, breaker: BreakerPolicy
) -> BreakerResult | None:
    """The check made before any look-up: the held answer when the breaker is open, else None (a
    request that already holds a slot, a redelivery, is never held by it)."""
    slots, is_open, opened_at = _current(state, now, breaker)
    if not is_open or any(s.request_key == request_key for s in slots):
        return None
    return BreakerResult(False, len(slots), breaker.max_isolations, breaker.window, opened_at)


def take_breaker_slot(
    state: BreakerState, request_key: str, now: datetime, breaker: BreakerPolicy
) -> tuple[BreakerState, BreakerResult]:
    """The breaker's transition for one isolation: ``(new state, result)``.

    The new state equals ``state`` when nothing needs writing.
    """
    slots, is_open, opened_at = _current(state, now, breaker)
    limit, window = breaker.max_isolations, breaker.window
    if any(s.request_key == request_key for s in slots):
        return state, BreakerResult(True, len(slots), limit, window, repeat=True)
    if is_open:
        return state, BreakerResult(False, len(slots), limit, window, opened_at)
    if len(slots) >= limit:
        opened = replace(state, slots=slots, open=True, opened_at=now)
        return opened, BreakerResult(False, len(slots), limit, window, now)
    slot = BreakerSlot(now, request_key)
    taken = replace(state, slots=(*slots, slot), open=False, opened_at=None)
    return taken, BreakerResult(True, len(slots) + 1, limit, window)


def _current(
    state: BreakerState, now: datetime, breaker: BreakerPolicy
) -> tuple[tuple[BreakerSlot, ...], bool, datetime | None]:
    """The slots still in the window and whether the breaker is open now. Open means held until an
    operator resets it or a full window has passed since it opened (by then every isolation it
    counted has left the window, so the next one starts a fresh count)."""
    slots = tuple(s for s in state.slots if s.at > now - breaker.window)
    if state.open and state.opened_at is not None and now - state.opened_at < breaker.window:
        return slots, True, state.opened_at
    return slots, False, None
