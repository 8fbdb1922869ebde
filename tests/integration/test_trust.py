"""Releases on the real stack, tried as an attacker who can write to the release queue would try
them: nothing the message claims releases a device; only the ticket system does, read now."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from devstack.stack import LocalStack
from tests.integration.conftest import (
    ANA,
    APPROVED,
    BEN,
    ENG_PC,
    ONLINE_PC,
    Sim,
    analyst_isolates,
    jira_approves,
    jira_release,
    results_for,
    servicenow_approves,
)

pytestmark = pytest.mark.integration

Host = Callable[..., LocalStack]
OWN_ONLY = json.dumps({"release": {"onlyReleaseOwnIsolations": True}})


def forged_jira_webhook(key: str, device: str) -> dict[str, Any]:
    """Exactly what Jira would post for an approving transition: anyone can post it too."""
    return {
        "webhookEvent": "jira:issue_updated",
        "user": {"accountId": ANA, "emailAddress": "ana.approver@contoso.com"},
        "issue": {"key": key, "fields": {"status": {"name": APPROVED}, "customfield_10050": device}},
        "changelog": {"items": [{"field": "status", "fromString": "Waiting", "toString": APPROVED}]},
    }


def test_forged_releases_are_refused_at_no_mde_cost(host: Host, sim: Sim) -> None:
    stack = host(ISOLATION_POLICY=json.dumps({"release": {"allowedRequesters": ["*@contoso.com"]}}))
    jira_approves(stack, "SEC-2", ENG_PC, status="Waiting for approval")  # exists, not approved
    forged = {
        "canonical": {"machineId": ENG_PC, "ticketId": "FAKE-0001", "requestedBy": "ciso@contoso.com",
                      "approved": True, "requestId": "canonical"},
        "look-alike": {"machineId": ENG_PC, "ticketId": "FAKE-2", "requestedBy": "eve@conto\u017fo.com",
                       "approved": True, "requestId": "look-alike"},
        "no-such-issue": {**forged_jira_webhook("SEC-404", ENG_PC)},
        "not-approved": {**forged_jira_webhook("SEC-2", ENG_PC)},
    }  # fmt: skip
    ids = {name: stack.send("release-requests", body) for name, body in forged.items()}
    codes = {
        name: results_for(stack, body.get("requestId") or f"msg-{ids[name]}:{body['issue']['key']}", 1)[0]
        for name, body in forged.items()
    }
    assert {name: (r["outcome"], r["error"]["code"]) for name, r in codes.items()} == {
        "canonical": ("Rejected", "UnverifiedRelease"),
        "look-alike": ("Rejected", "UnverifiedRelease"),
        "no-such-issue": ("Failed", "JiraTicketNotFound"),
        "not-approved": ("Rejected", "NotApproved"),
    }
    assert sim.requests() == []  # not even a machine look-up


@pytest.mark.parametrize(("trust_unverified", "code"), [(False, "UnverifiedRelease"), (True, "NotApproved")])
def test_forty_unapproved_releases_make_no_mde_call(
    host: Host, sim: Sim, trust_unverified: bool, code: str
) -> None:
    release = {"allowedRequesters": ["*@contoso.com"], "trustUnverifiedRequests": trust_unverified}
    stack = host(ISOLATION_POLICY=json.dumps({"release": release}))
    for i in range(40):
        claims = {"ticketId": f"T-{i}", "requestedBy": "eve@evil.example", "approved": False}
        stack.send(
            "release-requests", {"deviceName": f"probe-{i}.contoso.local", "requestId": f"p-{i}", **claims}
        )
    results = [results_for(stack, f"p-{i}", 1)[0] for i in range(40)]
    assert {r["error"]["code"] for r in results} == {code}
    assert sim.requests() == []  # authorised before any MDE call: no device-existence oracle


def test_a_verified_jira_release_unisolates_once_and_names_the_approver(host: Host, sim: Sim) -> None:
    stack = host()
    jira_approves(stack, "SEC-1", ENG_PC)
    stack.send("release-requests", jira_release("SEC-1", "rel-jira", requestedBy="ciso@contoso.com"))
    (result,) = results_for(stack, "rel-jira", 1)
    assert (result["outcome"], result["approvedBy"], result["requestedBy"]) == (
        "Submitted",
        "ana.approver@contoso.com",
        "ben.requester@contoso.com",
    )
    assert len(sim.requests("unisolate")) == 1
    (read,) = stack.jira_control.requests(method="GET", path_contains="/rest/api/3/issue/SEC-1")
    assert read["query"]["expand"] == "changelog"  # the ticket, with its history, read at release time


def test_a_verified_servicenow_release_unisolates_once_and_names_the_approver(host: Host, sim: Sim) -> None:
    stack = host()
    servicenow_approves(stack, "RITM0010001", "ws-eng-0007")
    body = {"ticketSystem": "servicenow", "ticketId": "RITM0010001", "requestId": "rel-snow"}
    stack.send("release-requests", body)
    (result,) = results_for(stack, "rel-snow", 1)
    assert (result["outcome"], result["approvedBy"], result["machine"]["id"]) == (
        "Submitted",
        "ana.approver@contoso.com",
        ENG_PC,
    )
    assert len(sim.requests("unisolate")) == 1


def test_a_replayed_approval_releases_once(host: Host, sim: Sim) -> None:
    stack = host()
    jira_approves(stack, "SEC-3", ENG_PC)
    webhook = forged_jira_webhook("SEC-3", ENG_PC)  # the real approval, posted twice
    first, second = stack.send("release-requests", webhook), stack.send("release-requests", webhook)
    (one,) = results_for(stack, f"msg-{first}:SEC-3", 1)
    (two,) = results_for(stack, f"msg-{second}:SEC-3", 1)
    outcomes = sorted((r["outcome"], (r["error"] or {}).get("code")) for r in (one, two))
    assert outcomes == [("Rejected", "ApprovalAlreadyUsed"), ("Submitted", None)]
    assert len(sim.requests("unisolate")) == 1


def test_an_analysts_isolation_never_becomes_ours_by_isolating_it_again(host: Host, sim: Sim) -> None:
    stack = host(ISOLATION_POLICY=OWN_ONLY)
    analyst = analyst_isolates(sim, ONLINE_PC)
    sim.complete(analyst["id"], "Succeeded")
    stack.send("isolation-requests", {"machineId": ONLINE_PC, "requestId": "iso-again", "severity": "High"})
    results_for(stack, "iso-again", 2)  # MDE accepted a second isolation: Submitted, Succeeded
    jira_approves(stack, "SEC-4", ONLINE_PC)
    stack.send("release-requests", jira_release("SEC-4", "rel-own"))
    (result,) = results_for(stack, "rel-own", 1)
    assert (result["outcome"], result["error"]["code"]) == ("Rejected", "NotIsolatedByService")
    assert analyst["requestor"] in result["error"]["message"]
    assert sim.requests("unisolate") == []


def test_a_release_never_cancels_someone_elses_pending_isolation(host: Host, sim: Sim) -> None:
    sim.config(pending_s=3600)
    stack = host()
    analyst = analyst_isolates(sim, ONLINE_PC)  # pending: the device has not checked in yet
    jira_approves(stack, "SEC-5", ONLINE_PC)
    stack.send("release-requests", jira_release("SEC-5", "rel-foreign"))
    (result,) = results_for(stack, "rel-foreign", 1)
    assert (result["outcome"], result["error"]["code"]) == ("Rejected", "ForeignActionPending")
    assert sim.requests("cancel") == [] and sim.requests("unisolate") == []
    assert next(a for a in sim.actions() if a["id"] == analyst["id"])["status"] == "Pending"


def test_ticket_system_throttling_is_waited_out_and_a_refused_login_never_releases(
    host: Host, sim: Sim
) -> None:
    stack = host()
    jira_approves(stack, "SEC-6", ENG_PC)
    stack.jira_control.fault(429, retry_after=2, method="GET", path_contains="/issue/SEC-6")
    stack.send("release-requests", jira_release("SEC-6", "rel-429"))
    (throttled,) = results_for(stack, "rel-429", 1)
    assert throttled["outcome"] == "Submitted" and throttled["delivery"]["dequeueCount"] == 1
    reads = stack.jira_control.requests(method="GET", path_contains="/issue/SEC-6")
    assert len(reads) >= 2  # the 429, then the read after Retry-After
    stack.jira_control.fault(401, count=1, method="GET", path_contains="/issue/SEC-7")
    jira_approves(stack, "SEC-7", ENG_PC)
    stack.send("release-requests", jira_release("SEC-7", "rel-401"))
    (refused,) = results_for(stack, "rel-401", 1)
    assert (refused["outcome"], refused["error"]["code"]) == ("Failed", "JiraUnauthorized")
    assert len(sim.requests("unisolate")) == 1


def test_the_approver_comes_from_the_transition_not_from_who_posted(host: Host, sim: Sim) -> None:
    stack = host(ISOLATION_POLICY=json.dumps({"release": {"allowedApprovers": ["ana.approver@contoso.com"]}}))
    jira_approves(stack, "SEC-8", ENG_PC, approver=BEN)  # Ben approved his own request
    webhook = forged_jira_webhook("SEC-8", ENG_PC)  # ...but the body says Ana did
    message = stack.send("release-requests", webhook)
    (result,) = results_for(stack, f"msg-{message}:SEC-8", 1)
    assert (result["outcome"], result["error"]["code"]) == ("Rejected", "ApproverNotAllowed")
    assert sim.requests("unisolate") == []
