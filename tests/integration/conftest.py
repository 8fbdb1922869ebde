"""The real local stack for integration tests: Azurite, the identity endpoint, the MDE simulator,
and the local Functions host running the project's functions in a subprocess.

One stack per session; each test starts its own host process (with the settings it needs) on
empty queues and a reset simulator.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient

from devstack.control import MdeControl as Sim
from devstack.stack import LEDGER_TABLE, QUEUES, RESULTS_QUEUE, LocalStack
from devstack.tokens import mint_token
from shared.bootstrap import build_context
from shared.domain.messages import schema_errors
from shared.settings import load_settings
from shared.usecases.context import Context

# Fast clocks: one simulated minute per real second for MDE timing and rate windows; the host
# retries a failed message after 1 s and polls at least every 200 ms.
TIME_SCALE = 60
HOST_OVERRIDES = {"visibilityTimeout": "00:00:01", "maxPollingInterval": "00:00:00.200"}
FAST_TRACKING = {"TRACKING_SCHEDULE": "1,1,2"}
TRIGGER_QUEUES = tuple(q for q in QUEUES if q != RESULTS_QUEUE)

ONLINE_PC = "c28460d93e441d30869ebb33920c06acbb6fd75e"  # ws-fin-0142.contoso.local, Windows 10
ENG_PC = "142b3441161eb63d57b41d1338407a04c781740d"  # ws-eng-0007.contoso.local
OFFLINE_PC = "9c4f08247909332d14a6ae9170a78b792337ff0b"  # ws-hr-0031.contoso.local, Inactive
UNKNOWN_PC = "0" * 40
# Jira users (the simulator seeds Ana; Ben is created by jira_approves) and ServiceNow users (seeded).
ANA = "5b10a2844c20165700ede21b"  # Ana Approver, ana.approver@contoso.com
BEN = "5b10a2844c20165700ede21d"  # Ben Requester, ben.requester@contoso.com
APPROVED = "Approved for release"  # TICKET_MAPPINGS' default approved status


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    local = LocalStack(time_scale=TIME_SCALE, host_overrides=HOST_OVERRIDES)
    local.start()
    yield local
    local.stop()


@pytest.fixture
def sim(stack: LocalStack) -> Sim:
    simulator = Sim(stack.mde_url, stack.mde.signing_secret)
    simulator.reset()
    return simulator


@pytest.fixture
def clean(stack: LocalStack, sim: Sim) -> Iterator[LocalStack]:
    """Empty queues, a reset simulator and identity endpoint; hosts stopped after the test."""
    for name in (*QUEUES, *(f"{q}-poison" for q in QUEUES)):
        queue = stack.queue(name)
        with contextlib.suppress(ResourceNotFoundError):  # a poison queue not created yet
            queue.clear_messages()
    ledger = TableClient.from_connection_string(stack.azurite.connection_string, LEDGER_TABLE)
    for entity in ledger.list_entities(select=["PartitionKey", "RowKey"]):
        ledger.delete_entity(entity["PartitionKey"], entity["RowKey"])
    stack.other_results.clear()
    stack.identity.reset()
    stack.jira_control.reset()
    stack.servicenow_control.reset()
    yield stack
    stack.stop_hosts()


@pytest.fixture
def host(clean: LocalStack) -> Callable[..., LocalStack]:
    """Start a host with extra app settings: ``host(TRACKING_SCHEDULE="1")``."""

    def start(**settings: str) -> LocalStack:
        clean.start_host(**{**FAST_TRACKING, **settings})
        return clean

    return start


def results_for(stack: LocalStack, request_id: str, count: int, timeout: float = 30) -> list[dict[str, Any]]:
    """``count`` results of one request, in ``sequence`` order (the queue does not promise arrival
    order), each checked against result.schema.json."""
    found = stack.take_results(count, timeout=timeout, where=lambda r: r["requestId"] == request_id)
    for result in found:
        assert schema_errors("result.schema.json", result) == [], result
    assert len(found) == count, f"got {found}; host log:\n{stack.host_logs()[-3000:]}"
    return sorted(found, key=lambda r: int(r["sequence"]))


def wait_until(condition: Callable[[], object], timeout: float = 30, what: str = "condition") -> None:
    """Poll ``condition`` until it holds; fail the test naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def settled(stack: LocalStack, timeout: float = 30, leases: int = 0) -> list[dict[str, Any]]:
    """Wait until the trigger queues hold nothing but ``leases`` lease messages (one waits, delayed
    for ``leaseHours``, after each isolation of ours that succeeded), so no result can still be
    written, then return the results that came meanwhile (expected: none).

    A result is written before its message is deleted, so an empty queue means every result of
    the work so far is on the results queue. Not for a test that leaves a tracking message
    delayed on purpose (it would never drain)."""
    expected = {queue: leases if queue == "isolation-requests" else 0 for queue in TRIGGER_QUEUES}
    wait_until(
        lambda: {queue: stack.peek_count(queue) for queue in TRIGGER_QUEUES} == expected,
        timeout,
        "the trigger queues to drain",
    )
    return results_so_far(stack)


