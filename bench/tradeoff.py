"""``maxPollingInterval``: what an idle app pays in polls against how long a quiet system's alert waits.

The idle side follows from the listener's back-off (``devstack.funchost.PollingBackoff``, the
extension's own strategy): once the queue has been empty for a few seconds every listener polls
once per ``maxPollingInterval`` plus the poll's own duration, and each poll is one Get Messages
transaction. The latency side: an alert lands at a random moment of that cycle, so it waits for
the next poll uniformly between zero and one cycle, then takes what the quiet phase measured from
the poll's start to MDE receiving the POST. Pure functions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from devstack.funchost import MIN_POLLING_INTERVAL_S, PollingBackoff

from .analysis import percentile

DAY = 86_400.0
CAPS_S = (0.5, 1.0, 2.0, 5.0, 10.0, 60.0)  # the maxPollingInterval values the table shows
# Per polled queue: Flex Consumption runs each queue-triggered function as its own group, so an
# instance of isolate_fn's group polls one queue (the local host, running both, polls two).
LISTENERS = 1
_GRID = 100  # points per poll cycle in the latency model


def slowest_ramp_s(cap_s: float, minimum_s: float = MIN_POLLING_INTERVAL_S) -> float:
    """Seconds of waiting between the poll that found a message and the first wait at the cap, with
    every random factor at its upper bound: after that long idle, the listener polls once per cap."""
    backoff = PollingBackoff(minimum_s, cap_s, uniform=lambda low, high: high)
    total, delay = 0.0, backoff.next_delay(True)
    while delay < cap_s:
        total += delay
        delay = backoff.next_delay(False)
    return total


def idle_polls_per_day(cap_s: float, poll_s: float, listeners: int = LISTENERS) -> float:
    """Get Messages calls an idle instance makes in a day: each of its listeners once per cycle."""
    return listeners * DAY / (cap_s + poll_s)


def modelled_latencies(after_poll_s: Sequence[float], cap_s: float, poll_s: float) -> list[float]:
    """Alert -> MDE POST for each measured time after the poll started, at every point of an even
    grid over the poll cycle (the alert's arrival relative to the polls), sorted."""
    cycle = cap_s + poll_s
    return sorted(p + (k + 0.5) / _GRID * cycle for p in after_poll_s for k in range(_GRID))


@dataclass(frozen=True)
class TradeoffRow:
    cap_s: float
    polls_per_day: float  # one queue of an idle instance
    p50_s: float
    p99_s: float
    measured: bool  # the quiet phase ran with this cap (its own figures are shown beside)


def tradeoff(
    after_poll_s: Sequence[float], poll_s: float, measured_cap_s: float, caps: Sequence[float] = CAPS_S
) -> list[TradeoffRow]:
    """One row per cap (and the measured cap), modelled from the quiet phase's measurements."""
    rows = []
    for cap in sorted({*caps, measured_cap_s}):
        latencies = modelled_latencies(after_poll_s, cap, poll_s)
        rows.append(
            TradeoffRow(
                cap,
                idle_polls_per_day(cap, poll_s),
                percentile(latencies, 50),
                percentile(latencies, 99),
                cap == measured_cap_s,
            )
        )
    return rows
