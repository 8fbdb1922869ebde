"""Whose isolation is in effect on a device, judged from MDE's own action history (pure).

The device's current isolation began with the first isolation after its last successful release.
It is this service's only when every isolation since that release that did not fail, time out or
get cancelled is ours (our marker in the comment and our app as ``requestor``), and one of them has
succeeded or is still running. Isolating a device someone else isolated never makes it ours.
"""

from __future__ import annotations

from collections.abc import Iterable

from .comment import is_ours
from .model import MachineAction

_ENDED_WITHOUT_EFFECT = frozenset({"failed", "timeout", "cancelled", "canceled"})


def ours(action: MachineAction, app_id: str) -> bool:
    """An action this service made: our marker in the comment, and our app as its requestor."""
    return bool(app_id) and is_ours(action.comment) and action.raw.get("requestor") == app_id


def isolation_owner(actions: Iterable[MachineAction], app_id: str) -> tuple[bool, str]:
    """(ours, why) for the isolation in effect, from the machine's isolate and unisolate actions."""
    history = sorted(actions, key=lambda a: a.created)
    released = [i for i, a in enumerate(history) if a.type == "Unisolate" and a.status.lower() == "succeeded"]
    since = history[released[-1] + 1 :] if released else history
    live = [a for a in since if a.type == "Isolate" and a.status.lower() not in _ENDED_WITHOUT_EFFECT]
    foreign = [a for a in live if not ours(a, app_id)]
    if foreign:
        first = foreign[0]
        return False, f"isolated by {first.raw.get('requestor')} (action {first.id}), not by this service"
    if not live:
        return False, "no isolation by this service is in effect since the device's last release"
    return True, f"isolated by this service (action {live[-1].id})"
