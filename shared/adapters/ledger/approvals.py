"""Ticket approvals already relied on: the ``Approvals`` port on the ledger table.

Row ``<hash of the approval id>`` of partition ``approval``: the approval id (the Jira history id
or the ServiceNow approval row), the request that released with it, and when. Created once (of
racing creators exactly one succeeds); the same request may use it again (a redelivery).
"""

from __future__ import annotations

from datetime import datetime

from .store import TableStore, digest, utc

PARTITION = "approval"


class TableApprovals:
    """Approvals used, on the ledger table."""

    def __init__(self, store: TableStore) -> None:
        self._store = store

    def use(self, approval_id: str, request_id: str, now: datetime) -> tuple[str, bool]:
        key = digest(approval_id, 40)
        row = {
            "PartitionKey": PARTITION,
            "RowKey": key,
            "approvalId": approval_id,
            "requestId": request_id,
            "at": utc(now),
        }
        for _ in range(2):  # created, or read back: racing creators see the winner's row
            if self._store.write(None, row):
                return request_id, True
            found = self._store.get(PARTITION, key)
            if found is not None:
                return str(found.get("requestId")), False
        return "(unknown request)", False  # created and deleted meanwhile: refuse rather than guess
