"""The breaker's stored form and its failures, without a server: the largest allowed window fits one
Table property, the form earlier versions wrote is still read, and a breaker that cannot be read or
written holds the isolation (``HeldForApproval``, ``breaker open``) instead of failing it."""

from __future__ import annotations

import dataclasses
import json
import logging
from datetime import timedelta
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from shared.adapters.ledger.breaker import TableBreaker, breaker_entity, state_from_entity
from shared.adapters.ledger.store import TableStore, digest
from shared.domain.breaker import BreakerSlot, BreakerState
from shared.domain.policy_config import MAX_BREAKER_ISOLATIONS, BreakerPolicy
from shared.usecases.context import Context
from tests.fakes import T0, machine, world

PC = "c28460d93e441d30869ebb33920c06acbb6fd75e"
# A Table string property holds 32K UTF-16 characters (64 KiB).
PROPERTY_CHARS = 32 * 1024


class FailingTable:
    """A ledger table whose breaker entity does not exist yet and cannot be written, answering as
    the storage service does (the SDK's error with the service's error code)."""

    def __init__(self, code: str) -> None:
        self.code = code

    def get_entity(self, partition_key: str, row_key: str) -> Any:
        raise ResourceNotFoundError("The specified resource does not exist.")

    def create_entity(self, entity: dict[str, Any]) -> Any:
        error = HttpResponseError(message=f"{self.code}: the service refused the write")
        error.error_code = self.code  # type: ignore[attr-defined]  # what azure-data-tables sets
        raise error


def test_the_largest_allowed_breaker_fits_one_property_twice_over() -> None:
    late = T0 + timedelta(days=365 * 200)  # epoch milliseconds with as many digits as they will get
    slots = tuple(BreakerSlot(late, digest(f"r{i}", 16)) for i in range(MAX_BREAKER_ISOLATIONS))
    text = breaker_entity(BreakerState(slots=slots, open=True, opened_at=late))["isolations"]
    assert 2 * len(text) < PROPERTY_CHARS


def test_the_stored_breaker_reads_back_as_it_was_written() -> None:
    slots = (BreakerSlot(T0, "0123456789abcdef"), BreakerSlot(T0 + timedelta(milliseconds=1), "f" * 16))
    state = BreakerState(slots=slots, open=True, opened_at=T0, reset_by="soc-lead", reset_at=T0)
    assert state_from_entity(breaker_entity(state)) == state


@pytest.mark.parametrize(
    "stored",
    [
        # as earlier versions wrote it: [[epoch seconds, request hash, machine id], ...]
        json.dumps([[T0.timestamp(), "0123456789abcdef", PC]], separators=(",", ":")),
        f"{round(T0.timestamp() * 1000)}:0123456789abcdef",
    ],
)
def test_both_stored_forms_are_read(stored: str) -> None:
    state = state_from_entity({"isolations": stored, "open": "false"})
    assert state.slots == (BreakerSlot(T0, "0123456789abcdef"),) and not state.open


@pytest.mark.parametrize("reset", ["[]", "", None])
def test_an_operators_reset_leaves_no_slots(reset: str | None) -> None:
    assert state_from_entity({"isolations": reset, "open": False}).slots == ()


@pytest.mark.parametrize(
    "code", ["PropertyValueTooLarge", "TableNotFound", "AuthorizationPermissionMismatch"]
)
def test_a_breaker_that_cannot_be_written_holds_the_isolation(code: str) -> None:
    breaker = TableBreaker(TableStore(FailingTable(code)), BreakerPolicy(20, timedelta(minutes=60)))
    result = breaker.take_slot("req-1", PC, T0)
    assert result.held and result.count is None and result.reason is not None
    assert code in result.reason
    assert result.to_details()["breaker"]["reason"] == result.reason


def test_an_isolation_the_breaker_cannot_count_is_held_for_approval_with_the_breaker_open_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    w = world(policy={"minimumSeverity": "Informational"})
    w.mde.add(machine(PC, "ws-fin-0142.contoso.local"))
    broken = TableBreaker(TableStore(FailingTable("PropertyValueTooLarge")), BreakerPolicy())
    w.ctx = Context.of(w.ctx.settings, dataclasses.replace(w.ctx.ports, breaker=broken))
    with caplog.at_level(logging.WARNING):
        w.deliver({"machineId": PC, "requestId": "req-1", "severity": "High"})
    (result,) = w.outbox.results
    assert result["outcome"] == "HeldForApproval" and result["error"] is None
    assert "PropertyValueTooLarge" in result["breaker"]["reason"]
    assert w.mde.count("isolate") == 0 and w.claims.rows == {}  # nothing sent; the device is free again
    held = [r for r in caplog.records if r.getMessage().startswith("breaker open")]
    assert [r.levelno for r in held] == [logging.WARNING] and "request_id=req-1" in held[0].getMessage()
