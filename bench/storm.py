"""Alert-storm benchmark: the deployed pipeline on the local stack against a naive per-alert playbook.

    .venv/bin/python -m bench.storm            # the full run (1,000 alerts, 50 devices, 50 releases)
    .venv/bin/python -m bench.storm --quick    # a tiny run (60 alerts, 6 devices, 5 releases)

One table on stdout; what every figure means is in ``bench/README.md``. The MDE simulator runs
with its real limits (100 calls per minute and 1,500 per hour per API group) and a ``time_scale``:
simulated durations are real ones times the time scale, and every time below is simulated.

Phases, each on fresh queues, a fresh ledger table, a reset simulator and identity endpoint and a
fresh host process (so token requests are per process):

1. storm: the alert storm through the local Functions host (``isolate_fn``, ``release_fn``);
2. mixed: the same storm plus release tickets for other devices;
3. naive: the mixed workload posted by a per-alert playbook (one POST per alert-device, 429
   retried at once up to ``naive_retries`` times, then given up); its isolate figures are the
   baseline of the storm, its unisolate figures that of the releases (the naive client makes no
   other call, so releases and isolations do not interact there);

plus, in this process before the stack starts, the CPU cost per message of our own code and the
cold import time of each function module against its third-party dependencies alone.

A pipeline phase's timing comes from its measured window: until every device is isolated and
every release submitted, or ``cutoff_s`` (simulated). The results still due after it are collected
with the simulator's clock sped up (``tail_time_scale``), only to check that none is lost.

This module is the command line and the order of a run; the workload, the in-process measurements,
the phases on the stack, their analysis and the report live beside it in ``bench/``. While it runs,
one line per step goes to stderr (what it does, then how long it took and its headline figure).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TextIO, TypeVar

from .config import FULL, FUNCTION_MODULES, POLICY, QUICK, Config
from .overhead import measure_cold_start, measure_overhead
from .phases import Bench
from .report import render
from .workload import Workloads, build_workloads, make_devices, sim_machine, storm_workload

T = TypeVar("T")


class Progress:
    """One line per step of a run on ``stream`` (stderr by default), stamped with the real seconds
    since the run started: the table itself comes only at the end."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self.started = time.monotonic()

    def __call__(self, text: str) -> None:
        stamp = f"[{time.monotonic() - self.started:4.0f} s]"
        print(f"bench {stamp} {text}", file=self.stream or sys.stderr, flush=True)

    def step(self, name: str, what: str, measure: Callable[[], T], summary: Callable[[T], str]) -> T:
        """``measure()``, announced with ``what`` and reported with ``summary`` of its result."""
        self(f"{name}: {what} ...")
        started = time.monotonic()
        result = measure()
        self(f"{name}: done in {time.monotonic() - started:.0f} s: {summary(result)}")
        return result


