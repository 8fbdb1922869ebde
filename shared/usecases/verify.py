"""Where a release's authority comes from: its ticket, read from the ticket system now (Jira or
ServiceNow), never the message. Only under the policy's opt-in ``release.trustUnverifiedRequests``
does a message that no ticket system can confirm count by its own claims."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from urllib.parse import quote

from ..domain.approval import Approval, jira_approval, servicenow_approval, stored_value, unverified_approval
from ..domain.events.tickets import field_text
from ..domain.model import ContainmentRequest, TicketSystem
from ..errors import InvalidRequest, PermanentError
from ..ports import ServiceNow
from .context import Context

SETTING_OF = {"jira": "JIRA_BASE_URL", "servicenow": "SERVICENOW_BASE_URL"}


class TicketRefusal(InvalidRequest):
    """The ticket was read, and it does not authorise the release (not approved, no approver on
    record, no device): a refusal the ticket hears back about."""

    def __init__(self, refused: InvalidRequest, system: TicketSystem) -> None:
        super().__init__(refused.code, refused.message)
        self.system = system


def _read(system: TicketSystem, parse: Callable[[], Approval]) -> Approval:
    try:
        return parse()
    except InvalidRequest as e:
        raise TicketRefusal(e, system) from e


def approval_of(request: ContainmentRequest, ctx: Context) -> Approval:
    """The approval the request's ticket carries now (no MDE call is made here)."""
    system, ticket = request.ticket_system, request.ticket_id or ""
    if system == "jira" and ctx.ports.jira is not None:
        mapping = ctx.settings.ticket_mappings.jira
        issue = ctx.ports.jira.issue(ticket, mapping.issue_fields())
        approval = _read("jira", lambda: jira_approval(issue, mapping))
        base = ctx.settings.jira_base_url or ""
        return replace(approval, url=f"{base}/browse/{quote(approval.ticket_id, safe='')}")
    if system == "servicenow" and ctx.ports.servicenow is not None:
        return _servicenow(ticket, ctx.ports.servicenow, ctx)
    if ctx.settings.isolation_policy.release.trust_unverified_requests:
        return unverified_approval(request)
    why = (
        f"the {system} ticket system is not configured ({SETTING_OF[system]})"
        if system is not None
        else "the release names no ticket system (ticketSystem: jira or servicenow)"
    )
    raise InvalidRequest("UnverifiedRelease", f"ticket {ticket or '(none)'} cannot be verified: {why}")


def _servicenow(number: str, servicenow: ServiceNow, ctx: Context) -> Approval:
    mapping = ctx.settings.ticket_mappings.servicenow
    record = servicenow.record(mapping.table, number, mapping.record_fields())
    if record is None:
        raise PermanentError("ServiceNowTicketNotFound", f"no {mapping.table} record {number} in ServiceNow")
    sys_id = field_text(stored_value(record.get("sys_id")))
    rows = [] if mapping.approver_field or sys_id is None else servicenow.approvals(sys_id)
    approval = _read("servicenow", lambda: servicenow_approval(record, rows, mapping))
    base = ctx.settings.servicenow_base_url or ""
    return replace(approval, url=f"{base}/{mapping.table}.do?sys_id={sys_id}")
