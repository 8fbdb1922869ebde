"""The isolation story on in-memory ports: every outcome, the gate's order, and what each costs."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest

from shared.domain.backoff import throttled_delay
from shared.errors import MdeNotFound, MdePermanentError, MdeThrottled, MdeThrottledLocally, TransientError
from tests.fakes import World, jira_issue, machine, raises, world

PC = "c28460d93e441d30869ebb33920c06acbb6fd75e"
PC_NAME = "ws-fin-0142.contoso.local"
SERVER = "63b87ad1411d2aa6afc5dcd92f0f66ccdb94157e"
OPEN = {"minimumSeverity": "Informational"}


def isolation(request_id: str = "req-1", machine_id: str = PC, **fields: Any) -> dict[str, Any]:
    return {"machineId": machine_id, "requestId": request_id, "severity": "High", **fields}


def fleet(w: World) -> World:
    w.mde.add(machine(PC, PC_NAME), machine(SERVER, "srv-sql-01.contoso.local", machineTags=["Tier0"]))
    return w


def test_a_new_isolation_is_submitted_and_tracked() -> None:
    w = fleet(world(policy=OPEN))
    w.deliver(isolation(comment="Ransomware"))
    (result,) = w.outbox.results
    assert (result["outcome"], result["sequence"], result["machine"]) == (
        "Submitted",
        1,
        {"id": PC, "computerDnsName": PC_NAME},
    )
    (action,) = w.mde.actions
    assert action["requestorComment"] == "Ransomware [mde-containment source=canonical request=req-1]"
    assert result["machineAction"]["id"] == action["id"] and result["deviceOnline"] is True
    ((queue, tracking, delay),) = w.outbox.sent
    assert (queue, tracking["tracking"]["actionId"], delay) == ("isolation-requests", action["id"], 30)
    assert w.claims.rows[PC].action_id == action["id"]  # storm duplicates now get this action
    assert [e.outcome for e in w.audit.entries] == ["Submitted"]  # audited as it was published


@pytest.mark.parametrize("mde_answers_201", [False, True])
def test_an_analysts_pending_isolation_is_reported_and_not_doubled(mde_answers_201: bool) -> None:
    w = fleet(world(policy=OPEN))
    w.mde.answer_201_with_existing = mde_answers_201
    analyst = w.mde.analyst_action("Isolate", PC)
    w.deliver(isolation())
    assert w.outbox.outcomes == ["AlreadyPending"]
    assert w.outbox.results[0]["machineAction"]["id"] == analyst.id
    assert len(w.mde.actions) == 1


def test_a_storm_duplicate_costs_no_mde_call_and_gets_the_holders_final_result() -> None:
    w = fleet(world(policy=OPEN))
    w.deliver(isolation("first"))
    calls = len(w.mde.calls)
    w.deliver(isolation("second"))
    assert len(w.mde.calls) == calls  # not even a look-up
    first, duplicate = w.outbox.results
    assert (duplicate["outcome"], duplicate["duplicateOf"]) == ("AlreadyPending", "first")
    assert duplicate["machineAction"]["id"] == first["machineAction"]["id"]
    assert len(w.breaker.taken) == 1  # the duplicate took no breaker slot
    w.mde.complete(first["machineAction"]["id"], "Succeeded")
    w.deliver(w.outbox.sent[0][1])  # the holder's tracking check
    finals = [(r["requestId"], r["outcome"], r["sequence"]) for r in w.outbox.results[2:]]
    assert finals == [("first", "Succeeded", 2), ("second", "Succeeded", 2)]


def test_a_duplicate_that_arrives_after_the_holders_final_gets_it_at_once() -> None:
    w = fleet(world(policy=OPEN))
    w.mde.final_status = "Succeeded"  # the action is final when MDE answers
    w.deliver(isolation("first"))
    w.deliver(isolation("second"))
    assert [(r["requestId"], r["outcome"]) for r in w.outbox.results] == [
        ("first", "Submitted"),
        ("first", "Succeeded"),
        ("second", "AlreadyPending"),
        ("second", "Succeeded"),
    ]


def test_a_duplicate_arriving_while_the_holder_posts_waits_in_the_queue() -> None:
    w = fleet(world(policy=OPEN))
    w.claims.claim(PC, "holder", w.clock(), w.ctx.settings.isolation_policy.dedupe_window)
    w.deliver(isolation("second"))
    assert w.outbox.results == [] and w.mde.calls == []
    ((_, retry, delay),) = w.outbox.sent
    assert (retry["requestId"], retry["attempt"], retry["machineId"]) == ("second", 1, PC)
    assert 2 <= delay <= 4


def test_a_holder_stuck_for_two_minutes_fails_the_duplicate_over_to_redelivery() -> None:
    w = fleet(world(policy=OPEN))
    w.claims.claim(PC, "holder", w.clock(), w.ctx.settings.isolation_policy.dedupe_window)
    w.clock.advance(minutes=3)
    with pytest.raises(TransientError, match="DeviceClaimPending"):
        w.deliver(isolation("second"))
    assert w.outbox.results == [] and w.outbox.sent == []


@pytest.mark.parametrize(
    ("policy", "body", "reason", "rule"),
    [
        (
            {"protected": {"tags": ["Tier0"]}},
            isolation(machine_id=SERVER),
            "Protected",
            "protected.tags: Tier0",
        ),
        (
            {"minimumSeverity": "High"},
            isolation(severity="Low"),
            "BelowMinimumSeverity",
            "minimumSeverity: High > Low",
        ),
        (
            {"protected": {"dnsNames": ["srv-*"]}},
            isolation(machine_id=SERVER),
            "Protected",
            "protected.dnsNames: srv-*",
        ),
    ],
)
def test_policy_skips_with_the_rule_takes_no_slot_and_frees_the_device(
    policy: dict[str, Any], body: dict[str, Any], reason: str, rule: str
) -> None:
    w = fleet(world(policy=policy))
    w.deliver(body)
    (result,) = w.outbox.results
    assert (result["outcome"], result["reason"], result["rule"]) == ("Skipped", reason, rule)
    assert w.breaker.taken == [] and w.mde.count("isolate") == 0
    assert w.claims.rows == {}  # the next alert for the device is not a duplicate


def test_an_open_breaker_holds_the_isolation_and_frees_the_device() -> None:
    w = fleet(world(policy={**OPEN, "breaker": {"maxIsolations": 1, "windowMinutes": 60}}))
    w.mde.add(machine("1" * 40, "ws-2.contoso.local"))
    w.deliver(isolation("one"))
    w.deliver(isolation("two", machine_id="1" * 40))
    held = w.outbox.results[-1]
    assert held["outcome"] == "HeldForApproval"
    assert held["breaker"]["maxIsolations"] == 1 and held["breaker"]["count"] == 1
    assert w.mde.count("isolate") == 1 and "1" * 40 not in w.claims.rows


def open_breaker(w: World) -> World:
    """The breaker opened by earlier isolations (limit 1, the second one opened it)."""
    w.mde.add(machine("1" * 40, "ws-2.contoso.local"))
    w.deliver(isolation("one"))
    w.deliver(isolation("two", machine_id="1" * 40))
    assert w.breaker.state.open
    w.mde.calls.clear()
    w.outbox.results.clear()
    w.outbox.sent.clear()
    return w


VIP = {"protected": {"tags": ["VIP"]}}  # a policy that needs the Machine record: one look-up


@pytest.mark.parametrize(
    ("request_body", "policy"),
    [
        ({"deviceName": PC_NAME, "requestId": "by-name", "severity": "High"}, {}),
        ({"ipAddress": "10.1.2.3", "timestamp": "2026-11-23T10:00:00+00:00", "requestId": "by-ip"}, {}),
        (isolation("by-id", machine_id="2" * 40), {}),
        (isolation("by-id-facts", machine_id="2" * 40), VIP),
    ],
)
def test_an_open_breaker_holds_a_request_before_any_look_up(
    request_body: dict[str, Any], policy: dict[str, Any]
) -> None:
    breaker = {"breaker": {"maxIsolations": 1, "windowMinutes": 60}}
    w = open_breaker(fleet(world(policy={**OPEN, **breaker, **policy})))
    w.deliver(request_body)
    (held,) = w.outbox.results
    assert (held["outcome"], held["breaker"]["count"]) == ("HeldForApproval", 1)
    assert w.mde.calls == [] and w.claims.rows.keys() == {PC}  # no look-up, no claim kept


def test_an_open_breaker_holds_every_request_of_a_fanned_out_event_at_no_mde_cost() -> None:
    w = open_breaker(fleet(world(policy={**OPEN, "breaker": {"maxIsolations": 1, "windowMinutes": 60}})))
    w.deliver(streaming_batch(5))
    fanned_out = [document for _, document, _ in w.outbox.sent]
    for document in fanned_out:
        w.deliver(document)
    assert len(fanned_out) == 5 and w.mde.calls == []
    assert w.outbox.outcomes == ["HeldForApproval"] * 5


def test_a_redelivered_request_that_holds_a_slot_passes_the_open_breaker() -> None:
    w = fleet(world(policy={**OPEN, "breaker": {"maxIsolations": 1, "windowMinutes": 60}}))
    w.mde.fail["isolate"] = [TransientError("MdeUnavailable", "the POST timed out")]
    with pytest.raises(TransientError, match="MdeUnavailable"):  # the host redelivers
        w.deliver(isolation("one"))  # it took its slot, then the POST failed
    w.mde.add(machine("1" * 40, "ws-2.contoso.local"))
    w.deliver(isolation("two", machine_id="1" * 40))  # opens the breaker
    w.deliver(isolation("one"), dequeue_count=2)
    assert w.outbox.outcomes[-1] == "Submitted" and w.mde.count("isolate") == 2


def test_a_dry_run_shows_the_call_and_claims_nothing() -> None:
    w = fleet(world(policy=OPEN, DRY_RUN="true"))
    w.deliver(isolation(isolationType="Selective"))
    (result,) = w.outbox.results
    assert result["outcome"] == "DryRun"
    assert result["dryRun"] == {
        "method": "POST",
        "path": f"/api/machines/{PC}/isolate",
        "body": {"Comment": "Automatic isolation [mde-containment source=canonical request=req-1]",
                 "IsolationType": "Selective"},
    }  # fmt: skip
    assert w.mde.count("isolate") == 0 and w.claims.rows == {} and w.breaker.taken == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"deviceName": "nobody.contoso.local", "requestId": "r"}, "DeviceNotFound"),
        ({"machineId": "nope", "requestId": "r"}, "SchemaViolation"),
        ({"alert": {"host": "x"}, "requestId": "r"}, "UnknownEventShape"),
        (b"not json", "InvalidJson"),
    ],
)
def test_unusable_requests_are_rejected_with_a_code(body: dict[str, Any] | bytes, code: str) -> None:
    w = fleet(world(policy=OPEN))
    w.deliver(body)
    (result,) = w.outbox.results
    assert (result["outcome"], result["error"]["code"], result["error"]["retryable"]) == (
        "Rejected",
        code,
        False,
    )
    assert w.mde.count("isolate") == 0


def test_two_live_machines_with_one_name_are_ambiguous_never_a_guess() -> None:
    w = fleet(world(policy=OPEN))
    w.mde.add(machine("a" * 40, "twin.contoso.local"), machine("b" * 40, "TWIN.contoso.local"))
    w.deliver({"deviceName": "twin.contoso.local", "requestId": "r"})
    assert w.outbox.results[0]["error"]["code"] == "AmbiguousDevice"


@pytest.mark.parametrize(
    ("error", "code", "status"),
    [
        (raises(MdeNotFound, "ResourceNotFound", 404), "ResourceNotFound", 404),
        (raises(MdePermanentError, "Forbidden", 403), "Forbidden", 403),
    ],
)
def test_mde_refusals_fail_without_retry_and_free_the_device(
    error: Exception, code: str, status: int
) -> None:
    w = fleet(world(policy=OPEN))
    w.mde.fail["isolate"] = [error]
    w.deliver(isolation())
    (result,) = w.outbox.results
    assert (result["outcome"], result["error"]["code"], result["error"]["httpStatus"]) == (
        "Failed",
        code,
        status,
    )
    assert result["error"]["retryable"] is False and w.claims.rows == {}


def test_a_429_requeues_for_retry_after_as_the_next_attempt_and_frees_the_device() -> None:
    w = fleet(world(policy=OPEN))
    w.mde.fail["isolate"] = [raises(MdeThrottled, "TooManyRequests", 429, retry_after=8.0)]
    w.deliver(isolation())
    assert w.outbox.results == [] and w.claims.rows == {}
    ((_, again, delay),) = w.outbox.sent
    assert (again["requestId"], again["attempt"], again["machineId"]) == ("req-1", 2, PC)
    assert 8.0 <= delay <= 10.0  # Retry-After plus up to a quarter


def test_a_call_refused_in_process_costs_no_attempt() -> None:
    w = fleet(world(policy=OPEN))
    w.mde.fail["isolate"] = [raises(MdeThrottledLocally, "TooManyRequests", 429, retry_after=2.0)]
    w.deliver(isolation())
    ((_, again, delay),) = w.outbox.sent
    assert again["attempt"] == 1 and 2.0 <= delay <= 3.0  # spread by at least a second


def test_a_429_after_a_burst_wakes_within_the_burst_span_not_a_quarter_of_the_wait() -> None:
    w = fleet(world(policy=OPEN))
    w.ctx = replace(w.ctx, ports=replace(w.ctx.ports, rng=Widest()))  # the latest wake-up drawn
    throttled = raises(MdeThrottled, "TooManyRequests", 429, retry_after=40.0)
    throttled.frees_within = 0.4  # this process's calls of the last minute came within 0.4 s
    w.mde.fail["isolate"] = [throttled]
    w.deliver(isolation())
    ((_, again, delay),) = w.outbox.sent
    assert again["attempt"] == 2 and delay == 41.0  # spread by at most a second, not 10 s


class Widest(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return b


@pytest.mark.parametrize(
    ("retry_after", "local", "frees_within", "expected"),
    [
        (40.0, False, None, 50.0),  # a quarter of the wait
        (40.0, False, 60.0, 50.0),  # calls spread over the minute: still a quarter
        (40.0, False, 2.5, 42.5),  # a burst within 2.5 s frees within 2.5 s
        (40.0, False, 0.0, 41.0),  # at least a second
        (2.0, False, 0.2, 2.5),  # never wider than a quarter
        (2.0, True, None, 3.0),  # refused here: at least a second
        (None, False, None, 75.0),  # no Retry-After: a minute
    ],
)
def test_throttled_delay(
    retry_after: float | None, local: bool, frees_within: float | None, expected: float
) -> None:
    assert throttled_delay(retry_after, local=local, rng=Widest(), frees_within=frees_within) == expected


def test_still_throttled_after_the_last_attempt_fails_retryable() -> None:
    w = fleet(world(policy=OPEN, MDE_MAX_THROTTLED_ATTEMPTS="3"))
    w.mde.fail["isolate"] = [raises(MdeThrottled, "TooManyRequests", 429, retry_after=1.0)]
    w.deliver(isolation(attempt=3))
    (result,) = w.outbox.results
    assert (result["outcome"], result["error"]["retryable"]) == ("Failed", True)
    assert "still throttled after 3 attempts" in result["error"]["message"] and w.outbox.sent == []


def test_a_transient_fault_is_redelivered_silently_until_the_last_delivery() -> None:
    w = fleet(world(policy=OPEN))
    fault = TransientError("LedgerUnavailable", "table down")
    w.mde.fail["machineactions"] = [fault, fault]
    with pytest.raises(TransientError):
        w.deliver(isolation(), dequeue_count=2)  # a redelivery lists its own actions first
    assert w.outbox.results == []
    with pytest.raises(TransientError):
        w.deliver(isolation(), dequeue_count=5)
    (result,) = w.outbox.results
    assert (result["outcome"], result["error"]["code"], result["error"]["retryable"]) == (
        "Failed",
        "LedgerUnavailable",
        True,
    )
    assert result["error"]["message"].startswith("gave up after 5 deliveries")


def test_a_bug_is_reported_on_the_last_delivery_as_internal_and_not_retryable() -> None:
    w = fleet(world(policy=OPEN))
    w.mde.fail["isolate"] = [KeyError("oops")]
    with pytest.raises(KeyError):
        w.deliver(isolation(), dequeue_count=5)
    (result,) = w.outbox.results
    assert (result["outcome"], result["error"]["code"], result["error"]["retryable"]) == (
        "Failed",
        "InternalError",
        False,
    )


def test_a_redelivery_finds_its_own_final_action_and_reports_it_at_once() -> None:
    w = fleet(world(policy=OPEN))
    w.mde.final_status = "Succeeded"
    w.deliver(isolation())
    w.outbox.results.clear()
    w.deliver(isolation(), dequeue_count=2)  # as if the first delivery died before completing
    assert w.mde.count("isolate") == 1
    assert [(r["outcome"], r["sequence"]) for r in w.outbox.results] == [("Submitted", 1)]  # final: once


def test_isolating_cancels_our_pending_release_first() -> None:
    w = fleet(world(policy=OPEN))
    w.jira.issues["SEC-1"] = jira_issue("SEC-1", PC)
    w.deliver({"ticketSystem": "jira", "ticketId": "SEC-1", "requestId": "rel"}, action="Unisolate")
    release = w.outbox.results[0]["machineAction"]["id"]
    w.deliver(isolation("iso"))
    isolated = w.outbox.results[-1]
    assert isolated["cancelledActions"] == [release] and w.mde.count("cancel") == 1


def test_a_multi_device_event_fans_out_one_request_per_device() -> None:
    w = fleet(world(policy=OPEN))
    body = {"records": [
        {"category": "AdvancedHunting-AlertEvidence",
         "properties": {"AlertId": "a1", "Title": "t", "Severity": "High", "EntityType": "Machine",
                        "DeviceId": device, "DeviceName": name}}
        for device, name in ((PC, PC_NAME), (SERVER, "srv-sql-01.contoso.local"))
    ]}  # fmt: skip
    w.deliver(body)
    assert w.outbox.results == [] and w.mde.calls == []
    assert sorted(doc["machineId"] for _, doc, _ in w.outbox.sent) == sorted([PC, SERVER])


def test_an_audit_outage_delays_the_result_until_the_last_delivery_then_it_goes_out_anyway() -> None:
    w = fleet(world(policy=OPEN))
    outage = TransientError("LedgerUnavailable", "table gone")
    w.audit.fail = [outage] * 2
    with pytest.raises(TransientError):
        w.deliver(isolation(), dequeue_count=1)
    assert w.outbox.results == []  # retried before any result goes out
    w.deliver(isolation(), dequeue_count=5)
    assert w.outbox.outcomes == ["AlreadyPending"]  # its own action, found again, and reported
    assert w.audit.entries == []  # the audit row is missing, and the log says so


def streaming_batch(devices: int) -> dict[str, Any]:
    records = [
        {"category": "AdvancedHunting-AlertEvidence",
         "properties": {"AlertId": "a1", "Title": "t", "Severity": "High", "EntityType": "Machine",
                        "DeviceId": f"{i:040x}", "DeviceName": f"ws-{i}.contoso.local"}}
        for i in range(1, devices + 1)
    ]  # fmt: skip
    return {"records": records}


@pytest.mark.parametrize(("devices", "cap", "held"), [(10, None, False), (11, None, True), (3, 2, True)])
def test_an_event_naming_more_devices_than_the_cap_is_held_whole_at_no_mde_cost(
    devices: int, cap: int | None, held: bool
) -> None:
    w = world(policy={**OPEN, **({"maxDevicesPerEvent": cap} if cap else {})})
    w.deliver(streaming_batch(devices))
    assert w.mde.calls == []
    if not held:
        assert len(w.outbox.sent) == devices and w.outbox.results == []
        return
    (result,) = w.outbox.results
    assert (result["outcome"], result["reason"], result["devices"]) == (
        "HeldForApproval",
        "TooManyDevices",
        devices,
    )
    assert f"names {devices} devices, more than {cap or 10}" in result["rule"]
    assert w.outbox.sent == [] and w.breaker.taken == []
