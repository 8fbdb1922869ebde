"""Replies every story ends in: refused, failed on its last delivery, waiting in the queue (after a
429, or yielding), a dry run, and submitted (with the device state and the follow-up)."""

from __future__ import annotations

import logging
from typing import Any

from ..domain.backoff import throttled_delay
from ..domain.comment import mde_comment
from ..domain.messages import to_canonical
from ..domain.model import ContainmentRequest, MachineAction, final_outcome
from ..domain.results import Delivery, Result, Subject
from ..domain.tracking import Submission, TrackingKey, delay_at, device_online
from ..errors import (
    ContainmentError,
    InvalidRequest,
    MdeThrottledLocally,
    PermanentError,
    Throttled,
    TransientError,
)
from ..ports import Machine
from .context import Context
from .lease_start import start
from .reply import Reply, Send

logger = logging.getLogger(__name__)


def log_arrival(request: ContainmentRequest, delivery: Delivery) -> None:
    logger.info(
        "request action=%s request_id=%s source=%s attempt=%d dequeue_count=%d",
        request.action,
        request.request_id,
        request.source.system,
        request.attempt,
        delivery.dequeue_count,
    )


def locate(request: ContainmentRequest, subject: Subject, ctx: Context) -> tuple[Machine, Subject]:
    """The machine the request names, and the subject now about it (with how it was chosen)."""
    machine, note = ctx.devices.resolve(request.device)
    subject = subject.on(machine["id"], machine.get("computerDnsName"))
    return machine, subject.with_details(resolution=note) if note else subject


def ended(
    request: ContainmentRequest, subject: Subject, error: Exception, delivery: Delivery, ctx: Context
) -> Reply:
    """A request's story cut short: throttled (back to the queue), refused, or interrupted."""
    if isinstance(error, Throttled):
        return retry_later(request, subject, error, ctx)
    if isinstance(error, PermanentError):
        return refused(subject, error)
    return interrupted(subject, error, delivery, ctx)


def refused(subject: Subject, error: ContainmentError, sequence: int = 1) -> Reply:
    """A permanent error: reported, and the message completes."""
    outcome = "Rejected" if isinstance(error, InvalidRequest) else "Failed"
    logger.warning(
        "request refused outcome=%s code=%s request_id=%s", outcome, error.code, subject.request_id
    )
    return Reply(results=(Result(subject, outcome, sequence, error=error),))


def interrupted(
    subject: Subject, error: Exception, delivery: Delivery, ctx: Context, sequence: int = 1
) -> Reply:
    """A transient fault (or a bug): the host redelivers the message. On its last delivery the
    requester hears of it first, so a message never ends in the poison queue unanswered."""
    if delivery.dequeue_count < ctx.settings.max_dequeue_count:
        return Reply(failure=error)
    if isinstance(error, ContainmentError):
        code, message, retryable = error.code, error.message, error.retryable
    else:  # a bug: say so, and do not invite the requester to send the same again
        logger.error("unexpected error request_id=%s", subject.request_id, exc_info=error)
        code, message, retryable = "InternalError", f"{type(error).__name__}: {error}", False
    text = f"gave up after {delivery.dequeue_count} deliveries: {message}"[:1000]
    final = TransientError(code, text) if retryable else ContainmentError(code, text)
    return Reply(results=(Result(subject, "Failed", sequence, error=final),), failure=error)


def retry_later(request: ContainmentRequest, subject: Subject, error: Throttled, ctx: Context) -> Reply:
    """429 (MDE's or the ticket system's): the same request again after ``Retry-After``, instead of
    burning host deliveries; after
    too many throttled attempts, ``Failed`` (retryable). A call refused in this process (an
    earlier 429's wait still running) reached nobody and costs no attempt."""
    local = isinstance(error, MdeThrottledLocally)
    if not local and request.attempt >= ctx.settings.max_throttled_attempts:
        message = f"still throttled after {request.attempt} attempts: {error.message}"
        return Reply(results=(Result(subject, "Failed", error=TransientError(error.code, message)),))
    delay = throttled_delay(
        error.retry_after, local=local, rng=ctx.ports.rng, frees_within=error.frees_within
    )
    attempt = request.attempt if local else request.attempt + 1
    logger.info(
        "throttled, re-enqueued request_id=%s attempt=%d delay_s=%.1f local=%s",
        request.request_id,
        attempt,
        delay,
        local,
    )
    return Reply(sends=(requeue(request, subject, delay, attempt),))


def requeue(request: ContainmentRequest, subject: Subject, delay_s: float, attempt: int) -> Send:
    """The same request again after ``delay_s``, naming the machine it resolved to (so it does not
    spend another look-up on the same device)."""
    changes: dict[str, Any] = {"attempt": attempt}
    if subject.machine is not None and subject.machine.id:
        changes.update(machineId=subject.machine.id)
    return Send(to_canonical(request, **changes), delay_s)


def dry_run(request: ContainmentRequest, subject: Subject, machine_id: str) -> Reply:
    """DRY_RUN: everything but the POST; the result shows the call that would have been made."""
    verb = "isolate" if request.action == "Isolate" else "unisolate"
    body: dict[str, Any] = {"Comment": mde_comment(request)}
    if request.action == "Isolate":
        body["IsolationType"] = request.isolation_type
    call = {"method": "POST", "path": f"/api/machines/{machine_id}/{verb}", "body": body}
    return Reply(results=(Result(subject.with_details(dryRun=call), "DryRun"),))


def submitted(subject: Subject, outcome: str, action: MachineAction, machine: Machine, ctx: Context) -> Reply:
    """The first result of a submitted action, with the device state; then its final result at
    once when the action is already final (our own, found again), else the first tracking check."""
    state = device_state(machine, ctx)
    name = state.pop("name")
    subject = subject.named(action.raw.get("computerDnsName") or name).with_details(**state)
    first = Result(subject, outcome, machine_action=action)
    now = ctx.ports.clock()
    # Recorded even when the action is already final: its lease messages name this submission.
    ctx.ports.submissions.record(Submission(action.id, subject, now, now + ctx.settings.tracking_deadline))
    status = final_outcome(action.status)
    if status is not None:
        lease = start(action, subject, ctx) if status == "Succeeded" else ()
        return Reply(results=(first, Result.final(subject, status, action)), then=lease)
    tracking = TrackingKey(action.id, subject.request_id)
    return Reply(
        results=(first,), sends=(Send(tracking.to_message(), delay_at(ctx.settings.tracking_schedule, 0)),)
    )


def device_state(machine: Machine, ctx: Context) -> dict[str, Any]:
    """``deviceOnline``, ``lastSeen`` (and the DNS name): an offline device's action stays Pending
    until it checks in, and the SOC needs to know now. Unknown (None) if the read fails or is not
    made: it is best effort, so it only spends spare ``machines`` budget and never takes a call an
    isolation's look-up needs (containment first, during a storm)."""
    unknown: dict[str, Any] = {"deviceOnline": None, "lastSeen": None, "name": None}
    if "healthStatus" not in machine:
        spare = ctx.ports.mde.has_spare("machines")
        try:
            record = ctx.devices.machine(machine["id"], fetch=spare)
        except ContainmentError as e:
            logger.info("device state unknown machine_id=%s code=%s", machine["id"], e.code)
            return unknown
        if record is None:
            logger.info("device state not read (machines budget kept for containment)")
            return unknown
        machine = record
    online, last_seen = device_online(machine, ctx.ports.clock(), ctx.settings.device_offline_after)
    return {"deviceOnline": online, "lastSeen": last_seen, "name": machine.get("computerDnsName")}
