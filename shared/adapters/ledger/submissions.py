"""What this service submitted and follows: the ``Submissions`` port on the ledger table.

Row ``sub:<hash of the request id>`` of partition ``action:<action id>``, beside the action's final
result markers: the result's subject (request id, source, machine, details), when the action was
submitted and the tracking deadline. A tracking message names only this row's key.
"""

from __future__ import annotations

import json
from typing import Any

from ...domain.results import Subject
from ...domain.tracking import Submission
from ...errors import TransientError
from .finals import final_key, published
from .store import TableStore, digest, utc, when


class TableSubmissions:
    """Submissions on the ledger table."""

    def __init__(self, store: TableStore) -> None:
        self._store = store

    def record(self, submission: Submission) -> None:
        self._store.upsert(
            {
                "PartitionKey": f"action:{submission.action_id}",
                "RowKey": _row_key(submission.subject.request_id),
                "requestId": submission.subject.request_id,
                "subject": json.dumps(submission.subject.to_record(), default=str),
                "submittedAt": utc(submission.submitted_at),
                "deadline": utc(submission.deadline),
            }
        )

    def get(self, action_id: str, request_id: str) -> Submission | None:
        """The submission, and whether its final result was written: both rows of the action's
        partition in one query (one transaction, not two reads)."""
        row, final = _row_key(request_id), final_key(request_id)
        # The space before ")": the SDK finds @names between spaces.
        rows = {
            e["RowKey"]: e
            for e in self._store.query(
                "PartitionKey eq @pk and (RowKey eq @row or RowKey eq @final )",
                pk=f"action:{action_id}",
                row=row,
                final=final,
            )
        }
        entity = rows.get(row)
        if entity is None:
            return None
        submitted_at, deadline = when(entity.get("submittedAt")), when(entity.get("deadline"))
        subject = _subject(entity.get("subject"))
        if submitted_at is None or deadline is None or subject is None or subject.request_id != request_id:
            raise TransientError("LedgerCorrupt", f"submission {action_id}/{request_id} is unreadable")
        return Submission(action_id, subject, submitted_at, deadline, published(rows.get(final)))


def _row_key(request_id: str) -> str:
    return "sub:" + digest(request_id, 32)


def _subject(text: object) -> Subject | None:
    try:
        record: Any = json.loads(str(text))
        return Subject.from_record(record) if isinstance(record, dict) else None
    except (ValueError, KeyError):
        return None
