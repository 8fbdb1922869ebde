"""MDE's 429s, told to every instance: the ``ThrottleNotices`` of the MDE client's call budget, on
the ledger table.

MDE's rate limits are per app and tenant, so the ``Retry-After`` of a 429 one instance met holds
for all of them. The instance writes when that API accepts calls again, in row ``throttle``/``<api
group>`` (``until``, epoch seconds). Another instance reads the row only after it has spent its own
share of the API's minute (``MDE_BUDGET_SHARES``): a quiet system never reads it, and a storm one
instance sees alone costs no read until that instance is past its share.
"""

from __future__ import annotations

from ...ports import ApiGroup
from .store import TableStore

PARTITION = "throttle"


class TableThrottleNotices:
    """Throttle notices on the ledger table: one row per MDE API group."""

    def __init__(self, store: TableStore) -> None:
        self._store = store

    def until(self, group: ApiGroup) -> float | None:
        """When ``group`` accepts calls again as the last 429 any instance met said (epoch s)."""
        entity = self._store.get(PARTITION, group)
        value = entity.get("until") if entity is not None else None
        return float(value) if isinstance(value, int | float) else None

    def notify(self, group: ApiGroup, until: float) -> None:
        """MDE answered a call to ``group`` with 429: nothing before ``until`` (epoch s)."""
        self._store.upsert({"PartitionKey": PARTITION, "RowKey": group, "until": float(until)})
