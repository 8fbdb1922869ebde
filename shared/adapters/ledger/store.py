"""The plumbing every ledger store shares: one Azure Table (``LEDGER_TABLE``, in the same storage
account as the queues), reads, conditional writes and the mapping of storage errors to ours.

Every write that several instances may race on is conditional on the entity's ETag (optimistic
concurrency): a writer that loses re-reads and decides again, so no two instances act on the same
stale state. Each store owns its partitions (docs/operations.md lists them).
"""

from __future__ import annotations

import hashlib
import random
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from azure.core import MatchConditions
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, TableEntity, UpdateMode

from ...errors import ConfigError, TransientError
from ...settings import StorageSettings

T = TypeVar("T")
MAX_CONFLICT_RETRIES = 100  # each retry is one round trip; only a large storm of racers needs many
TEXT_MAX = 30_000  # a Table string property holds 32K UTF-16 characters
_SAFE_KEY = re.compile(r"[A-Za-z0-9._:@=+-]{1,200}")


def table_client(
    storage: StorageSettings, table_name: str, credential: TokenCredential | None
) -> TableClient:
    """The ledger table, reached like the queues: a connection string or the app's identity."""
    if storage.connection_string:
        return TableClient.from_connection_string(storage.connection_string, table_name)
    if not storage.table_service_uri:
        raise ConfigError("CONTAINMENT_STORAGE__tableServiceUri must be set for the ledger")
    return TableClient(storage.table_service_uri, table_name, credential=credential)


class TableStore:
    """Reads and writes on one ``TableClient`` (one per process, shared by threads)."""

    def __init__(self, table: TableClient, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.table = table
        self._sleep = sleep

    def get(self, partition_key: str, row_key: str) -> TableEntity | None:
        try:
            return self.table.get_entity(partition_key=partition_key, row_key=row_key)
        except ResourceNotFoundError:
            return None
        except AzureError as e:
            raise TransientError("LedgerUnavailable", f"ledger read failed: {e}") from e

    def write(self, previous: TableEntity | None, entity: dict[str, Any]) -> bool:
        """Create ``entity`` if ``previous`` is ``None``, else replace it if unchanged since read.
        False when another writer got there first (409 on create, 412 on replace)."""
        try:
            if previous is None:
                self.table.create_entity(entity)
            else:
                self.table.update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=previous.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
        except (ResourceExistsError, ResourceModifiedError):
            return False
        except AzureError as e:
            raise TransientError("LedgerUnavailable", f"ledger write failed: {e}") from e
        return True

    def upsert(self, entity: dict[str, Any]) -> None:
        self.guard("write", lambda: self.table.upsert_entity(entity, mode=UpdateMode.REPLACE))

    def delete_if_unchanged(self, entity: TableEntity) -> bool:
        """Delete ``entity`` unless someone changed it since it was read (then False)."""
        try:
            self.table.delete_entity(
                entity["PartitionKey"],
                entity["RowKey"],
                etag=entity.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except ResourceModifiedError:
            return False
        except AzureError as e:
            raise TransientError("LedgerUnavailable", f"ledger delete failed: {e}") from e
        return True

    def delete(self, partition_key: str, row_key: str) -> None:
        self.guard("delete", lambda: self.table.delete_entity(partition_key=partition_key, row_key=row_key))

    def transaction(self, entities: list[dict[str, Any]]) -> None:
        """Upsert entities of one partition together (an entity-group transaction)."""
        operations: list[Any] = [("upsert", e, {"mode": UpdateMode.REPLACE}) for e in entities]
        self.guard("write", lambda: self.table.submit_transaction(operations))

    def query(self, query: str, **parameters: str) -> list[TableEntity]:
        return self.guard("read", lambda: list(self.table.query_entities(query, parameters=parameters)))

    def guard(self, verb: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except AzureError as e:
            raise TransientError("LedgerUnavailable", f"ledger {verb} failed: {e}") from e

    def problem(self) -> str | None:
        """Why the ledger table cannot be used (it does not exist, or the identity may not read it),
        or None. One cheap read, at startup."""
        try:
            next(
                iter(self.table.query_entities("PartitionKey eq 'probe'", results_per_page=1).by_page()), None
            )
        except ResourceNotFoundError:
            return f"the ledger table {self.table.table_name!r} does not exist in the storage account"
        except HttpResponseError as e:
            if e.status_code in (401, 403):
                name, status = self.table.table_name, e.status_code
                return f"the app's identity may not use the ledger table {name!r} (HTTP {status})"
            raise TransientError("LedgerUnavailable", f"ledger check failed: {e}") from e
        except AzureError as e:
            raise TransientError("LedgerUnavailable", f"ledger check failed: {e}") from e
        return None

    def backoff(self, attempt: int) -> None:
        # Jitter spreads racing writers apart; growing a little keeps a storm from spinning.
        self._sleep(random.uniform(0.002, 0.02) * min(attempt + 1, 5))  # noqa: S311 - jitter, not crypto


def storage_error_code(error: BaseException | None) -> str | None:
    """The storage service's error code (``TableNotFound``, ``PropertyValueTooLarge``, ...) of an
    Azure SDK error, from the decoded error or the ``x-ms-error-code`` header."""
    code = getattr(error, "error_code", None)
    response = getattr(error, "response", None)
    if not code and response is not None:
        code = response.headers.get("x-ms-error-code")
    code = getattr(code, "value", code)  # the SDK's TableErrorCode enum
    return str(code) if code else None


def utc(value: datetime) -> datetime:
    """Naive datetimes are taken as UTC: every clock in this service is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def when(value: object) -> datetime | None:
    """A stored time (a Table ``DateTime`` or ISO text), or ``None`` when unreadable."""
    if isinstance(value, datetime):
        return utc(value)
    if isinstance(value, str) and value:
        try:
            return utc(datetime.fromisoformat(value))
        except ValueError:
            return None
    return None


def digest(value: str, length: int) -> str:
    """A short, stable hash: keys may not hold '/', '\\', '#', '?' or control characters."""
    return hashlib.sha256(value.encode()).hexdigest()[:length]


def machine_partition(machine_id: str) -> str:
    """A machine's partition: its 40-hex id (readable for the SOC); anything else is hashed."""
    key = machine_id.lower()
    return f"machine:{key if _SAFE_KEY.fullmatch(key) else 'h-' + digest(machine_id, 40)}"
