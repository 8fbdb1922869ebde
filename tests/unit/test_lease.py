"""Isolation leases on in-memory ports: a device this service isolated is never forgotten."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.domain.lease import isolated_since
from shared.domain.model import MachineAction
from shared.errors import MdePermanentError
from tests.fakes import World, machine, raises, world

PC = "c28460d93e441d30869ebb33920c06acbb6fd75e"
DAY = 24 * 3600.0


def isolated(w: World, request_id: str = "iso-1") -> dict[str, Any]:
    """Isolate PC, let the action succeed, check it: returns the first lease message."""
    w.mde.add(machine(PC, "ws-fin-0142.contoso.local"))
    w.deliver({"machineId": PC, "requestId": request_id, "severity": "High"})
    (_, tracking, _) = w.outbox.sent.pop()
    w.clock.advance(minutes=5)
    w.mde.complete(w.mde.actions[-1]["id"], "Succeeded")
    w.deliver(tracking)
    ((_, lease, delay),) = w.outbox.sent
    w.outbox.sent.clear()
    assert delay == pytest.approx(w.ctx.settings.isolation_policy.lease.total_seconds())
    return dict(lease)


def reminders(w: World) -> list[dict[str, Any]]:
    return [r for r in w.outbox.results if r["outcome"] == "LeaseExpired"]


def test_a_lease_expires_with_the_isolation_its_source_and_how_long_and_repeats() -> None:
    w = world(policy={"leaseHours": 24})
    lease = isolated(w)
    w.clock.advance(hours=24)
    w.deliver(lease)
    (first,) = reminders(w)
    action_id = lease["lease"]["actionId"]
    assert (first["requestId"], first["machineAction"]["id"], first["machine"]["id"]) == (
        "iso-1",
        action_id,
        PC,
    )
    assert (first["leasePeriod"], first["sequence"], first["isolatedHours"]) == (1, 3, 24.0)
    assert first["source"] == {"system": "canonical", "id": None, "url": None}
    ((_, following, delay),) = w.outbox.sent
    assert following["lease"]["period"] == 2 and delay == DAY
    w.outbox.sent.clear()
    w.clock.advance(hours=24)
    w.deliver(following)
    assert [r["leasePeriod"] for r in reminders(w)] == [1, 2] and w.mde.count("unisolate") == 0


def test_exactly_one_reminder_per_period_however_often_it_is_delivered() -> None:
    w = world()
    lease = isolated(w)
    w.clock.advance(hours=25)
    for _ in range(3):
        w.deliver(lease, dequeue_count=2)
    assert len(reminders(w)) == 1
    assert len(w.outbox.sent) == 1  # and one next period: duplicates never multiply the chain


def test_a_release_before_expiry_ends_the_lease_without_a_reminder() -> None:
    w = world()
    lease = isolated(w)
    w.clock.advance(hours=1)
    w.mde.complete(w.mde.unisolate(PC, "Ticket [mde-containment request=rel]").id, "Succeeded")
    w.clock.advance(hours=24)
    w.deliver(lease)
    assert reminders(w) == [] and w.outbox.sent == []


def test_a_lease_ends_when_someone_else_releases_the_device() -> None:
    w = world()
    lease = isolated(w)
    w.clock.advance(hours=1)
    w.mde.analyst_action("Unisolate", PC, "Succeeded")
    w.clock.advance(hours=24)
    w.deliver(lease)
    assert reminders(w) == [] and w.outbox.sent == []


@pytest.mark.parametrize("status", ["Failed", "Cancelled", "TimeOut"])
def test_an_isolation_that_did_not_succeed_gets_no_lease(status: str) -> None:
    w = world()
    w.mde.add(machine(PC, "ws-fin-0142.contoso.local"))
    w.deliver({"machineId": PC, "requestId": "iso-1", "severity": "High"})
    (_, tracking, _) = w.outbox.sent.pop()
    w.mde.complete(w.mde.actions[-1]["id"], status)
    w.deliver(tracking)
    assert w.outbox.sent == []


def test_someone_elses_isolation_gets_no_lease() -> None:
    w = world()
    w.mde.add(machine(PC, "ws-fin-0142.contoso.local"))
    analyst = w.mde.analyst_action("Isolate", PC)
    w.deliver({"machineId": PC, "requestId": "iso-1", "severity": "High"})  # AlreadyPending: the analyst's
    (_, tracking, _) = w.outbox.sent.pop()
    w.mde.complete(analyst.id, "Succeeded")
    w.deliver(tracking)
    assert w.outbox.results[-1]["outcome"] == "Succeeded" and w.outbox.sent == []


def test_a_redelivery_finding_its_isolation_already_succeeded_starts_a_lease_that_holds() -> None:
    w = world()
    w.mde.add(machine(PC, "ws-fin-0142.contoso.local"))
    # The first delivery posted, then crashed; the device checked in before the redelivery.
    own = w.mde.isolate(PC, "Ransomware [mde-containment source=canonical request=iso-2]", "Full")
    w.mde.complete(own.id, "Succeeded")
    w.deliver({"machineId": PC, "requestId": "iso-2", "comment": "Ransomware"}, dequeue_count=2)
    assert w.outbox.outcomes == ["Submitted", "Succeeded"] and w.mde.count("isolate") == 1
    ((_, lease, _),) = w.outbox.sent
    w.outbox.sent.clear()
    w.clock.advance(hours=25)
    w.deliver(lease)
    (reminder,) = reminders(w)
    assert (reminder["requestId"], reminder["machineAction"]["id"]) == ("iso-2", own.id)


def test_two_requests_leasing_one_isolation_get_one_reminder_per_period() -> None:
    w = world()
    w.mde.add(machine(PC, "ws-fin-0142.contoso.local"))
    w.deliver({"machineId": PC, "requestId": "iso-1", "severity": "High"})
    w.claims.rows.clear()  # the device's claim has lapsed: the next alert goes to MDE again
    w.deliver({"machineId": PC, "requestId": "iso-late", "severity": "High"})
    assert w.outbox.outcomes == ["Submitted", "AlreadyPending"] and len(w.mde.actions) == 1
    w.mde.complete(w.mde.actions[-1]["id"], "Succeeded")
    trackings = [document for _, document, _ in w.outbox.sent]
    w.outbox.sent.clear()
    for tracking in trackings:
        w.deliver(tracking)
    leases = [document for _, document, _ in w.outbox.sent]
    assert len(leases) == 2  # each request's final result starts one
    w.outbox.sent.clear()
    w.clock.advance(hours=25)
    for lease in leases:
        w.deliver(lease)
    assert len(reminders(w)) == 1
    assert len(w.outbox.sent) == 1  # one chain goes on, the other ends


def test_a_lease_longer_than_a_week_is_chained_through_the_queue() -> None:
    w = world(policy={"leaseHours": 240})  # 10 days: a queue message hides for at most 7
    w.mde.add(machine(PC, "ws-fin-0142.contoso.local"))
    w.deliver({"machineId": PC, "requestId": "iso-1", "severity": "High"})
    (_, tracking, _) = w.outbox.sent.pop()
    w.mde.complete(w.mde.actions[-1]["id"], "Succeeded")
    w.deliver(tracking)
    ((_, lease, delay),) = w.outbox.sent
    assert delay == 7 * DAY
    w.outbox.sent.clear()
    w.clock.advance(days=7)
    w.deliver(lease)  # not due yet: waits the rest
    ((_, again, rest),) = w.outbox.sent
    assert again == lease and rest == pytest.approx(3 * DAY) and reminders(w) == []


def test_a_lease_message_naming_no_isolation_of_ours_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    w = world()
    isolated(w)
    forged = {
        "lease": {"actionId": "7f1a2b3c-0000-4000-8000-000000000001", "requestId": "iso-1", "period": 1}
    }
    with caplog.at_level(logging.WARNING):
        w.deliver(forged)
    assert reminders(w) == [] and w.outbox.sent == []
    assert any("names no isolation of ours" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("period", [0, -1, "1", True, 10**6])
def test_a_malformed_lease_message_is_rejected(period: object) -> None:
    w = world()
    w.deliver(
        {"lease": {"actionId": "7f1a2b3c-0000-4000-8000-000000000001", "requestId": "r", "period": period}}
    )
    assert [(r["outcome"], r["error"]["code"]) for r in w.outbox.results] == [
        ("Rejected", "InvalidLeaseMessage")
    ]


T = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"lastUpdateDateTimeUtc": "2026-11-23T10:05:00.1234567Z"}, T + timedelta(0, 300.123456)),
        ({"lastUpdateTimeUtc": "2026-11-23T10:05:00Z"}, T + timedelta(minutes=5)),
        ({"lastUpdateDateTimeUtc": "", "creationDateTimeUtc": "2026-11-23T10:00:00.5"}, T + timedelta(0, .5)),
        ({"lastUpdateDateTimeUtc": "yesterday"}, None),
    ],
)  # fmt: skip
def test_the_isolation_took_effect_at_mdes_last_update_as_mde_writes_it(
    raw: dict[str, str], expected: datetime | None
) -> None:
    assert isolated_since(MachineAction({"id": "a", **raw})) == expected


def test_a_refused_check_is_reported_once_and_the_lease_goes_on() -> None:
    w = world()
    lease = isolated(w)
    w.clock.advance(hours=25)
    refused = raises(MdePermanentError, "Forbidden", 403)  # the app's MDE role was removed, say
    w.mde.fail["machineactions"] = [refused, refused]
    w.deliver(lease)
    w.deliver(lease, dequeue_count=2)  # the same period again: reported once
    (failed,) = [r for r in w.outbox.results if r["outcome"] == "Failed"]
    assert (failed["sequence"], failed["error"]["code"], failed["machineAction"]["id"]) == (
        3,
        "Forbidden",
        lease["lease"]["actionId"],
    )
    ((_, following, delay),) = w.outbox.sent
    assert following["lease"]["period"] == 2 and delay == DAY
    w.outbox.sent.clear()
    w.clock.advance(hours=24)
    w.deliver(following)  # the role is back: the device is still remembered
    assert [r["leasePeriod"] for r in reminders(w)] == [2]


def test_a_lease_ends_when_its_isolation_is_gone_from_mde() -> None:
    w = world()
    lease = isolated(w)
    w.mde.actions.clear()
    w.clock.advance(hours=25)
    w.deliver(lease)
    assert w.outbox.results[-1]["outcome"] != "LeaseExpired" and w.outbox.sent == []
