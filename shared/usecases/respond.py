"""Carrying out a ``Reply``: every result is audited, then published; a final result is published
exactly once per (action, request), and an isolation's final result also reaches the storm
duplicates that waited for it; then the messages the reply sends on its trigger queue."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ..domain.model import MachineAction
from ..domain.results import Delivery, Result, Subject, build_result
from ..ports import AuditEntry
from .context import Context
from .reply import Join, Reply

logger = logging.getLogger(__name__)


def respond(reply: Reply, ctx: Context, delivery: Delivery) -> None:
    """Write the reply's results and messages, in order (its ``failure`` is the caller's to raise)."""
    for result in reply.results:
        if result.sequence == 2 and result.machine_action is not None:
            publish_final(result, ctx, delivery)
        else:
            publish(result, ctx, delivery)
    if reply.join is not None:
        join_holder(reply.join, ctx, delivery)
    for send in reply.sends:
        ctx.ports.outbox.send(delivery.queue, send.document, send.delay_s)


def publish(result: Result, ctx: Context, delivery: Delivery) -> None:
    """Audit first: if the ledger is down the message is retried before any result goes out, except
    on its last delivery: then the requester hears back all the same, and the log says the audit
    row is missing."""
    now = ctx.ports.clock()
    subject, action = result.subject, result.machine_action
    details = {**subject.details, "error": result.error.code if result.error else None}
    entry = AuditEntry(
        request_id=subject.request_id,
        action=subject.action,
        outcome=result.outcome,
        at=now,
        machine_id=subject.machine.id if subject.machine else None,
        action_id=action.id if action else None,
        details=details,
    )
    try:
        ctx.ports.audit.record(entry)
    except Exception:
        if delivery.dequeue_count < ctx.settings.max_dequeue_count:
            raise
        logger.exception(
            "audit write failed on the last delivery, result sent without it request_id=%s outcome=%s",
            subject.request_id,
            result.outcome,
        )
    ctx.ports.outbox.publish(build_result(result, delivery, now))


def publish_final(result: Result, ctx: Context, delivery: Delivery, *, duplicates: bool = True) -> None:
    """The one final result of a request's action, recorded so a redelivery does not repeat it."""
    finals, action = ctx.ports.finals, result.machine_action
    if action is None:
        raise ValueError("a final result names its action")
    request_id = result.subject.request_id
    if not finals.claim(action.id, request_id, ctx.ports.clock()):
        logger.info("final result already written or being written action_id=%s", action.id)
        return
    try:
        publish(result, ctx, delivery)
    except Exception:
        finals.release(action.id, request_id)
        raise
    finals.mark_reported(action.id, request_id, result.outcome, action.raw, ctx.ports.clock())
    if duplicates and result.subject.action == "Isolate":
        for record in finals.duplicates(action.id):
            duplicate = duplicate_final(Subject.from_record(record), action.id, result.outcome, action.raw)
            publish_final(duplicate, ctx, delivery, duplicates=False)


def join_holder(join: Join, ctx: Context, delivery: Delivery) -> None:
    """A storm duplicate: recorded for the holder to find, then the holder's final result checked."""
    finals = ctx.ports.finals
    finals.add_duplicate(join.action_id, join.subject.request_id, join.subject.to_record())
    final = finals.final_of(join.action_id, join.holder_request_id)
    if final is not None:
        outcome, action = final
        publish_final(
            duplicate_final(join.subject, join.action_id, outcome, action), ctx, delivery, duplicates=False
        )


def duplicate_final(subject: Subject, action_id: str, outcome: str, action: Mapping[str, Any]) -> Result:
    """A storm duplicate's final result, from its holder's action (no API call)."""
    return Result(subject, outcome, 2, MachineAction({**action, "id": action_id}))
