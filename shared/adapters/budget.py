"""What this process has spent of MDE's per-API rate limits (docs/mde-api.md), and what MDE told
it to wait for: the MDE client's call budget."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from ..domain.backoff import DEFAULT_RETRY_AFTER_S
from ..ports import ApiGroup

logger = logging.getLogger(__name__)

CALLS_PER_MINUTE = 100  # MDE's limit per API, for every app of a tenant (docs/mde-api.md)
CALLS_PER_HOUR = 1500
MAX_RETRY_AFTER_S = 3600.0  # MDE's longest window: a longer wait is not a real one
OPTIONAL_SHARE = 0.5  # best-effort reads leave the other half of a group's budget to what must run
YIELD_SHARE = 0.8  # above this share of a minute, a release's calls yield to containment's...
RELEASE_FLOOR_SHARE = 0.05  # ...except for this share of the minute, which releases always get


class ThrottleNotices(Protocol):
    """MDE's 429s as every instance of the app learns them (the ledger's ``throttle`` rows)."""

    def until(self, group: ApiGroup) -> float | None:
        """When ``group`` accepts calls again, as the last 429 any instance met said (epoch s)."""
        ...

    def notify(self, group: ApiGroup, until: float) -> None: ...


class CallBudget:
    """What this process has spent of MDE's per-API limits, and what MDE told it to wait for.

    Two uses: a best-effort read (the device state on a result) is only made while the group has
    spare budget, so containment's own calls on a shared group (a release's state read and an
    isolation's policy look-up both count against ``machines``) are never the ones that meet a 429;
    and after a 429 a call to that group is not made again before its ``Retry-After`` has passed
    (it would only earn another 429). Per process: other instances' calls are not seen, so this
    avoids 429s rather than rules them out; the use cases still handle every 429 MDE returns.
    ``shares`` is how many processes may call MDE for the app at once (``MDE_BUDGET_SHARES``): the
    best-effort reads and the releases' yield and floor keep to one share of each limit, and past
    its share of a minute a process first reads the 429s other instances met (``notices``).
    Containment's own calls are never held back by it, only by MDE's 429s.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        per_minute: int = CALLS_PER_MINUTE,
        per_hour: int = CALLS_PER_HOUR,
        shares: int = 1,
        notices: ThrottleNotices | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if shares < 1:
            raise ValueError("shares must be at least 1")
        self._clock = clock
        self.per_minute = per_minute / shares  # this process's share of each limit
        self.per_hour = per_hour / shares
        self._lock = threading.Lock()
        self._calls: dict[str, deque[float]] = {}
        self._blocked_until: dict[str, float] = {}
        self._waiting: dict[str, int] = {}  # calls refused since the group was last throttled
        self._notices = notices
        self._wall = wall

    def spend(self, group: str) -> float:
        """A call to ``group`` is about to be made; returns when (to name it to ``throttled``)."""
        now = self._clock()
        with self._lock:
            self._record(group, now)
        return now

    def _record(self, group: str, now: float) -> None:
        calls = self._calls.setdefault(group, deque())
        calls.append(now)
        while calls and calls[0] <= now - 3600:
            calls.popleft()

    def throttled(
        self, group: ApiGroup, retry_after: float | None, spent_at: float | None = None
    ) -> float | None:
        """MDE answered 429: nothing to this group before ``Retry-After`` (60 s if it gave none),
        in this process and, through the throttle notices, in every other one. The call made at
        ``spent_at`` took no slot, so it no longer counts; it is the first call refused (returns
        what ``refused`` does)."""
        wait = DEFAULT_RETRY_AFTER_S if retry_after is None else retry_after
        with self._lock:
            calls = self._calls.get(group)
            if spent_at is not None and calls is not None and spent_at in calls:
                calls.remove(spent_at)
        self._block(group, wait)
        frees_within = self.refused(group)
        if self._notices is not None:
            try:
                self._notices.notify(group, self._wall() + wait)
            except Exception as e:  # noqa: BLE001 - the notice only saves other instances a 429 each
                logger.warning("throttle notice not written group=%s: %s", group, e)
        return frees_within

    def _block(self, group: ApiGroup, wait: float) -> None:
        now = self._clock()
        with self._lock:
            if self._blocked_until.get(group, 0.0) <= now:
                self._waiting[group] = 0  # throttled anew: the refused calls line up from here
            self._blocked_until[group] = max(now + wait, self._blocked_until.get(group, 0.0))

    def wait_s(self, group: ApiGroup) -> float:
        """Seconds until MDE accepts calls to this group again, as far as this process knows: its
        own 429s, and once it has spent its share of the minute, another instance's."""
        now = self._clock()
        with self._lock:
            wait = max(0.0, self._blocked_until.get(group, 0.0) - now)
            past_share = self._notices is not None and self._count(group, now, 60) >= self.per_minute
        if wait > 0 or not past_share or self._notices is None:
            return wait
        try:
            until = self._notices.until(group)
        except Exception as e:  # noqa: BLE001 - unknown: MDE still answers the call itself
            logger.warning("throttle notice not read group=%s: %s", group, e)
            return 0.0
        wait = 0.0 if until is None else min(until - self._wall(), MAX_RETRY_AFTER_S)
        if wait > 0:
            self._block(group, wait)
        return max(0.0, wait)

    def refused(self, group: ApiGroup) -> float | None:
        """A call to this group was refused (MDE's 429, or its ``Retry-After`` still running): how
        long after the ``Retry-After`` its slot frees, as far as this process knows (None before it
        made a call in the last minute). MDE's window frees this process's calls of the last minute
        a minute after each was made, so the n-th call refused since the group was throttled gets
        the slot of the n-th of those calls (the last one's, past their number): a burst made in
        two seconds is tried again within two seconds, not a quarter of the wait."""
        now = self._clock()
        with self._lock:
            waiting = self._waiting[group] = self._waiting.get(group, 0) + 1
            recent = [t for t in self._calls.get(group, ()) if t > now - 60]
        return recent[min(waiting, len(recent)) - 1] - recent[0] if recent else None

    def spent(self, group: str, window_s: float) -> int:
        now = self._clock()
        with self._lock:
            return self._count(group, now, window_s)

    def _count(self, group: str, now: float, window_s: float) -> int:
        return sum(1 for t in self._calls.get(group, ()) if t > now - window_s)

    def has_spare(self, group: ApiGroup) -> bool:
        """True when an optional call fits: not throttled, and under half of both windows."""
        return (
            self.spent(group, 60) < self.per_minute * OPTIONAL_SHARE
            and self.spent(group, 3600) < self.per_hour * OPTIONAL_SHARE
            and self.wait_s(group) == 0.0
        )

    def admit_release(self, group: ApiGroup) -> bool:
        """May a release make its (essential) call to an API that containment also needs? Yes while
        the API has used under 80 % of its minute; above that, only within the releases' floor of
        5 % of the minute (5 calls of 100), which is counted here. So during a storm that keeps the
        API busy, containment gets the rest and releases still move, at the floor's pace."""
        now = self._clock()
        with self._lock:
            if self._count(group, now, 60) < self.per_minute * YIELD_SHARE:
                return True
            floor = f"release-floor:{group}"
            if self._count(floor, now, 60) < max(1, int(self.per_minute * RELEASE_FLOOR_SHARE)):
                self._record(floor, now)
                return True
            return False
