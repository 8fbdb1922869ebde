"""The release story on in-memory ports: a release rests on its ticket, read from the ticket system,
never on the message; what each refusal costs (nothing at MDE), and MDE's own history."""

from __future__ import annotations

from typing import Any

import pytest

from shared.adapters.ticket_http import TicketThrottled, TicketUnauthorized, TicketUnavailable
from shared.errors import MdeNotFound, MdeThrottled
from tests.fakes import (
    APP_ID,
    World,
    jira_issue,
    machine,
    raises,
    servicenow_approval_row,
    servicenow_record,
    world,
)

PC = "142b3441161eb63d57b41d1338407a04c781740d"
PC_NAME = "ws-eng-0007.contoso.local"
OTHER = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"


def jira_release(request_id: str = "rel-1", **fields: Any) -> dict[str, Any]:
    return {"ticketSystem": "jira", "ticketId": "SEC-1", "requestId": request_id, **fields}


UNAUTHORIZED = TicketUnauthorized("JiraUnauthorized", "401", system="Jira", method="GET", url="u")


def not_approved(w: World) -> None:
    w.jira.issues["SEC-1"] = jira_issue("SEC-1", PC, status="In review")


def ready(w: World, *, status: str = "Approved for release", device: str = PC) -> World:
    """PC is isolated by this service; Jira issue SEC-1 approves releasing ``device``."""
    w.mde.add(machine(PC, PC_NAME), machine(OTHER, "ws-0042.contoso.local"))
    w.jira.issues["SEC-1"] = jira_issue("SEC-1", device, status=status)
    w.deliver({"machineId": PC, "requestId": "iso", "severity": "High"})  # our own isolation...
    w.mde.complete(w.mde.actions[-1]["id"], "Succeeded")  # ...in effect
    w.mde.calls.clear()
    w.outbox.results.clear()
    w.outbox.sent.clear()
    return w


def test_a_release_approved_in_jira_is_submitted_naming_who_approved_and_requested_it() -> None:
    w = ready(world())
    w.deliver(jira_release(requestedBy="ciso@contoso.com", approved=True), action="Unisolate")
    (result,) = w.outbox.results
    assert (result["outcome"], result["ticketSystem"], result["approvedBy"], result["requestedBy"]) == (
        "Submitted",
        "jira",
        "ana@contoso.com",  # the author of the transition into the approved status
        "ben@contoso.com",  # the issue's reporter, not what the message claimed
    )
    release = w.mde.actions[-1]
    assert release["type"] == "Unisolate" and release["machineId"] == PC
    assert release["requestorComment"].startswith(
        "Release approved in ticket SEC-1 by ana@contoso.com, requested by ben@contoso.com"
    )
    assert list(w.approvals.used.values()) == ["rel-1"]


def test_a_release_approved_in_servicenow_takes_the_approver_from_its_approval_row() -> None:
    w = ready(world())
    record = servicenow_record("RITM0010001", PC_NAME)
    w.servicenow.records["RITM0010001"] = record
    w.servicenow.approval_rows[record["sys_id"]["value"]] = [servicenow_approval_row(record, "Lee Approver")]
    w.deliver({"number": "RITM0010001", "sys_id": "x" * 32}, action="Unisolate")  # a flow's body
    (result,) = w.outbox.results
    assert (result["outcome"], result["approvedBy"], result["requestedBy"], result["machine"]["id"]) == (
        "Submitted",
        "Lee Approver",
        "Ben Requester",
        PC,
    )


@pytest.mark.parametrize(
    ("body", "arrange", "code"),
    [
        ({"ticketId": "FAKE-0001", "requestedBy": "ciso@contoso.com", "approved": True, "machineId": PC},
         None, "UnverifiedRelease"),  # a canonical body naming no ticket system
        (jira_release(), lambda w: w.jira.issues.pop("SEC-1"), "JiraTicketNotFound"),
        (jira_release(), lambda w: not_approved(w), "NotApproved"),
        (jira_release(), lambda w: w.jira.issues["SEC-1"]["changelog"].update(histories=[]),
         "ApprovalNotFound"),
        (jira_release(), lambda w: w.jira.fail.append(UNAUTHORIZED), "JiraUnauthorized"),
    ],
)  # fmt: skip
def test_a_release_the_ticket_system_does_not_confirm_costs_no_mde_call(
    body: dict[str, Any], arrange: Any, code: str
) -> None:
    w = ready(world())
    if arrange is not None:
        arrange(w)
        w.mde.calls.clear()
    w.deliver(body, action="Unisolate")
    (result,) = w.outbox.results
    assert result["error"]["code"] == code and result["outcome"] in ("Rejected", "Failed")
    assert w.mde.calls == []
    assert "requestedBy" not in result or result["requestedBy"] is None  # never the body's claim


