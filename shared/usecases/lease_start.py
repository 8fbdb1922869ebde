"""Starting an isolation's lease: the first lease message, sent by whoever writes the isolation's
``Succeeded`` final result (so racing trackers start one lease, not two)."""

from __future__ import annotations

from datetime import timedelta

from ..domain.backoff import MAX_DELAY_S
from ..domain.lease import LeaseKey
from ..domain.model import MachineAction
from ..domain.ownership import ours
from ..domain.results import Subject
from .context import Context
from .reply import Send


def start(action: MachineAction, subject: Subject, ctx: Context) -> tuple[Send, ...]:
    """The first lease message, for an isolation of ours that has just succeeded."""
    if subject.action != "Isolate" or not ours(action, ctx.ports.mde.app_id()):
        return ()
    first = LeaseKey(action.id, subject.request_id, 1)
    return (Send(first.to_message(), delay(ctx.settings.isolation_policy.lease)),)


def delay(wait: timedelta) -> float:
    """A queue message hides for at most 7 days: a longer wait is chained (the message, when it
    comes, finds the lease not due yet and waits again)."""
    return max(1.0, min(wait.total_seconds(), MAX_DELAY_S))
