"""An isolation request's story, from the device it names to its first result.

The gate, in this order:
1. storm de-duplication: the device is claimed first, so a storm's duplicates are answered from the
   ledger (``AlreadyPending`` with the holder's action) at no MDE cost, not even a look-up;
   an open breaker holds the request before any MDE look-up: before the device is located when the
   request names it by DNS name or IP, and before the Machine record the policy may need is read (a
   redelivery already holding a slot goes on); otherwise the breaker's slot decides, below;
2. policy: ``protected``, then ``minimumSeverity`` (``Skipped``, with the rule), after the one
   machine look-up the policy may need;
3. the breaker (``HeldForApproval``): only a request that would be isolated takes a slot;
then DRY_RUN, or the one write to MDE. The claim is given back whenever the isolation is not
submitted. A 429 anywhere puts the request back in the queue for ``Retry-After``.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta

from ..domain.backoff import holder_wait
from ..domain.breaker import BreakerResult
from ..domain.model import ContainmentRequest, MachineAction
from ..domain.policy import decide_isolation, needs_machine_lookup
from ..domain.results import Delivery, Result, Subject
from ..errors import TransientError
from ..ports import Claim, Machine
from .context import Context
from .hold import hold_device
from .outcomes import dry_run, ended, locate, log_arrival, requeue, submitted
from .reply import Join, Reply
from .submit import submit

logger = logging.getLogger(__name__)

# A storm duplicate waits (re-enqueued) this long for the request posting its device's isolation; a
# holder that has not recorded its action by then is stuck, and the duplicate fails over to the
# host's redelivery (and finally a ``Failed`` result) instead.
CLAIM_PENDING_WAIT = timedelta(minutes=2)


def isolate(request: ContainmentRequest, delivery: Delivery, ctx: Context) -> Reply:
    """Resolve, claim, decide, post; the first result and the follow-up."""
    log_arrival(request, delivery)
    subject = Subject.of(request)
    try:
        by_lookup = request.device.machine_id is None  # locating the device is an MDE call
        if by_lookup and (open_breaker := breaker_open(request, ctx)) is not None:
            return held(request, subject, open_breaker)
        machine, subject = locate(request, subject, ctx)
        with hold_device(ctx, machine["id"], request) as hold:
            if not hold.claim.won:
                return answer_duplicate(request, subject, hold.claim, ctx)
            if needs_facts(machine, ctx) and (open_breaker := breaker_open(request, ctx)) is not None:
                return held(request, subject, open_breaker)
            machine = policy_facts(machine, ctx)
            subject = subject.named(machine.get("computerDnsName"))
            decision = decide_isolation(request, machine, ctx.settings.isolation_policy)
            subject = subject.with_details(**decision.to_details())
            if decision.isolation_type is None:
                logger.info("isolation skipped request_id=%s rule=%s", request.request_id, decision.rule)
                return Reply(results=(Result(subject, "Skipped"),))
            request = replace(request, isolation_type=decision.isolation_type)
            if ctx.settings.dry_run:
                return dry_run(request, subject, machine["id"])
            slot = ctx.ports.breaker.take_slot(request.request_id, machine["id"], ctx.ports.clock())
            if slot.held:
                return held(request, subject, slot)
            repeat = hold.claim.state == "submitted"  # this request's isolation went out before
            done = submit(ctx.ports.mde, request, machine["id"], delivery, repeat=repeat)
            if done.cancelled is not None:
                subject = subject.with_details(cancelledActions=list(done.cancelled))
            hold.submitted(done, ctx.ports.clock())
    except Exception as e:  # noqa: BLE001 - every way a story ends early has its reply
        return ended(request, subject, e, delivery, ctx)
    return submitted(subject, done.outcome, done.action, machine, ctx)


def breaker_open(request: ContainmentRequest, ctx: Context) -> BreakerResult | None:
    return ctx.ports.breaker.check(request.request_id, ctx.ports.clock())


def held(request: ContainmentRequest, subject: Subject, breaker: BreakerResult) -> Reply:
    """Held by the breaker (open, or its state unreadable): reported, nothing sent to MDE."""
    logger.warning("breaker open: isolation held request_id=%s", request.request_id)
    return Reply(results=(Result(subject.with_details(**breaker.to_details()), "HeldForApproval"),))


def policy_facts(machine: Machine, ctx: Context) -> Machine:
    """The Machine record when the policy needs facts a request by id does not carry (tags, group,
    OS, onboarding status): one ``GET /api/machines/{id}``, cached per process."""
    if not needs_facts(machine, ctx):
        return machine
    return {**(ctx.devices.machine(machine["id"]) or {}), "id": machine["id"]}


def needs_facts(machine: Machine, ctx: Context) -> bool:
    """Whether deciding needs the Machine record: a look-up, so an open breaker is checked first."""
    return needs_machine_lookup(ctx.settings.isolation_policy) and "onboardingStatus" not in machine


def answer_duplicate(request: ContainmentRequest, subject: Subject, claim: Claim, ctx: Context) -> Reply:
    """A storm duplicate, answered from the ledger without calling MDE. Its final result comes from
    the holder's (``Join``): recorded after this first result, then checked, while the holder writes
    its final, then lists the duplicates, so one of the two always sees the other."""
    if claim.action_id is None:  # the holder is posting right now: ask again in a moment
        if ctx.ports.clock() - claim.at > CLAIM_PENDING_WAIT:  # the holder is stuck
            raise TransientError("DeviceClaimPending", f"request {claim.request_id} is isolating it now")
        delay = holder_wait(ctx.ports.rng)
        logger.info(
            "storm duplicate waits for request_id=%s holder_request_id=%s delay_s=%.1f",
            request.request_id,
            claim.request_id,
            delay,
        )
        return Reply(sends=(requeue(request, subject, delay, request.attempt),))  # not a throttled attempt
    subject = subject.with_details(duplicateOf=claim.request_id)
    pending = MachineAction({"id": claim.action_id, "type": "Isolate", "status": "Unknown"})
    return Reply(
        results=(Result(subject, "AlreadyPending", machine_action=pending),),
        join=Join(subject, claim.action_id, claim.request_id),
    )