def test_the_requester_allow_list_judges_the_tickets_requester_not_the_messages() -> None:
    w = ready(world(policy={"release": {"allowedRequesters": ["ciso@contoso.com"]}}))
    w.deliver(jira_release(requestedBy="ciso@contoso.com"), action="Unisolate")
    assert [(r["outcome"], r["error"]["code"]) for r in w.outbox.results] == [
        ("Rejected", "RequesterNotAllowed")
    ]
    assert w.mde.calls == []


def test_a_message_naming_another_device_than_its_ticket_is_refused() -> None:
    w = ready(world())
    w.deliver(jira_release(machineId=OTHER), action="Unisolate")
    assert w.outbox.results[0]["error"]["code"] == "TicketDeviceMismatch"
    assert w.mde.count("unisolate") == 0


def test_an_approval_releases_once_and_a_redelivery_keeps_its_one_release() -> None:
    w = ready(world())
    w.deliver(jira_release("first"), action="Unisolate")
    w.deliver(jira_release("first"), action="Unisolate", dequeue_count=2)  # the same message again
    w.deliver(jira_release("replay"), action="Unisolate")  # the same approval, another message
    assert [r["outcome"] for r in w.outbox.results] == ["Submitted", "AlreadyPending", "Rejected"]
    assert w.outbox.results[-1]["error"]["code"] == "ApprovalAlreadyUsed"
    assert w.mde.count("unisolate") == 1


@pytest.mark.parametrize(
    ("history", "code"),
    [
        (["analyst"], "NotIsolatedByService"),  # someone else's isolation is in effect
        (["analyst", "ours"], "NotIsolatedByService"),  # isolating it again does not make it ours
        (["ours", "analyst"], "NotIsolatedByService"),  # a later isolation by someone else
        (["ours", "released", "analyst"], "NotIsolatedByService"),  # ours ended with a release
        (["ours"], None),
        (["analyst", "released", "ours"], None),  # ours since the last release
    ],
)
def test_only_our_own_isolation_is_released_judged_from_mdes_history(
    history: list[str], code: str | None
) -> None:
    w = world(policy={"release": {"onlyReleaseOwnIsolations": True}})
    w.mde.add(machine(PC, PC_NAME))
    w.jira.issues["SEC-1"] = jira_issue("SEC-1", PC)
    for step in history:
        if step == "analyst":
            w.mde.analyst_action("Isolate", PC, "Succeeded")
        elif step == "ours":
            w.mde.complete(w.mde.isolate(PC, "Alert [mde-containment request=iso]", "Full").id, "Succeeded")
        else:  # released by us
            w.mde.complete(w.mde.unisolate(PC, "Ticket [mde-containment request=rel]").id, "Succeeded")
        w.clock.advance(minutes=1)
    w.mde.calls.clear()
    w.deliver(jira_release(), action="Unisolate")
    (result,) = w.outbox.results
    if code is None:
        assert result["outcome"] == "Submitted"
    else:
        assert (result["outcome"], result["error"]["code"]) == ("Rejected", code)
        assert w.mde.count("unisolate") == 0


def test_someone_elses_pending_isolation_is_never_cancelled_by_default() -> None:
    w = ready(world())
    analyst = w.mde.analyst_action("Isolate", PC)  # pending
    w.deliver(jira_release(), action="Unisolate")
    assert w.outbox.results[0]["error"]["code"] == "ForeignActionPending"
    assert w.mde.count("cancel") == 0 and w.mde.count("unisolate") == 0
    assert next(a for a in w.mde.actions if a["id"] == analyst.id)["status"] == "Pending"


def test_cancel_foreign_isolations_lets_a_release_cancel_them() -> None:
    w = ready(world(policy={"release": {"cancelForeignIsolations": True}}))
    analyst = w.mde.analyst_action("Isolate", PC)
    w.deliver(jira_release(), action="Unisolate")
    (result,) = w.outbox.results
    assert result["outcome"] == "Submitted" and result["cancelledActions"] == [analyst.id]


