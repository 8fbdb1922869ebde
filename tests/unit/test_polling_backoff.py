"""The local host's polling back-off: the extension's RandomizedExponentialBackoffStrategy."""

from __future__ import annotations

from devstack.funchost import MIN_POLLING_INTERVAL_S, PollingBackoff


def delays(backoff: PollingBackoff, found: list[bool]) -> list[float]:
    return [round(backoff.next_delay(f), 6) for f in found]


def test_empty_polls_grow_from_the_minimum_doubling_the_increment_until_the_maximum() -> None:
    backoff = PollingBackoff(0.1, 2.0, uniform=lambda low, high: 1.0)
    assert delays(backoff, [False] * 8) == [0.1, 0.2, 0.3, 0.5, 0.9, 1.7, 2.0, 2.0]


def test_a_found_message_resets_the_wait_to_the_minimum() -> None:
    backoff = PollingBackoff(0.1, 2.0, uniform=lambda low, high: 1.0)
    delays(backoff, [False] * 7)
    assert delays(backoff, [True, False, False]) == [0.1, 0.2, 0.3]


def test_the_increment_is_randomized_by_twenty_percent_but_the_maximum_is_exact() -> None:
    asked: list[tuple[float, float]] = []

    def upper(low: float, high: float) -> float:
        asked.append((low, high))
        return high

    backoff = PollingBackoff(0.1, 1.0, uniform=upper)
    assert delays(backoff, [False] * 7) == [0.1, 0.22, 0.34, 0.58, 1.0, 1.0, 1.0]
    assert set(asked) == {(0.8, 1.2)}
    assert len(asked) == 4  # none once the maximum is reached: it stays exactly there


def test_real_randomness_stays_within_the_bounds() -> None:
    for _ in range(5):
        waits = delays(PollingBackoff(MIN_POLLING_INTERVAL_S, 60.0), [False] * 12)
        assert waits[0] == MIN_POLLING_INTERVAL_S
        for n, wait in enumerate(waits[1:10]):
            nominal = 2**n * MIN_POLLING_INTERVAL_S
            assert 0.8 * nominal - 1e-6 <= wait - MIN_POLLING_INTERVAL_S <= 1.2 * nominal + 1e-6
