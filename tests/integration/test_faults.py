"""Faults on every side: exactly one final result per request, no duplicate MDE action,
nothing left unaccounted for in the queues."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from devstack.stack import LocalStack
from tests.integration.conftest import ONLINE_PC, Sim, queue_bodies, results_for, settled, wait_until

pytestmark = pytest.mark.integration

Host = Callable[..., LocalStack]
SHORT_LEASE = {"DEVSTACK_PROCESSING_LEASE_S": "3"}


def first_and_final(results: list[dict[str, object]]) -> list[tuple[object, object]]:
    return [(r["sequence"], r["outcome"]) for r in results]


@pytest.mark.parametrize(
    ("pending_s", "first_outcome"),
    [
        (3600, "AlreadyPending"),  # still pending at the redelivery: MDE answers "already in progress"
        (0, "Submitted"),  # already final: found again by the request id in its comment
    ],
)
def test_crash_between_post_and_result_gives_one_action_and_one_stream(
    host: Host, sim: Sim, pending_s: int, first_outcome: str
) -> None:
    sim.config(pending_s=pending_s)
    # MDE takes 3 s to answer the POST: the host is killed while it waits; MDE creates the action.
    sim.fault(api="isolate", delay_s=3, count=1)
    stack = host(**SHORT_LEASE)
    stack.send("isolation-requests", {"machineId": ONLINE_PC, "requestId": "crash-1"})
    # The simulator counts the fault when the POST arrives, before it waits: the POST is in flight.
    wait_until(lambda: sim.stats()["faulted"].get("isolate", 0) == 1, what="the POST to arrive")
    stack.kill_hosts()
    wait_until(lambda: len(sim.actions()) == 1, what="MDE to create the action")
    assert stack.take_results(1, timeout=0.5) == []  # the crash wrote nothing
    host(**SHORT_LEASE)  # a new instance picks the message up once its lease ends
    (first,) = results_for(stack, "crash-1", 1, timeout=30)
    if first_outcome == "AlreadyPending":
        sim.complete(first["machineAction"]["id"], "Succeeded")  # the device checks in
    (final,) = results_for(stack, "crash-1", 1, timeout=30)
    assert first_and_final([first, final]) == [(1, first_outcome), (2, "Succeeded")]
    assert first["delivery"]["dequeueCount"] == 2
    assert len(sim.actions()) == 1
    assert first["machineAction"]["id"] == sim.actions()[0]["id"]
    assert len(sim.requests("isolate")) == 1  # the redelivery found its own action first
    assert settled(stack, leases=1) == []  # one lease, started by the one final result
    assert stack.peek_count("isolation-requests-poison") == 0


def test_token_endpoint_down_ends_in_failed_retryable_and_poison(host: Host, sim: Sim) -> None:
    stack = host()
    stack.identity.fail_next(1000, 500)
    stack.send("isolation-requests", {"machineId": ONLINE_PC, "requestId": "tok-1"})
    (result,) = results_for(stack, "tok-1", 1, timeout=60)
    assert result["outcome"] == "Failed"
    assert result["error"]["code"] == "TokenUnavailable"
    assert result["error"]["retryable"] is True
    assert result["delivery"]["dequeueCount"] == 5
    assert sim.requests() == []
    # The host moves the message to the poison queue after the function gave up on it.
    wait_until(lambda: stack.peek_count("isolation-requests-poison") == 1, what="the poison message")
    poisoned = queue_bodies(stack, "isolation-requests-poison")
    assert poisoned == [{"machineId": ONLINE_PC, "requestId": "tok-1"}]


def test_token_endpoint_blip_heals_on_redelivery(host: Host, sim: Sim) -> None:
    stack = host()
    stack.identity.fail_next(2, 503)
    stack.send("isolation-requests", {"machineId": ONLINE_PC, "requestId": "tok-2"})
    first, final = results_for(stack, "tok-2", 2, timeout=30)
    assert first_and_final([first, final]) == [(1, "Submitted"), (2, "Succeeded")]
    assert len(sim.actions()) == 1


def test_storage_outage_mid_request_loses_nothing_and_doubles_nothing(host: Host, sim: Sim) -> None:
    sim.fault(api="isolate", delay_s=2, count=1)  # the POST is in flight when storage goes away
    stack = host(**SHORT_LEASE)
    stack.send("isolation-requests", {"machineId": ONLINE_PC, "requestId": "outage-1"})
    wait_until(lambda: sim.stats()["faulted"].get("isolate", 0) == 1, what="the POST to arrive")

    def outage() -> None:
        stack.azurite.stop()
        time.sleep(4)
        stack.azurite.start()

    thread = threading.Thread(target=outage)
    thread.start()
    thread.join()
    results = results_for(stack, "outage-1", 2, timeout=60) + settled(stack, timeout=60, leases=1)
    finals = [r for r in results if r["sequence"] == 2]
    progress = [r for r in results if r["sequence"] == 1]
    # Exactly one final result. The first result may come twice (at-least-once delivery: the
    # message was redelivered after the outage), always naming the same single action.
    assert [r["outcome"] for r in finals] == ["Succeeded"], results
    assert progress and {r["outcome"] for r in progress} <= {"Submitted", "AlreadyPending"}
    assert {r["machineAction"]["id"] for r in results} == {sim.actions()[0]["id"]}
    # settled() above: late trackers ended without a result


def test_a_missing_ledger_table_is_reported_at_startup_and_the_requester_still_hears_back(
    host: Host, sim: Sim
) -> None:
    stack = host(LEDGER_TABLE="nosuchledger")
    stack.send("isolation-requests", {"machineId": ONLINE_PC, "requestId": "no-ledger"})
    (result,) = results_for(stack, "no-ledger", 1, timeout=60)
    assert (result["outcome"], result["error"]["code"], result["error"]["retryable"]) == (
        "Failed",
        "LedgerUnavailable",
        True,
    )
    assert result["delivery"]["dequeueCount"] == 5
    log = stack.host_logs()
    assert log.count("the ledger table 'nosuchledger' does not exist") == 1  # once per process
    assert "Storage Table Data Contributor" in log and "LEDGER_TABLE" in log
    assert sim.requests("isolate") == []  # no isolation without its claim in the ledger
