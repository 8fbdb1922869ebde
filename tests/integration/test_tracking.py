"""Following actions to their final status with delayed tracking messages."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from devstack.stack import LocalStack
from shared.domain.tracking import TrackingKey
from tests.integration.conftest import ONLINE_PC, Sim, results_for, settled

pytestmark = pytest.mark.integration

Host = Callable[..., LocalStack]


def set_final_status(sim: Sim, machine_id: str, status: str) -> None:
    (machine,) = [m for m in sim.machine_records() if m["id"] == machine_id]
    sim.machines([{**machine, "simFinalStatus": status}])


@pytest.mark.parametrize(
    ("mde_status", "outcome"),
    [("Succeeded", "Succeeded"), ("Failed", "Failed"), ("TimeOut", "TimedOut"), ("Cancelled", "Cancelled")],
)
def test_each_final_status_gives_exactly_submitted_then_one_final_result(
    host: Host, sim: Sim, mde_status: str, outcome: str
) -> None:
    set_final_status(sim, ONLINE_PC, mde_status)
    stack = host()
    stack.send("isolation-requests", {"machineId": ONLINE_PC, "requestId": f"fin-{outcome}"})
    results = results_for(stack, f"fin-{outcome}", 2)
    assert [(r["sequence"], r["outcome"]) for r in results] == [(1, "Submitted"), (2, outcome)]
    assert results[1]["machineAction"]["status"] == mde_status
    assert results[0]["machineAction"]["id"] == results[1]["machineAction"]["id"]
    assert settled(stack, leases=int(outcome == "Succeeded")) == []  # only a success starts a lease


def test_follow_ups_back_off_on_429_and_never_run_faster_than_the_schedule(host: Host, sim: Sim) -> None:
    sim.config(pending_s=240)  # Pending for 4 s real
    stack = host(TRACKING_SCHEDULE="1,2")
    stack.send("isolation-requests", {"machineId": ONLINE_PC, "requestId": "sched-1"})
    results_for(stack, "sched-1", 1)
    sim.fault(api="machineactions", status=429, count=1, retryAfter=2)
    results_for(stack, "sched-1", 1, timeout=30)
    reads = [
        datetime.fromisoformat(r["time"])
        for r in sim.requests("machineactions")
        if r["path"].startswith("/api/machineactions/")
    ]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(reads)]
    assert gaps, reads
    assert min(gaps) >= 1.9, gaps  # after the 429: >= Retry-After; else the schedule step (2 s)


def tracking_of(submitted: dict[str, Any]) -> dict[str, Any]:
    """The tracking message the function sends after this Submitted result (to send it again)."""
    return TrackingKey(submitted["machineAction"]["id"], submitted["requestId"]).to_message()


def test_a_redelivered_tracking_message_does_not_write_a_second_final_result(host: Host, sim: Sim) -> None:
    stack = host()
    stack.send("isolation-requests", {"machineId": ONLINE_PC, "requestId": "redeliver-1"})
    submitted, final = results_for(stack, "redeliver-1", 2)
    assert final["outcome"] == "Succeeded"
    # The same tracking message again, twice (as a redelivery after a crash would bring it).
    tracking = tracking_of(submitted)
    stack.send("isolation-requests", tracking)
    stack.send("isolation-requests", tracking)
    assert settled(stack, leases=1) == []
    gets = [r for r in sim.requests("machineactions") if r["path"].startswith("/api/machineactions/")]
    assert gets, "the first tracking checks read the action"


def test_duplicate_tracking_messages_for_a_pending_action_give_one_final_result(host: Host, sim: Sim) -> None:
    sim.config(pending_s=120)  # Pending for 2 s real
    stack = host()
    stack.send("isolation-requests", {"machineId": ONLINE_PC, "requestId": "twice-1"})
    (submitted,) = results_for(stack, "twice-1", 1)
    tracking = tracking_of(submitted)
    stack.send("isolation-requests", tracking)
    finals = results_for(stack, "twice-1", 1, timeout=20)
    assert finals[0]["outcome"] == "Succeeded"
    assert settled(stack, leases=1) == []


def test_a_forged_tracking_message_writes_no_result(host: Host, sim: Sim) -> None:
    stack = host()
    stack.send("isolation-requests", {"machineId": ONLINE_PC, "requestId": "real-1"})
    submitted, final = results_for(stack, "real-1", 2)
    log_start = stack.log_mark()
    # A forged "final result": an action id no submission names, with the fields a consumer acts on.
    forged = {"tracking": {"actionId": "7f1a2b3c-0000-4000-8000-000000000001", "requestId": "real-1",
                           "source": {"system": "sentinel", "id": "/subscriptions/x?evil#y"},
                           "machine": {"id": ONLINE_PC}, "details": {"requestedBy": "eve"},
                           "deadline": "2026-11-23T10:00:00"}}  # fmt: skip
    stack.send("isolation-requests", forged)
    # The real key with injected fields: the final result was written once, nothing more.
    stack.send(
        "isolation-requests", {"tracking": {**tracking_of(submitted)["tracking"], "requestedBy": "eve"}}
    )
    assert settled(stack, leases=1) == []
    assert stack.host_logs(since=log_start).count("tracking message names no submission, dropped") == 1
    assert final["source"] == submitted["source"] and "requestedBy" not in final
