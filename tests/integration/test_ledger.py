"""The containment ledger against a real Azurite table service: the breaker and device claims hold
under concurrency (threads and separate processes), windows, operator reset, the audit trail."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from devstack.azurite import Azurite
from shared.adapters.ledger.approvals import TableApprovals
from shared.adapters.ledger.audit import DETAILS_MAX, TableAudit
from shared.adapters.ledger.breaker import TableBreaker
from shared.adapters.ledger.breaker import breaker_entity as stored_breaker
from shared.adapters.ledger.claims import TableClaims
from shared.adapters.ledger.finals import TableFinals
from shared.adapters.ledger.store import TableStore, digest
from shared.adapters.ledger.throttle import TableThrottleNotices
from shared.domain.breaker import BreakerSlot, BreakerState
from shared.domain.policy_config import MAX_BREAKER_ISOLATIONS, BreakerPolicy
from shared.ports import AuditEntry, Claim

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=60)
PC = "c28460d93e441d30869ebb33920c06acbb6fd75e"
OTHER_PC = "142b3441161eb63d57b41d1338407a04c781740d"
LIMIT = 5

# A second "instance": its own process, its own TableClient. It prints "ready" once connected,
# waits for "go" on stdin so every racer starts together, then prints which attempts got a slot.
RACER = """
import json, sys, threading
from datetime import UTC, datetime, timedelta
from azure.data.tables import TableClient
from shared.adapters.ledger.breaker import TableBreaker, breaker_entity as stored_breaker
from shared.adapters.ledger.store import TableStore, digest
from shared.domain.policy_config import BreakerPolicy

conn, table, prefix = sys.argv[1:4]
threads, per_thread = int(sys.argv[4]), int(sys.argv[5])
client = TableClient.from_connection_string(conn, table)
breaker = TableBreaker(TableStore(client), BreakerPolicy(5, timedelta(minutes=60)))
TableStore(client).get("breaker", "isolations")  # connect before the start signal
machine = "c28460d93e441d30869ebb33920c06acbb6fd75e"
go = threading.Event()
taken = []
def race(t):
    go.wait()
    for i in range(per_thread):
        result = breaker.take_slot(f"{prefix}-{t}-{i}", machine, datetime.now(UTC))
        taken.append(result.taken)
workers = [threading.Thread(target=race, args=(t,)) for t in range(threads)]
for w in workers:
    w.start()
print("ready", flush=True)
sys.stdin.readline()
go.set()
for w in workers:
    w.join()
print(json.dumps(taken), flush=True)
"""


@pytest.fixture(scope="module")
def azurite() -> Iterator[Azurite]:
    emulator = Azurite()
    emulator.start()
    yield emulator
    emulator.close()


@pytest.fixture
def table_name(azurite: Azurite) -> str:
    """A fresh table per test: the breaker is one entity per table."""
    name = "ledger" + uuid.uuid4().hex[:12]
    TableServiceClient.from_connection_string(azurite.connection_string).create_table(name)
    return name


@pytest.fixture
def table(azurite: Azurite, table_name: str) -> TableClient:
    return TableClient.from_connection_string(azurite.connection_string, table_name)


@dataclass(frozen=True)
class Ledger:
    """The ledger's stores on one table, as shared/bootstrap.py builds them."""

    claims: TableClaims
    breaker: TableBreaker
    finals: TableFinals
    audit: TableAudit


@pytest.fixture
def ledger(table: TableClient) -> Ledger:
    store = TableStore(table)
    return Ledger(
        TableClaims(store),
        TableBreaker(store, BreakerPolicy(LIMIT, WINDOW)),
        TableFinals(store),
        TableAudit(store),
    )


def breaker_entity(table: TableClient) -> dict[str, Any]:
    return dict(table.get_entity("breaker", "isolations"))


def claim_row(table: TableClient, machine_id: str) -> dict[str, Any] | None:
    """The device's claim row as the SOC would read it from the table."""
    try:
        return dict(table.get_entity(f"machine:{machine_id}", "isolation"))
    except ResourceNotFoundError:
        return None


