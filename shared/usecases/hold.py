"""A device claim held while an isolation is decided and posted: given back on the way out, once,
unless the isolation was submitted, so a request that was skipped, held, refused or throttled never
blocks the device for the storm window."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from ..domain.model import ContainmentRequest
from ..ports import Claim
from .context import Context
from .submit import Submission


class DeviceHold:
    """This request's claim on a device (``claim``); ``submitted`` records the isolation and keeps it."""

    def __init__(self, ctx: Context, machine_id: str, request_id: str, claim: Claim) -> None:
        self.claim = claim
        self._ctx = ctx
        self._machine_id = machine_id
        self._request_id = request_id
        self.kept = False

    def submitted(self, submission: Submission, now: datetime) -> None:
        """The isolation went to MDE: storm duplicates now get its action, and the claim is kept."""
        self.kept = True
        self._ctx.ports.claims.record_isolation(self._machine_id, self._request_id, submission.action.id, now)


@contextmanager
def hold_device(ctx: Context, machine_id: str, request: ContainmentRequest) -> Iterator[DeviceHold]:
    """Claim the device for this request (storm de-duplication). A dry run claims nothing: claims
    and breaker slots are for real isolations only."""
    now = ctx.ports.clock()
    if ctx.settings.dry_run:
        unclaimed = Claim(True, request.request_id, None, "claimed", now)
        yield DeviceHold(ctx, machine_id, request.request_id, unclaimed)
        return
    window = ctx.settings.isolation_policy.dedupe_window
    claim = ctx.ports.claims.claim(machine_id, request.request_id, now, window)
    hold = DeviceHold(ctx, machine_id, request.request_id, claim)
    try:
        yield hold
    finally:
        if claim.won and not hold.kept:
            ctx.ports.claims.abandon(machine_id, request.request_id)
