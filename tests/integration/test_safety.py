"""Safe automatic containment: policy, breaker across instances, dry run, release rules."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from devstack.stack import LocalStack
from tests.integration.conftest import (
    ANA,
    APPROVED,
    ENG_PC,
    ONLINE_PC,
    Sim,
    jira_approves,
    jira_release,
    results_for,
    settled,
)

pytestmark = pytest.mark.integration

Host = Callable[..., LocalStack]
SRV_SQL = "63b87ad1411d2aa6afc5dcd92f0f66ccdb94157e"  # srv-sql-01.contoso.local, tag Tier0, group Servers


def policy(**fields: Any) -> str:
    return json.dumps({"minimumSeverity": "Medium", **fields})


def fleet(count: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"{i:040x}",
            "computerDnsName": f"ws-storm-{i:03}.contoso.local",
            "healthStatus": "Active",
            "onboardingStatus": "Onboarded",
            "osPlatform": "Windows11",
        }
        for i in range(1, count + 1)
    ]


def test_protected_and_below_threshold_devices_are_skipped_with_the_rule(host: Host, sim: Sim) -> None:
    rules = policy(protected={"dnsNames": ["srv-*.contoso.local"], "tags": ["NoAutoIsolate"]})
    stack = host(ISOLATION_POLICY=rules)
    stack.send("isolation-requests", {"machineId": SRV_SQL, "requestId": "prot-1", "severity": "High"})
    stack.send("isolation-requests", {"machineId": ONLINE_PC, "requestId": "low-1", "severity": "low"})
    (protected,) = results_for(stack, "prot-1", 1)
    (low,) = results_for(stack, "low-1", 1)
    assert (protected["outcome"], protected["reason"], protected["rule"]) == (
        "Skipped",
        "Protected",
        "protected.dnsNames: srv-*.contoso.local",
    )
    assert (low["outcome"], low["reason"]) == ("Skipped", "BelowMinimumSeverity")
    assert sim.requests("isolate") == []


def test_dry_run_does_everything_but_the_post(host: Host, sim: Sim) -> None:
    stack = host(DRY_RUN="true")
    stack.send("isolation-requests", {"machineId": ONLINE_PC, "requestId": "dry-1", "comment": "why"})
    jira_approves(stack, "SEC-1", ENG_PC)
    stack.send("release-requests", jira_release("SEC-1", "dry-2"))
    (isolate,) = results_for(stack, "dry-1", 1)
    (release,) = results_for(stack, "dry-2", 1)
    assert isolate["outcome"] == "DryRun"
    assert isolate["dryRun"] == {
        "method": "POST",
        "path": f"/api/machines/{ONLINE_PC}/isolate",
        "body": {"Comment": "why [mde-containment source=canonical request=dry-1]", "IsolationType": "Full"},
    }
    assert release["outcome"] == "DryRun"
    assert release["dryRun"]["path"] == f"/api/machines/{ENG_PC}/unisolate"
    assert sim.requests("isolate") == [] and sim.requests("unisolate") == []


def test_breaker_holds_exactly_n_across_two_concurrent_hosts(host: Host, sim: Sim) -> None:
    machines = fleet(10)
    sim.machines(machines)
    rules = policy(breaker={"maxIsolations": 4, "windowMinutes": 60})
    stack = host(ISOLATION_POLICY=rules)
    host(ISOLATION_POLICY=rules)  # a second instance on the same queues and ledger
    for machine in machines:
        stack.send(
            "isolation-requests", {"machineId": machine["id"], "requestId": f"brk-{machine['id'][-2:]}"}
        )
    ids = {f"brk-{machine['id'][-2:]}" for machine in machines}
    # First results only: the four submitted isolations also get final results meanwhile.
    results = stack.take_results(10, timeout=30, where=lambda r: r["requestId"] in ids and r["sequence"] == 1)
    outcomes = sorted(r["outcome"] for r in results)
    assert outcomes == ["HeldForApproval"] * 6 + ["Submitted"] * 4, outcomes
    held = next(r for r in results if r["outcome"] == "HeldForApproval")
    assert held["breaker"]["maxIsolations"] == 4
    assert len(sim.requests("isolate")) == 4


def test_release_needs_an_allowed_requester_and_our_own_isolation(host: Host, sim: Sim) -> None:
    rules = policy(release={"allowedRequesters": ["*@contoso.com"], "onlyReleaseOwnIsolations": True})
    stack = host(ISOLATION_POLICY=rules)
    jira_approves(stack, "SEC-9", ONLINE_PC)
    stack.jira_control.user("mallory-1", "Mallory", "mallory@evil.example")
    stack.jira_control.upsert_issue("SEC-8", {"summary": "Release", "reporter": "mallory-1",
                                              "customfield_10050": ONLINE_PC})  # fmt: skip
    stack.jira_control.transition("SEC-8", APPROVED, ANA)

    stack.send("release-requests", jira_release("SEC-8", "rel-outsider", requestedBy="ana@contoso.com"))
    (outsider,) = results_for(stack, "rel-outsider", 1)
    assert (outsider["outcome"], outsider["error"]["code"]) == ("Rejected", "RequesterNotAllowed")

    stack.send("release-requests", jira_release("SEC-9", "rel-not-ours"))
    (not_ours,) = results_for(stack, "rel-not-ours", 1)
    assert (not_ours["outcome"], not_ours["error"]["code"]) == ("Rejected", "NotIsolatedByService")

    stack.send("isolation-requests", {"machineId": ONLINE_PC, "requestId": "iso-ours"})
    results_for(stack, "iso-ours", 2)  # Submitted, then Succeeded
    stack.send("release-requests", jira_release("SEC-9", "rel-ours"))
    (ours,) = results_for(stack, "rel-ours", 1)
    assert ours["outcome"] == "Submitted"
    assert (
        "ticket SEC-9 by ana.approver@contoso.com, requested by ben.requester@contoso.com"
        in (ours["machineAction"]["requestorComment"])
    )


def test_a_huge_streaming_batch_is_held_whole_and_costs_no_mde_call(host: Host, sim: Sim) -> None:
    stack = host(ISOLATION_POLICY=policy())
    evidence = {
        "category": "AdvancedHunting-AlertEvidence",
        "properties": {"AlertId": "a1", "Severity": "High"},
    }
    records = [
        {**evidence, "properties": {**evidence["properties"], "DeviceId": f"{i:040x}"}} for i in range(200)
    ]
    message_id = stack.send("isolation-requests", {"records": records})
    (held,) = results_for(stack, f"msg-{message_id}", 1)
    assert (held["outcome"], held["devices"]) == ("HeldForApproval", 200)
    assert "200 devices, more than 10" in held["rule"]
    assert sim.requests() == [] and settled(stack) == []
