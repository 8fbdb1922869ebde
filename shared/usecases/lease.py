"""A lease period ending: if the device is still isolated by this service, the SOC hears of it
(``LeaseExpired``, once per period) and the next period starts; a release, or an isolation that ended
otherwise (cancelled, failed, released by someone else), ends the lease without a result. The
isolation comes from the ledger's submission row and MDE's own history, never from the message."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from ..domain.backoff import DEFAULT_RETRY_AFTER_S
from ..domain.lease import LeaseKey, due, isolated_since, lease_end
from ..domain.model import Action, MachineAction, Source
from ..domain.results import Delivery, Result, Subject
from ..domain.tracking import Submission
from ..errors import MdeNotFound, MdeThrottled, PermanentError
from .context import Context
from .lease_start import delay
from .outcomes import interrupted
from .reply import Reply, Send

logger = logging.getLogger(__name__)


def remind(key: LeaseKey, action: Action, delivery: Delivery, ctx: Context) -> Reply:
    """One lease message: not due yet, ended, or a reminder and the next period."""
    subject = Subject(action, key.request_id, Source("unknown"))
    try:
        submission = ctx.ports.submissions.get(key.action_id, key.request_id)
        if submission is None or submission.subject.action != "Isolate":
            logger.warning(
                "lease message names no isolation of ours, dropped action_id=%s request_id=%s",
                key.action_id,
                key.request_id,
            )
            return Reply()
        subject = submission.subject
        return check(key, submission, ctx)
    except MdeNotFound as e:
        logger.warning("lease ended: the isolation is gone action_id=%s code=%s", key.action_id, e.code)
        return Reply()
    except PermanentError as e:  # MDE refused the check (a missing role, say): never forget the device
        logger.warning("lease check refused action_id=%s code=%s", key.action_id, e.code)
        return unchecked(key, subject, e, ctx)
    except Exception as e:  # noqa: BLE001 - transient, or a bug: the host redelivers either way
        return interrupted(subject, e, delivery, ctx, sequence=2 + key.period)


def check(key: LeaseKey, submission: Submission, ctx: Context) -> Reply:
    lease, now = ctx.settings.isolation_policy.lease, ctx.ports.clock()
    try:
        isolation = ctx.ports.mde.get_action(key.action_id)
        since = isolated_since(isolation) or submission.submitted_at
        if now < due(since, key.period, lease):
            return Reply(sends=(Send(key.to_message(), delay(due(since, key.period, lease) - now)),))
        ended = lease_end(isolation, ctx.ports.mde.list_actions(isolation.machine_id))
    except MdeThrottled as e:
        return Reply(sends=(Send(key.to_message(), max(1.0, e.retry_after or DEFAULT_RETRY_AFTER_S)),))
    if ended is not None:
        logger.info("lease ended action_id=%s request_id=%s: %s", key.action_id, key.request_id, ended)
        return Reply()
    return Reply(results=(reminder(key, submission.subject, isolation, since, now, lease),),
                 then=(Send(key.next().to_message(), delay(lease)),))  # fmt: skip


def reminder(
    key: LeaseKey,
    subject: Subject,
    isolation: MachineAction,
    since: datetime,
    now: datetime,
    lease: timedelta,
) -> Result:
    """``LeaseExpired``: the device, the isolation, its request and source, how long it has lasted."""
    details = {
        "isolatedSince": since.isoformat(),
        "isolatedHours": round((now - since).total_seconds() / 3600, 3),
        "leaseHours": lease.total_seconds() / 3600,
        "leasePeriod": key.period,
    }
    return Result(
        subject.with_details(**details), "LeaseExpired", 2 + key.period, isolation, once_key=once(key)
    )


def unchecked(key: LeaseKey, subject: Subject, error: PermanentError, ctx: Context) -> Reply:
    """A period whose check MDE refused: the SOC hears of it once (``Failed``, with the error), and
    the lease goes on to the next period, so the device is checked again rather than forgotten."""
    isolation = MachineAction({"id": key.action_id, "type": "Isolate", "status": "Unknown"})
    failed = Result(subject, "Failed", 2 + key.period, isolation, error=error, once_key=once(key))
    lease = ctx.settings.isolation_policy.lease
    return Reply(results=(failed,), then=(Send(key.next().to_message(), delay(lease)),))


def once(key: LeaseKey) -> str:
    """A period's result is written once per isolation, whichever request's lease reaches it (two
    requests may lease one isolation); "#" keeps the key apart from every request id, the key of a
    final result on the same action."""
    return f"lease#{key.period}"
