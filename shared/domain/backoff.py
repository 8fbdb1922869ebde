"""How long a request waits in the queue before it is tried again (pure; the randomness is passed
in). Every wait is a delayed queue message: nothing sleeps."""

from __future__ import annotations

import random

MAX_DELAY_S = 7 * 24 * 3600  # a storage queue hides a message for at most 7 days
DEFAULT_RETRY_AFTER_S = 60.0  # a 429 that names no wait: MDE's window is a minute
YIELD_S = (5.0, 10.0)  # a release yielding its call to containment asks again in this many seconds
HOLDER_WAIT_S = (2.0, 4.0)  # a storm duplicate waiting for the request posting its device


def throttled_delay(
    retry_after: float | None, *, local: bool, rng: random.Random, frees_within: float | None = None
) -> float:
    """After a 429: never earlier than ``Retry-After``, spread later by up to a quarter of it, so a
    throttled burst does not wake all at once for the one call that frees. When the caller knows
    the limit frees its slots sooner (``frees_within``: a burst's calls were made within a few
    seconds, so their slots free within as many seconds of each other), the spread is no wider
    than that, at least a second. A call refused in this process is spread by at least a second
    (it costs no MDE call, only a re-enqueue)."""
    wait = retry_after or DEFAULT_RETRY_AFTER_S
    spread = wait / 4
    if frees_within is not None:
        spread = min(spread, max(frees_within, 1.0))
    if local:
        spread = max(spread, 1.0)
    return wait + rng.uniform(0, spread)


def yield_delay(rng: random.Random) -> float:
    return rng.uniform(*YIELD_S)


def holder_wait(rng: random.Random) -> float:
    return rng.uniform(*HOLDER_WAIT_S)