def reset_from_the_cli(table: TableClient, operator: str) -> None:
    """What the documented `az storage entity merge ... open=false isolations='[]' resetBy=...` stores
    (without type annotations: strings)."""
    reset = {"PartitionKey": "breaker", "RowKey": "isolations", "open": "false", "isolations": "[]"}
    table.upsert_entity({**reset, "resetBy": operator}, mode=UpdateMode.MERGE)


# --- breaker ------------------------------------------------------------------------------------


def test_breaker_holds_exactly_n_across_threads_and_processes(azurite: Azurite, table_name: str) -> None:
    per_thread = 2
    racers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                RACER,
                azurite.connection_string,
                table_name,
                f"proc{p}",
                "4",
                str(per_thread),
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for p in range(2)
    ]
    for racer in racers:
        assert racer.stdout is not None and racer.stdout.readline().strip() == "ready"
    table = TableClient.from_connection_string(azurite.connection_string, table_name)
    breaker = TableBreaker(TableStore(table), BreakerPolicy(LIMIT, WINDOW))
    go = threading.Event()

    def race(t: int) -> list[bool]:
        go.wait()
        return [breaker.take_slot(f"main-{t}-{i}", PC, datetime.now(UTC)).taken for i in range(per_thread)]

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(race, t) for t in range(8)]
        for racer in racers:
            assert racer.stdin is not None
            racer.stdin.write("go\n")
            racer.stdin.flush()
        go.set()
        local = [taken for future in futures for taken in future.result(timeout=30)]
    remote = []
    for racer in racers:
        out, _ = racer.communicate(timeout=30)
        assert racer.returncode == 0
        remote.extend(json.loads(out.strip().splitlines()[-1]))

    assert (len(local), len(remote)) == (16, 16)  # every racer in both processes ran
    assert sum(local) + sum(remote) == LIMIT
    state = breaker_entity(table)
    slots = state["isolations"].split()
    assert len(slots) == LIMIT and len({slot.split(":")[1] for slot in slots}) == LIMIT
    assert state["open"] is True


def test_breaker_opens_over_the_limit_and_reports_count_window_and_opened_at(ledger: Ledger) -> None:
    for i in range(LIMIT):
        result = ledger.breaker.take_slot(f"r{i}", PC, T0 + timedelta(minutes=i))
        assert result.taken and result.count == i + 1
    held = ledger.breaker.take_slot("r-over", PC, T0 + timedelta(minutes=10))
    assert held.held
    assert (held.count, held.limit, held.window, held.opened_at) == (
        LIMIT,
        LIMIT,
        WINDOW,
        T0 + timedelta(minutes=10),
    )
    assert held.to_details()["breaker"]["openedAt"] == "2026-11-23T10:10:00+00:00"


def test_open_breaker_stays_open_until_a_full_window_has_passed_since_it_opened(
    ledger: Ledger, table: TableClient
) -> None:
    for i in range(LIMIT):
        ledger.breaker.take_slot(f"r{i}", PC, T0)
    opened = T0 + timedelta(minutes=30)
    assert ledger.breaker.take_slot("held-1", PC, opened).held
    # At T0+61 the counted isolations have left the window, but the breaker opened at T0+30.
    still = ledger.breaker.take_slot("held-2", PC, T0 + timedelta(minutes=61))
    assert still.held and still.opened_at == opened and still.count == 0
    reopened = ledger.breaker.take_slot("after", PC, opened + WINDOW)
    assert reopened.taken and reopened.count == 1
    assert breaker_entity(table)["open"] is False


def test_the_check_before_any_look_up_reads_an_open_breaker_and_writes_nothing(
    ledger: Ledger, table: TableClient
) -> None:
    assert ledger.breaker.check("first", T0) is None  # no breaker entity yet
    for i in range(LIMIT + 1):
        ledger.breaker.take_slot(f"r{i}", PC, T0)
    before = breaker_entity(table)
    held = ledger.breaker.check("new", T0 + timedelta(minutes=1))
    assert held is not None and (held.count, held.opened_at) == (LIMIT, T0)
    assert ledger.breaker.check("r0", T0 + timedelta(minutes=1)) is None  # it holds a slot
    assert breaker_entity(table) == before
    table.upsert_entity({**before, "isolations": "not slots"})  # unreadable: take_slot decides
    assert ledger.breaker.check("new", T0) is None and ledger.breaker.take_slot("new", PC, T0).held


