"""Final results written exactly once: the ``Finals`` port on the ledger table.

Rows of partition ``action:<action id>``: ``final:<hash of the request id>`` (the final result of
that request's action was claimed or written; several requests can share one action) and
``dup:<hash>`` (a storm duplicate answered with this action, which gets its own final result from
the action's).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Literal

from .store import TEXT_MAX, TableStore, digest, utc, when

FINAL_CLAIM_TIMEOUT = timedelta(minutes=2)  # a claim whose writer died is taken over after this
# What a stored final action keeps when MDE's answer is too large for a Table property.
_ACTION_ESSENTIALS = ("id", "type", "status", "machineId", "computerDnsName", "requestor", "scope")


class TableFinals:
    """Final-result markers and storm duplicates on the ledger table."""

    def __init__(self, store: TableStore) -> None:
        self._store = store

    def claim(self, action_id: str, request_id: str, now: datetime) -> Literal["won", "done", "busy"]:
        """Take the right to write the result of (action, key): exactly one of several racing
        writers wins. A claim whose writer died unpublished is taken over after
        ``FINAL_CLAIM_TIMEOUT`` (until then ``busy``), so a result is never lost to a crash."""
        entity = {
            "PartitionKey": _partition(action_id),
            "RowKey": final_key(request_id),
            "requestId": request_id,
            "state": "claimed",
            "claimedAt": utc(now).isoformat(),
        }
        # Most results are written once: create first, and read only when the row exists already.
        if self._store.write(None, entity):
            return "won"
        previous = self._store.get(entity["PartitionKey"], entity["RowKey"])
        if previous is None:  # deleted since (its writer gave the claim back): try once more
            return "won" if self._store.write(None, entity) else "busy"
        if published(previous):
            return "done"
        claimed_at = when(previous.get("claimedAt"))
        if claimed_at is not None and utc(now) - claimed_at < FINAL_CLAIM_TIMEOUT:
            return "busy"
        return "won" if self._store.write(previous, entity) else "busy"

    def release(self, action_id: str, request_id: str) -> None:
        """Give a claim back (publishing failed), so the redelivery can write the result."""
        self._store.delete(_partition(action_id), final_key(request_id))

    def mark_reported(
        self, action_id: str, request_id: str, outcome: str, action: Mapping[str, Any], now: datetime
    ) -> None:
        """Remember that the final result of (action, request) was written, with the final action
        (storm duplicates of this request get their own final result from it, without an API call)."""
        self._store.upsert(
            {
                "PartitionKey": _partition(action_id),
                "RowKey": final_key(request_id),
                "requestId": request_id,
                "state": "published",
                "outcome": outcome,
                "action": _action_json(action),
                "reportedAt": utc(now).isoformat(),
            }
        )

    def final_of(self, action_id: str, request_id: str) -> tuple[str, dict[str, Any]] | None:
        """(outcome, final action) once the final result of (action, request) was written."""
        entity = self._store.get(_partition(action_id), final_key(request_id))
        if entity is None or not published(entity):
            return None
        return str(entity.get("outcome")), dict(json.loads(entity.get("action") or "{}"))

    def add_duplicate(self, action_id: str, request_id: str, subject: Mapping[str, Any]) -> None:
        """A storm duplicate answered with this action: it gets the action's final result too."""
        self._store.upsert(
            {
                "PartitionKey": _partition(action_id),
                "RowKey": "dup:" + digest(request_id, 32),
                "requestId": request_id,
                "subject": json.dumps(dict(subject)),
            }
        )

    def duplicates(self, action_id: str) -> list[dict[str, Any]]:
        """The subjects of the storm duplicates recorded for an action."""
        query = "PartitionKey eq @pk and RowKey ge 'dup:' and RowKey lt 'dup;'"
        return [dict(json.loads(e["subject"])) for e in self._store.query(query, pk=_partition(action_id))]


def _partition(action_id: str) -> str:
    return f"action:{action_id}"


def final_key(request_id: str) -> str:
    """The row key of the final-result marker of ``request_id``'s action."""
    return "final:" + digest(request_id, 32)


def published(entity: Mapping[str, Any] | None) -> bool:
    """Whether a final-result marker says the result was written (not merely claimed)."""
    return entity is not None and entity.get("state", "published") == "published"


def _action_json(action: Mapping[str, Any]) -> str:
    text = json.dumps(dict(action))
    if len(text) <= TEXT_MAX:
        return text
    return json.dumps({k: action[k] for k in _ACTION_ESSENTIALS if k in action})