def test_our_own_pending_isolation_is_cancelled_by_a_release_as_before() -> None:
    w = world()
    w.mde.add(machine(PC, PC_NAME))
    w.jira.issues["SEC-1"] = jira_issue("SEC-1", PC)
    w.deliver({"machineId": PC, "requestId": "iso", "severity": "High"})  # still pending
    pending = w.mde.actions[-1]["id"]
    w.deliver(jira_release(), action="Unisolate")
    assert w.outbox.results[-1]["outcome"] == "Submitted"
    assert w.outbox.results[-1]["cancelledActions"] == [pending]


def test_trusting_unverified_requests_is_an_explicit_opt_in() -> None:
    w = ready(world(policy={"release": {"trustUnverifiedRequests": True}}))
    claimed = {"ticketId": "T-9", "requestedBy": "ana@contoso.com", "approved": True, "machineId": PC}
    w.deliver({**claimed, "requestId": "trusted"}, action="Unisolate")
    w.deliver({**claimed, "approved": False, "requestId": "unapproved"}, action="Unisolate")
    trusted, unapproved = w.outbox.results
    assert (trusted["outcome"], trusted["ticketSystem"], trusted["approvedBy"]) == (
        "Submitted",
        "unverified",
        None,
    )
    assert (unapproved["outcome"], unapproved["error"]["code"]) == ("Rejected", "NotApproved")


def test_a_dry_run_release_verifies_and_shows_the_call_but_uses_no_approval() -> None:
    w = world(DRY_RUN="true")
    w.mde.add(machine(PC, PC_NAME))
    w.jira.issues["SEC-1"] = jira_issue("SEC-1", PC)
    w.deliver(jira_release(), action="Unisolate")
    (result,) = w.outbox.results
    assert result["outcome"] == "DryRun" and result["dryRun"]["path"] == f"/api/machines/{PC}/unisolate"
    assert w.mde.count("unisolate") == 0 and w.approvals.used == {}


def test_a_release_yields_to_containment_without_spending_an_attempt() -> None:
    w = ready(world())
    w.mde.admits_releases = False
    w.deliver(jira_release(), action="Unisolate")
    assert w.outbox.results == [] and w.mde.count("machineactions") == 0
    ((_, again, delay),) = w.outbox.sent
    assert (again["attempt"], again["ticketSystem"], again["ticketId"]) == (1, "jira", "SEC-1")
    assert 5 <= delay <= 10


@pytest.mark.parametrize(
    "error",
    [
        raises(MdeThrottled, "TooManyRequests", 429, retry_after=4.0),
        TicketThrottled("JiraThrottled", "429", system="Jira", method="GET", url="u", retry_after=4.0),
    ],
)
def test_a_429_from_mde_or_the_ticket_system_requeues_the_release(error: Exception) -> None:
    w = ready(world())
    if isinstance(error, MdeThrottled):
        w.mde.fail["unisolate"] = [error]
    else:
        w.jira.fail.append(error)
    w.deliver(jira_release(), action="Unisolate")
    ((_, again, delay),) = w.outbox.sent
    assert again["attempt"] == 2 and 4.0 <= delay <= 5.0 and w.outbox.results == []


def test_an_unreachable_ticket_system_never_releases_and_is_retried() -> None:
    w = ready(world())
    w.jira.fail.append(TicketUnavailable("JiraUnavailable", "503", system="Jira", method="GET", url="u"))
    with pytest.raises(TicketUnavailable):
        w.deliver(jira_release(), action="Unisolate")
    assert w.outbox.results == [] and w.mde.calls == []


def test_an_unknown_machine_fails_the_release() -> None:
    w = ready(world())
    w.mde.fail["unisolate"] = [raises(MdeNotFound, "ResourceNotFound", 404)]
    w.deliver(jira_release(), action="Unisolate")
    assert [(r["outcome"], r["error"]["code"]) for r in w.outbox.results] == [("Failed", "ResourceNotFound")]


def test_our_app_id_is_what_mde_records_as_requestor() -> None:
    w = ready(world())
    assert all(a["requestor"] == APP_ID for a in w.mde.actions)
