"""End to end: Azurite -> local Functions host -> isolate_fn / release_fn -> MDE simulator
-> results queue. The exact HTTP request MDE received and the result messages are asserted."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from collections.abc import Callable
from datetime import datetime

import pytest

from devstack.stack import CLIENT_ID, LocalStack
from shared.adapters.budget import CallBudget
from shared.adapters.identity import CredentialTokenProvider, managed_identity_credential
from shared.adapters.mde import MdeClient
from shared.usecases.context import Context
from tests.integration.conftest import (
    ENG_PC,
    ONLINE_PC,
    UNKNOWN_PC,
    Sim,
    analyst_isolates,
    queue_bodies,
    results_for,
    settled,
    wait_until,
)

pytestmark = pytest.mark.integration

Host = Callable[..., LocalStack]


def isolation(request_id: str, machine_id: str = ONLINE_PC, **fields: object) -> dict[str, object]:
    return {"machineId": machine_id, "requestId": request_id, **fields}


def release(request_id: str, machine_id: str = ENG_PC, **fields: object) -> dict[str, object]:
    return {
        "machineId": machine_id,
        "ticketId": "INC0012345",
        "requestedBy": "ana@contoso.com",
        "approved": True,
        "requestId": request_id,
        **fields,
    }


def test_isolation_request_reaches_mde_exactly_as_documented(host: Host, sim: Sim) -> None:
    stack = host()
    stack.send(
        "isolation-requests",
        isolation(
            "it-1",
            comment="Ransomware behavior",
            severity="High",
            source={"system": "sentinel", "id": "4711"},
        ),
    )
    submitted, final = results_for(stack, "it-1", 2)

    (post,) = sim.requests("isolate")
    assert post["method"] == "POST"
    assert post["path"] == f"/api/machines/{ONLINE_PC}/isolate"
    assert post["headers"]["Authorization"] == "Bearer <redacted>"
    assert post["headers"]["Content-Type"].startswith("application/json")
    assert post["authorized"] is True
    assert post["claims"]["aud"] == "https://api.securitycenter.microsoft.com"
    assert post["claims"]["appid"] == CLIENT_ID
    assert set(post["claims"]["roles"]) >= {"Machine.Isolate", "Machine.Read.All"}
    assert post["json"] == {
        "Comment": "Ransomware behavior [mde-containment source=sentinel:4711 request=it-1]",
        "IsolationType": "Full",
    }

    assert submitted["outcome"] == "Submitted"
    assert submitted["sequence"] == 1
    assert submitted["action"] == "Isolate"
    assert submitted["source"] == {"system": "sentinel", "id": "4711", "url": None}
    assert submitted["machine"] == {"id": ONLINE_PC, "computerDnsName": "ws-fin-0142.contoso.local"}
    assert submitted["machineAction"]["type"] == "Isolate"
    assert submitted["machineAction"]["status"] == "Pending"
    assert submitted["machineAction"]["requestor"] == CLIENT_ID
    assert submitted["deviceOnline"] is True
    assert submitted["error"] is None
    assert submitted["delivery"]["queue"] == "isolation-requests"

    assert final["outcome"] == "Succeeded"
    assert final["sequence"] == 2
    assert final["machineAction"]["id"] == submitted["machineAction"]["id"]
    assert final["machineAction"]["status"] == "Succeeded"
    assert len(sim.actions()) == 1


def test_release_request_unisolates_with_ticket_and_requester_in_the_comment(host: Host, sim: Sim) -> None:
    stack = host()
    stack.send("release-requests", release("rel-1", comment="Reimaged"))
    submitted, final = results_for(stack, "rel-1", 2)

    (post,) = sim.requests("unisolate")
    assert post["path"] == f"/api/machines/{ENG_PC}/unisolate"
    assert post["json"] == {
        "Comment": "Release approved in ticket INC0012345, requested by ana@contoso.com: Reimaged"
        " [mde-containment request=rel-1]"
    }
    assert (submitted["outcome"], submitted["action"], submitted["requestedBy"]) == (
        "Submitted",
        "Unisolate",
        "ana@contoso.com",
    )
    assert submitted["source"]["id"] == "INC0012345"
    assert final["outcome"] == "Succeeded"


def test_base64_encoded_body_is_accepted(host: Host, sim: Sim) -> None:
    stack = host()
    body = base64.b64encode(json.dumps(isolation("b64-1", isolationType="Selective")).encode()).decode()
    stack.send("isolation-requests", body)
    submitted, _ = results_for(stack, "b64-1", 2)
    assert submitted["outcome"] == "Submitted"
    assert sim.requests("isolate")[0]["json"]["IsolationType"] == "Selective"


def test_bad_messages_are_rejected_and_never_reach_mde(host: Host, sim: Sim) -> None:
    stack = host()
    bad = [
        "not json",
        "[1,2,3]",
        json.dumps(isolation("bad-path", machine_id="../" * 13 + "x")),
        json.dumps(isolation("bad-type", isolationType="Partial")),
        json.dumps({"deviceName": "pc' or 1 eq 1", "requestId": "bad-odata"}),
        json.dumps(isolation("bad-comment", comment="a\u0000b")),
    ]
    for body in bad:
        stack.send("isolation-requests", body)
    results = stack.take_results(len(bad), timeout=20)
    assert len(results) == len(bad)
    assert {r["outcome"] for r in results} == {"Rejected"}
    assert sorted(r["error"]["code"] for r in results) == sorted(
        [
            "InvalidJson",
            "NotAnObject",
            "SchemaViolation",
            "SchemaViolation",
            "SchemaViolation",
            "SchemaViolation",
        ]
    )
    assert {r["requestId"] for r in results} >= {"bad-path", "bad-type", "bad-odata", "bad-comment"}
    assert all(r["error"]["retryable"] is False for r in results)
    assert sim.requests() == []


def test_a_trailing_newline_in_an_identifier_is_rejected_and_never_reaches_mde(host: Host, sim: Sim) -> None:
    """JSON Schema's pattern is a search: both pass the schema, so the code must refuse them."""
    stack = host()
    stack.send("isolation-requests", {"deviceName": "ws-eng-0007\n", "requestId": "nl-device"})
    stack.send("isolation-requests", isolation("nl-req\n", severity="High"))
    results = stack.take_results(2, timeout=20)
    assert [r["outcome"] for r in results] == ["Rejected", "Rejected"]
    assert {r["error"]["code"] for r in results} == {"SchemaViolation"}
    assert all("control characters" in r["error"]["message"] for r in results)
    assert {r["requestId"] for r in results} >= {"nl-device"}
    assert "nl-req\n" not in {r["requestId"] for r in results}  # never echoed into a result either
    assert sim.requests() == []


