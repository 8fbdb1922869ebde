"""The SOC's audit trail: the ``Audit`` port on the ledger table.

One row per request decision or outcome, in partition ``audit:<YYYYMMDD>`` (UTC day), so a day is
one cheap query and a day past retention is one partition to delete; the row key starts with the
time, so rows come back in order. docs/operations.md shows the queries and the retention script.

Every row is bounded: ids at ``ID_MAX`` characters, ``details`` at ``DETAILS_MAX`` characters of
valid JSON (the largest fields are shortened first and named in ``_truncated``), so a message
cannot grow the table by more than a few kilobytes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ...ports import AuditEntry
from .store import TableStore, digest, utc

DETAILS_MAX = 4_000  # the facts that decided a request, not payloads
ID_MAX = 256
FIELD_KEEP = 200  # what a shortened field keeps of its JSON text
TRUNCATED = "_truncated"


class TableAudit:
    """Audit rows on the ledger table."""

    def __init__(self, store: TableStore) -> None:
        self._store = store

    def record(self, entry: AuditEntry) -> None:
        """One row for (request, outcome) at ``entry.at``; the same entry again overwrites itself."""
        at = utc(entry.at)
        row: dict[str, Any] = {
            "PartitionKey": audit_partition(at),
            "RowKey": f"{at:%Y%m%dT%H%M%S.%fZ}-{digest(entry.request_id, 16)}-{digest(entry.outcome, 6)}",
            "requestId": _short(entry.request_id, ID_MAX),
            "action": _short(entry.action, ID_MAX),
            "outcome": _short(entry.outcome, ID_MAX),
            "at": at,
        }
        optional = {"machineId": entry.machine_id, "actionId": entry.action_id}
        row.update({k: _short(v, ID_MAX) for k, v in optional.items() if v is not None})
        if entry.details:
            row["details"] = bounded_details(entry.details)
        self._store.upsert(row)


def audit_partition(at: datetime) -> str:
    """The partition of a UTC day's audit rows: ``audit:YYYYMMDD``."""
    return f"audit:{at:%Y%m%d}"


def bounded_details(details: Mapping[str, Any], limit: int = DETAILS_MAX) -> str:
    """``details`` as JSON text of at most ``limit`` characters that still parses.

    Over the limit, the largest fields are shortened first (to the start of their JSON text, as a
    string ending in "…") until the rest fits, and ``_truncated`` names them; if even that is too
    long, only the field names are kept.
    """
    text = _json(details)
    if len(text) <= limit:
        return text
    sizes = {key: _json(value) for key, value in details.items()}
    kept: dict[str, Any] = dict(details)
    cut: list[str] = []
    for key in sorted((k for k in sizes if len(sizes[k]) > FIELD_KEEP), key=lambda k: -len(sizes[k])):
        kept[key] = _short(sizes[key], FIELD_KEEP)
        cut.append(str(key))
        text = _json({**kept, TRUNCATED: sorted(cut)})
        if len(text) <= limit:
            return text
    names: list[str] = []
    size = len(_json({TRUNCATED: names}))
    for name in sorted(str(key)[:FIELD_KEEP] for key in details):
        size += len(_json(name)) + 2  # the name and its separator
        if size > limit:
            break
        names.append(name)
    return _json({TRUNCATED: names})


def _json(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True)


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
