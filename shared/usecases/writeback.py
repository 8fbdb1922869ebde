"""A release's results written back to its ticket (``ticketWriteBack``, on by default): one Jira
comment or ServiceNow work note per result, exactly once across redeliveries (the ledger's
once-only claim). A comment that cannot be posted is retried like any transient call; on the last
delivery (or for a permanent error) the result still goes out, saying ``writeBack: failed``."""

from __future__ import annotations

import logging
from dataclasses import replace

from ..domain.approval import stored_value
from ..domain.events.tickets import field_text
from ..domain.results import Delivery, Result
from ..domain.writeback import ticket_comment
from ..errors import ContainmentError, PermanentError, TransientError
from .context import Context

logger = logging.getLogger(__name__)


def written_back(result: Result, ctx: Context, delivery: Delivery) -> Result:
    """``result`` once its ticket has its comment (with ``writeBack``), or unchanged when the result
    is not about a release from a ticket system this service reads."""
    details = result.subject.details
    system, ticket = details.get("ticketSystem"), details.get("ticketId")
    if not (ctx.settings.isolation_policy.ticket_write_back and _configured(system, ctx)):
        return result
    if not isinstance(ticket, str) or not ticket:
        return result
    finals, now = ctx.ports.finals, ctx.ports.clock()
    record, key = f"{system}-{ticket}", f"comment{result.sequence}:{result.subject.request_id}"
    claim = finals.claim(record, key, now)
    if claim == "busy":
        raise TransientError("TicketCommentBeingWritten", f"another delivery is commenting on {ticket}")
    if claim == "won":
        try:
            post(str(system), ticket, ticket_comment(result, now), ctx)
        except ContainmentError as e:
            finals.release(record, key)
            if isinstance(e, TransientError) and delivery.dequeue_count < ctx.settings.max_dequeue_count:
                raise
            logger.warning("write-back failed ticket=%s request_id=%s code=%s", ticket, key, e.code)
            return with_details(result, writeBack="failed", writeBackError=e.code)
        finals.mark_reported(record, key, result.outcome, {}, now)
    return with_details(result, writeBack="posted")


def post(system: str, ticket: str, text: str, ctx: Context) -> None:
    if system == "jira" and ctx.ports.jira is not None:
        ctx.ports.jira.add_comment(ticket, text)
        return
    servicenow, table = ctx.ports.servicenow, ctx.settings.ticket_mappings.servicenow.table
    if servicenow is None:
        raise PermanentError("TicketSystemNotConfigured", f"{system} is not configured")
    found = servicenow.record(table, ticket, ["sys_id"])
    sys_id = field_text(stored_value(found.get("sys_id"))) if found else None
    if sys_id is None:
        raise PermanentError("ServiceNowTicketNotFound", f"no {table} record {ticket} in ServiceNow")
    servicenow.add_work_note(table, sys_id, text)


def _configured(system: object, ctx: Context) -> bool:
    return (system == "jira" and ctx.ports.jira is not None) or (
        system == "servicenow" and ctx.ports.servicenow is not None
    )


def with_details(result: Result, **details: str) -> Result:
    return replace(result, subject=result.subject.with_details(**details))