def test_sliding_window_forgets_old_isolations_without_opening(ledger: Ledger) -> None:
    for i in range(LIMIT - 1):
        ledger.breaker.take_slot(f"early{i}", PC, T0)
    assert ledger.breaker.take_slot("late", PC, T0 + timedelta(minutes=30)).count == LIMIT
    result = ledger.breaker.take_slot("next", PC, T0 + timedelta(minutes=61))
    assert result.taken and result.count == 2  # "late" and "next"


def test_a_redelivered_request_keeps_its_slot_and_is_not_counted_twice(ledger: Ledger) -> None:
    first = ledger.breaker.take_slot("same", PC, T0)
    again = ledger.breaker.take_slot("same", PC, T0 + timedelta(minutes=1))
    assert first.taken and again.taken and again.repeat and again.count == 1
    for i in range(LIMIT - 1):
        ledger.breaker.take_slot(f"r{i}", PC, T0)
    assert ledger.breaker.take_slot("over", PC, T0).held
    assert ledger.breaker.take_slot("same", PC, T0 + timedelta(minutes=2)).taken  # even while open


def test_operator_reset_from_the_cli_closes_the_breaker_with_a_fresh_budget(
    ledger: Ledger, table: TableClient
) -> None:
    for i in range(LIMIT + 1):
        ledger.breaker.take_slot(f"r{i}", PC, T0)
    assert breaker_entity(table)["open"] is True
    reset_from_the_cli(table, "soc-lead@contoso.com")
    results = [ledger.breaker.take_slot(f"after{i}", PC, T0 + timedelta(minutes=6)) for i in range(LIMIT + 1)]
    assert [r.taken for r in results] == [True] * LIMIT + [False]
    assert breaker_entity(table)["resetBy"] == "soc-lead@contoso.com"  # who reset it stays on record


def test_an_unreadable_breaker_holds_until_an_operator_resets_it(ledger: Ledger, table: TableClient) -> None:
    table.upsert_entity({"PartitionKey": "breaker", "RowKey": "isolations", "isolations": "not json"})
    refused = ledger.breaker.take_slot("r", PC, T0)
    assert refused.held and refused.reason is not None and "LedgerCorrupt" in refused.reason
    reset_from_the_cli(table, "ops")
    assert ledger.breaker.take_slot("r", PC, T0).taken


def test_the_largest_allowed_breaker_fits_its_entity_and_opens_over_it(table: TableClient) -> None:
    breaker = TableBreaker(TableStore(table), BreakerPolicy(MAX_BREAKER_ISOLATIONS, timedelta(days=7)))
    for i in range(MAX_BREAKER_ISOLATIONS):
        result = breaker.take_slot(f"sentinel-incident-{i}", PC, T0 + timedelta(seconds=i))
        assert result.taken and result.count == i + 1, result
    over = breaker.take_slot("one-too-many", PC, T0 + timedelta(hours=1))
    assert over.held and over.reason is None
    assert (over.count, over.opened_at) == (MAX_BREAKER_ISOLATIONS, T0 + timedelta(hours=1))
    stored = breaker_entity(table)
    assert stored["open"] is True and stored["count"] == MAX_BREAKER_ISOLATIONS
    # A Table string property holds 32K UTF-16 characters: the full breaker needs less than half.
    assert len(stored["isolations"]) < 16 * 1024
    redelivered = breaker.take_slot("sentinel-incident-7", PC, T0 + timedelta(hours=2))
    assert redelivered.taken and redelivered.repeat  # it kept its slot


def test_racers_for_the_last_slots_of_the_largest_breaker_take_exactly_what_is_left(
    table: TableClient,
) -> None:
    policy = BreakerPolicy(MAX_BREAKER_ISOLATIONS, WINDOW)
    left = 5
    filled = [BreakerSlot(T0, f"{i:016x}") for i in range(MAX_BREAKER_ISOLATIONS - left)]
    table.create_entity(stored_breaker(BreakerState(slots=tuple(filled))))
    breaker = TableBreaker(TableStore(table), policy)
    barrier = threading.Barrier(12)

    def race(t: int) -> list[bool]:
        barrier.wait()
        return [breaker.take_slot(f"racer-{t}-{i}", PC, T0 + timedelta(minutes=1)).taken for i in range(2)]

    with ThreadPoolExecutor(12) as pool:
        futures = [pool.submit(race, t) for t in range(12)]
        taken = [ok for future in futures for ok in future.result(timeout=60)]
    assert sum(taken) == left
    stored = breaker_entity(table)
    assert len(stored["isolations"].split()) == MAX_BREAKER_ISOLATIONS and stored["open"] is True


