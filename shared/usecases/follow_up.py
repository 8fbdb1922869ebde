"""One check of a submitted action, from a tracking message that names its submission: final -> its
final result (once); past the deadline -> ``TrackingExpired``; else the next check, later. Every
field of the final result comes from the ledger's submission row and from MDE; a message naming no
submission is dropped with one warning. Nothing sleeps or polls."""

from __future__ import annotations

import logging

from ..domain.backoff import DEFAULT_RETRY_AFTER_S
from ..domain.model import Action, Source, final_outcome
from ..domain.results import Delivery, Result, Subject
from ..domain.tracking import Submission, TrackingKey, delay_at
from ..errors import MdeThrottled, PermanentError
from .context import Context
from .lease_start import start
from .outcomes import interrupted, refused
from .reply import Reply, Send

logger = logging.getLogger(__name__)


def follow_up(key: TrackingKey, action: Action, delivery: Delivery, ctx: Context) -> Reply:
    """Read the action once and say what it came to, or when to look again."""
    subject = Subject(action, key.request_id, Source("unknown"))  # until the ledger names it
    try:
        submission = ctx.ports.submissions.get(key.action_id, key.request_id)
        if submission is None:
            logger.warning(
                "tracking message names no submission, dropped action_id=%s request_id=%s",
                key.action_id,
                key.request_id,
            )
            return Reply()
        subject = submission.subject
        return check(key, submission, ctx)
    except PermanentError as e:
        return refused(subject, e, sequence=2)
    except Exception as e:  # noqa: BLE001 - transient, or a bug: the host redelivers either way
        return interrupted(subject, e, delivery, ctx, sequence=2)


def check(key: TrackingKey, submission: Submission, ctx: Context) -> Reply:
    """The check itself, for a submission this service made."""
    subject, now = submission.subject, ctx.ports.clock()
    if submission.reported:
        logger.info("final result already written action_id=%s", key.action_id)
        return Reply()  # without reading the action again: a redelivery costs no API call
    step = delay_at(ctx.settings.tracking_schedule, (now - submission.submitted_at).total_seconds())
    try:
        action = ctx.ports.mde.get_action(key.action_id)
    except MdeThrottled as e:  # never more often than the schedule, never earlier than MDE allows
        return Reply(sends=(Send(key.to_message(), max(1.0, e.retry_after or DEFAULT_RETRY_AFTER_S, step)),))
    outcome = final_outcome(action.status)
    if outcome is None and now >= submission.deadline:
        outcome = "TrackingExpired"
        subject = subject.with_details(lastStatus=action.status)
    if outcome is not None:
        lease = start(action, subject, ctx) if outcome == "Succeeded" else ()
        return Reply(results=(Result.final(subject, outcome, action),), then=lease)
    remaining = (submission.deadline - now).total_seconds()
    return Reply(sends=(Send(key.to_message(), max(1.0, min(step, remaining))),))
