"""Audit rows are bounded whatever a message carried: details stay valid JSON under the cap and
name what was cut; ids are cut too. (The rows on a real table: tests/integration/test_ledger.py.)"""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.adapters.ledger.audit import DETAILS_MAX, ID_MAX, TRUNCATED, TableAudit, bounded_details
from shared.ports import AuditEntry
from tests.fakes import T0

PC = "c28460d93e441d30869ebb33920c06acbb6fd75e"


class RecordingStore:
    """Keeps the rows the audit would upsert."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def upsert(self, entity: dict[str, Any]) -> None:
        self.rows.append(entity)


def test_small_details_are_stored_whole() -> None:
    details = {"decision": "Skipped", "rule": "protected.tags: NoAutoIsolate", "breaker": {"count": 3}}
    assert json.loads(bounded_details(details)) == details


def test_a_huge_field_is_shortened_and_named_and_the_rest_kept() -> None:
    candidates = [{"id": f"{i:040x}", "computerDnsName": f"ws-{i}.contoso.local"} for i in range(400)]
    details = {"candidates": candidates, "rule": "r", "isolationType": "Full", "note": "n" * 150}
    text = bounded_details(details)
    assert len(json.dumps(details)) > 30_000 and len(text) <= DETAILS_MAX
    kept = json.loads(text)
    assert kept[TRUNCATED] == ["candidates"]
    assert {k: kept[k] for k in ("rule", "isolationType", "note")} == {
        "rule": "r",
        "isolationType": "Full",
        "note": "n" * 150,
    }
    assert kept["candidates"].startswith('[{"computerDnsName": "ws-0.contoso.local"') and kept[
        "candidates"
    ].endswith("…")


@pytest.mark.parametrize(
    "details",
    [
        {f"field{i}": "x" * 300 for i in range(100)},  # every field shortened is still too much
        {f"k{i}": i for i in range(5_000)},  # many tiny fields
        {"k" * 50_000: 1},  # an absurd key
    ],
    ids=["many medium fields", "many tiny fields", "one huge key"],
)
def test_whatever_the_shape_the_details_fit_and_parse(details: dict[str, Any]) -> None:
    text = bounded_details(details)
    assert len(text) <= DETAILS_MAX
    assert TRUNCATED in json.loads(text)


def test_every_property_of_a_row_is_bounded() -> None:
    store = RecordingStore()
    audit = TableAudit(store)  # type: ignore[arg-type]  # only upsert is used
    entry = AuditEntry(
        request_id="r" * 5_000,
        action="Isolate",
        outcome="Submitted",
        at=T0,
        machine_id=PC,
        action_id="a" * 5_000,
        details={"lastStatus": "s" * 30_000},
    )
    audit.record(entry)
    (row,) = store.rows
    strings = {key: value for key, value in row.items() if isinstance(value, str)}
    assert all(len(value) <= max(ID_MAX, DETAILS_MAX) for value in strings.values())
    assert len(row["requestId"]) == len(row["actionId"]) == ID_MAX and row["machineId"] == PC
    assert sum(len(value) for value in strings.values()) < 6 * 1024
    assert json.loads(row["details"])[TRUNCATED] == ["lastStatus"]
