"""Following a submitted action on in-memory ports: each check reads once and says what it came to."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from shared.errors import MdeThrottled
from tests.fakes import World, machine, raises, world

PC = "c28460d93e441d30869ebb33920c06acbb6fd75e"


def submitted(w: World) -> dict[str, Any]:
    """Isolate the PC; return the tracking message the function sent itself."""
    w.mde.add(machine(PC, "ws-fin-0142.contoso.local"))
    w.deliver({"machineId": PC, "requestId": "req-1", "severity": "High"})
    (_, tracking, _), *_ = w.outbox.sent
    w.outbox.sent.clear()
    return tracking


@pytest.mark.parametrize(
    ("status", "outcome"),
    [("Succeeded", "Succeeded"), ("Failed", "Failed"), ("TimeOut", "TimedOut"), ("Cancelled", "Cancelled")],
)
def test_a_final_status_gives_exactly_one_final_result(status: str, outcome: str) -> None:
    w = world()
    tracking = submitted(w)
    w.mde.complete(w.mde.actions[0]["id"], status)
    w.deliver(tracking)
    w.deliver(tracking)  # a redelivered check
    final = w.outbox.results[1:]
    assert [(r["outcome"], r["sequence"], r["machineAction"]["status"]) for r in final] == [
        (outcome, 2, status)
    ]
    assert final[0]["isolationType"] == "Full"  # the first result's details are echoed
    # No more checks; an isolation of ours that succeeded starts its lease (once, by the writer).
    leases = [(doc, delay) for _, doc, delay in w.outbox.sent]
    action_id = final[0]["machineAction"]["id"]
    expected = [({"lease": {"actionId": action_id, "requestId": "req-1", "period": 1}}, 24 * 3600.0)]
    assert leases == (expected if outcome == "Succeeded" else [])


def test_a_check_after_the_final_result_costs_no_api_call() -> None:
    w = world()
    tracking = submitted(w)
    w.mde.complete(w.mde.actions[0]["id"], "Succeeded")
    w.deliver(tracking)
    reads = w.mde.count("machineactions")
    w.deliver(tracking)
    assert w.mde.count("machineactions") == reads


def test_a_pending_action_is_checked_again_later_on_the_schedule() -> None:
    w = world(TRACKING_SCHEDULE="30,60,120")
    tracking = submitted(w)
    w.clock.advance(seconds=30)  # the first check
    w.deliver(tracking)
    ((_, again, delay),) = w.outbox.sent
    assert (again, delay) == (tracking, 60)
    assert len(w.outbox.results) == 1


def test_a_tracking_message_naming_no_submission_is_dropped_without_a_result(
    caplog: pytest.LogCaptureFixture,
) -> None:
    w = world()
    submitted(w)
    forged = {"tracking": {"actionId": "7f1a2b3c-0000-4000-8000-000000000001", "requestId": "req-1"}}
    calls = len(w.mde.calls)
    with caplog.at_level(logging.WARNING):
        w.deliver(forged)
    assert len(w.outbox.results) == 1 and w.outbox.sent == [] and len(w.mde.calls) == calls
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "names no submission" in line


def test_the_final_result_comes_from_the_ledger_and_mde_never_from_the_message() -> None:
    w = world()
    tracking = submitted(w)
    w.mde.complete(w.mde.actions[0]["id"], "Succeeded")
    injected = {"source": {"system": "sentinel", "id": "/subscriptions/x/evil?y#z"}, "requestedBy": "eve",
                "machine": {"id": "f" * 40}, "details": {"rule": "forged"}}  # fmt: skip
    w.deliver({"tracking": {**tracking["tracking"], **injected}})
    final = w.outbox.results[-1]
    assert (final["outcome"], final["source"], final["machine"]["id"]) == (
        "Succeeded",
        {"system": "canonical", "id": None, "url": None},
        PC,
    )
    assert "requestedBy" not in final and final["rule"] == "defaultIsolationType: Full"


def test_past_the_deadline_tracking_expires_with_the_last_status() -> None:
    w = world(TRACKING_DEADLINE_HOURS="1")
    tracking = submitted(w)
    w.clock.advance(hours=2)
    w.deliver(tracking)
    final = w.outbox.results[-1]
    assert (final["outcome"], final["lastStatus"], final["sequence"]) == ("TrackingExpired", "Pending", 2)


def test_a_429_checks_again_no_earlier_than_retry_after_nor_the_schedule() -> None:
    w = world(TRACKING_SCHEDULE="30,60")
    tracking = submitted(w)
    w.mde.fail["machineactions"] = [raises(MdeThrottled, "TooManyRequests", 429, retry_after=90.0)]
    w.deliver(tracking)
    ((_, again, delay),) = w.outbox.sent
    assert again == tracking and delay == 90.0 and len(w.outbox.results) == 1


def test_an_action_mde_no_longer_knows_fails_the_stream() -> None:
    w = world()
    tracking = submitted(w)
    w.mde.actions.clear()
    w.deliver(tracking)
    final = w.outbox.results[-1]
    assert (final["outcome"], final["sequence"], final["error"]["code"]) == ("Failed", 2, "ResourceNotFound")


def test_a_malformed_tracking_message_is_rejected() -> None:
    w = world()
    w.deliver({"tracking": {"action": "Isolate"}})
    assert [(r["outcome"], r["error"]["code"]) for r in w.outbox.results] == [
        ("Rejected", "InvalidTrackingMessage")
    ]


def test_a_submission_read_with_its_final_marker_answers_the_redelivery_without_another_read() -> None:
    w = world()
    tracking = submitted(w)
    key = (w.mde.actions[0]["id"], "req-1")
    w.finals.finals[key] = ("Succeeded", {"id": key[0]})  # written by an earlier delivery
    reads = w.mde.count("machineactions")
    w.deliver(tracking)
    assert w.mde.count("machineactions") == reads  # no API call
    assert w.outbox.results[1:] == []  # and no second final result


def test_a_submission_whose_final_is_not_written_is_checked_as_before() -> None:
    w = world()
    tracking = submitted(w)
    w.mde.complete(w.mde.actions[0]["id"], "Succeeded")
    w.deliver(tracking)
    assert [(r["outcome"], r["sequence"]) for r in w.outbox.results[1:]] == [("Succeeded", 2)]