def test_a_breaker_as_earlier_versions_stored_it_is_read_and_rewritten_compactly(table: TableClient) -> None:
    # The JSON list earlier versions wrote, as long as it could grow before its writes failed.
    earlier = [
        [round((T0 + timedelta(seconds=i)).timestamp(), 3), digest(f"old-{i}", 16), PC] for i in range(414)
    ]
    entity = {
        "PartitionKey": "breaker",
        "RowKey": "isolations",
        "isolations": json.dumps(earlier, separators=(",", ":")),
    }
    table.create_entity({**entity, "count": 414, "open": False})
    breaker = TableBreaker(TableStore(table), BreakerPolicy(MAX_BREAKER_ISOLATIONS, WINDOW))
    assert breaker.take_slot("next", PC, T0 + timedelta(minutes=10)).count == 415
    again = breaker.take_slot("old-3", PC, T0 + timedelta(minutes=11))
    assert again.taken and again.repeat and again.count == 415  # its slot from before is known
    stored = breaker_entity(table)
    assert stored["count"] == 415 and not stored["isolations"].startswith("[")
    assert stored["isolations"].split()[0] == f"{round(T0.timestamp() * 1000)}:{digest('old-0', 16)}"


def test_a_breaker_that_cannot_be_written_counts_as_open(
    azurite: Azurite, caplog: pytest.LogCaptureFixture
) -> None:
    missing = TableClient.from_connection_string(azurite.connection_string, "ledgerdeleted")
    breaker = TableBreaker(TableStore(missing), BreakerPolicy(LIMIT, WINDOW))
    with caplog.at_level(logging.WARNING, logger="shared.adapters.ledger.breaker"):
        result = breaker.take_slot("req-1", PC, T0)
    assert result.held and result.count is None and result.opened_at is None
    assert result.reason is not None and "TableNotFound" in result.reason
    assert result.to_details()["breaker"]["reason"] == result.reason
    assert any("breaker unavailable" in r.getMessage() and "req-1" in r.getMessage() for r in caplog.records)


def test_breaker_reset_with_typed_values_is_understood(ledger: Ledger, table: TableClient) -> None:
    for i in range(LIMIT + 1):
        ledger.breaker.take_slot(f"r{i}", PC, T0)
    # What `az storage entity merge ... open=false open@odata.type=Edm.Boolean isolations='[]'` stores.
    table.upsert_entity(
        {"PartitionKey": "breaker", "RowKey": "isolations", "open": False, "isolations": "[]"},
        mode=UpdateMode.MERGE,
    )
    assert ledger.breaker.take_slot("after", PC, T0 + timedelta(minutes=1)).taken


# --- storm de-duplication -----------------------------------------------------------------------


def test_ten_racing_claims_on_one_device_have_exactly_one_winner(ledger: Ledger) -> None:
    barrier = threading.Barrier(10)

    def claim(i: int) -> Claim:
        barrier.wait()
        return ledger.claims.claim(PC, f"alert-{i}", T0, WINDOW)

    with ThreadPoolExecutor(10) as pool:
        claims = list(pool.map(claim, range(10)))
    winners = [c for c in claims if c.won]
    assert len(winners) == 1
    assert {c.request_id for c in claims} == {winners[0].request_id}  # losers name the winner
    assert all(c.state == "claimed" and c.action_id is None for c in claims)