def test_storm_duplicate_is_answered_from_the_ledger_without_calling_mde(host: Host, sim: Sim) -> None:
    sim.config(pending_s=3600)  # stays Pending for the whole test
    stack = host()
    stack.send("isolation-requests", isolation("dup-1"))
    (first,) = results_for(stack, "dup-1", 1)
    stack.send("isolation-requests", isolation("dup-2"))
    (second,) = results_for(stack, "dup-2", 1)

    assert first["outcome"] == "Submitted"
    assert second["outcome"] == "AlreadyPending"
    assert second["duplicateOf"] == "dup-1"
    assert second["machineAction"]["id"] == first["machineAction"]["id"]
    assert len(sim.requests("isolate")) == 1
    assert len(sim.actions()) == 1
    # When the device checks in, both requests get their final result; the duplicate's costs no call.
    reads_before = len(sim.requests("machineactions"))
    sim.complete(first["machineAction"]["id"], "Succeeded")
    (final_1,) = results_for(stack, "dup-1", 1)
    (final_2,) = results_for(stack, "dup-2", 1)
    assert [(r["sequence"], r["outcome"]) for r in (final_1, final_2)] == [(2, "Succeeded"), (2, "Succeeded")]
    assert final_2["machineAction"]["id"] == first["machineAction"]["id"]
    assert final_2["machineAction"]["status"] == "Succeeded"
    assert len(sim.requests("machineactions")) - reads_before <= 2  # the original's tracker only


