"""A release request's story. The message only says which ticket to read; the release rests on
that ticket, read from its system of record now, and is authorised before any MDE call:

1. the approval: the ticket's approved status and who approved it, its requester and its device
   (shared/usecases/verify.py); the requester and approver allow-lists;
2. the device: the ticket's, resolved in MDE; a device the message names must be the same machine;
3. MDE's action history: with ``onlyReleaseOwnIsolations`` the isolation in effect must be ours;
   someone else's pending isolation is never cancelled unless ``cancelForeignIsolations`` says so;
4. DRY_RUN stops here; else the approval is used once, then the one write to MDE.

During a storm the action check yields to containment (re-enqueued for a few seconds, never
starved: releases keep a floor of the API's minute). A 429 puts the request back in the queue.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from ..domain.approval import Approval
from ..domain.backoff import yield_delay
from ..domain.model import ContainmentRequest, DeviceRef, MachineAction
from ..domain.ownership import isolation_owner, ours
from ..domain.policy import decide_release
from ..domain.results import Delivery, Subject
from ..errors import InvalidRequest
from ..ports import Machine
from .context import Context
from .outcomes import dry_run, ended, locate, log_arrival, requeue, submitted
from .reply import Reply
from .submit import submit
from .verify import TicketRefusal, approval_of

logger = logging.getLogger(__name__)


def release(request: ContainmentRequest, delivery: Delivery, ctx: Context) -> Reply:
    """Verify, authorise, resolve, check the history, post; the first result and the follow-up."""
    log_arrival(request, delivery)
    subject = Subject.of(request)
    try:
        try:
            approval = approval_of(request, ctx)
        except TicketRefusal as e:  # the ticket was read: it hears back why nothing was done
            subject = subject.with_details(ticketSystem=e.system)
            raise
        subject = subject.with_details(**approval.details())
        authorise(approval, ctx)
        hint, request = request.device, as_approved(request, approval)
        machine, subject = locate(request, subject, ctx)
        same_machine(hint, machine, ctx)
        if not ctx.ports.mde.admit_release("machineactions"):
            return yield_to_containment(request, subject, ctx)
        history = ctx.ports.mde.list_actions(machine["id"])
        check_history(history, ctx)
        if ctx.settings.dry_run:
            return dry_run(request, subject, machine["id"])
        repeat = use_once(approval, request, ctx)
        done = submit(ctx.ports.mde, request, machine["id"], delivery, history, repeat=repeat)
        if done.cancelled is not None:
            subject = subject.with_details(cancelledActions=list(done.cancelled))
        ctx.ports.claims.record_release(machine["id"], request.request_id, done.action.id, ctx.ports.clock())
    except Exception as e:  # noqa: BLE001 - every way a story ends early has its reply
        return ended(request, subject, e, delivery, ctx)
    return submitted(subject, done.outcome, done.action, machine, ctx)


def authorise(approval: Approval, ctx: Context) -> None:
    """The requester and approver allow-lists (no MDE call)."""
    decision = decide_release(approval, ctx.settings.isolation_policy)
    if decision.kind != "Release":
        raise InvalidRequest(decision.reason or "ReleaseRefused", decision.rule)


def as_approved(request: ContainmentRequest, approval: Approval) -> ContainmentRequest:
    """The request as its ticket says it: the ticket's device, requester and approver."""
    return replace(
        request,
        device=approval.device,
        requested_by=approval.requested_by,
        approved_by=approval.approved_by,
        ticket_id=approval.ticket_id,
        approved=True,
    )


def same_machine(hint: DeviceRef, machine: Machine, ctx: Context) -> None:
    """A device the message names must be the machine the ticket names."""
    if hint == DeviceRef():
        return
    named = hint.machine_id or ctx.devices.resolve(hint)[0]["id"]
    if named != machine["id"]:
        raise InvalidRequest(
            "TicketDeviceMismatch", f"the message names machine {named}, the ticket {machine['id']}"
        )


def check_history(history: list[MachineAction], ctx: Context) -> None:
    """MDE's own history: whose isolation is in effect, and whose isolation is pending."""
    release_policy, app_id = ctx.settings.isolation_policy.release, ctx.ports.mde.app_id()
    if release_policy.only_release_own_isolations:
        own, why = isolation_owner(history, app_id)
        if not own:
            raise InvalidRequest("NotIsolatedByService", f"release.onlyReleaseOwnIsolations: {why}")
    pending = [a for a in history if a.type == "Isolate" and not a.is_final and not ours(a, app_id)]
    if pending and not release_policy.cancel_foreign_isolations:
        first = pending[0]
        raise InvalidRequest(
            "ForeignActionPending",
            f"isolation {first.id} by {first.raw.get('requestor')} is pending; a release does not cancel "
            "someone else's isolation (release.cancelForeignIsolations)",
        )


def use_once(approval: Approval, request: ContainmentRequest, ctx: Context) -> bool:
    """An approval releases once: a replay, or a second message for it, is refused. True when this
    request already used it (the same message again): its own action is looked for, not posted anew."""
    if approval.approval_id is None:
        return False  # unverified (the policy's opt-in): nothing identifies the approval
    holder, recorded = ctx.ports.approvals.use(approval.approval_id, request.request_id, ctx.ports.clock())
    if holder != request.request_id:
        raise InvalidRequest(
            "ApprovalAlreadyUsed", f"the approval in ticket {approval.ticket_id} already released ({holder})"
        )
    return not recorded


def yield_to_containment(request: ContainmentRequest, subject: Subject, ctx: Context) -> Reply:
    """The release's action check (``machineactions``, which every isolation needs too) would take
    a call from containment during a storm: ask again in a few seconds. Not an attempt."""
    delay = yield_delay(ctx.ports.rng)
    logger.info("release yields to containment request_id=%s delay_s=%.1f", request.request_id, delay)
    return Reply(sends=(requeue(request, subject, delay, request.attempt),))
