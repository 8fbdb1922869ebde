"""infra/scripts/purge_audit.py against Azurite: audit days older than N go, everything else stays."""

from __future__ import annotations

import importlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from types import ModuleType

import pytest
from azure.data.tables import TableClient, TableServiceClient

from devstack.azurite import Azurite

from .conftest import ROOT

pytestmark = pytest.mark.integration

SCRIPTS = ROOT / "infra" / "scripts"
NOW = datetime(2026, 11, 30, 0, 30, tzinfo=UTC)  # just after midnight: the day boundary is UTC
# Rows the purge must leave alone: every other kind of ledger row, and text that only looks close.
OTHERS = [
    ("breaker", "isolations"),
    ("machine:c28460d93e441d30869ebb33920c06acbb6fd75e", "isolation"),
    ("action:7f1a2b3c-0000-4000-8000-000000000001", "final:0123"),
    ("audit:1999", "not-a-day"),
    ("audi", "x"),
]


@pytest.fixture(scope="module")
def azurite() -> Iterator[Azurite]:
    with Azurite() as emulator:
        yield emulator


@pytest.fixture
def table(azurite: Azurite) -> TableClient:
    """A ledger table holding one row of every other kind."""
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    client = service.create_table(f"purge{uuid.uuid4().hex[:12]}")
    for partition, row in OTHERS:
        client.create_entity({"PartitionKey": partition, "RowKey": row})
    return client


@pytest.fixture(scope="module")
def script() -> Iterator[ModuleType]:
    sys.path.insert(0, str(SCRIPTS))
    try:
        yield importlib.import_module("purge_audit")
    finally:
        sys.path.remove(str(SCRIPTS))


def audit_day(table: TableClient, day: str, rows: int) -> None:
    for i in range(rows):
        table.create_entity(
            {"PartitionKey": f"audit:{day}", "RowKey": f"{day}T000000.{i:06d}Z", "outcome": "x"}
        )


def partitions(table: TableClient) -> dict[str, int]:
    found: dict[str, int] = {}
    for row in table.list_entities(select=["PartitionKey"]):
        found[row["PartitionKey"]] = found.get(row["PartitionKey"], 0) + 1
    return found


def run(script: ModuleType, azurite: Azurite, table: TableClient, *args: str) -> int:
    argv = ["--connection-string", azurite.connection_string, "--table", table.table_name, *args]
    code: int = script.main(argv, now=NOW)
    return code


def test_days_older_than_n_are_deleted_and_nothing_else(
    script: ModuleType, azurite: Azurite, table: TableClient, capsys: pytest.CaptureFixture[str]
) -> None:
    audit_day(table, "20250101", 230)  # more rows than one transaction holds
    for day in ("20261126", "20261127", "20261130"):
        audit_day(table, day, 3)
    before = partitions(table)

    assert run(script, azurite, table, "--days", "3") == 0

    after = partitions(table)
    assert after == {k: v for k, v in before.items() if k not in ("audit:20250101", "audit:20261126")}
    assert after["audit:20261127"] == 3 and after["audit:20261130"] == 3  # the N days and today stay
    out = capsys.readouterr().out
    assert "audit:20250101: deleted 230 rows" in out and "audit:20261126: deleted 3 rows" in out
    assert "deleted 233 audit rows in 2 days before 20261127" in out
    assert run(script, azurite, table, "--days", "3") == 0  # repeatable: nothing left
    assert partitions(table) == after


def test_a_dry_run_lists_what_it_would_delete_and_deletes_nothing(
    script: ModuleType, azurite: Azurite, table: TableClient, capsys: pytest.CaptureFixture[str]
) -> None:
    audit_day(table, "20261001", 2)
    audit_day(table, "20261129", 1)
    before = partitions(table)
    assert run(script, azurite, table, "--days", "30", "--dry-run") == 0
    assert partitions(table) == before
    out = capsys.readouterr().out
    assert "audit:20261001: would delete 2 rows" in out and "20261129" not in out


def test_the_command_line_refuses_a_retention_under_a_day_and_runs_as_documented(
    azurite: Azurite, table: TableClient
) -> None:
    command = [
        sys.executable,
        str(SCRIPTS / "purge_audit.py"),
        "--connection-string",
        azurite.connection_string,
    ]
    command += ["--table", table.table_name]
    refused = subprocess.run(
        [*command, "--days", "0"], capture_output=True, text=True, timeout=60, check=False
    )
    assert refused.returncode == 2 and "--days must be at least 1" in refused.stderr
    audit_day(table, "20200101", 1)
    today = f"{datetime.now(UTC):%Y%m%d}"
    audit_day(table, today, 1)
    done = subprocess.run([*command, "--days", "90"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "audit:20200101: deleted 1 rows" in done.stdout
    assert "audit:20200101" not in partitions(table) and f"audit:{today}" in partitions(table)
