"""One check of a submitted action, from a tracking message: final -> its final result (once);
past the deadline -> ``TrackingExpired``; else the next check, later. Nothing sleeps or polls."""

from __future__ import annotations

import logging

from ..domain.backoff import DEFAULT_RETRY_AFTER_S
from ..domain.model import final_outcome
from ..domain.results import Delivery, Result
from ..domain.tracking import Tracking, delay_before_check
from ..errors import MdeThrottled, PermanentError
from .context import Context
from .outcomes import interrupted, refused
from .reply import Reply, Send

logger = logging.getLogger(__name__)


def follow_up(tracking: Tracking, delivery: Delivery, ctx: Context) -> Reply:
    """Read the action once and say what it came to, or when to look again."""
    subject, schedule = tracking.subject, ctx.settings.tracking_schedule
    try:
        if ctx.ports.finals.reported(tracking.action_id, subject.request_id):
            logger.info("final result already written action_id=%s", tracking.action_id)
            return Reply()  # without reading the action again: a redelivery costs no API call
        try:
            action = ctx.ports.mde.get_action(tracking.action_id)
        except MdeThrottled as e:
            # Never more often than the schedule, never earlier than MDE allows.
            wait = max(e.retry_after or DEFAULT_RETRY_AFTER_S, delay_before_check(schedule, tracking.check))
            return Reply(sends=(Send(tracking.to_message(), max(1.0, wait)),))
        now = ctx.ports.clock()
        outcome = final_outcome(action.status)
        if outcome is None and now >= tracking.deadline:
            outcome = "TrackingExpired"
            subject = subject.with_details(lastStatus=action.status)
        if outcome is not None:
            return Reply(results=(Result(subject, outcome, 2, action),))
        remaining = (tracking.deadline - now).total_seconds()
        delay = min(delay_before_check(schedule, tracking.check + 1), max(1.0, remaining))
        return Reply(sends=(Send(tracking.next_check(action.status).to_message(), max(1.0, delay)),))
    except PermanentError as e:
        return refused(subject, e, sequence=2)
    except Exception as e:  # noqa: BLE001 - transient, or a bug: the host redelivers either way
        return interrupted(subject, e, delivery, ctx, sequence=2)
