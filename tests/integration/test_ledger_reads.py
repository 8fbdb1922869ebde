"""What the ledger's stores read on Azurite: a read saved must not cost a guarantee. The breaker's
slot is written from the read its check made (conditional on that read's ETag); a final result's
marker is created without a read first."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables import TableClient, TableEntity, TableServiceClient

from devstack.stack import LocalStack
from shared.adapters.ledger.breaker import BREAKER_KEYS, TableBreaker
from shared.adapters.ledger.finals import TableFinals
from shared.adapters.ledger.store import TableStore
from shared.adapters.ledger.submissions import TableSubmissions
from shared.domain.model import Source
from shared.domain.policy_config import BreakerPolicy
from shared.domain.results import Subject
from shared.domain.tracking import Submission

pytestmark = pytest.mark.integration

MACHINE = "a" * 40
ACTION = "b1e3d0a5-3f5c-4a8e-9c1d-0d2f4b6a8c10"


class CountingStore(TableStore):
    """The real store on Azurite, counting its point reads and queries."""

    def __init__(self, table: TableClient) -> None:
        super().__init__(table)
        self.reads = 0
        self.queries = 0

    def get(self, partition_key: str, row_key: str) -> TableEntity | None:
        self.reads += 1
        return super().get(partition_key, row_key)

    def query(self, query: str, **parameters: str) -> list[TableEntity]:
        self.queries += 1
        return super().query(query, **parameters)


@pytest.fixture
def table(stack: LocalStack) -> TableClient:
    """A fresh table on the session's Azurite: the breaker is one entity per table."""
    connection = stack.azurite.connection_string
    name = "reads" + uuid.uuid4().hex[:12]
    TableServiceClient.from_connection_string(connection).create_table(name)
    return TableClient.from_connection_string(connection, name)


def slots(table: TableClient) -> list[str]:
    return str(table.get_entity(*BREAKER_KEYS)["isolations"]).split()


def breaker(table: TableClient, limit: int = 5) -> tuple[TableBreaker, CountingStore]:
    store = CountingStore(table)
    return TableBreaker(store, BreakerPolicy(limit, timedelta(hours=1))), store


def test_a_slot_taken_after_its_check_costs_one_read_not_two(table: TableClient) -> None:
    taker, store = breaker(table)
    now = datetime.now(UTC)
    taker.take_slot("earlier", MACHINE, now)  # the breaker entity exists
    store.reads = 0
    assert taker.check("req-1", now) is None
    assert taker.take_slot("req-1", MACHINE, now).taken
    assert store.reads == 1
    assert len(slots(table)) == 2


def test_a_change_since_the_check_is_not_overwritten(table: TableClient) -> None:
    first, _ = breaker(table)
    other_instance, _ = breaker(table)
    now = datetime.now(UTC)
    first.take_slot("earlier", MACHINE, now)
    assert first.check("req-1", now) is None
    assert other_instance.take_slot("req-2", MACHINE, now).taken  # between req-1's check and slot
    assert first.take_slot("req-1", MACHINE, now).taken
    assert len(slots(table)) == 3  # earlier, req-2 and req-1: none lost to the stale read


def test_a_breaker_that_opened_since_the_check_holds_the_request(table: TableClient) -> None:
    first, _ = breaker(table, limit=2)
    other_instance, _ = breaker(table, limit=2)
    now = datetime.now(UTC)
    assert first.check("req-1", now) is None  # no entity yet
    other_instance.take_slot("a", MACHINE, now)
    other_instance.take_slot("b", MACHINE, now)
    other_instance.take_slot("c", MACHINE, now)  # over the limit: open
    assert first.take_slot("req-1", MACHINE, now).held


def test_a_redelivery_is_answered_from_a_fresh_read_not_the_remembered_one(table: TableClient) -> None:
    taker, store = breaker(table)
    now = datetime.now(UTC)
    taker.take_slot("req-1", MACHINE, now)
    assert taker.check("req-1", now) is None
    store.reads = 0
    assert taker.take_slot("req-1", MACHINE, now).taken  # its slot is already there: nothing written
    assert store.reads == 1
    assert len(slots(table)) == 1


def final_row(table: TableClient, action_id: str) -> list[dict[str, Any]]:
    return [dict(e) for e in table.query_entities(f"PartitionKey eq 'action:{action_id}'")]


def test_a_first_final_result_is_claimed_without_a_read_and_exactly_once(table: TableClient) -> None:
    store = CountingStore(table)
    finals = TableFinals(store)
    now = datetime.now(UTC)
    assert finals.claim("act-1", "req-1", now) == "won"
    assert store.reads == 0
    assert finals.claim("act-1", "req-1", now) == "busy"  # another writer holds it
    finals.mark_reported("act-1", "req-1", "Succeeded", {"id": "act-1"}, now)
    assert finals.claim("act-1", "req-1", now) == "done"
    assert len(final_row(table, "act-1")) == 1


def test_a_stale_final_claim_is_taken_over_and_a_released_one_claimed_again(table: TableClient) -> None:
    finals = TableFinals(TableStore(table))
    then = datetime.now(UTC) - timedelta(minutes=10)
    assert finals.claim("act-2", "req-1", then) == "won"  # its writer died ten minutes ago
    assert finals.claim("act-2", "req-1", datetime.now(UTC)) == "won"
    finals.release("act-2", "req-1")
    assert finals.claim("act-2", "req-1", datetime.now(UTC)) == "won"


def test_a_submission_comes_with_whether_its_final_was_written_in_one_query(table: TableClient) -> None:
    store = CountingStore(table)
    submissions, finals = TableSubmissions(store), TableFinals(store)
    now = datetime.now(UTC)
    subject = Subject("Isolate", "req-1", Source("siem", "rule-1"))
    submissions.record(Submission(ACTION, subject, now, now + timedelta(hours=1)))
    other = Subject("Isolate", "req-2", Source("siem", "rule-2"))
    submissions.record(Submission(ACTION, other, now, now + timedelta(hours=1)))
    finals.mark_reported(ACTION, "req-2", "Succeeded", {"id": ACTION}, now)  # another request's final
    got = submissions.get(ACTION, "req-1")
    assert got is not None and got.subject.request_id == "req-1" and got.reported is False
    assert (store.reads, store.queries) == (0, 1)
    assert finals.claim(ACTION, "req-1", now) == "won"
    assert submissions.get(ACTION, "req-1").reported is False  # type: ignore[union-attr] # claimed, not written
    finals.mark_reported(ACTION, "req-1", "Succeeded", {"id": ACTION}, now)
    assert submissions.get(ACTION, "req-1").reported is True  # type: ignore[union-attr]
    assert submissions.get(ACTION, "req-3") is None
