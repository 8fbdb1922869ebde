"""How long a request waits in the queue before it is tried again (pure; the randomness is passed
in). Every wait is a delayed queue message: nothing sleeps."""

from __future__ import annotations

import random

MAX_DELAY_S = 7 * 24 * 3600  # a storage queue hides a message for at most 7 days
DEFAULT_RETRY_AFTER_S = 60.0  # a 429 that names no wait: MDE's window is a minute
YIELD_S = (5.0, 10.0)  # a release yielding its call to containment asks again in this many seconds
HOLDER_WAIT_S = (2.0, 4.0)  # a storm duplicate waiting for the request posting its device


def throttled_delay(retry_after: float | None, *, lined_up: bool, rng: random.Random) -> float:
    """After a 429: never earlier than ``Retry-After``. MDE's (``lined_up``) comes as the call's turn:
    the MDE client's budget lines up the calls its process could not make, as the API's window frees
    its slots, so it is the wait as it stands. A ticket system's is spread later by up to a quarter
    of it, so the calls it throttled do not all wake for the one call that frees."""
    wait = retry_after or DEFAULT_RETRY_AFTER_S
    return wait if lined_up else wait + rng.uniform(0, wait / 4)


def yield_delay(rng: random.Random) -> float:
    return rng.uniform(*YIELD_S)


def holder_wait(rng: random.Random) -> float:
    return rng.uniform(*HOLDER_WAIT_S)
