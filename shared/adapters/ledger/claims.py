"""Device claims (storm de-duplication): the ``Claims`` port on the ledger table.

Row ``isolation`` of partition ``machine:<machine id>``: the device's current isolation claim
(``requestId``, ``actionId``, ``state`` ``claimed`` | ``submitted`` | ``released``, ``at``). Whose
isolation is in effect is never judged from here but from MDE's action history.

A claim is a compare-and-swap: the first request creates the row (of racing creators exactly one
succeeds, the others get 409 and re-read); an expired or released claim is taken over with an
ETag-conditional replace (of racing writers exactly one succeeds, the others get 412 and re-read).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from ...errors import TransientError
from ...ports import Claim
from .store import MAX_CONFLICT_RETRIES, TableStore, machine_partition, utc, when

logger = logging.getLogger(__name__)

CLAIM_ROW = "isolation"


class TableClaims:
    """Device claims on the ledger table."""

    def __init__(self, store: TableStore) -> None:
        self._store = store

    def claim(self, machine_id: str, request_id: str, now: datetime, window: timedelta) -> Claim:
        """Claim ``machine_id`` for isolating it by ``request_id``; of racing requests one wins.

        Won: no live claim existed (none, released, or older than ``window``), or this request
        already holds it (a redelivery). Lost: another request claimed or isolated the device
        within ``window``; the returned claim is that request's.
        """
        now = utc(now)
        pk = machine_partition(machine_id)
        for attempt in range(MAX_CONFLICT_RETRIES):
            entity = self._store.get(pk, CLAIM_ROW)
            holder = _claim_from_entity(entity) if entity is not None else None
            if holder is not None and holder.request_id == request_id:
                return Claim(True, holder.request_id, holder.action_id, holder.state, holder.at)
            if holder is not None and now - holder.at < window:
                logger.info(
                    "storm duplicate machine_id=%s request_id=%s holder_request_id=%s action_id=%s",
                    machine_id,
                    request_id,
                    holder.request_id,
                    holder.action_id,
                )
                return holder
            fresh = {
                "PartitionKey": pk,
                "RowKey": CLAIM_ROW,
                "machineId": machine_id,
                "requestId": request_id,
                "state": "claimed",
                "at": now,
            }
            if self._store.write(entity, fresh):
                return Claim(True, request_id, None, "claimed", now)
            self._store.backoff(attempt)
        raise TransientError("LedgerContention", f"device claim {machine_id}: too many concurrent updates")

    def abandon(self, machine_id: str, request_id: str) -> None:
        """Give up this request's claim before submitting (held, refused), so the next request for
        the device is not answered as a duplicate. A claim held by another request is left alone."""
        entity = self._store.get(machine_partition(machine_id), CLAIM_ROW)
        if entity is None or entity.get("requestId") != request_id or entity.get("state") != "claimed":
            return
        self._store.delete_if_unchanged(entity)  # changed meanwhile: no longer ours to delete

    def record_isolation(self, machine_id: str, request_id: str, action_id: str, now: datetime) -> None:
        """The isolation was submitted to MDE (or MDE answered with one already pending): storm
        duplicates now get ``action_id``."""
        self._store.upsert({**_row(machine_id, request_id, action_id, now), "state": "submitted"})

    def record_release(self, machine_id: str, request_id: str, action_id: str, now: datetime) -> None:
        """The device was released: the next alert for it is a new isolation, not a storm duplicate."""
        self._store.upsert({**_row(machine_id, request_id, action_id, now), "state": "released"})


def _row(machine_id: str, request_id: str, action_id: str, now: datetime) -> dict[str, Any]:
    return {
        "PartitionKey": machine_partition(machine_id),
        "RowKey": CLAIM_ROW,
        "machineId": machine_id,
        "requestId": request_id,
        "actionId": action_id,
        "at": utc(now),
    }


def _claim_from_entity(entity: Mapping[str, Any]) -> Claim | None:
    """The live claim an entity holds; ``None`` when released (or unreadable: claimable again)."""
    state = entity.get("state")
    at = when(entity.get("at"))
    request_id = entity.get("requestId")
    if state not in ("claimed", "submitted") or at is None or not isinstance(request_id, str):
        return None
    return Claim(False, request_id, entity.get("actionId") or None, state, at)