def test_storm_duplicates_get_the_winners_action_once_it_is_submitted(
    ledger: Ledger, table: TableClient
) -> None:
    assert ledger.claims.claim(PC, "alert-1", T0, WINDOW).won
    ledger.claims.record_isolation(PC, "alert-1", "action-1", T0 + timedelta(seconds=2))
    duplicate = ledger.claims.claim(PC, "alert-2", T0 + timedelta(minutes=5), WINDOW)
    assert not duplicate.won
    assert (duplicate.request_id, duplicate.action_id, duplicate.state) == (
        "alert-1",
        "action-1",
        "submitted",
    )
    row = claim_row(table, PC)
    assert row is not None and (row["requestId"], row["actionId"], row["state"]) == (
        "alert-1",
        "action-1",
        "submitted",
    )
    assert ledger.claims.claim(OTHER_PC, "alert-3", T0, WINDOW).won  # other devices are not affected


def test_a_redelivered_request_wins_its_own_claim_again_with_its_action(ledger: Ledger) -> None:
    ledger.claims.claim(PC, "alert-1", T0, WINDOW)
    assert ledger.claims.claim(PC, "alert-1", T0 + timedelta(seconds=30), WINDOW).won
    ledger.claims.record_isolation(PC, "alert-1", "action-1", T0 + timedelta(minutes=1))
    again = ledger.claims.claim(PC, "alert-1", T0 + timedelta(minutes=2), WINDOW)
    assert again.won and again.state == "submitted" and again.action_id == "action-1"


def test_after_the_window_a_new_alert_claims_the_device_again(ledger: Ledger) -> None:
    ledger.claims.claim(PC, "alert-1", T0, WINDOW)
    ledger.claims.record_isolation(PC, "alert-1", "action-1", T0)
    later = T0 + WINDOW + timedelta(seconds=1)
    claim = ledger.claims.claim(PC, "alert-2", later, WINDOW)
    assert claim.won and claim.state == "claimed"


def test_an_abandoned_claim_frees_the_device_but_not_someone_elses(
    ledger: Ledger, table: TableClient
) -> None:
    ledger.claims.claim(PC, "held-by-breaker", T0, WINDOW)
    ledger.claims.abandon(PC, "someone-else")
    assert not ledger.claims.claim(PC, "alert-2", T0, WINDOW).won
    ledger.claims.abandon(PC, "held-by-breaker")
    assert ledger.claims.claim(PC, "alert-2", T0, WINDOW).won
    ledger.claims.record_isolation(PC, "alert-2", "action-2", T0)
    ledger.claims.abandon(PC, "alert-2")  # submitted: no longer abandonable
    row = claim_row(table, PC)
    assert row is not None and row["state"] == "submitted"


def test_an_isolation_the_service_did_not_create_still_dedupes_storms(ledger: Ledger) -> None:
    ledger.claims.claim(PC, "alert-1", T0, WINDOW)
    ledger.claims.record_isolation(PC, "alert-1", "analysts-action", T0)  # MDE answered with it
    assert ledger.claims.claim(PC, "alert-2", T0, WINDOW).action_id == "analysts-action"


def test_a_release_by_the_service_ends_the_storm_window(ledger: Ledger, table: TableClient) -> None:
    ledger.claims.claim(PC, "alert-1", T0, WINDOW)
    ledger.claims.record_isolation(PC, "alert-1", "action-1", T0)
    ledger.claims.record_release(PC, "INC001-release", "action-2", T0 + timedelta(minutes=10))
    row = claim_row(table, PC)
    assert row is not None and row["state"] == "released"
    assert ledger.claims.claim(PC, "alert-9", T0 + timedelta(minutes=11), WINDOW).won


# --- audit trail and keys -----------------------------------------------------------------------


def test_audit_entries_are_one_partition_per_utc_day_in_time_order(
    ledger: Ledger, table: TableClient
) -> None:
    skipped = {"decision": "Skipped", "rule": "protected.tags: NoAutoIsolate", "reason": "Protected"}
    at = T0 + timedelta(hours=1)
    ledger.audit.record(AuditEntry("req-2", "Isolate", "Submitted", at, PC, "action-2", {"x": 1}))
    ledger.audit.record(AuditEntry("req-1", "Isolate", "Skipped", T0, OTHER_PC, None, skipped))
    ledger.audit.record(AuditEntry("req-3", "Isolate", "Submitted", T0 + timedelta(days=1), PC))

    # Exactly the query the docs give the SOC.
    day = list(table.query_entities("PartitionKey eq 'audit:20261123'"))
    assert [e["requestId"] for e in day] == ["req-1", "req-2"]
    first, second = day
    assert (first["outcome"], json.loads(first["details"])) == ("Skipped", skipped)
    assert "actionId" not in first and first["machineId"] == OTHER_PC
    assert (second["actionId"], json.loads(second["details"])) == ("action-2", {"x": 1})
    next_day = list(table.query_entities("PartitionKey eq 'audit:20261124'"))
    assert [e["requestId"] for e in next_day] == ["req-3"]


