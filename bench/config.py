"""What a benchmark run is: its ``Config`` and the two presets (full and quick), the pipeline settings
every pipeline phase runs with, MDE's rate limits the lower bound is computed from, and the targets
the verdicts hold the figures to."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shared.adapters.budget import CALLS_PER_HOUR, CALLS_PER_MINUTE

ROOT = Path(__file__).resolve().parent.parent
MINUTE, HOUR = 60.0, 3600.0
# MDE's limits per API group, as the MDE client knows them; the simulator is started with them.
RATE_PER_MINUTE, RATE_PER_HOUR = CALLS_PER_MINUTE, CALLS_PER_HOUR
# Every severity passes; the breaker is far above the storm; the rest is the documented default
# (notably unmanagedIsolationType "UnManagedDevice", which needs each machine's onboardingStatus).
POLICY = {"minimumSeverity": "Informational", "breaker": {"maxIsolations": 500, "windowMinutes": 60}}
TRACKING_SCHEDULE = "3600"  # real seconds: no tracking read happens during a phase (counted anyway)
FUNCTION_MODULES = ("isolate_fn", "release_fn")
TARGETS = {
    "writes_per_device": 1.02,
    "drain_ratio": 1.1,
    "lost": 0,
    "overhead_p50_ms": 2.0,
    "cold_ratio": 1.2,
    "contain_p50_s": 0.5,  # quiet system, alert -> MDE POST received, real seconds
    "contain_p99_s": 1.5,
    "scaled_drain_ratio": 1.1,  # with 4 host processes
    "scaled_throttled_share": 0.02,  # 429s as a share of MDE calls, with 4 host processes
}


@dataclass(frozen=True)
class Config:
    """The size, speed and limits of one run; times are simulated seconds unless named real."""

    name: str
    alerts: int  # alert messages in the storm
    devices: int  # distinct devices they name
    releases: int  # release tickets in the mixed phase (for other devices)
    time_scale: float  # simulated seconds per real second
    window_s: float = MINUTE  # simulated: the storm arrives within one minute
    multi_device_share: float = 0.1  # events naming two devices (Graph, Sentinel incident, streaming)
    name_only_share: float = 0.1  # of the Sentinel alerts: host by DNS name only (resolved by lookup)
    naive_retries: int = 3  # the playbook's immediate retries after a 429
    naive_workers: int = 16  # playbook runs in parallel
    overhead_passes: int = 3
    cold_runs: int = 9  # fresh interpreters per module for the cold-start median (0: skipped)
    cutoff_s: float = 180.0  # simulated: the measured window of a phase ends here at the latest
    tail_time_scale: float = 60.0  # after the window: fast clock, only to collect every result
    drain_timeout_s: float = 120.0  # real seconds to wait for the remaining results after the window
    seed: int = 8
    quiet_alerts: int = 200  # single alerts of the quiet-system phase, one device each (0: skipped)
    quiet_cap_s: float | None = None  # its maxPollingInterval (real s); None: host.json's
    scale_processes: tuple[int, ...] = (2, 4)  # the storm and mixed phases again with this many hosts
    burst_devices: int = 150  # devices alerting at once in the burst (over 100: the limit binds at once)
    burst_processes: tuple[int, ...] = (1, 2, 4)  # host processes of each burst run
    burst_time_scale: float = 1.0  # the burst runs at real time (its own time scale)


FULL = Config("full", alerts=1000, devices=50, releases=50, time_scale=2.0, cutoff_s=150.0)
QUICK = Config(
    "quick",
    alerts=60,
    devices=6,
    releases=5,
    time_scale=60,
    overhead_passes=1,
    cold_runs=0,
    drain_timeout_s=30.0,
    quiet_alerts=4,
    scale_processes=(2,),
    burst_devices=12,
    burst_processes=(2,),
    burst_time_scale=60,
)