def test_a_duplicate_arriving_mid_post_waits_in_the_queue_not_as_a_failure(host: Host, sim: Sim) -> None:
    sim.config(pending_s=3600)
    sim.fault(api="isolate", delay_s=2.5, count=1)  # the first request's POST takes 2.5 s
    stack = host()
    log_start = len(stack.host_logs())
    stack.send("isolation-requests", isolation("mid-1"))
    # The first request holds the claim and is about to post (its own-action check came first).
    wait_until(lambda: sim.requests("machineactions"), what="the first request's action check")
    stack.send("isolation-requests", isolation("mid-2"))
    (first,) = results_for(stack, "mid-1", 1)
    (second,) = results_for(stack, "mid-2", 1)
    assert first["outcome"] == "Submitted"
    assert (second["outcome"], second["duplicateOf"]) == ("AlreadyPending", "mid-1")
    assert second["machineAction"]["id"] == first["machineAction"]["id"]
    assert second["delivery"]["dequeueCount"] == 1  # re-enqueued for a moment, not a failed run
    assert len(sim.requests("isolate")) == 1
    log = stack.host_logs()[log_start:]
    assert "storm duplicate waits for request_id=mid-2 holder_request_id=mid-1" in log
    assert "DeviceClaimPending" not in log


def test_isolate_while_an_analyst_isolation_is_pending_reports_that_action(host: Host, sim: Sim) -> None:
    sim.config(pending_s=3600)
    analyst = analyst_isolates(sim, ONLINE_PC)
    stack = host()
    stack.send("isolation-requests", isolation("dup-3"))
    (result,) = results_for(stack, "dup-3", 1)
    assert result["outcome"] == "AlreadyPending"
    assert result["machineAction"]["id"] == analyst["id"]
    assert len(sim.actions()) == 1
    (post,) = [r for r in sim.requests("isolate") if "mde-containment" in (r["body"] or "")]
    assert post["status"] == 400
    (listing,) = [r for r in sim.requests("machineactions") if "Isolate'" in str(r["query"])]
    assert listing["query"]["$filter"] == f"machineId eq '{ONLINE_PC}' and type eq 'Isolate'"


def test_201_with_an_existing_pending_action_is_reported_as_already_pending(host: Host, sim: Sim) -> None:
    sim.config(pending_s=3600, duplicate_mode="201-existing")
    analyst = analyst_isolates(sim, ONLINE_PC)
    stack = host()
    stack.send("isolation-requests", isolation("e201-1"))
    (result,) = results_for(stack, "e201-1", 1)
    assert result["outcome"] == "AlreadyPending"
    assert result["machineAction"]["id"] == analyst["id"]
    assert len(sim.actions()) == 1


def test_unknown_machine_fails_with_mde_not_found(host: Host, sim: Sim) -> None:
    stack = host()
    stack.send("isolation-requests", isolation("nf-1", machine_id=UNKNOWN_PC))
    (result,) = results_for(stack, "nf-1", 1)
    assert result["outcome"] == "Failed"
    assert result["error"]["code"] == "ResourceNotFound"
    assert result["error"]["httpStatus"] == 404
    assert result["error"]["retryable"] is False
    assert result["error"]["mdeTarget"]


def test_identity_without_the_isolate_role_fails_with_forbidden(host: Host, sim: Sim) -> None:
    stack = host()
    stack.identity.set_roles(["Machine.Read.All"])
    stack.send("isolation-requests", isolation("forbidden-1"))
    (result,) = results_for(stack, "forbidden-1", 1)
    assert (result["outcome"], result["error"]["code"], result["error"]["httpStatus"]) == (
        "Failed",
        "Forbidden",
        403,
    )


def test_transient_500_heals_within_the_invocation_without_a_duplicate_action(host: Host, sim: Sim) -> None:
    sim.fault(api="isolate", status=500, count=1)
    stack = host()
    stack.send("isolation-requests", isolation("t500-1"))
    submitted, _ = results_for(stack, "t500-1", 2)
    assert submitted["outcome"] == "Submitted"
    assert len(sim.requests("isolate")) == 2
    assert len(sim.actions()) == 1