def run(
    cfg: Config,
    *,
    policy: dict[str, Any] | None = None,
    keep_logs: Path | None = None,
    progress: Progress | None = None,
    phase: str = "all",
) -> dict[str, Any]:
    """The whole benchmark (``phase`` "all"), or one part: "storm" (overhead, cold start, storm,
    mixed, naive), "scale" (several hosts, the burst) or "latency" (the quiet system); returns the
    report (``render`` prints it)."""
    started = time.monotonic()
    progress = progress or Progress()
    policy = POLICY if policy is None else policy
    work = build_workloads(cfg)
    report: dict[str, Any] = {
        "config": cfg,
        "policy": policy,
        "machine": machine_info(),
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    if phase in ("all", "storm"):
        report |= in_process(cfg, work, policy, progress)
    report |= stack_phases(cfg, work, policy, keep_logs, progress, phase)
    report["wall_s"] = time.monotonic() - started
    return report


def in_process(cfg: Config, work: Workloads, policy: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """The per-message overhead and the cold imports, measured first, while nothing else of ours runs."""
    report: dict[str, Any] = {}
    report["overhead"] = progress.step(
        "overhead",
        f"{cfg.overhead_passes} x {len(work.storm):,} storm messages on in-memory ports, in this process",
        lambda: measure_overhead(cfg, work.storm, policy),
        lambda o: f"p50 {o['p50_ms']:.2f} ms per message",
    )
    report["cold"] = (
        progress.step(
            "cold start",
            f"{cfg.cold_runs} rounds of imports in fresh interpreters",
            lambda: measure_cold_start(cfg.cold_runs),
            lambda c: (
                ", ".join(f"{m} {c[f'{m}_ratio']:.2f} x" for m in FUNCTION_MODULES) + " the dependencies"
            ),
        )
        if cfg.cold_runs
        else None
    )
    return report


def stack_phases(
    cfg: Config,
    work: Workloads,
    policy: dict[str, Any],
    keep_logs: Path | None,
    progress: Progress,
    phase: str = "all",
) -> dict[str, dict[str, Any]]:
    """The storm, mixed and naive phases, then the quiet system, one after the other on one stack."""
    progress("stack: starting Azurite, the identity endpoint and the MDE simulator")
    phases: dict[str, dict[str, Any]] = {}
    with Bench(cfg) as bench:
        bench.keep_logs = keep_logs
        if phase in ("all", "storm"):
            phases |= storm_phases(bench, cfg, work, policy, progress)
        if phase in ("all", "scale"):
            phases["scale"] = scale_phases(bench, cfg, work, policy, progress)
        if phase in ("all", "latency") and cfg.quiet_alerts:
            devices = make_devices("ws-quiet", cfg.quiet_alerts)
            phases["quiet"] = progress.step(
                "phase quiet",
                f"{len(devices)} single alerts, one device each, idle between, real time",
                lambda: bench.run_quiet(devices, policy),
                _quiet_summary,
            )
    return phases


def storm_phases(
    bench: Bench, cfg: Config, work: Workloads, policy: dict[str, Any], progress: Progress
) -> dict[str, dict[str, Any]]:
    """The storm, mixed and naive phases."""
    machines, devices = work.machines, work.storm_devices
    storm = f"{len(work.storm):,} alerts for {cfg.devices} devices"
    timing = f" within {cfg.window_s:.0f} s simulated, time_scale {cfg.time_scale:g}"
    return {
        "storm": progress.step(
            "phase storm",
            storm + timing + ", through the local Functions host",
            lambda: bench.run_pipeline("storm", work.storm, machines, devices, policy),
            _pipeline_summary,
        ),
        "mixed": progress.step(
            "phase mixed",
            f"{storm} + {len(work.releases)} release tickets{timing}",
            lambda: bench.run_pipeline("mixed", work.mixed, machines, devices, policy),
            _pipeline_summary,
        ),
        "naive": progress.step(
            "phase naive",
            f"the mixed workload, one POST per alert-device from {cfg.naive_workers} playbook runs",
            lambda: bench.run_naive("naive", work.mixed, machines, devices),
            _naive_summary,
        ),
    }


def scale_phases(
    bench: Bench, cfg: Config, work: Workloads, policy: dict[str, Any], progress: Progress
) -> dict[str, dict[str, Any]]:
    """The storm and mixed phases with several host processes on the same queues (a scaled-out app),
    then the burst: ``burst_devices`` devices alerting at once, at real time, with 1, 2, 4 hosts."""
    machines, devices = work.machines, work.storm_devices
    phases = {}
    for n in cfg.scale_processes:
        for kind, messages in (("storm", work.storm), ("mixed", work.mixed)):
            label = f"{kind} x{n}"
            phases[label] = progress.step(
                f"phase {label}",
                f"the {kind} phase's workload through {n} host processes",
                partial(bench.run_pipeline, label, messages, machines, devices, policy, n),
                _pipeline_summary,
            )
    burst_cfg = replace(cfg, devices=cfg.burst_devices, alerts=cfg.burst_devices, window_s=1.0)
    burst_devices = make_devices("ws-burst", cfg.burst_devices)
    burst = storm_workload(burst_cfg, burst_devices)
    burst_machines = [sim_machine(d, "Workstations") for d in burst_devices]
    with bench.time_scale(cfg.burst_time_scale):
        for n in cfg.burst_processes:
            label = f"burst x{n}"
            phases[label] = progress.step(
                f"phase {label}",
                f"{len(burst)} devices alerting within 1 s, time_scale {cfg.burst_time_scale:g}, {n} hosts",
                partial(
                    bench.run_pipeline, label, burst, burst_machines, burst_devices, policy, n, trace=True
                ),
                _pipeline_summary,
            )
    return phases


def _pipeline_summary(phase: dict[str, Any]) -> str:
    releases = (
        f", releases {phase['releases_submitted_total']}/{phase['release_devices']} submitted"
        if phase["release_devices"]
        else ""
    )
    return (
        f"{_isolated(phase)}{releases}; first results "
        f"{phase['written_results']:,}/{phase['expected_results']:,}, {phase['lost']:,} lost; "
        f"429s {100 * phase['throttled_share']:.1f}% of MDE calls"
    )


def _quiet_summary(phase: dict[str, Any]) -> str:
    post, storage = phase["to_post"], phase["storage_per_request"]
    if post is None or storage is None:
        return f"no alert timed ({phase['timed']}/{phase['alerts']})"
    return (
        f"alert -> POST p50 {post['p50']:.3f} s, p99 {post['p99']:.3f} s; per request "
        f"{storage['mean']:.1f} storage transactions and {phase['mde_per_request']['mean']:.1f} MDE calls "
        f"to the first result; {phase['missing']} results missing"
    )


def _naive_summary(phase: dict[str, Any]) -> str:
    isolate_posts = phase["writes"].get("isolate", 0)
    return f"{_isolated(phase)}; {isolate_posts:,} isolate POSTs, {phase['gave_up']:,} given up"


def _isolated(phase: dict[str, Any]) -> str:
    if phase["drain_s"] is not None:
        return (
            f"every device isolated at {phase['drain_s']:.1f} s simulated "
            f"({phase['drain_ratio']:.2f} x the bound)"
        )
    return f"only {phase['devices_isolated']}/{phase['storm_devices']} devices isolated"


def machine_info() -> str:
    """CPU model, cores, Python and OS: the report's ``machine`` line."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor() or model
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()} ({platform.system()})"


# --- the command line -----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m bench.storm``: run, print the table on stdout, optionally write the raw JSON."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    report = run(_config(args), policy=json.loads(args.policy), keep_logs=args.keep_logs, phase=args.phase)
    print(render(report), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, default=lambda o: getattr(o, "__dict__", str(o)), indent=1))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.storm",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="a tiny run (the smoke test's)")
    parser.add_argument("--time-scale", type=float, help="simulated seconds per real second (full: 2.0)")
    parser.add_argument(
        "--cutoff", type=float, help="simulated seconds a phase's measured window lasts at most"
    )
    parser.add_argument(
        "--policy",
        help="ISOLATION_POLICY JSON for the pipeline phases (default: %(default)s)",
        default=json.dumps(POLICY),
    )
    parser.add_argument(
        "--tail-time-scale",
        type=float,
        help="simulator clock after a phase's measured window, only to collect the remaining results "
        "(default 60; equal to --time-scale: none, everything at the measured speed)",
    )
    parser.add_argument(
        "--devices", type=int, help="distinct devices in the storm (full: 50; over 100 the limit binds)"
    )
    parser.add_argument("--alerts", type=int, help="alert messages in the storm (full: 1,000)")
    parser.add_argument(
        "--phase",
        choices=("all", "storm", "scale", "latency"),
        default="all",
        help="everything (default); the storm part (overhead, cold start, storm, mixed, naive); the "
        "scale-out part (storm and mixed with 2 and 4 hosts, the burst with 1, 2 and 4); or the "
        "quiet-system phase (time to contain, cost per device, the polling trade-off)",
    )
    parser.add_argument(
        "--latency-alerts", type=int, help="single alerts of the quiet-system phase (full: 200; 0: skip it)"
    )
    parser.add_argument(
        "--max-polling-interval",
        type=float,
        help="the quiet-system phase's maxPollingInterval in seconds (default: host.json's)",
    )
    parser.add_argument("--json", type=Path, help="also write the raw report as JSON here")
    parser.add_argument("--keep-logs", type=Path, help="keep each phase's host log and MDE request log here")
    return parser


def _config(args: argparse.Namespace) -> Config:
    """The preset (``--quick`` or full) with the options given on the command line."""
    cfg = QUICK if args.quick else FULL
    if args.time_scale:
        cfg = replace(cfg, time_scale=args.time_scale)
    if args.cutoff:
        cfg = replace(cfg, cutoff_s=args.cutoff)
    if args.devices:
        cfg = replace(cfg, devices=args.devices)
    if args.alerts:
        cfg = replace(cfg, alerts=args.alerts)
    if args.tail_time_scale:
        cfg = replace(cfg, tail_time_scale=args.tail_time_scale)
    if args.latency_alerts is not None:
        cfg = replace(cfg, quiet_alerts=args.latency_alerts)
    if args.max_polling_interval:
        cfg = replace(cfg, quiet_cap_s=args.max_polling_interval)
    return cfg


if __name__ == "__main__":
    main()
