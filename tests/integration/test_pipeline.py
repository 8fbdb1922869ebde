"""End to end: Azurite -> local Functions host -> isolate_fn / release_fn -> MDE simulator
-> results queue. The exact HTTP request MDE received and the result messages are asserted."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from azure.functions.queue import QueueMessage as TriggerMessage

from devstack.stack import CLIENT_ID, LocalStack
from shared import app
from shared.adapters.budget import CALLS_PER_MINUTE, CallBudget
from shared.adapters.identity import CredentialTokenProvider, managed_identity_credential
from shared.adapters.mde import MdeClient
from shared.usecases.context import Context
from shared.usecases.outcomes import device_state
from tests.integration.conftest import (
    ENG_PC,
    OFFLINE_PC,
    ONLINE_PC,
    UNKNOWN_PC,
    Sim,
    analyst_isolates,
    jira_approves,
    jira_release,
    queue_bodies,
    results_for,
    results_so_far,
    settled,
    wait_until,
)

pytestmark = pytest.mark.integration

Host = Callable[..., LocalStack]


def isolation(request_id: str, machine_id: str = ONLINE_PC, **fields: object) -> dict[str, object]:
    return {"machineId": machine_id, "requestId": request_id, **fields}


def release(
    stack: LocalStack, request_id: str, machine_id: str = ENG_PC, **fields: object
) -> dict[str, object]:
    """A release naming Jira issue SEC-<n>, which Ana approved for ``machine_id``."""
    key = f"SEC-{sum(map(ord, request_id))}"
    jira_approves(stack, key, machine_id)
    return jira_release(key, request_id, **fields)


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
    stack.send("release-requests", release(stack, "rel-1", comment="Reimaged"))
    submitted, final = results_for(stack, "rel-1", 2)

    (post,) = sim.requests("unisolate")
    assert post["path"] == f"/api/machines/{ENG_PC}/unisolate"
    assert post["json"] == {
        "Comment": "Release approved in ticket SEC-417 by ana.approver@contoso.com, requested by"
        " ben.requester@contoso.com: Reimaged [mde-containment request=rel-1]"
    }
    assert (submitted["outcome"], submitted["action"], submitted["requestedBy"], submitted["approvedBy"]) == (
        "Submitted",
        "Unisolate",
        "ben.requester@contoso.com",
        "ana.approver@contoso.com",
    )
    assert (submitted["source"]["id"], submitted["ticketId"]) == ("SEC-417", "SEC-417")
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
    log_start = stack.log_mark()
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
    log = stack.host_logs(since=log_start)
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
    log_start = stack.log_mark()
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
        r"throttled, re-enqueued request_id=t429-1 attempt=2 delay_s=([\d.]+)",
        stack.host_logs(since=log_start),
    )
    assert 2.0 <= float(delay) <= 2.5, delay
    assert submitted["outcome"] == "Submitted"
    assert submitted["delivery"]["dequeueCount"] == 1  # a fresh message, not a host redelivery


def test_after_a_429_nothing_goes_to_that_api_before_retry_after(host: Host, sim: Sim) -> None:
    sim.fault(api="machines", status=429, count=1, retryAfter=3)
    stack = host()
    log_start = stack.log_mark()
    stack.send("release-requests", release(stack, "ra-rel"))
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
    log = stack.host_logs(since=log_start)
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


def test_the_device_state_read_only_spends_spare_budget(runtime: Context, sim: Sim) -> None:
    budget = CallBudget()
    ctx = with_budget(runtime, budget)
    for _ in range(CALLS_PER_MINUTE // 2 - 1):  # e.g. the storm's isolation look-ups
        budget.spend("machines")
    state = device_state({"id": ONLINE_PC}, ctx)
    assert state["deviceOnline"] is True
    assert len(sim.requests("machines")) == 1
    # That read spent the last spare call: now the rest of the minute is kept for containment.
    assert device_state({"id": ONLINE_PC}, ctx) == {"deviceOnline": None, "lastSeen": None, "name": None}
    assert len(sim.requests("machines")) == 1


def test_a_release_yields_its_action_check_to_containment_during_a_storm(
    runtime: Context, clean: LocalStack, sim: Sim
) -> None:
    budget = CallBudget()
    for _ in range(80):  # the storm's isolations used 80 % of the minute's action checks
        budget.spend("machineactions")
    while budget.admit_release("machineactions"):  # and releases used their floor
        pass
    body = json.dumps(release(clean, "yield-1")).encode()
    message = TriggerMessage(id="m-yield-1", body=body, dequeue_count=1, pop_receipt="r")
    app.handle(message, "Unisolate", with_budget(runtime, budget))
    assert sim.requests("machineactions") == [] and sim.requests("unisolate") == []
    assert results_so_far(clean) == []
    queue = clean.queue("release-requests")
    assert queue.get_queue_properties().approximate_message_count == 1  # re-enqueued, invisible
    assert queue.peek_messages() == []
    # A minute later (here: a fresh budget) the floor is back and the release goes through.
    message = TriggerMessage(id="m-yield-2", body=body, dequeue_count=1, pop_receipt="r")
    app.handle(message, "Unisolate", with_budget(runtime, CallBudget()))
    (submitted,) = results_for(clean, "yield-1", 1)
    assert submitted["outcome"] == "Submitted"
    assert len(sim.requests("unisolate")) == 1


def test_offline_device_is_reported_and_tracking_expires_at_the_deadline(host: Host, sim: Sim) -> None:
    stack = host(TRACKING_DEADLINE_HOURS="0.001")  # 3.6 s
    stack.send("isolation-requests", isolation("off-1", machine_id=OFFLINE_PC))
    submitted, final = results_for(stack, "off-1", 2, timeout=30)
    assert submitted["outcome"] == "Submitted"
    assert submitted["deviceOnline"] is False
    assert submitted["lastSeen"]
    assert final["outcome"] == "TrackingExpired"
    assert final["lastStatus"] == "Pending"
    assert final["sequence"] == 2


def test_isolating_cancels_a_pending_release_first(host: Host, sim: Sim) -> None:
    stack = host()
    stack.send("release-requests", release(stack, "race-rel", machine_id=OFFLINE_PC))
    (released,) = results_for(stack, "race-rel", 1)
    stack.send("isolation-requests", isolation("race-iso", machine_id=OFFLINE_PC))
    (isolated,) = results_for(stack, "race-iso", 1)
    assert isolated["outcome"] == "Submitted"
    assert isolated["cancelledActions"] == [released["machineAction"]["id"]]
    (cancel,) = sim.requests("cancel")
    assert cancel["path"] == f"/api/machineactions/{released['machineAction']['id']}/cancel"
    assert cancel["json"] == {"Comment": "Superseded by Isolate request race-iso [mde-containment]"}
    # the cancelled release ends with its own final result
    (final,) = results_for(stack, "race-rel", 1)
    assert final["outcome"] == "Cancelled"


def test_device_names_are_resolved_exactly_never_by_substring(host: Host, sim: Sim) -> None:
    twin = {**machine_record(sim, ENG_PC), "id": "ab" * 20, "lastIpAddress": "10.9.9.9"}
    sim.machines([{**twin, "computerDnsName": "ws-twin-01.contoso.local"}, {**twin, "id": "cd" * 20,
                  "computerDnsName": "WS-TWIN-01.contoso.local"}])  # fmt: skip
    stack = host()
    names = {
        "name-fqdn": "WS-ENG-0007.contoso.local",  # exact, case-insensitive
        "name-bare": "ws-eng-0007",  # a bare host name matches the first label
        "name-stale": "ws-sales-0099.contoso.local",  # one Active record + two stale ones
        "name-twins": "ws-twin-01.contoso.local",  # two Active records: never a guess
        "name-prefix": "ws-eng-000",  # a prefix is not a match
    }
    for request_id, name in names.items():
        stack.send("isolation-requests", {"deviceName": name, "requestId": request_id})
    got = {request_id: results_for(stack, request_id, 1)[0] for request_id in names}
    assert got["name-fqdn"]["machine"]["id"] == ENG_PC
    assert got["name-bare"]["machine"]["id"] == ENG_PC
    assert got["name-stale"]["machine"]["id"] == "58e7b99603ae8ab07c70b95172007a23b6d37fdc"
    assert "stale records ignored" in got["name-stale"]["resolution"]
    assert got["name-twins"]["error"]["code"] == "AmbiguousDevice"
    assert "ab" * 20 in got["name-twins"]["error"]["message"]
    assert got["name-prefix"]["error"]["code"] == "DeviceNotFound"
    queries = [str(r["query"]) for r in sim.requests("machines")]
    assert any("computerDnsName eq 'ws-eng-0007.contoso.local'" in q for q in queries)
    assert any("startswith(computerDnsName,'ws-eng-0007')" in q for q in queries)


def machine_record(sim: Sim, machine_id: str) -> dict[str, object]:
    return next(m for m in sim.machine_records() if m["id"] == machine_id)


def test_host_logs_since_a_mark_hold_only_what_each_host_wrote_after_it(
    stack: LocalStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stack, "log_dir", tmp_path)
    first, second = tmp_path / "funchost-0001.log", tmp_path / "funchost-0002.log"
    first.write_text("old first\n")
    second.write_text("old second\n")
    mark = stack.log_mark()
    with first.open("a") as log:  # the earlier host writes on while a later one runs
        log.write("new first\n")
    third = tmp_path / "funchost-0003.log"
    third.write_text("new third\n")
    assert stack.host_logs(since=mark).split() == ["new", "first", "new", "third"]
    assert "old first" in stack.host_logs() and "old second" in stack.host_logs()
