"""The benchmark's pure parts: the rate-limit lower bound its drain ratios divide by, and the
workload's expected requests, which must be the ones the pipeline derives."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bench.analysis import rate_limit_bound
from bench.config import QUICK
from bench.workload import build_workloads, expected_requests
from shared.domain.results import Delivery


def test_bound_is_the_last_first_alert_while_the_minute_window_never_fills() -> None:
    onsets = [k * 1.2 for k in range(50)]
    assert rate_limit_bound(onsets) == pytest.approx(49 * 1.2)


def test_bound_waits_a_minute_per_hundred_calls_once_the_window_fills() -> None:
    onsets = [k * 60 / 250 for k in range(250)]  # 250 devices first alerting within one minute
    assert rate_limit_bound(onsets) == pytest.approx(onsets[49] + 120)  # t250 = t150 + 60 = t50 + 120


def test_bound_waits_for_the_hour_window_after_fifteen_hundred_calls() -> None:
    assert rate_limit_bound([0.0] * 1500) == pytest.approx(14 * 60)
    assert rate_limit_bound([0.0] * 1501) == pytest.approx(3600)


def test_every_alert_device_gets_its_own_request_id_derived_from_the_queue_message() -> None:
    work = build_workloads(replace(QUICK, multi_device_share=1.0))  # checks every event's devices too
    fanned = [m for m in work.storm if len(m.devices) > 1]
    assert fanned, "the workload must exercise fan-out"
    for message in fanned:
        delivery = Delivery("isolation", f"queue-id-{message.index}", 1)
        requests = expected_requests(message, delivery)
        assert [device for _, device in requests] == list(message.devices)
        assert len({request_id for request_id, _ in requests}) == len(message.devices)
        if message.shape != "canonical":  # a canonical request names its own requestId
            assert all(rid.startswith(delivery.fallback_request_id()) for rid, _ in requests)


def test_a_release_ticket_is_expected_under_its_own_request_id() -> None:
    release = build_workloads(QUICK).releases[0]
    delivery = Delivery("release", "queue-id", 1)
    assert expected_requests(release, delivery) == [(release.body["requestId"], release.devices[0])]
