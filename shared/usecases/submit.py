"""The one write to MDE, made safe to repeat and to race.

A redelivered request first looks for the action an earlier delivery created (our comment carries
the request id): MDE's "already in progress" only covers a still-pending action. Then a pending
opposite action on the machine is cancelled, so an isolate/unisolate pair cannot complete out of
order; then the action is posted. MDE's two ways of saying "already pending" (400, or 201 with the
existing action) both become ``AlreadyPending`` with that action.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..domain.comment import cancel_comment, mde_comment, request_marker
from ..domain.model import OPPOSITE, ContainmentRequest, MachineAction
from ..domain.results import Delivery
from ..errors import ActionAlreadyPending, PermanentError, TransientError
from ..ports import Mde

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Submission:
    """What the write came to: ``Submitted`` or ``AlreadyPending``, and the action. ``cancelled``:
    the opposite actions settled before posting (``None`` when our own action was found again)."""

    outcome: str
    action: MachineAction
    cancelled: tuple[str, ...] | None = None


def submit(
    mde: Mde,
    request: ContainmentRequest,
    machine_id: str,
    delivery: Delivery,
    known: list[MachineAction] | None = None,
    *,
    repeat: bool = False,
) -> Submission:
    """Post the request's action once, however often the request is delivered or sent. ``known``:
    the machine's actions, when the caller has just listed them (saves listing them again);
    ``repeat``: the ledger knows this request already went this far (the same message sent again)."""
    if repeat or delivery.dequeue_count > 1 or request.attempt > 1:
        if known is None:  # one list serves the look for our own action and the opposite ones
            known = mde.list_actions(machine_id)
        own = find_own_action(mde, machine_id, request, known)
        if own is not None:
            return Submission("Submitted" if own.is_final else "AlreadyPending", own)
    cancelled = settle_opposite(mde, machine_id, request, known)
    outcome, action = post(mde, request, machine_id)
    return Submission(outcome, action, cancelled)


def post(mde: Mde, request: ContainmentRequest, machine_id: str) -> tuple[str, MachineAction]:
    """POST the action: ("Submitted", new action) or ("AlreadyPending", the existing one)."""
    comment = mde_comment(request)
    try:
        if request.action == "Isolate":
            action = mde.isolate(machine_id, comment, request.isolation_type)
        else:
            action = mde.unisolate(machine_id, comment)
    except ActionAlreadyPending as e:
        existing = next(iter(pending(mde, machine_id, request.action)), None)
        if existing is None:
            # MDE said pending but lists none: it went final meanwhile. A redelivery submits anew.
            raise TransientError("PendingActionNotFound", f"{e.message}; no pending action listed") from e
        return "AlreadyPending", existing
    # MDE sometimes answers 201 with the existing pending action instead of a 400.
    if action.raw.get("requestorComment") not in (None, comment) and not action.is_final:
        return "AlreadyPending", action
    return "Submitted", action


def find_own_action(
    mde: Mde, machine_id: str, request: ContainmentRequest, known: list[MachineAction] | None = None
) -> MachineAction | None:
    """The action an earlier delivery of this request created: its comment carries the request id."""
    marker = request_marker(request.request_id)
    actions = (
        of_type(known, request.action) if known is not None else mde.list_actions(machine_id, request.action)
    )
    return next((a for a in actions if marker in a.comment), None)


def settle_opposite(
    mde: Mde, machine_id: str, request: ContainmentRequest, known: list[MachineAction] | None = None
) -> tuple[str, ...]:
    """The newer request wins: cancel pending opposite actions on the same machine (for a release,
    the caller has refused one that is not ours unless the policy lets it cancel those too)."""
    opposite = OPPOSITE[request.action]
    listed = of_type(known, opposite) if known is not None else mde.list_actions(machine_id, opposite)
    cancelled = []
    for action in [a for a in listed if not a.is_final]:
        try:
            mde.cancel_action(action.id, cancel_comment(request.action, request.request_id))
        except PermanentError as e:
            # It went final between the list and the cancel: nothing left to settle.
            logger.info("opposite action not cancelled action_id=%s code=%s", action.id, e.code)
            continue
        logger.info("opposite action cancelled action_id=%s request_id=%s", action.id, request.request_id)
        cancelled.append(action.id)
    return tuple(cancelled)


def pending(mde: Mde, machine_id: str, action_type: str) -> list[MachineAction]:
    """Not-final actions of one type on a machine, newest first."""
    return [a for a in mde.list_actions(machine_id, action_type) if not a.is_final]


def of_type(actions: list[MachineAction], action_type: str) -> list[MachineAction]:
    return [a for a in actions if a.type == action_type]
