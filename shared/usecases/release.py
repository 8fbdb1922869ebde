"""A release request's story: resolve the device, authorise the release, then the one write to MDE.

During a storm a release's action check yields to containment (re-enqueued for a few seconds, never
starved: releases keep a floor of the API's minute). A 429 puts the request back in the queue.
"""

from __future__ import annotations

import logging

from ..domain.backoff import yield_delay
from ..domain.model import ContainmentRequest
from ..domain.policy import decide_release
from ..domain.results import Delivery, Subject
from ..errors import InvalidRequest
from ..ports import Machine
from .context import Context
from .outcomes import dry_run, ended, locate, log_arrival, requeue, submitted
from .reply import Reply
from .submit import submit

logger = logging.getLogger(__name__)


def release(request: ContainmentRequest, delivery: Delivery, ctx: Context) -> Reply:
    """Resolve, authorise, post; the first result and the follow-up."""
    log_arrival(request, delivery)
    subject = Subject.of(request)
    try:
        machine, subject = locate(request, subject, ctx)
        authorise(request, machine, ctx)
        if ctx.settings.dry_run:
            return dry_run(request, subject, machine["id"])
        if not ctx.ports.mde.admit_release("machineactions"):
            return yield_to_containment(request, subject, ctx)
        done = submit(ctx.ports.mde, request, machine["id"], delivery)
        if done.cancelled is not None:
            subject = subject.with_details(cancelledActions=list(done.cancelled))
        ctx.ports.claims.record_release(machine["id"], request.request_id, done.action.id, ctx.ports.clock())
    except Exception as e:  # noqa: BLE001 - every way a story ends early has its reply
        return ended(request, subject, e, delivery, ctx)
    return submitted(subject, done.outcome, done.action, machine, ctx)


def authorise(request: ContainmentRequest, machine: Machine, ctx: Context) -> None:
    """Approved ticket, allowed requester, and (if the policy says so) our own isolation."""
    policy = ctx.settings.isolation_policy
    own = None
    if policy.release.only_release_own_isolations:
        own = ctx.ports.claims.isolated_by_us(machine["id"])
    decision = decide_release(request, policy, isolated_by_us=own)
    if decision.kind != "Release":
        raise InvalidRequest(decision.reason or "ReleaseRefused", decision.rule)


def yield_to_containment(request: ContainmentRequest, subject: Subject, ctx: Context) -> Reply:
    """The release's action check (``machineactions``, which every isolation needs too) would take
    a call from containment during a storm: ask again in a few seconds. Not an attempt."""
    delay = yield_delay(ctx.ports.rng)
    logger.info("release yields to containment request_id=%s delay_s=%.1f", request.request_id, delay)
    return Reply(sends=(requeue(request, subject, delay, request.attempt),))