def results_so_far(stack: LocalStack) -> list[dict[str, Any]]:
    """The results already on the results queue (for in-process handlers, whose results are
    written before the call returns)."""
    return stack.take_results(1000, timeout=0.5)


def queue_bodies(stack: LocalStack, name: str) -> list[dict[str, Any] | str]:
    bodies: list[dict[str, Any] | str] = []
    for message in stack.queue(name).peek_messages(max_messages=32):
        try:
            bodies.append(json.loads(message.content))
        except ValueError:
            bodies.append(message.content)
    return bodies


def analyst_isolates(sim: Sim, machine_id: str) -> dict[str, Any]:
    """An isolation made outside this service (an analyst's, in the portal), straight to MDE."""
    return analyst_acts(
        sim, machine_id, "isolate", {"Comment": "Isolated by the on-call analyst", "IsolationType": "Full"}
    )


def analyst_releases(sim: Sim, machine_id: str) -> dict[str, Any]:
    """A release made outside this service, straight to MDE."""
    return analyst_acts(sim, machine_id, "unisolate", {"Comment": "Released by the on-call analyst"})


def analyst_acts(sim: Sim, machine_id: str, verb: str, body: dict[str, Any]) -> dict[str, Any]:
    token, _ = mint_token(
        audience="https://api.securitycenter.microsoft.com",
        roles=["Machine.Isolate", "Machine.Read.All"],
        client_id="0c0ffee0-0000-4000-8000-00000000a11a",
        tenant_id="00000000-0000-4000-8000-000000000000",
        lifetime_s=600,
        secret=sim.signing_secret,
    )
    response = requests.post(
        f"{sim.url}/api/machines/{machine_id}/{verb}",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


@pytest.fixture(scope="module")
def monkeymodule() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module")
def runtime(stack: LocalStack, monkeymodule: pytest.MonkeyPatch) -> Context:
    """The functions' context built in the test process, on the real stack (for in-process tests
    that hand a message to ``shared.app.handle`` directly): no HTTP retries, no machine cache."""
    env = {
        **stack.app_settings(),
        "ISOLATION_POLICY": json.dumps({"minimumSeverity": "Informational"}),
        "MDE_HTTP_RETRIES": "0",
        "DEVICE_CACHE_SECONDS": "0",
    }
    for key in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER"):
        monkeymodule.setenv(key, env[key])
    return build_context(load_settings(env))


def jira_approves(
    stack: LocalStack, key: str, device: str, *, approver: str = ANA, status: str = APPROVED
) -> None:
    """Jira issue ``key``, reported by Ben, asks to release ``device``; ``approver`` moved it to
    ``status`` (the transition is in its changelog)."""
    jira = stack.jira_control
    jira.user(BEN, "Ben Requester", "ben.requester@contoso.com")
    fields = {"summary": f"Release {device}", "status": "Waiting for approval", "reporter": BEN}
    jira.upsert_issue(key, {**fields, "customfield_10050": device})
    jira.transition(key, status, approver)


def servicenow_approves(
    stack: LocalStack, number: str, ci_name: str, *, approver: str = "ana.approver"
) -> str:
    """ServiceNow requested item ``number`` for CI ``ci_name``, requested for Ben, approved by
    ``approver`` (an approved sysapproval_approver row); returns its sys_id."""
    servicenow = stack.servicenow_control
    ci = servicenow.ci(ci_name)["sys_id"]["value"]
    ben = servicenow.user("ben.requester")["sys_id"]["value"]
    fields = {"cmdb_ci": ci, "requested_for": ben, "short_description": f"Release {ci_name}"}
    record = servicenow.upsert_record(fields, number=number)
    servicenow.approve(number, approver)
    return str(record["sys_id"]["value"])


def jira_release(key: str, request_id: str, **fields: object) -> dict[str, object]:
    """A canonical release naming its Jira ticket: all the service will rely on is that ticket."""
    return {"ticketSystem": "jira", "ticketId": key, "requestId": request_id, **fields}
