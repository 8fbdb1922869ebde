"""A release's results written back to its ticket, on in-memory ports: one comment per result."""

from __future__ import annotations

import pytest

from shared.adapters.ticket_http import TicketUnavailable
from tests.fakes import World, jira_issue, machine, servicenow_approval_row, servicenow_record, world

PC = "142b3441161eb63d57b41d1338407a04c781740d"
UNAVAILABLE = TicketUnavailable("JiraUnavailable", "503", system="Jira", method="POST", url="u")


def jira_world(**settings: str) -> World:
    w = world(**settings)
    w.mde.add(machine(PC, "ws-eng-0007.contoso.local"))
    w.jira.issues["SEC-1"] = jira_issue("SEC-1", PC)
    return w


def release(w: World, request_id: str = "rel-1", dequeue_count: int = 1) -> None:
    body = {"ticketSystem": "jira", "ticketId": "SEC-1", "requestId": request_id}
    w.deliver(body, action="Unisolate", dequeue_count=dequeue_count)


def test_each_result_of_a_jira_release_leaves_one_comment_on_its_issue() -> None:
    w = jira_world()
    release(w)
    (_, tracking, _) = w.outbox.sent[0]
    w.mde.complete(w.mde.actions[-1]["id"], "Succeeded")
    w.deliver(tracking, action="Unisolate")
    first, final = w.outbox.results
    assert (first["writeBack"], final["writeBack"]) == ("posted", "posted")
    action_id = first["machineAction"]["id"]
    assert [key for key, _ in w.jira.comments] == ["SEC-1", "SEC-1"]
    submitted, succeeded = (text for _, text in w.jira.comments)
    assert submitted.startswith(f"mde-containment: release of ws-eng-0007.contoso.local ({PC}): Submitted, ")
    assert f"MDE action {action_id}: Pending." in submitted
    assert "Approved by ana@contoso.com, requested by ben@contoso.com." in submitted
    assert ": Succeeded, " in succeeded and f"MDE action {action_id}: Succeeded." in succeeded


def test_a_redelivered_result_adds_no_second_comment() -> None:
    w = jira_world()
    release(w)
    release(w, dequeue_count=2)  # the same message again: its own action is found, reported again
    assert [r["writeBack"] for r in w.outbox.results] == ["posted", "posted"]
    assert len(w.jira.comments) == 1


def test_a_refusal_read_from_the_ticket_is_written_back_with_its_reason() -> None:
    w = jira_world(ISOLATION_POLICY='{"release": {"allowedRequesters": ["*@fabrikam.com"]}}')
    release(w)
    (result,) = w.outbox.results
    assert (result["outcome"], result["writeBack"]) == ("Rejected", "posted")
    ((_, text),) = w.jira.comments
    assert "Rejected" in text and "RequesterNotAllowed: release.allowedRequesters" in text


def test_a_ticket_that_is_not_approved_hears_why_nothing_was_done() -> None:
    w = jira_world()
    w.jira.issues["SEC-1"] = jira_issue("SEC-1", PC, status="Waiting for approval")
    release(w)
    (result,) = w.outbox.results
    assert (result["error"]["code"], result["writeBack"]) == ("NotApproved", "posted")
    ((key, text),) = w.jira.comments
    assert key == "SEC-1" and ": Rejected, " in text
    assert "NotApproved: Jira issue SEC-1 is 'Waiting for approval'" in text
    assert w.mde.calls == []


def test_a_servicenow_record_that_is_not_approved_gets_a_work_note() -> None:
    w = world()
    record = servicenow_record("RITM0010002", "ws-eng-0007.contoso.local", approval="requested")
    w.servicenow.records["RITM0010002"] = record
    body = {"ticketSystem": "servicenow", "ticketId": "RITM0010002", "requestId": "rel-sn-2"}
    w.deliver(body, action="Unisolate")
    assert w.outbox.results[0]["error"]["code"] == "NotApproved"
    ((_, sys_id, text),) = w.servicenow.notes
    assert sys_id == record["sys_id"]["value"] and ": Rejected, " in text and "NotApproved" in text


def test_a_message_no_ticket_system_confirms_writes_nothing_back() -> None:
    w = jira_world()
    w.deliver({"ticketId": "SEC-1", "requestId": "forged"}, action="Unisolate")  # names no system
    (result,) = w.outbox.results
    assert result["error"]["code"] == "UnverifiedRelease" and "writeBack" not in result
    assert w.jira.comments == []


def test_a_comment_that_cannot_be_posted_is_retried_and_finally_reported_failed() -> None:
    w = jira_world()
    w.jira.comment_fail = [UNAVAILABLE, UNAVAILABLE]
    with pytest.raises(TicketUnavailable):
        release(w)  # retried: the message is redelivered, no result yet
    assert w.outbox.results == []
    release(w, dequeue_count=5)  # the last delivery: the result goes out, saying so
    (result,) = w.outbox.results
    assert (result["writeBack"], result["writeBackError"]) == ("failed", "JiraUnavailable")
    assert w.jira.comments == []


def test_write_back_can_be_turned_off() -> None:
    w = jira_world(ISOLATION_POLICY='{"ticketWriteBack": false}')
    release(w)
    assert "writeBack" not in w.outbox.results[0] and w.jira.comments == []


def test_a_servicenow_release_gets_one_work_note_per_result() -> None:
    w = world()
    w.mde.add(machine(PC, "ws-eng-0007.contoso.local"))
    record = servicenow_record("RITM0010001", "ws-eng-0007.contoso.local")
    w.servicenow.records["RITM0010001"] = record
    w.servicenow.approval_rows[record["sys_id"]["value"]] = [servicenow_approval_row(record, "Lee")]
    body = {"ticketSystem": "servicenow", "ticketId": "RITM0010001", "requestId": "rel-sn"}
    w.deliver(body, action="Unisolate")
    ((table, sys_id, text),) = w.servicenow.notes
    assert (table, sys_id) == ("sc_req_item", record["sys_id"]["value"]) and ": Submitted, " in text
    assert w.outbox.results[0]["writeBack"] == "posted"
