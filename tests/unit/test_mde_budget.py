"""The MDE client's call budget: what this process spent of each API's limits, and Retry-After."""

from __future__ import annotations

import pytest

from shared.mde import CALLS_PER_HOUR, CALLS_PER_MINUTE, CallBudget


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
