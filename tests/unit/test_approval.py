"""Reading an approval from a ticket as the ticket system returns it (pure)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from shared.domain.approval import jira_approval, servicenow_approval
from shared.domain.events.ticket_mappings import JiraMapping, ServiceNowMapping
from shared.domain.model import DeviceRef
from shared.errors import InvalidRequest
from tests.fakes import both, jira_issue, servicenow_approval_row, servicenow_record

PC = "142b3441161eb63d57b41d1338407a04c781740d"


def history(history_id: str, to: str, by: dict[str, Any], created: str) -> dict[str, Any]:
    item = {"field": "status", "fieldtype": "jira", "fromString": "x", "toString": to}
    return {"id": history_id, "author": by, "created": created, "items": [item]}


def test_the_latest_transition_into_the_approved_status_is_the_approval() -> None:
    issue = jira_issue("SEC-1", PC)
    ana = {"accountId": "a-1", "emailAddress": "ana@contoso.com"}
    lee = {"accountId": "a-2", "emailAddress": "lee@contoso.com"}
    issue["changelog"]["histories"] = [
        history("101", "Approved for release", ana, "2026-11-20T09:00:00.000+0000"),
        history("102", "Reopened", ana, "2026-11-21T09:00:00.000+0000"),
        history("103", "Approved for release", lee, "2026-11-22T09:00:00.000+0000"),
    ]
    approval = jira_approval(issue, JiraMapping())
    assert (approval.approval_id, approval.approved_by) == ("jira:SEC-1:103", "lee@contoso.com")
    assert (approval.requested_by, approval.device) == ("ben@contoso.com", DeviceRef(machine_id=PC))


def test_a_hidden_email_names_the_approver_by_account_id() -> None:
    issue = jira_issue("SEC-1", PC)
    issue["changelog"]["histories"][0]["author"] = {"accountId": "5b10ac8d", "displayName": "Lee"}
    assert jira_approval(issue, JiraMapping()).approved_by == "accountId:5b10ac8d"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (lambda issue: issue["fields"]["status"].update(name="Awaiting approval"), "NotApproved"),
        (lambda issue: issue["changelog"].update(histories=[]), "ApprovalNotFound"),
        (lambda issue: issue["fields"].update(customfield_10050=None), "NoDevice"),
        (lambda issue: issue["fields"].update(customfield_10050="not a host!"), "InvalidDeviceName"),
    ],
)
def test_an_issue_that_does_not_approve_a_release_now_is_refused(change: Any, code: str) -> None:
    issue = jira_issue("SEC-1", PC)
    change(issue)
    with pytest.raises(InvalidRequest) as refused:
        jira_approval(issue, JiraMapping())
    assert refused.value.code == code


def test_a_servicenow_approval_is_its_approved_row_and_either_display_or_stored_value_matches() -> None:
    record = servicenow_record("RITM0010001", "ws-eng-0007.contoso.local")
    record["approval"] = {"display_value": "Genehmigt", "value": "approved"}  # a translated instance
    rows = [servicenow_approval_row(record, "Lee Approver")]
    approval = servicenow_approval(record, rows, ServiceNowMapping())
    assert (approval.system, approval.ticket_id, approval.approved_by, approval.requested_by) == (
        "servicenow",
        "RITM0010001",
        "Lee Approver",
        "Ben Requester",
    )
    assert approval.device == DeviceRef(device_name="ws-eng-0007.contoso.local")
    assert approval.approval_id == f"servicenow:{record['sys_id']['value']}:{rows[0]['sys_id']['value']}"


def test_the_approvers_email_is_preferred_when_it_was_read() -> None:
    record = servicenow_record("RITM0010001", "ws-eng-0007.contoso.local")
    row = {**servicenow_approval_row(record, "Lee Approver"), "approver.email": both("lee@contoso.com")}
    assert servicenow_approval(record, [row], ServiceNowMapping()).approved_by == "lee@contoso.com"


def test_a_configured_approver_field_replaces_the_approval_rows() -> None:
    record = {**servicenow_record("RITM0010001", "ws-1.contoso.local"), "u_approved_by": both("Lee")}
    mapping = ServiceNowMapping(approver_field="u_approved_by")
    assert servicenow_approval(record, [], mapping).approved_by == "Lee"


@pytest.mark.parametrize(
    ("change", "rows", "code"),
    [
        (lambda r: r.update(approval={"display_value": "Requested", "value": "requested"}), 1, "NotApproved"),
        (lambda r: None, 0, "ApprovalNotFound"),
        (lambda r: r.update(cmdb_ci={"display_value": "", "value": ""}), 1, "NoDevice"),
    ],
)
def test_a_record_that_does_not_approve_a_release_now_is_refused(change: Any, rows: int, code: str) -> None:
    record = servicenow_record("RITM0010001", "ws-1.contoso.local")
    approvals = [servicenow_approval_row(record, "Lee")] * rows
    change(record)
    with pytest.raises(InvalidRequest) as refused:
        servicenow_approval(copy.deepcopy(record), approvals, ServiceNowMapping())
    assert refused.value.code == code
