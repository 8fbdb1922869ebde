"""Carrying out a ``Reply``: every result is audited, then published; a final result (or a lease
reminder) is published exactly once per (action, key), and an isolation's final result also reaches
the storm duplicates that waited for it; then the messages the reply sends on its trigger queue."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ..domain.model import MachineAction
from ..domain.results import Delivery, Result, Subject, build_result
from ..errors import TransientError
from ..ports import AuditEntry
from .context import Context
from .reply import Join, Reply, Send
from .writeback import written_back

logger = logging.getLogger(__name__)


def respond(reply: Reply, ctx: Context, delivery: Delivery) -> None:
    """Write the reply's results and messages, in order (its ``failure`` is the caller's to raise)."""
    for result in reply.results:
        if result.once_key is not None and result.machine_action is not None:
            publish_once(result, result.machine_action, ctx, delivery, then=reply.then)
        else:
            publish(result, ctx, delivery)
    if reply.join is not None:
        join_holder(reply.join, ctx, delivery)
    send(reply.sends, ctx, delivery)


def send(sends: tuple[Send, ...], ctx: Context, delivery: Delivery) -> None:
    for message in sends:
        ctx.ports.outbox.send(delivery.queue, message.document, message.delay_s)


def publish(result: Result, ctx: Context, delivery: Delivery) -> None:
    """Audit first: if the ledger is down the message is retried before any result goes out, except
    on its last delivery: then the requester hears back all the same, and the log says the audit
    row is missing."""
    result = written_back(result, ctx, delivery)
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


def publish_once(
    result: Result,
    action: MachineAction,
    ctx: Context,
    delivery: Delivery,
    *,
    then: tuple[Send, ...] = (),
    duplicates: bool = True,
) -> None:
    """A result written exactly once per (action, ``once_key``), with what only its writer sends on
    (``then``: the next reminder of a lease, say), recorded so a redelivery does not repeat it. While
    another writer holds the claim, the message waits (is redelivered) for it to finish."""
    finals, key = ctx.ports.finals, result.once_key or result.subject.request_id
    claim = finals.claim(action.id, key, ctx.ports.clock())
    if claim == "done":
        logger.info("result already written action_id=%s key=%s", action.id, key)
        return
    if claim == "busy":
        raise TransientError("ResultBeingWritten", f"another delivery is writing the result of {key}")
    try:
        publish(result, ctx, delivery)
        send(then, ctx, delivery)
    except Exception:
        finals.release(action.id, key)
        raise
    finals.mark_reported(action.id, key, result.outcome, action.raw, ctx.ports.clock())
    if duplicates and result.sequence == 2 and result.subject.action == "Isolate":
        for record in finals.duplicates(action.id):
            duplicate = duplicate_final(Subject.from_record(record), action.id, result.outcome, action.raw)
            try:
                publish_once(duplicate, duplicate.machine_action or action, ctx, delivery, duplicates=False)
            except TransientError:
                logger.info(
                    "duplicate's final result being written elsewhere request_id=%s", record["requestId"]
                )


def join_holder(join: Join, ctx: Context, delivery: Delivery) -> None:
    """A storm duplicate: recorded for the holder to find, then the holder's final result checked."""
    finals = ctx.ports.finals
    finals.add_duplicate(join.action_id, join.subject.request_id, join.subject.to_record())
    final = finals.final_of(join.action_id, join.holder_request_id)
    if final is not None:
        outcome, action = final
        duplicate = duplicate_final(join.subject, join.action_id, outcome, action)
        publish_once(
            duplicate, duplicate.machine_action or MachineAction(action), ctx, delivery, duplicates=False
        )


def duplicate_final(subject: Subject, action_id: str, outcome: str, action: Mapping[str, Any]) -> Result:
    """A storm duplicate's final result, from its holder's action (no API call)."""
    return Result.final(subject, outcome, MachineAction({**action, "id": action_id}))