def test_persistent_5xx_ends_as_failed_retryable_and_poison_after_max_dequeue_count(
    host: Host, sim: Sim
) -> None:
    sim.fault(api="isolate", status=503, count=1000)
    stack = host(MDE_HTTP_RETRIES="0")
    stack.send("isolation-requests", isolation("p503-1"))
    (result,) = results_for(stack, "p503-1", 1, timeout=40)
    assert result["outcome"] == "Failed"
    assert result["error"]["retryable"] is True
    assert result["delivery"]["dequeueCount"] == 5
    assert "gave up after 5 deliveries" in result["error"]["message"]
    assert len(sim.requests("isolate")) == 5
    assert settled(stack) == []
    assert queue_bodies(stack, "isolation-requests-poison") == [isolation("p503-1")]


def test_429_reenqueues_for_exactly_retry_after_and_then_submits(host: Host, sim: Sim) -> None:
    sim.fault(api="isolate", status=429, count=1, retryAfter=2)
    stack = host()
    log_start = len(stack.host_logs())
    stack.send("isolation-requests", isolation("t429-1"))
    submitted, _ = results_for(stack, "t429-1", 2)
    posts = sim.requests("isolate")
    assert [p["status"] for p in posts] == [429, 201]
    gap = (
        datetime.fromisoformat(posts[1]["time"]) - datetime.fromisoformat(posts[0]["time"])
    ).total_seconds()
    assert gap >= 2.0, gap  # never earlier than Retry-After
    # ...and asked for no later than Retry-After plus its spread (a quarter): the delay requested,
    # not the wall time, which a loaded machine stretches.
    (delay,) = re.findall(
        r"throttled, re-enqueued request_id=t429-1 attempt=2 delay_s=([\d.]+)", stack.host_logs()[log_start:]
    )
    assert 2.0 <= float(delay) <= 2.5, delay
    assert submitted["outcome"] == "Submitted"
    assert submitted["delivery"]["dequeueCount"] == 1  # a fresh message, not a host redelivery


def test_after_a_429_nothing_goes_to_that_api_before_retry_after(host: Host, sim: Sim) -> None:
    sim.fault(api="machines", status=429, count=1, retryAfter=3)
    stack = host()
    log_start = len(stack.host_logs())
    stack.send("release-requests", release("ra-rel"))
    (released,) = results_for(stack, "ra-rel", 1)
    assert released["outcome"] == "Submitted"
    assert released["deviceOnline"] is None  # its best-effort state read met the 429
    # The isolation's policy look-up (machines API) waits out the Retry-After in the queue, instead
    # of earning another 429 (the simulator would have allowed it: its fault was used up).
    stack.send("isolation-requests", isolation("ra-iso"))
    submitted, _ = results_for(stack, "ra-iso", 2)
    assert submitted["outcome"] == "Submitted"
    reads = sim.requests("machines")
    assert [r["status"] for r in reads] == [429, 200]
    gap = (
        datetime.fromisoformat(reads[1]["time"]) - datetime.fromisoformat(reads[0]["time"])
    ).total_seconds()
    assert gap >= 3.0, gap
    # Refused in process, not by MDE: no throttled attempt spent.
    log = stack.host_logs()[log_start:]
    requeued = r"throttled, re-enqueued request_id=ra-iso attempt=1 delay_s=[\d.]+ local=True"
    assert re.search(requeued, log), log


def test_a_request_retried_after_a_429_does_not_look_the_machine_up_again(host: Host, sim: Sim) -> None:
    sim.fault(api="machineactions", status=429, count=1, retryAfter=1)
    stack = host()
    stack.send("isolation-requests", isolation("rl-1"))
    submitted, _ = results_for(stack, "rl-1", 2)
    assert submitted["outcome"] == "Submitted"
    assert [r["status"] for r in sim.requests("machineactions")][:2] == [429, 200]
    assert len(sim.requests("machines")) == 1  # the policy's look-up, cached for the retry


def with_budget(runtime: Context, budget: CallBudget) -> Context:
    """The functions' context in this process with an MDE client of its own, on ``budget``."""
    settings = runtime.settings
    tokens = CredentialTokenProvider(
        managed_identity_credential(settings.azure_client_id), settings.mde_token_scope
    )
    mde = MdeClient(settings.mde_api_base_url, tokens, retries=0, budget=budget)
    return Context.of(runtime.settings, dataclasses.replace(runtime.ports, mde=mde))
