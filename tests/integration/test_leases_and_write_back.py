"""On the real stack: isolation leases (delayed queue messages, one reminder per period, ended by a
release by anyone) and a release's results written back to its Jira issue or ServiceNow record."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from devstack.stack import LocalStack
from tests.integration.conftest import (
    ENG_PC,
    ONLINE_PC,
    Sim,
    analyst_releases,
    jira_approves,
    jira_release,
    results_for,
    servicenow_approves,
    settled,
)

pytestmark = pytest.mark.integration

Host = Callable[..., LocalStack]


def lease_policy(hours: float) -> str:
    return json.dumps({"leaseHours": hours})


def reminders(stack: LocalStack, request_id: str, count: int) -> list[dict[str, Any]]:
    found = stack.take_results(
        count, timeout=60, where=lambda r: r["requestId"] == request_id and r["outcome"] == "LeaseExpired"
    )
    assert len(found) == count, found
    return sorted(found, key=lambda r: int(r["sequence"]))


def test_a_lease_expires_and_repeats_until_a_release(host: Host, sim: Sim) -> None:
    stack = host(ISOLATION_POLICY=lease_policy(0.001))  # 3.6 s
    stack.send("isolation-requests", {"machineId": ONLINE_PC, "requestId": "lease-1"})
    submitted, _ = results_for(stack, "lease-1", 2)
    first, second = reminders(stack, "lease-1", 2)
    assert [(r["leasePeriod"], r["sequence"]) for r in (first, second)] == [(1, 3), (2, 4)]
    assert first["machineAction"]["id"] == submitted["machineAction"]["id"]
    assert first["machine"]["id"] == ONLINE_PC and first["isolatedHours"] >= 0.001
    assert sim.requests("unisolate") == []  # a reminder, never an automatic release


def test_a_release_before_expiry_ends_the_lease_with_no_reminder(host: Host, sim: Sim) -> None:
    stack = host(ISOLATION_POLICY=lease_policy(0.003))  # 10.8 s
    stack.send("isolation-requests", {"machineId": ENG_PC, "requestId": "lease-2"})
    results_for(stack, "lease-2", 2)
    jira_approves(stack, "SEC-20", ENG_PC)
    stack.send("release-requests", jira_release("SEC-20", "rel-20"))
    results_for(stack, "rel-20", 2)  # Submitted, Succeeded
    left = settled(stack, timeout=60)  # the lease message came, found the release, and ended
    assert [r for r in left if r["outcome"] == "LeaseExpired"] == []


def test_a_lease_ends_when_someone_else_releases_the_device(host: Host, sim: Sim) -> None:
    stack = host(ISOLATION_POLICY=lease_policy(0.003))
    stack.send("isolation-requests", {"machineId": ENG_PC, "requestId": "lease-3"})
    results_for(stack, "lease-3", 2)
    analyst_releases(sim, ENG_PC)
    left = settled(stack, timeout=60)
    assert [r for r in left if r["outcome"] == "LeaseExpired"] == []


def comment_texts(stack: LocalStack, key: str) -> list[str]:
    """The text of each comment on a Jira issue, oldest first (posted as ADF on REST v3)."""
    comments = stack.jira_control.comments(key)
    assert all(c["apiVersion"] == "3" and c["adf"]["type"] == "doc" for c in comments), comments
    return [str(c["text"]) for c in comments]


def test_a_verified_jira_release_leaves_one_comment_per_result(host: Host, sim: Sim) -> None:
    stack = host()
    jira_approves(stack, "SEC-21", ENG_PC)
    stack.send("release-requests", jira_release("SEC-21", "rel-21"))
    submitted, final = results_for(stack, "rel-21", 2)
    assert (submitted["writeBack"], final["writeBack"]) == ("posted", "posted")
    assert settled(stack) == []
    first, second = comment_texts(stack, "SEC-21")
    action_id = submitted["machineAction"]["id"]
    assert ": Submitted, " in first and f"MDE action {action_id}" in first and ENG_PC in first
    assert ": Succeeded, " in second and f"MDE action {action_id}: Succeeded." in second
    # The same result again (a message redelivered by a producer): no second comment.
    stack.send("release-requests", jira_release("SEC-21", "rel-21"))
    (again,) = results_for(stack, "rel-21", 1)
    assert again["writeBack"] == "posted" and settled(stack) == []
    assert len(comment_texts(stack, "SEC-21")) == 2


def test_a_verified_servicenow_release_leaves_one_work_note_per_result(host: Host, sim: Sim) -> None:
    stack = host()
    sys_id = servicenow_approves(stack, "RITM0010021", "ws-eng-0007")
    body = {"ticketSystem": "servicenow", "ticketId": "RITM0010021", "requestId": "rel-sn-21"}
    stack.send("release-requests", body)
    submitted, final = results_for(stack, "rel-sn-21", 2)
    assert settled(stack) == []
    notes = stack.servicenow_control.work_notes(sys_id)
    assert len(notes) == 2, notes
    texts = [json.dumps(note) for note in notes]
    assert ": Submitted, " in texts[0] and ": Succeeded, " in texts[1]
    assert (submitted["writeBack"], final["writeBack"]) == ("posted", "posted")
