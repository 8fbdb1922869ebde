"""Delete the ledger's audit rows older than N days: whole day partitions ``audit:YYYYMMDD``.

    az login
    .venv/bin/python infra/scripts/purge_audit.py --account <storage account> --days 90 --dry-run
    .venv/bin/python infra/scripts/purge_audit.py --account <storage account> --days 90

Keeps today (UTC) and the N days before it; deletes every audit day before those, and nothing else
(device claims, the breaker and final-result markers live in other partitions). Signs in with your
Azure CLI login: the storage account accepts no shared keys, so you need *Storage Table Data
Contributor* on the ledger table (*Storage Table Data Reader* is enough for ``--dry-run``).
``--connection-string`` instead of ``--account`` reaches the local stack's Azurite. Runs with the
project's .venv (azure-data-tables and azure-identity, from requirements.txt). Safe to repeat: a
second run finds nothing left to delete.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

from azure.data.tables import TableClient, TableEntity
from azure.identity import AzureCliCredential

AUDIT_PARTITION = re.compile(r"audit:\d{8}")
DEFAULT_TABLE = "containmentledger"
BATCH = 100  # the most operations one entity-group transaction may hold


def cutoff(now: datetime, days: int) -> str:
    """The first audit partition kept: today (UTC) minus ``days``."""
    return f"audit:{(now.astimezone(UTC) - timedelta(days=days)):%Y%m%d}"


def old_audit_rows(table: TableClient, first_kept: str) -> Iterator[TableEntity]:
    """Keys of every audit row in a partition before ``first_kept``, in key order, page by page."""
    query = "PartitionKey ge 'audit:' and PartitionKey lt @first_kept"
    rows = table.query_entities(
        query, parameters={"first_kept": first_kept}, select=["PartitionKey", "RowKey"]
    )
    # The range also covers text such as 'audit:abc' no day partition has; only days are touched.
    return (row for row in rows if AUDIT_PARTITION.fullmatch(row["PartitionKey"]))


def purge(table: TableClient, first_kept: str, *, dry_run: bool) -> Counter[str]:
    """Delete (or, with ``dry_run``, count) the audit rows before ``first_kept``: rows per day.
    Deletes go in entity-group transactions of one partition each, as the rows are read."""
    per_day: Counter[str] = Counter()
    batch: list[TableEntity] = []
    for row in old_audit_rows(table, first_kept):
        per_day[row["PartitionKey"]] += 1
        if dry_run:
            continue
        if batch and (len(batch) == BATCH or batch[0]["PartitionKey"] != row["PartitionKey"]):
            _delete(table, batch)
        batch.append(row)
    if batch:
        _delete(table, batch)
    return per_day


def _delete(table: TableClient, batch: list[TableEntity]) -> None:
    table.submit_transaction([("delete", row) for row in batch])
    batch.clear()


def table_client(args: argparse.Namespace) -> TableClient:
    if args.connection_string:
        return TableClient.from_connection_string(args.connection_string, args.table)
    endpoint = args.table_endpoint or f"https://{args.account}.table.core.windows.net"
    return TableClient(endpoint, args.table, credential=AzureCliCredential())


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--account", help="storage account name (public cloud endpoint)")
    where.add_argument("--table-endpoint", help="table service URL, for another cloud")
    where.add_argument("--connection-string", help="a connection string, for the local stack")
    parser.add_argument("--table", default=DEFAULT_TABLE, help=f"ledger table (default {DEFAULT_TABLE})")
    parser.add_argument("--days", type=int, required=True, help="keep today and the N days before it")
    parser.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    args = parser.parse_args(argv)
    if args.days < 1:
        parser.error("--days must be at least 1")
    return args


def main(argv: Sequence[str] | None = None, now: datetime | None = None) -> int:
    """Run the purge; ``now`` fixes the clock (tests)."""
    args = parse_args(argv)
    first_kept = cutoff(now or datetime.now(UTC), args.days)
    with table_client(args) as table:
        per_day = purge(table, first_kept, dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    for day in sorted(per_day):
        print(f"{day}: {verb} {per_day[day]} rows")
    print(f"{verb} {sum(per_day.values())} audit rows in {len(per_day)} days before {first_kept[6:]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
