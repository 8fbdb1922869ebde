"""What the fixture functions received, for the tests (a plain package: no function.json, not a function)."""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import azure.functions as func


@dataclass(frozen=True)
class Call:
    function: str
    id: str
    body: bytes
    dequeue_count: int
    pop_receipt: str
    insertion_time: datetime
    expiration_time: datetime
    time_next_visible: datetime
    at: float


CALLS: list[Call] = []
_lock = threading.Lock()
_concurrency = {"running": 0, "peak": 0}


def record(function: str, msg: func.QueueMessage) -> None:
    call = Call(
        function=function,
        id=msg.id,
        body=msg.get_body(),
        dequeue_count=msg.dequeue_count,
        pop_receipt=msg.pop_receipt,
        insertion_time=msg.insertion_time,
        expiration_time=msg.expiration_time,
        time_next_visible=msg.time_next_visible,
        at=time.monotonic(),
    )
    with _lock:
        CALLS.append(call)


@contextmanager
def running() -> Iterator[None]:
    """Count invocations running at once (the peak is what the host allowed)."""
    with _lock:
        _concurrency["running"] += 1
        _concurrency["peak"] = max(_concurrency["peak"], _concurrency["running"])
    try:
        yield
    finally:
        with _lock:
            _concurrency["running"] -= 1


def peak() -> int:
    return _concurrency["peak"]


def calls(function: str) -> list[Call]:
    with _lock:
        return [call for call in CALLS if call.function == function]


def reset() -> None:
    with _lock:
        CALLS.clear()
        _concurrency.update(running=0, peak=0)
