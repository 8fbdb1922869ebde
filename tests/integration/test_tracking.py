"""Following actions to their final status with delayed tracking messages."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from devstack.stack import LocalStack
from shared.tracking import Tracking, first_tracking
from tests.integration.conftest import ONLINE_PC, Sim, no_more_results, results_for

Host = Callable[..., LocalStack]


def set_final_status(sim: Sim, machine_id: str, status: str) -> None:
    machines = requests.get(f"{sim.url}/_control/machines", timeout=5).json()
    machines = machines if isinstance(machines, list) else machines["machines"]
    (machine,) = [m for m in machines if m["id"] == machine_id]
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
    assert no_more_results(stack, 2.5) == []


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


def tracking_of(submitted: dict[str, Any]) -> Tracking:
    """The tracking message the function sends after this Submitted result (to send it again)."""
    return first_tracking(
        request_id=submitted["requestId"],
        action="Isolate",
        action_id=submitted["machineAction"]["id"],
        status="Pending",
        machine=submitted["machine"],
        source=submitted["source"],
        details={},
        now=datetime.now(UTC),
        deadline=timedelta(hours=1),
    )


def test_a_redelivered_tracking_message_does_not_write_a_second_final_result(host: Host, sim: Sim) -> None:
    stack = host()
    stack.send("isolation-requests", {"machineId": ONLINE_PC, "requestId": "redeliver-1"})
    submitted, final = results_for(stack, "redeliver-1", 2)
    assert final["outcome"] == "Succeeded"
    # The same tracking message again, twice (as a redelivery after a crash would bring it).
    tracking = tracking_of(submitted)
    stack.send("isolation-requests", tracking.to_message())
    stack.send("isolation-requests", tracking.to_message())
    assert no_more_results(stack, 3) == []
    gets = [r for r in sim.requests("machineactions") if r["path"].startswith("/api/machineactions/")]
    assert gets, "the first tracking checks read the action"


def test_duplicate_tracking_messages_for_a_pending_action_give_one_final_result(host: Host, sim: Sim) -> None:
    sim.config(pending_s=120)  # Pending for 2 s real
    stack = host()
    stack.send("isolation-requests", {"machineId": ONLINE_PC, "requestId": "twice-1"})
    (submitted,) = results_for(stack, "twice-1", 1)
    tracking = tracking_of(submitted)
    stack.send("isolation-requests", tracking.to_message())
    finals = results_for(stack, "twice-1", 1, timeout=20)
    assert finals[0]["outcome"] == "Succeeded"
    assert no_more_results(stack, 4) == []
