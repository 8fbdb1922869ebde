from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.model import MachineAction, Source, final_outcome
from shared.domain.results import MachineRef, Subject
from shared.domain.tracking import Tracking, delay_before_check, device_online, first_tracking
from shared.errors import InvalidRequest

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(("check", "delay"), [(1, 30), (2, 60), (3, 120), (6, 900), (7, 900), (50, 900)])
def test_schedule_grows_then_repeats_its_cap(check: int, delay: int) -> None:
    assert delay_before_check((30, 60, 120, 240, 480, 900), check) == delay


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        ("Succeeded", "Succeeded"),
        ("Failed", "Failed"),
        ("TimeOut", "TimedOut"),
        ("Cancelled", "Cancelled"),
        ("Canceled", "Cancelled"),
        ("cancelled", "Cancelled"),
        ("Pending", None),
        ("InProgress", None),
    ],
)
def test_final_outcome_per_mde_status(status: str, outcome: str | None) -> None:
    assert final_outcome(status) == outcome


def test_tracking_message_round_trips_and_counts_checks() -> None:
    subject = Subject(
        "Isolate", "r-1", Source("sentinel", "42"), MachineRef("a" * 40), {"isolationType": "Full"}
    )
    action = MachineAction({"id": "7f1a2b3c-0000-4000-8000-000000000001", "status": "Pending"})
    tracking = first_tracking(subject, action, NOW, timedelta(hours=48))
    again = Tracking.from_message(tracking.to_message())
    assert again == tracking
    assert again.deadline == NOW + timedelta(hours=48)
    later = again.next_check("InProgress")
    assert (later.check, later.last_status, later.deadline) == (2, "InProgress", again.deadline)


@pytest.mark.parametrize(
    "body",
    [{"tracking": None}, {"tracking": {"action": "Isolate"}}, {"tracking": {"action": "Reboot"}}],
)
def test_malformed_tracking_message_is_refused(body: dict[str, object]) -> None:
    with pytest.raises(InvalidRequest, match="InvalidTrackingMessage"):
        Tracking.from_message(body)


@pytest.mark.parametrize(
    ("machine", "online"),
    [
        ({"healthStatus": "Active", "lastSeen": "2026-11-23T09:50:00Z"}, True),
        ({"healthStatus": "Active", "lastSeen": "2026-11-21T09:00:00Z"}, False),
        ({"healthStatus": "Inactive", "lastSeen": "2026-11-23T09:59:00Z"}, False),
        ({"healthStatus": "ImpairedCommunication", "lastSeen": "2026-11-23T09:59:00Z"}, False),
        ({"healthStatus": "Active"}, True),
        ({}, False),
    ],
)
def test_device_online_needs_active_and_recently_seen(machine: dict[str, str], online: bool) -> None:
    assert device_online(machine, NOW, timedelta(hours=24))[0] is online
