"""The containment ledger: a table in the same storage account (Azure Table storage).

Today it records which actions already had their final result written, so a redelivered tracking
message cannot produce a second final result.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Protocol

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from .errors import ConfigError, TransientError
from .settings import StorageSettings


class Ledger(Protocol):
    """Shared state across function instances."""

    def final_reported(self, action_id: str, request_id: str) -> bool: ...

    def mark_final_reported(self, action_id: str, request_id: str, outcome: str) -> None: ...


class TableLedger:
    """The ledger on an azure-data-tables ``TableClient``."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    @classmethod
    def from_settings(
        cls, storage: StorageSettings, table_name: str, credential: TokenCredential | None
    ) -> TableLedger:
        if storage.connection_string:
            return cls(TableClient.from_connection_string(storage.connection_string, table_name))
        if not storage.table_service_uri:
            raise ConfigError("CONTAINMENT_STORAGE__tableServiceUri must be set for the ledger")
        return cls(TableClient(storage.table_service_uri, table_name, credential=credential))

    def final_reported(self, action_id: str, request_id: str) -> bool:
        try:
            self._table.get_entity(partition_key=f"action:{action_id}", row_key=_final_key(request_id))
        except ResourceNotFoundError:
            return False
        except AzureError as e:
            raise TransientError("LedgerUnavailable", f"ledger read failed: {e}") from e
        return True

    def mark_final_reported(self, action_id: str, request_id: str, outcome: str) -> None:
        entity = {
            "PartitionKey": f"action:{action_id}",
            "RowKey": _final_key(request_id),
            "requestId": request_id,
            "outcome": outcome,
            "reportedAt": datetime.now(UTC).isoformat(),
        }
        try:
            self._table.upsert_entity(entity, mode=UpdateMode.REPLACE)
        except AzureError as e:
            raise TransientError("LedgerUnavailable", f"ledger write failed: {e}") from e


def _final_key(request_id: str) -> str:
    # Several requests can share one action (AlreadyPending): each gets its own final result.
    # Row keys may not hold '/', '\\', '#', '?': hash the request id.
    return "final:" + hashlib.sha256(request_id.encode()).hexdigest()[:32]