def test_an_audit_row_stays_bounded_whatever_the_message_carried(ledger: Ledger, table: TableClient) -> None:
    details = {"lastStatus": "Pending", "injected": "x" * 30_000, "rule": "protected.tags: NoAutoIsolate"}
    ledger.audit.record(AuditEntry("req-big", "Isolate", "TrackingExpired", T0, PC, "action-1", details))
    (row,) = table.query_entities("PartitionKey eq 'audit:20261123' and requestId eq 'req-big'")
    stored = json.loads(row["details"])
    assert len(row["details"]) <= DETAILS_MAX and stored["_truncated"] == ["injected"]
    assert (stored["lastStatus"], stored["rule"]) == ("Pending", "protected.tags: NoAutoIsolate")


def test_ids_with_characters_forbidden_in_keys_are_stored(ledger: Ledger) -> None:
    odd = "ticket/42#a?b\\c"
    ledger.audit.record(AuditEntry(odd, "Unisolate", "Rejected", T0, "not/a#machine"))
    assert ledger.claims.claim("not/a#machine", odd, T0, WINDOW).won
    assert ledger.breaker.take_slot(odd, "not/a#machine", T0).taken
    ledger.finals.mark_reported("action-1", odd, "Succeeded", {}, T0)
    assert ledger.finals.final_of("action-1", odd) == ("Succeeded", {})


def test_final_result_markers_are_unaffected(ledger: Ledger) -> None:
    assert not ledger.finals.final_of("action-1", "req-1")
    ledger.breaker.take_slot("req-1", PC, T0)
    ledger.claims.claim(PC, "req-1", T0, WINDOW)
    ledger.claims.record_isolation(PC, "req-1", "action-1", T0)
    ledger.audit.record(AuditEntry("req-1", "Isolate", "Submitted", T0, PC, "action-1"))
    assert not ledger.finals.final_of("action-1", "req-1")
    ledger.finals.mark_reported("action-1", "req-1", "Succeeded", {"id": "action-1"}, T0)
    assert ledger.finals.final_of("action-1", "req-1") is not None
    assert not ledger.finals.final_of("action-1", "req-2")  # per request: a shared action reports each


def test_throttle_notices_round_trip_per_api_group(table: TableClient) -> None:
    notices = TableThrottleNotices(TableStore(table))
    assert notices.until("isolate") is None
    notices.notify("isolate", 1_800_000_042.5)
    notices.notify("machines", 1_800_000_001.0)
    assert (notices.until("isolate"), notices.until("machines")) == (1_800_000_042.5, 1_800_000_001.0)
    notices.notify("isolate", 1_800_000_050.0)  # a later 429
    assert notices.until("isolate") == 1_800_000_050.0
    assert table.get_entity("throttle", "isolate")["until"] == 1_800_000_050.0


# --- approvals used -----------------------------------------------------------------------------


def test_an_approval_is_used_once_however_many_race_for_it(table: TableClient) -> None:
    approvals = TableApprovals(TableStore(table))
    barrier = threading.Barrier(8)

    def use(i: int) -> tuple[str, bool]:
        barrier.wait()
        return approvals.use("jira:SEC-1:10042", f"req-{i}", T0)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(use, range(8)))
    recorded = [holder for holder, new in answers if new]
    assert len(recorded) == 1  # exactly one request may release with it
    assert {holder for holder, _ in answers} == set(recorded)  # the others are told who used it
    again = approvals.use("jira:SEC-1:10042", recorded[0], T0 + timedelta(hours=1))
    assert again == (recorded[0], False)  # the same request again: known, not recorded anew
    assert approvals.use("jira:SEC-1:10043", "req-x", T0) == ("req-x", True)  # a new approval
