"""The release story on in-memory ports: every outcome and what each costs."""

from __future__ import annotations

from typing import Any

import pytest

from shared.errors import MdeNotFound, MdeThrottled
from tests.fakes import World, machine, raises, world

PC = "142b3441161eb63d57b41d1338407a04c781740d"
PC_NAME = "ws-eng-0007.contoso.local"


def release(request_id: str = "rel-1", **fields: Any) -> dict[str, Any]:
    body = {"machineId": PC, "ticketId": "INC0012345", "requestedBy": "ana@contoso.com", "approved": True}
    return {**body, "requestId": request_id, **fields}


def fleet(w: World) -> World:
    w.mde.add(machine(PC, PC_NAME))
    return w


def test_an_approved_release_is_submitted_tracked_and_ends_ownership() -> None:
    w = fleet(world())
    w.claims.owned[PC] = True
    w.deliver(release(comment="Reimaged"), action="Unisolate")
    (result,) = w.outbox.results
    assert (result["outcome"], result["action"], result["requestedBy"], result["ticketId"]) == (
        "Submitted",
        "Unisolate",
        "ana@contoso.com",
        "INC0012345",
    )
    (action,) = w.mde.actions
    assert action["type"] == "Unisolate"
    assert action["requestorComment"] == (
        "Release approved in ticket INC0012345, requested by ana@contoso.com: Reimaged"
        " [mde-containment request=rel-1]"
    )
    ((queue, tracking, _),) = w.outbox.sent
    assert queue == "release-requests" and tracking["tracking"]["action"] == "Unisolate"
    assert not w.claims.isolated_by_us(PC)


@pytest.mark.parametrize(
    ("policy", "body", "owned", "code"),
    [
        ({}, release(approved=False), False, "NotApproved"),
        ({"release": {"allowedRequesters": ["*@contoso.com"]}}, release(requestedBy="eve@evil.example"), True,
         "RequesterNotAllowed"),
        ({"release": {"onlyReleaseOwnIsolations": True}}, release(), False, "NotIsolatedByService"),
    ],
)  # fmt: skip
def test_an_unauthorised_release_is_rejected_and_nothing_is_posted(
    policy: dict[str, Any], body: dict[str, Any], owned: bool, code: str
) -> None:
    w = fleet(world(policy=policy))
    w.claims.owned[PC] = owned
    w.deliver(body, action="Unisolate")
    (result,) = w.outbox.results
    assert (result["outcome"], result["error"]["code"]) == ("Rejected", code)
    assert w.mde.count("unisolate") == 0 and w.mde.actions == []


def test_a_release_of_our_own_isolation_passes_every_rule() -> None:
    rules = {"release": {"allowedRequesters": ["*@contoso.com"], "onlyReleaseOwnIsolations": True}}
    w = fleet(world(policy=rules))
    w.claims.owned[PC] = True
    w.deliver(release(), action="Unisolate")
    assert w.outbox.outcomes == ["Submitted"]


def test_a_dry_run_release_shows_the_call() -> None:
    w = fleet(world(DRY_RUN="true"))
    w.deliver(release(), action="Unisolate")
    (result,) = w.outbox.results
    assert result["outcome"] == "DryRun" and result["dryRun"]["path"] == f"/api/machines/{PC}/unisolate"
    assert w.mde.count("unisolate") == 0


def test_a_release_yields_to_containment_without_spending_an_attempt() -> None:
    w = fleet(world())
    w.mde.admits_releases = False
    w.deliver(release(), action="Unisolate")
    assert w.outbox.results == [] and w.mde.count("machineactions") == 0
    ((_, again, delay),) = w.outbox.sent
    assert again["attempt"] == 1 and 5 <= delay <= 10


def test_a_429_requeues_the_release() -> None:
    w = fleet(world())
    w.mde.fail["unisolate"] = [raises(MdeThrottled, "TooManyRequests", 429, retry_after=4.0)]
    w.deliver(release(), action="Unisolate")
    ((_, again, delay),) = w.outbox.sent
    assert again["attempt"] == 2 and 4.0 <= delay <= 5.0 and w.outbox.results == []


def test_an_unknown_machine_fails_the_release() -> None:
    w = fleet(world())
    w.mde.fail["unisolate"] = [raises(MdeNotFound, "ResourceNotFound", 404)]
    w.deliver(release(), action="Unisolate")
    assert [(r["outcome"], r["error"]["code"]) for r in w.outbox.results] == [("Failed", "ResourceNotFound")]


def test_a_pending_release_is_reported_as_already_pending() -> None:
    w = fleet(world())
    w.deliver(release("first"), action="Unisolate")
    w.deliver(release("second"), action="Unisolate")
    first, second = w.outbox.results
    assert second["outcome"] == "AlreadyPending"
    assert second["machineAction"]["id"] == first["machineAction"]["id"]
