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


def test_quiet_alerts_each_get_one_first_and_one_final_result(report: dict[str, Any]) -> None:
    quiet = report["quiet"]
    assert quiet["alerts"] == QUICK.quiet_alerts
    assert quiet["timed"] == QUICK.quiet_alerts  # every alert traced from the queue to MDE's POST
    assert (quiet["first_results"], quiet["final_results"]) == (QUICK.quiet_alerts, QUICK.quiet_alerts)
    assert quiet["missing"] == quiet["duplicates"] == quiet["poison"] == 0
    assert quiet["outcomes"] == {"1:Submitted": QUICK.quiet_alerts, "2:Succeeded": QUICK.quiet_alerts}
    assert quiet["token_requests"] == 1


def test_quiet_costs_are_counted_per_request(report: dict[str, Any]) -> None:
    quiet = report["quiet"]
    first, check = quiet["cost_first"], quiet["cost_check"]
    assert quiet["checks_per_request"] == 1  # the simulator finishes each action before its first check
    for costs in (first, check):  # one poll, one result and one delete per message, whatever else
        assert costs["queue: Get Messages"] == costs["queue: Put Message (result)"] == 1
        assert costs["queue: Delete Message"] == 1
    assert first["MDE: Isolate machine"] == 1
    assert check["MDE: Get machine action"] == 1
    assert quiet["mde_per_request"]["max"] == quiet["mde_per_request"]["mean"]  # the same for every alert
    assert quiet["stages"]["steps"]  # the common path was found and timed
    assert {row["cap_s"] for row in quiet["tradeoff"]} >= {0.5, 1.0, 2.0, 5.0, 10.0, 60.0}


def test_scaled_out_and_burst_runs_lose_nothing_and_isolate_each_device_once(report: dict[str, Any]) -> None:
    scale = report["scale"]
    processes = {int(label.rsplit("x", 1)[1]) for label in scale}
    assert processes == {*QUICK.scale_processes, *QUICK.burst_processes}
    assert {label.split(" x")[0] for label in scale} == {"storm", "mixed", "burst"}
    for label, figures in scale.items():
        assert figures["missing"] == figures["duplicates"] == figures["unexpected"] == 0, label
        assert figures["lost"] == 0, label
        assert figures["writes"]["isolate"] == figures["storm_devices"], label  # one per device, any host
        assert figures["tokens_per_process"] == 1, label
    burst = scale[f"burst x{QUICK.burst_processes[0]}"]
    assert burst["storm_devices"] == QUICK.burst_devices
    # The burst runs traced, so its storage transactions are counted; the other phases are not.
    assert burst["storage_per_device"] > 0
    assert all(scale[label]["storage_per_device"] is None for label in scale if not label.startswith("burst"))
