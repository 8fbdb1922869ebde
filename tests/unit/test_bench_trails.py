"""The quiet-system phase's accounting: trace records -> named operations, trails and costs, and the
polling trade-off model. Plain values, no stack."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from bench.tradeoff import idle_polls_per_day, modelled_latencies, slowest_ramp_s, tradeoff
from bench.trails import Endpoints, TrailIndex, costs, mde_total, op_name, steps, storage_total

ENDPOINTS = Endpoints.of(
    {
        "queue": "http://127.0.0.1:1001/devstoreaccount1",
        "table": "http://127.0.0.1:1002/devstoreaccount1",
        "mde": "http://127.0.0.1:1003",
        "identity": "http://127.0.0.1:1004",
    },
    "results",
)


def rec(t0: float, port: int, method: str, path: str, msg: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"kind": "http", "msg": msg, "t0": t0, "t1": t0 + 0.01, "m": method,
            "host": f"127.0.0.1:{port}", "path": path, "q": {}, **extra}  # fmt: skip


@pytest.mark.parametrize(
    ("record", "name"),
    [
        (rec(0, 1001, "GET", "/devstoreaccount1/alerts/messages"), "queue: Get Messages"),
        (rec(0, 1001, "POST", "/devstoreaccount1/results/messages"), "queue: Put Message (result)"),
        (
            rec(0, 1001, "POST", "/devstoreaccount1/alerts/messages", q={"visibilitytimeout": "30"}),
            "queue: Put Message (own queue, hidden 30 s)",
        ),
        (rec(0, 1001, "DELETE", "/devstoreaccount1/alerts/messages/m1"), "queue: Delete Message"),
        (
            rec(0, 1002, "GET", "/devstoreaccount1/ledger(PartitionKey='machine%3Aab12',RowKey='isolation')"),
            "table: read machine/isolation",
        ),
        (
            rec(0, 1002, "POST", "/devstoreaccount1/ledger", keys=["action:x1", "final:0af3"]),
            "table: insert action/final",
        ),
        (
            rec(0, 1002, "GET", "/devstoreaccount1/ledger()", q={"$filter": "PartitionKey eq 'action:x1'"}),
            "table: query action",
        ),
        (
            rec(
                0,
                1002,
                "GET",
                "/devstoreaccount1/ledger()",
                q={"$filter": "PartitionKey eq 'action:x1' and (RowKey eq 'sub:a' or RowKey eq 'final:c' )"},
            ),
            "table: query action/final+sub",
        ),
        (
            rec(0, 1002, "PUT", "/devstoreaccount1/ledger(PartitionKey='audit%3A20261130',RowKey='2026-ab')"),
            "table: write audit/*",
        ),
        (rec(0, 1003, "GET", "/api/machines/ab12"), "MDE: Get machine"),
        (rec(0, 1003, "GET", "/api/machineactions", q={"$filter": "x"}), "MDE: List machine actions"),
        (rec(0, 1003, "GET", "/api/machineactions/x1"), "MDE: Get machine action"),
        (rec(0, 1003, "POST", "/api/machines/ab12/isolate"), "MDE: Isolate machine"),
        (rec(0, 1004, "GET", "/msi/token"), "token: identity endpoint"),
    ],
)
def test_each_traced_request_is_named_by_its_operation(record: dict[str, Any], name: str) -> None:
    assert op_name(record, ENDPOINTS) == name


def trace() -> list[dict[str, Any]]:
    """A message m1 picked up by a poll, its invocation (claim read, isolate, result, a tracking
    message m2), the host's delete; then m2 picked up and checked (action read, final result)."""
    q, t, mde = 1001, 1002, 1003
    claim = "/devstoreaccount1/ledger(PartitionKey='machine%3Aab',RowKey='isolation')"
    return [
        rec(0.00, q, "GET", "/devstoreaccount1/alerts/messages"),  # an idle poll
        rec(1.00, q, "GET", "/devstoreaccount1/alerts/messages", ids=["m1"]),
        {"kind": "invoke", "msg": "m1", "t0": 1.02, "t1": 1.20},
        rec(1.03, t, "GET", claim, "m1"),
        rec(1.05, mde, "POST", "/api/machines/ab/isolate", "m1"),
        rec(1.08, q, "POST", "/devstoreaccount1/results/messages", "m1", ids=["r1"]),
        rec(1.10, q, "POST", "/devstoreaccount1/alerts/messages", "m1", ids=["m2"]),
        rec(1.21, q, "DELETE", "/devstoreaccount1/alerts/messages/m1", "m1"),
        rec(2.20, q, "GET", "/devstoreaccount1/alerts/messages", ids=["m2"]),
        {"kind": "invoke", "msg": "m2", "t0": 2.22, "t1": 2.30},
        rec(2.23, mde, "GET", "/api/machineactions/x1", "m2"),
        rec(2.25, q, "POST", "/devstoreaccount1/results/messages", "m2", ids=["r2"]),
        rec(2.31, q, "DELETE", "/devstoreaccount1/alerts/messages/m2", "m2"),
    ]


def test_a_trail_follows_the_message_through_its_tracking_check_and_counts_every_call() -> None:
    index = TrailIndex(trace())
    trail = index.trail("m1")
    assert len(index.idle_polls) == 1
    first = costs(trail, ENDPOINTS)
    assert first == {
        "queue: Get Messages": 1,
        "table: read machine/isolation": 1,
        "MDE: Isolate machine": 1,
        "queue: Put Message (result)": 1,
        "queue: Put Message (own queue)": 1,
        "queue: Delete Message": 1,
    }
    assert storage_total(first) == 5 and mde_total(first) == 1
    [check] = trail.follow_ups
    assert costs(check, ENDPOINTS) == {
        "queue: Get Messages": 1,
        "MDE: Get machine action": 1,
        "queue: Put Message (result)": 1,
        "queue: Delete Message": 1,
    }


def test_steps_cover_the_path_from_the_poll_to_the_delete_without_gaps() -> None:
    path = steps(TrailIndex(trace()).trail("m1"), ENDPOINTS)
    names = [name for name, _, _ in path]
    assert names[:4] == [
        "queue: Get Messages (the poll that got it)",
        "host: hand-over to the worker",
        "in process: decode, parse, route",
        "table: read machine/isolation",
    ]
    assert names[-1] == "host: queue: Delete Message"
    inside = path[:-1]
    assert all(a[2] == pytest.approx(b[1]) for a, b in itertools.pairwise(inside))


def test_the_slowest_ramp_sums_every_wait_below_the_cap_at_the_upper_random_bound() -> None:
    assert slowest_ramp_s(2.0) == pytest.approx(0.1 + 0.22 + 0.34 + 0.58 + 1.06)
    assert slowest_ramp_s(0.1) == 0.0


def test_idle_polls_and_modelled_latency_follow_the_poll_cycle() -> None:
    assert idle_polls_per_day(1.0, 0.0, listeners=2) == 172_800
    latencies = modelled_latencies([0.05], cap_s=1.0, poll_s=0.0)
    assert latencies[0] == pytest.approx(0.055) and latencies[-1] == pytest.approx(1.045)
    rows = {row.cap_s: row for row in tradeoff([0.05], 0.0, measured_cap_s=2.0, caps=(0.5, 2.0))}
    assert rows[0.5].p50_s == pytest.approx(0.3, abs=0.01) and rows[2.0].measured
    assert rows[0.5].polls_per_day == 4 * rows[2.0].polls_per_day
