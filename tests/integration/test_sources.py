"""Every supported source, end to end: the fixture corpus and the exact producer
bodies go through the queue, the local host and the functions to the simulator."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devstack.stack import LocalStack
from tests.integration.conftest import Sim, jira_approves, results_for, servicenow_approves

pytestmark = pytest.mark.integration

Host = Callable[..., LocalStack]
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
# Every severity goes through: this test is about sources, not policy.
OPEN_POLICY = json.dumps({"minimumSeverity": "Informational", "missingSeverity": "Informational"})


def corpus(folder: str) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    cases = []
    for path in sorted((FIXTURES / folder).glob("*.json")):
        if path.name.endswith(".expected.json"):
            continue
        expected = json.loads(path.with_name(path.stem + ".expected.json").read_text())
        cases.append((path.stem, json.loads(path.read_text()), expected))
    return cases


def machine_for(request: dict[str, Any]) -> dict[str, Any]:
    """A live MDE record for a device the fixture names (by id, or by name with a derived id)."""
    name = request.get("deviceName")
    mid = request.get("machineId") or hashlib.sha1(str(name).lower().encode()).hexdigest()  # noqa: S324
    return {
        "id": mid,
        "computerDnsName": (name or f"{mid[:8]}.corp.contoso.com").lower(),
        "healthStatus": "Active",
        "onboardingStatus": "Onboarded",
        "osPlatform": "Windows11",
        "lastIpAddress": "10.7.7.7",
    }


def fleet(requests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One live machine per device name (several fixtures name the same host, by id or by name)."""
    by_name: dict[str, dict[str, Any]] = {}
    for request in sorted(requests, key=lambda r: "machineId" not in r):  # records with ids first
        machine = machine_for(request)
        by_name.setdefault(machine["computerDnsName"], machine)
    return by_name


def expected_id(request: dict[str, Any], machines: dict[str, dict[str, Any]]) -> str:
    return str(request.get("machineId") or machines[str(request["deviceName"]).lower()]["id"])


def test_every_alert_source_isolates_each_device_it_names(host: Host, sim: Sim) -> None:
    cases = corpus("events")
    machines = fleet([r for _, _, expected in cases for r in expected.get("requests", [])])
    sim.machines(list(machines.values()))
    stack = host(ISOLATION_POLICY=OPEN_POLICY)
    sent = {name: stack.send("isolation-requests", body) for name, body, _ in cases}
    for name, body, expected in cases:
        prefix = body.get("requestId") or f"msg-{sent[name]}"  # canonical requests carry their own
        want = expected.get("requests", [])
        results = first_results(stack, prefix, max(1, len(want)))
        if "error" in expected:
            assert [(r["outcome"], r["error"]["code"]) for r in results] == [
                ("Rejected", expected["error"])
            ], name
            continue
        assert len(results) == len(want), (name, results)
        assert {r["outcome"] for r in results} <= {"Submitted", "AlreadyPending"}, (name, results)
        assert sorted(r["machine"]["id"] for r in results) == sorted(
            expected_id(w, machines) for w in want
        ), name
        assert {r["source"]["id"] for r in results} == {w["source"]["id"] for w in want}, name
        for result in results:
            if result["outcome"] == "Submitted":  # the MDE comment says why, and by which alert
                comment = result["machineAction"]["requestorComment"]
                leads = [w["comment"] for w in want if expected_id(w, machines) == result["machine"]["id"]]
                assert any(comment.startswith(lead + " [mde-containment ") for lead in leads), name
    distinct = {m["id"] for m in machines.values()}
    assert len(sim.requests("isolate")) == len(distinct)  # one write per device, however many alerts


@pytest.mark.parametrize("fixture", ["jira-automation-release", "servicenow-flow-release"])
def test_documented_ticket_producers_release_through_the_pipeline(host: Host, sim: Sim, fixture: str) -> None:
    body = json.loads((FIXTURES / "producers" / f"{fixture}.json").read_text())
    sim.machines(
        [
            machine_for(
                {
                    "machineId": "1e5bc9d7e413ddd7902c2932e418702b84d0cc07",
                    "deviceName": "ws-0142.corp.contoso.com",
                }
            )
        ]
    )
    stack = host()
    # The body is only a hint: the ticket it names is read from the ticket system, approved there.
    if fixture.startswith("jira"):
        jira_approves(stack, "SEC-142", "1e5bc9d7e413ddd7902c2932e418702b84d0cc07")
    else:
        servicenow_approves(stack, "RITM0010042", "ws-0142.corp.contoso.com")
    message_id = stack.send("release-requests", body)
    (result,) = first_results(stack, f"msg-{message_id}", 1)
    assert result["outcome"] == "Submitted", result
    assert result["approvedBy"] == "ana.approver@contoso.com"
    assert result["requestedBy"] == (
        "ben.requester@contoso.com" if fixture.startswith("jira") else "Ben Requester"
    )
    assert result["action"] == "Unisolate"
    assert result["machine"]["id"] == "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
    (post,) = sim.requests("unisolate")
    assert post["json"]["Comment"].startswith(
        f"Release approved in ticket {result['source']['id']} by ana.approver@contoso.com, requested by "
    )


def test_sentinel_playbook_body_isolates_its_hosts(host: Host, sim: Sim) -> None:
    body = json.loads((FIXTURES / "producers" / "sentinel-incident.json").read_text())
    hosts = [e for e in body["object"]["properties"]["relatedEntities"] if e.get("kind") == "Host"]
    ids = [h["properties"]["additionalData"]["MdatpDeviceId"] for h in hosts]
    sim.machines([machine_for({"machineId": mid}) for mid in ids])
    stack = host(ISOLATION_POLICY=OPEN_POLICY)
    message_id = stack.send("isolation-requests", body)
    results = first_results(stack, f"msg-{message_id}", len(ids))
    assert sorted(r["machine"]["id"] for r in results) == sorted(ids)
    assert {r["source"]["id"] for r in results} == {body["object"]["id"]}


def first_results(stack: LocalStack, base: str, count: int) -> list[dict[str, Any]]:
    """The first results (``sequence`` 1) of the requests one event became: the event's request id
    itself, or ``<base>:<device>`` (one request per device). Final results (``sequence`` 2) of the
    same requests can arrive in between and are left for later."""

    def wanted(result: dict[str, Any]) -> bool:
        request_id = str(result["requestId"])
        return (request_id == base or request_id.startswith(f"{base}:")) and result["sequence"] == 1

    results = stack.take_results(count, timeout=30, where=wanted)
    assert len(results) == count, results
    return results


def test_unknown_shape_is_rejected_naming_what_is_expected(host: Host, sim: Sim) -> None:
    stack = host()
    stack.send("isolation-requests", {"alert": {"host": "pc1"}, "requestId": "unk-1"})
    (result,) = results_for(stack, "unk-1", 1)
    assert result["error"]["code"] == "UnknownEventShape"
    assert "Sentinel incident" in result["error"]["message"]
