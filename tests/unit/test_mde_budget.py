"""The MDE client's call budget: what this process spent of each API's limits, and Retry-After."""

from __future__ import annotations

import pytest

from shared.adapters.budget import CALLS_PER_HOUR, CALLS_PER_MINUTE, CallBudget
from shared.errors import TransientError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def spend(budget: CallBudget, group: str, n: int) -> None:
    for _ in range(n):
        budget.spend(group)  # type: ignore[arg-type]


def test_optional_calls_fit_until_half_of_the_minute_is_spent(clock: Clock) -> None:
    budget = CallBudget(clock)
    spend(budget, "machines", CALLS_PER_MINUTE // 2 - 1)
    assert budget.has_spare("machines")
    budget.spend("machines")
    assert not budget.has_spare("machines")
    assert budget.has_spare("machineactions")  # each API has its own budget


def test_the_minute_window_slides(clock: Clock) -> None:
    budget = CallBudget(clock)
    spend(budget, "machines", 30)
    clock.now += 30
    spend(budget, "machines", 20)
    assert budget.spent("machines", 60) == 50
    assert not budget.has_spare("machines")
    clock.now += 30.001  # the first 30 calls are now older than a minute
    assert budget.spent("machines", 60) == 20
    assert budget.has_spare("machines")


def test_the_hour_window_counts_too(clock: Clock) -> None:
    budget = CallBudget(clock)
    for _ in range(CALLS_PER_HOUR // 2 // 40):  # 40 calls a minute: never half a minute's budget
        spend(budget, "machines", 40)
        assert budget.spent("machines", 60) == 40
        clock.now += 61
    assert budget.spent("machines", 3600) == CALLS_PER_HOUR // 2 // 40 * 40
    spend(budget, "machines", CALLS_PER_HOUR // 2 - budget.spent("machines", 3600))
    assert budget.spent("machines", 60) < CALLS_PER_MINUTE // 2
    assert not budget.has_spare("machines")  # half the hour is gone
    clock.now += 3600
    assert budget.spent("machines", 3600) == 0
    assert budget.has_spare("machines")


def test_retry_after_blocks_the_group_until_it_has_passed(clock: Clock) -> None:
    budget = CallBudget(clock)
    budget.throttled("machines", 12.5)
    assert budget.wait_s("machines") == 12.5
    assert not budget.has_spare("machines")
    assert budget.wait_s("isolate") == 0.0
    budget.throttled("machines", 2.0)  # a shorter one does not shorten the wait
    clock.now += 10
    assert budget.wait_s("machines") == pytest.approx(2.5)
    clock.now += 2.5
    assert budget.wait_s("machines") == 0.0
    assert budget.has_spare("machines")


def test_a_429_without_retry_after_waits_a_minute(clock: Clock) -> None:
    budget = CallBudget(clock)
    budget.throttled("isolate", None)
    assert budget.wait_s("isolate") == 60.0


def test_releases_yield_above_80_percent_of_the_minute_but_keep_a_floor(clock: Clock) -> None:
    budget = CallBudget(clock)
    spend(budget, "machineactions", 79)
    assert budget.admit_release("machineactions")  # headroom: no floor used
    spend(budget, "machineactions", 1)  # 80 of 100 in the last minute: containment's now
    admitted = [budget.admit_release("machineactions") for _ in range(8)]
    assert admitted == [True] * 5 + [False] * 3  # the floor: 5 per minute
    assert budget.admit_release("machines")  # per API
    clock.now += 60.001  # the minute has passed: headroom again
    assert budget.admit_release("machineactions")


def test_the_floor_refills_as_the_minute_slides(clock: Clock) -> None:
    budget = CallBudget(clock, per_minute=20)  # another limit than MDE's 100
    spend(budget, "machineactions", 16)
    assert budget.admit_release("machineactions")  # floor: max(1, 5 % of 20) = 1
    assert not budget.admit_release("machineactions")
    clock.now += 30
    spend(budget, "machineactions", 16)  # still busy
    assert not budget.admit_release("machineactions")
    clock.now += 30.001  # the floor's call is a minute old; the API is still busy (16 recent)
    assert budget.admit_release("machineactions")


def test_with_shares_each_process_keeps_its_optional_reads_and_release_yield_to_its_share(
    clock: Clock,
) -> None:
    budget = CallBudget(clock, shares=4)  # four processes call MDE for the app
    spend(budget, "machines", 12)
    assert budget.has_spare("machines")
    budget.spend("machines")  # 13: over half of this process's quarter of the minute (12.5)
    assert not budget.has_spare("machines")
    spend(budget, "machineactions", 20)  # 80 % of its quarter: containment's now
    admitted = [budget.admit_release("machineactions") for _ in range(3)]
    assert admitted == [True, False, False]  # the floor, a quarter of 5 a minute: at least one


def test_shares_must_be_at_least_one() -> None:
    with pytest.raises(ValueError, match="shares"):
        CallBudget(shares=0)


def test_calls_refused_while_throttled_line_up_on_the_slots_of_this_process_calls(clock: Clock) -> None:
    budget = CallBudget(clock)
    assert budget.refused("isolate") is None  # no call in the last minute: nothing known
    for _ in range(3):
        budget.spend("isolate")
        clock.now += 0.5  # calls at +0, +0.5, +1.0
    assert budget.throttled("isolate", 59.0) == 0.0  # the call MDE refused is the first in line
    assert [budget.refused("isolate") for _ in range(4)] == [0.5, 1.0, 1.0, 1.0]  # then the last
    assert budget.refused("machines") is None  # per API
    clock.now += 60.0  # the wait is over; throttled anew, the line starts again
    budget.spend("isolate")
    clock.now += 0.25
    budget.spend("isolate")
    assert (budget.throttled("isolate", 1.0), budget.refused("isolate")) == (0.0, 0.25)
    assert budget.throttled("isolate", 5.0) == 0.25  # while still throttled: the same line


def test_a_call_mde_refused_took_no_slot(clock: Clock) -> None:
    budget = CallBudget(clock)
    spend(budget, "isolate", 3)
    clock.now += 1.0
    refused_at = budget.spend("isolate")
    assert budget.spent("isolate", 60) == 4
    assert budget.throttled("isolate", 30.0, refused_at) == 0.0  # the line is on the 3 admitted calls
    assert budget.spent("isolate", 60) == 3


class Notices:
    """Throttle notices as the ledger keeps them (epoch seconds per API group), counting reads."""

    def __init__(self) -> None:
        self.rows: dict[str, float] = {}
        self.reads = 0
        self.fail: Exception | None = None

    def until(self, group: str) -> float | None:
        self.reads += 1
        if self.fail:
            raise self.fail
        return self.rows.get(group)

    def notify(self, group: str, until: float) -> None:
        if self.fail:
            raise self.fail
        self.rows[group] = until


WALL = 1_800_000_000.0  # epoch seconds when the test's monotonic clock reads 1000


def shared(clock: Clock, notices: Notices, shares: int = 4) -> CallBudget:
    return CallBudget(clock, shares=shares, notices=notices, wall=lambda: WALL + clock.now - 1000.0)


def test_a_429_tells_every_instance_when_the_api_accepts_calls_again(clock: Clock) -> None:
    notices = Notices()
    shared(clock, notices).throttled("isolate", 42.0)
    assert notices.rows == {"isolate": WALL + 42.0}


def test_another_instances_429_is_read_only_past_this_process_share_of_the_minute(clock: Clock) -> None:
    notices = Notices()
    notices.rows["isolate"] = WALL + 30.0  # another instance met a 429
    budget = shared(clock, notices)  # a quarter of 100 a minute
    spend(budget, "isolate", 24)
    assert budget.wait_s("isolate") == 0.0 and notices.reads == 0  # within its share: no read
    budget.spend("isolate")
    assert budget.wait_s("isolate") == 30.0 and notices.reads == 1
    clock.now += 10
    assert budget.wait_s("isolate") == 20.0 and notices.reads == 1  # learned: no second read
    assert budget.refused("isolate") == 0.0  # and the refused calls line up from it
    clock.now += 20
    assert budget.wait_s("isolate") == 0.0 and notices.reads == 2  # over: MDE decides again
    notices.rows["isolate"] = WALL + 10 * 24 * 3600  # a notice past any window MDE has
    assert budget.wait_s("isolate") == 3600.0


@pytest.mark.parametrize("fault", [TransientError("LedgerUnavailable", "table down"), RuntimeError("a bug")])
def test_a_notice_that_cannot_be_read_or_written_leaves_the_call_to_mde(
    clock: Clock, fault: Exception
) -> None:
    notices = Notices()
    notices.fail = fault
    budget = shared(clock, notices)
    spend(budget, "isolate", 30)
    assert budget.wait_s("isolate") == 0.0 and notices.reads == 1
    budget.throttled("isolate", 5.0)  # the notice is not written; this process still waits
    assert budget.wait_s("isolate") == 5.0
