from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.model import final_outcome
from shared.domain.tracking import TrackingKey, delay_at, device_online
from shared.errors import InvalidRequest

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("elapsed", "delay"), [(0, 30), (29.9, 30), (30, 60), (89, 60), (90, 120), (1830, 900), (10**6, 900)]
)
def test_the_schedule_thins_out_with_time_since_submission(elapsed: float, delay: int) -> None:
    assert delay_at((30, 60, 120, 240, 480, 900), elapsed) == delay


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


def test_a_tracking_message_carries_only_the_key_of_its_submission() -> None:
    key = TrackingKey("7f1a2b3c-0000-4000-8000-000000000001", "r-1")
    assert key.to_message() == {"tracking": {"actionId": key.action_id, "requestId": "r-1"}}
    forged = {"tracking": {**key.to_message()["tracking"], "source": {"id": "x"}, "requestedBy": "eve"}}
    assert TrackingKey.from_message(forged) == key  # whatever else it carries is never read


@pytest.mark.parametrize(
    "body",
    [
        {"tracking": None},
        {"tracking": {"action": "Isolate"}},
        {"tracking": {"actionId": "not-a-guid", "requestId": "r"}},
        {"tracking": {"actionId": "7f1a2b3c-0000-4000-8000-000000000001", "requestId": "r\n"}},
        {"tracking": {"actionId": "7f1a2b3c-0000-4000-8000-000000000001\n", "requestId": "r"}},
    ],
)
def test_malformed_tracking_message_is_refused(body: dict[str, object]) -> None:
    with pytest.raises(InvalidRequest, match="InvalidTrackingMessage"):
        TrackingKey.from_message(body)


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
