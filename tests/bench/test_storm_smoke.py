"""The storm benchmark's quick version (``python -m bench.storm --quick``), as a smoke test.

It runs the real local stack (Azurite, the MDE simulator with its real limits, the identity
endpoint, the local Functions host) and asserts the correctness of counts only, never timings:
every alert-device gets exactly its one first result, one MDE write per distinct device, nothing
lost, one token request per host process.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench.config import QUICK
from bench.report import render
from bench.storm import run

pytestmark = pytest.mark.integration

PIPELINE_PHASES = ("storm", "mixed")


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    result = run(QUICK)
    print(render(result))  # shown by pytest on failure (and with -s)
    return result


@pytest.mark.parametrize("phase", PIPELINE_PHASES)
def test_every_alert_device_gets_exactly_one_first_result(report: dict[str, Any], phase: str) -> None:
    figures = report[phase]
    assert figures["alert_devices"] > figures["alert_messages"] >= QUICK.alerts  # fan-out exercised
    assert figures["missing"] == 0, figures["missing_ids"]
    assert figures["duplicates"] == 0
    assert figures["unexpected"] == 0
    assert figures["written_results"] == figures["expected_results"]


@pytest.mark.parametrize("phase", PIPELINE_PHASES)
def test_one_isolate_per_distinct_device_and_nothing_lost(report: dict[str, Any], phase: str) -> None:
    figures = report[phase]
    assert figures["devices_isolated_total"] == figures["storm_devices"] == QUICK.devices
    assert figures["writes"]["isolate"] == QUICK.devices  # write calls per distinct device == 1.00
    assert figures["isolate_writes_per_device"] == 1.0
    assert figures["outcomes_alert"].get("Submitted") == QUICK.devices
    assert figures["outcomes_alert"].get("AlreadyPending") == figures["alert_devices"] - QUICK.devices
    assert figures["lost"] == 0
    assert figures["gave_up"] == 0
    assert figures["poison"] == 0


def test_releases_are_submitted_once_each(report: dict[str, Any]) -> None:
    mixed = report["mixed"]
    assert mixed["release_devices"] == QUICK.releases
    assert mixed["releases_submitted_total"] == QUICK.releases
    assert mixed["writes"]["unisolate"] == QUICK.releases
    assert mixed["outcomes"].get("Submitted") == QUICK.devices + QUICK.releases


def test_naive_baseline_makes_one_call_per_alert_device(report: dict[str, Any]) -> None:
    naive = report["naive"]
    assert naive["writes"]["isolate"] >= naive["alert_devices"]  # 429 retries come on top
    assert naive["writes"]["unisolate"] >= QUICK.releases


@pytest.mark.parametrize("phase", PIPELINE_PHASES)
def test_one_token_request_per_process(report: dict[str, Any], phase: str) -> None:
    assert report[phase]["tokens_per_process"] == 1
