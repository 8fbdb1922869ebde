"""The SOC's audit trail: the ``Audit`` port on the ledger table.

One row per request decision or outcome, in partition ``audit:<YYYYMMDD>`` (UTC day), so a day is
one cheap query; the row key starts with the time, so rows come back in order. docs/operations.md
shows the queries.
"""

from __future__ import annotations

import json
from typing import Any

from ...ports import AuditEntry
from .store import TableStore, bounded_text, digest, utc


class TableAudit:
    """Audit rows on the ledger table."""

    def __init__(self, store: TableStore) -> None:
        self._store = store

    def record(self, entry: AuditEntry) -> None:
        """One row for (request, outcome) at ``entry.at``; the same entry again overwrites itself."""
        at = utc(entry.at)
        row: dict[str, Any] = {
            "PartitionKey": f"audit:{at:%Y%m%d}",
            "RowKey": f"{at:%Y%m%dT%H%M%S.%fZ}-{digest(entry.request_id, 16)}-{digest(entry.outcome, 6)}",
            "requestId": entry.request_id,
            "action": entry.action,
            "outcome": entry.outcome,
            "at": at,
        }
        optional = {"machineId": entry.machine_id, "actionId": entry.action_id}
        row.update({k: v for k, v in optional.items() if v is not None})
        if entry.details:
            row["details"] = bounded_text(json.dumps(entry.details, default=str, sort_keys=True))
        self._store.upsert(row)
