"""The containment ledger against a real Azurite table service: the breaker and device claims hold
under concurrency (threads and separate processes), windows, operator reset, the audit trail."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.data.tables import TableClient, TableServiceClient

from devstack.azurite import Azurite
from shared.errors import TransientError
from shared.ledger import Claim, TableLedger
from shared.policy import BreakerPolicy, Decision

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
from shared.ledger import TableLedger
from shared.policy import BreakerPolicy

conn, table, prefix = sys.argv[1:4]
threads, per_thread = int(sys.argv[4]), int(sys.argv[5])
client = TableClient.from_connection_string(conn, table)
ledger = TableLedger(client, breaker=BreakerPolicy(5, timedelta(minutes=60)))
ledger.breaker_state()  # connect before the start signal
machine = "c28460d93e441d30869ebb33920c06acbb6fd75e"
go = threading.Event()
taken = []
def race(t):
    go.wait()
    for i in range(per_thread):
        result = ledger.try_take_slot(f"{prefix}-{t}-{i}", machine, datetime.now(UTC))
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


@pytest.fixture
def ledger(table: TableClient) -> TableLedger:
    return TableLedger(table, breaker=BreakerPolicy(LIMIT, WINDOW))


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
    ledger = TableLedger(
        TableClient.from_connection_string(azurite.connection_string, table_name),
        breaker=BreakerPolicy(LIMIT, WINDOW),
    )
    go = threading.Event()

    def race(t: int) -> list[bool]:
        go.wait()
        return [ledger.try_take_slot(f"main-{t}-{i}", PC, datetime.now(UTC)).taken for i in range(per_thread)]

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
    state = ledger.breaker_state()
    assert len(state.slots) == LIMIT and len({s.request_key for s in state.slots}) == LIMIT
    assert state.open


def test_breaker_opens_over_the_limit_and_reports_count_window_and_opened_at(ledger: TableLedger) -> None:
    for i in range(LIMIT):
        result = ledger.try_take_slot(f"r{i}", PC, T0 + timedelta(minutes=i))
        assert result.taken and result.count == i + 1
    held = ledger.try_take_slot("r-over", PC, T0 + timedelta(minutes=10))
    assert held.held
    assert (held.count, held.limit, held.window, held.opened_at) == (
        LIMIT,
        LIMIT,
        WINDOW,
        T0 + timedelta(minutes=10),
    )
    assert held.to_details()["breaker"]["openedAt"] == "2026-11-23T10:10:00+00:00"


def test_open_breaker_stays_open_until_a_full_window_has_passed_since_it_opened(ledger: TableLedger) -> None:
    for i in range(LIMIT):
        ledger.try_take_slot(f"r{i}", PC, T0)
    opened = T0 + timedelta(minutes=30)
    assert ledger.try_take_slot("held-1", PC, opened).held
    # At T0+61 the counted isolations have left the window, but the breaker opened at T0+30.
    still = ledger.try_take_slot("held-2", PC, T0 + timedelta(minutes=61))
    assert still.held and still.opened_at == opened and still.count == 0
    reopened = ledger.try_take_slot("after", PC, opened + WINDOW)
    assert reopened.taken and reopened.count == 1
    assert not ledger.breaker_state().open


def test_sliding_window_forgets_old_isolations_without_opening(ledger: TableLedger) -> None:
    for i in range(LIMIT - 1):
        ledger.try_take_slot(f"early{i}", PC, T0)
    assert ledger.try_take_slot("late", PC, T0 + timedelta(minutes=30)).count == LIMIT
    result = ledger.try_take_slot("next", PC, T0 + timedelta(minutes=61))
    assert result.taken and result.count == 2  # "late" and "next"


def test_a_redelivered_request_keeps_its_slot_and_is_not_counted_twice(ledger: TableLedger) -> None:
    first = ledger.try_take_slot("same", PC, T0)
    again = ledger.try_take_slot("same", PC, T0 + timedelta(minutes=1))
    assert first.taken and again.taken and again.repeat and again.count == 1
    for i in range(LIMIT - 1):
        ledger.try_take_slot(f"r{i}", PC, T0)
    assert ledger.try_take_slot("over", PC, T0).held
    assert ledger.try_take_slot("same", PC, T0 + timedelta(minutes=2)).taken  # even while open


def test_operator_reset_closes_the_breaker_with_a_fresh_budget_and_is_audited(ledger: TableLedger) -> None:
    for i in range(LIMIT + 1):
        ledger.try_take_slot(f"r{i}", PC, T0)
    assert ledger.breaker_state().open
    ledger.reset_breaker("soc-lead@contoso.com", T0 + timedelta(minutes=5))
    state = ledger.breaker_state()
    assert not state.open and state.slots == () and state.reset_by == "soc-lead@contoso.com"
    assert state.reset_at == T0 + timedelta(minutes=5)
    results = [ledger.try_take_slot(f"after{i}", PC, T0 + timedelta(minutes=6)) for i in range(LIMIT + 1)]
    assert [r.taken for r in results] == [True] * LIMIT + [False]
    (reset,) = [e for e in ledger.audit_entries(T0) if e["action"] == "BreakerReset"]
    assert json.loads(reset["details"]) == {"operator": "soc-lead@contoso.com"}


def test_an_unreadable_breaker_refuses_until_an_operator_resets_it(
    ledger: TableLedger, table: TableClient
) -> None:
    table.upsert_entity({"PartitionKey": "breaker", "RowKey": "isolations", "isolations": "not json"})
    with pytest.raises(TransientError) as refused:
        ledger.try_take_slot("r", PC, T0)
    assert refused.value.code == "LedgerCorrupt"
    ledger.reset_breaker("ops", T0)
    assert ledger.try_take_slot("r", PC, T0).taken


def test_breaker_reset_from_the_az_cli_with_string_values_is_understood(
    ledger: TableLedger, table: TableClient
) -> None:
    for i in range(LIMIT + 1):
        ledger.try_take_slot(f"r{i}", PC, T0)
    # What `az storage entity merge ... open=false isolations='[]'` without type annotations stores.
    table.upsert_entity(
        {"PartitionKey": "breaker", "RowKey": "isolations", "open": "false", "isolations": "[]"}
    )
    assert ledger.try_take_slot("after", PC, T0 + timedelta(minutes=1)).taken


# --- storm de-duplication -----------------------------------------------------------------------


def test_ten_racing_claims_on_one_device_have_exactly_one_winner(ledger: TableLedger) -> None:
    barrier = threading.Barrier(10)

    def claim(i: int) -> Claim:
        barrier.wait()
        return ledger.claim_device(PC, f"alert-{i}", T0, WINDOW)

    with ThreadPoolExecutor(10) as pool:
        claims = list(pool.map(claim, range(10)))
    winners = [c for c in claims if c.won]
    assert len(winners) == 1
    assert {c.request_id for c in claims} == {winners[0].request_id}  # losers name the winner
    assert all(c.state == "claimed" and c.action_id is None for c in claims)


def test_storm_duplicates_get_the_winners_action_once_it_is_submitted(ledger: TableLedger) -> None:
    assert ledger.claim_device(PC, "alert-1", T0, WINDOW).won
    ledger.record_isolation(PC, "alert-1", "action-1", T0 + timedelta(seconds=2))
    duplicate = ledger.claim_device(PC, "alert-2", T0 + timedelta(minutes=5), WINDOW)
    assert not duplicate.won
    assert (duplicate.request_id, duplicate.action_id, duplicate.state) == (
        "alert-1",
        "action-1",
        "submitted",
    )
    recent = ledger.recent_isolation(PC, WINDOW, T0 + timedelta(minutes=5))
    assert recent is not None and (recent["requestId"], recent["actionId"]) == ("alert-1", "action-1")
    assert ledger.isolated_by_us(PC) and not ledger.isolated_by_us(OTHER_PC)
    assert ledger.claim_device(OTHER_PC, "alert-3", T0, WINDOW).won  # other devices are not affected


def test_a_redelivered_request_wins_its_own_claim_again_with_its_action(ledger: TableLedger) -> None:
    ledger.claim_device(PC, "alert-1", T0, WINDOW)
    assert ledger.claim_device(PC, "alert-1", T0 + timedelta(seconds=30), WINDOW).won
    ledger.record_isolation(PC, "alert-1", "action-1", T0 + timedelta(minutes=1))
    again = ledger.claim_device(PC, "alert-1", T0 + timedelta(minutes=2), WINDOW)
    assert again.won and again.state == "submitted" and again.action_id == "action-1"


def test_after_the_window_a_new_alert_claims_the_device_again(ledger: TableLedger) -> None:
    ledger.claim_device(PC, "alert-1", T0, WINDOW)
    ledger.record_isolation(PC, "alert-1", "action-1", T0)
    later = T0 + WINDOW + timedelta(seconds=1)
    assert ledger.recent_isolation(PC, WINDOW, later) is None
    claim = ledger.claim_device(PC, "alert-2", later, WINDOW)
    assert claim.won and claim.state == "claimed"
    assert ledger.isolated_by_us(PC)  # ownership outlives the storm window


def test_an_abandoned_claim_frees_the_device_but_not_someone_elses(ledger: TableLedger) -> None:
    ledger.claim_device(PC, "held-by-breaker", T0, WINDOW)
    ledger.abandon_claim(PC, "someone-else")
    assert not ledger.claim_device(PC, "alert-2", T0, WINDOW).won
    ledger.abandon_claim(PC, "held-by-breaker")
    assert ledger.claim_device(PC, "alert-2", T0, WINDOW).won
    ledger.record_isolation(PC, "alert-2", "action-2", T0)
    ledger.abandon_claim(PC, "alert-2")  # submitted: no longer abandonable
    assert ledger.recent_isolation(PC, WINDOW, T0) is not None


def test_an_isolation_the_service_did_not_create_dedupes_storms_but_is_not_owned(ledger: TableLedger) -> None:
    ledger.claim_device(PC, "alert-1", T0, WINDOW)
    ledger.record_isolation(PC, "alert-1", "analysts-action", T0, owned=False)
    assert not ledger.isolated_by_us(PC)
    assert ledger.claim_device(PC, "alert-2", T0, WINDOW).action_id == "analysts-action"


def test_a_release_by_the_service_ends_ownership_and_the_storm_window(ledger: TableLedger) -> None:
    ledger.claim_device(PC, "alert-1", T0, WINDOW)
    ledger.record_isolation(PC, "alert-1", "action-1", T0)
    ledger.record_release(PC, "INC001-release", "action-2", T0 + timedelta(minutes=10))
    assert not ledger.isolated_by_us(PC)
    assert ledger.recent_isolation(PC, WINDOW, T0 + timedelta(minutes=11)) is None
    assert ledger.claim_device(PC, "alert-9", T0 + timedelta(minutes=11), WINDOW).won


# --- audit trail and keys -----------------------------------------------------------------------


def test_audit_entries_are_one_partition_per_utc_day_in_time_order(
    ledger: TableLedger, table: TableClient
) -> None:
    skipped = Decision("Skipped", "protected.tags: NoAutoIsolate", reason="Protected")
    isolate = Decision("Isolate", "defaultIsolationType: Full", isolation_type="Full")
    ledger.record_decision(
        "req-2", "Isolate", PC, isolate, "Submitted", "action-2", {"x": 1}, T0 + timedelta(hours=1)
    )
    ledger.record_decision("req-1", "Isolate", OTHER_PC, skipped, "Skipped", None, None, T0)
    ledger.record_decision("req-3", "Isolate", PC, None, "Submitted", None, None, T0 + timedelta(days=1))

    # Exactly the query docs/operations.md gives the SOC.
    day = list(table.query_entities("PartitionKey eq 'audit:20261123'"))
    assert [e["requestId"] for e in day] == ["req-1", "req-2"]
    first, second = day
    assert (first["decision"], first["rule"], first["reason"], first["outcome"]) == (
        "Skipped",
        "protected.tags: NoAutoIsolate",
        "Protected",
        "Skipped",
    )
    assert "actionId" not in first and first["machineId"] == OTHER_PC
    assert (second["actionId"], second["isolationType"], json.loads(second["details"])) == (
        "action-2",
        "Full",
        {"x": 1},
    )
    assert [e["requestId"] for e in ledger.audit_entries(T0 + timedelta(days=1))] == ["req-3"]


def test_ids_with_characters_forbidden_in_keys_are_stored(ledger: TableLedger) -> None:
    odd = "ticket/42#a?b\\c"
    ledger.record_decision(odd, "Unisolate", "not/a#machine", None, "Rejected", None, None, T0)
    assert ledger.claim_device("not/a#machine", odd, T0, WINDOW).won
    assert ledger.try_take_slot(odd, "not/a#machine", T0).taken
    ledger.mark_final_reported("action-1", odd, "Succeeded")
    assert ledger.final_reported("action-1", odd)


def test_final_result_markers_are_unaffected(ledger: TableLedger) -> None:
    assert not ledger.final_reported("action-1", "req-1")
    ledger.try_take_slot("req-1", PC, T0)
    ledger.claim_device(PC, "req-1", T0, WINDOW)
    ledger.record_isolation(PC, "req-1", "action-1", T0)
    ledger.record_decision("req-1", "Isolate", PC, None, "Submitted", "action-1", None, T0)
    assert not ledger.final_reported("action-1", "req-1")
    ledger.mark_final_reported("action-1", "req-1", "Succeeded")
    assert ledger.final_reported("action-1", "req-1")
    assert not ledger.final_reported("action-1", "req-2")  # per request: a shared action reports each
