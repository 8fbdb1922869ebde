"""What our own code costs, measured without the stack: the CPU time per message of the functions'
real code path on the in-memory ports of ``tests/fakes.py`` (in this process, before the stack
starts), and the cold import time of each function module in fresh interpreters against its
third-party dependencies alone."""

from __future__ import annotations

import importlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from tests.fakes import World, world

from .analysis import percentile
from .config import FUNCTION_MODULES, ROOT, Config
from .workload import Message, sim_machine

# Third-party packages the function modules import (requirements.txt), imported alone for the
# cold-start comparison.
BARE_DEPENDENCIES = (
    "azure.functions",
    "azure.identity",
    "azure.storage.queue",
    "azure.data.tables",
    "requests",
    "jsonschema",
)


# --- per-message overhead (in process, no I/O) ---------------------------------------------------


def measure_overhead(cfg: Config, messages: Sequence[Message], policy_json: dict[str, Any]) -> dict[str, Any]:
    """CPU time of our own code per message: the functions' real code path (decode, parse, fan-out,
    resolve, claim, policy, breaker, MDE request, result building and serialisation) on in-memory
    ports, each message's fanned-out requests included. No network."""
    fresh = _fresh_worlds(messages, policy_json)
    bodies = [m.body for m in messages if m.kind == "alert"]
    importlib.import_module("shared.app")  # import time is the cold start's figure, not the first message's
    first = fresh()
    cold_start = time.process_time_ns()
    _handle(first, bodies[0])  # the first message also compiles the JSON schemas and regexes
    cold_ns = time.process_time_ns() - cold_start
    for body in bodies:  # warm-up pass
        _handle(fresh(), body)
    cpu, wall, requests = _timed_passes(cfg.overhead_passes, bodies, fresh)
    cpu.sort()
    return {
        "messages": len(bodies),
        "samples": len(cpu),
        "p50_ms": percentile(cpu, 50) / 1e6,
        "p99_ms": percentile(cpu, 99) / 1e6,
        "mean_ms": statistics.fmean(cpu) / 1e6,
        "wall_p50_ms": percentile(sorted(wall), 50) / 1e6,
        "per_request_ms": sum(cpu) / max(1, requests) / 1e6,
        "first_ms": cold_ns / 1e6,
    }


def _fresh_worlds(messages: Sequence[Message], policy_json: dict[str, Any]) -> Callable[[], World]:
    """A maker of fresh in-memory worlds, each knowing every machine the messages name. A fresh
    ledger for every message: every device is new, as in a storm's first wave."""
    now = datetime.now(UTC)
    machines = [
        sim_machine(d, "Workstations") | {"lastSeen": now.isoformat()} for m in messages for d in m.devices
    ]

    def fresh() -> World:
        w = world(policy=policy_json)
        w.mde.add(*machines)
        return w

    return fresh


def _handle(w: World, body: dict[str, Any]) -> int:
    """One message through ``shared.app.handle``, then each request it fanned out; returns how many
    requests (alert-devices) that was."""
    w.deliver(body)
    fanned = [document for _, document, _ in w.outbox.sent if "tracking" not in document]
    for document in fanned:
        w.deliver(document)
    return max(1, len(fanned))


def _timed_passes(
    passes: int, bodies: Sequence[dict[str, Any]], fresh: Callable[[], World]
) -> tuple[list[int], list[int], int]:
    """(CPU ns per message, wall ns per message, requests handled) over ``passes`` passes."""
    cpu: list[int] = []
    wall: list[int] = []
    requests = 0
    for _ in range(passes):
        for body in bodies:
            ports = fresh()
            wall_ns, cpu_ns = time.perf_counter_ns(), time.process_time_ns()
            requests += _handle(ports, body)
            cpu.append(time.process_time_ns() - cpu_ns)
            wall.append(time.perf_counter_ns() - wall_ns)
    return cpu, wall, requests


# --- cold start -----------------------------------------------------------------------------------


def _fresh_interpreter(*args: str) -> subprocess.CompletedProcess[str]:
    """``python *args`` in a fresh interpreter from the project root, without our PYTHON* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=60
    )


def _import_time(modules: Sequence[str]) -> tuple[float, float]:
    """(wall, CPU) seconds to import ``modules`` in a fresh interpreter, start-up excluded."""
    code = (
        "import time; w, c = time.perf_counter(), time.process_time()\n"
        + "".join(f"import {m}\n" for m in modules)
        + "print(time.perf_counter() - w, time.process_time() - c)"
    )
    wall, cpu = _fresh_interpreter("-c", code).stdout.split()[-2:]
    return float(wall), float(cpu)


def own_import_ms(module: str) -> float:
    """Self import time of our own modules (the function module and ``shared.*``) when importing
    ``module`` in a fresh interpreter, from ``-X importtime``: the part of the cold start that is ours."""
    total = 0
    for line in _fresh_interpreter("-X", "importtime", "-c", f"import {module}").stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[2].strip().split(".")[0] in ("shared", module):
            total += int(parts[0].split(":")[1])
    return total / 1000


def measure_cold_start(runs: int) -> dict[str, Any]:
    """Import time of each function module in a fresh interpreter vs. its third-party dependencies
    alone (same interpreter, same .pyc caches; interpreter start-up excluded): medians, and the
    median of the per-round ratios. The verdict uses CPU time, which other load on a shared
    machine disturbs less than wall time."""
    names = ("deps", *FUNCTION_MODULES)
    imports = {"deps": list(BARE_DEPENDENCIES), **{m: [m] for m in FUNCTION_MODULES}}
    samples: dict[str, list[tuple[float, float]]] = {k: [] for k in names}
    _import_time(FUNCTION_MODULES)  # compile .pyc once, as a deployed package has them
    for n in range(runs):  # back to back, order rotated: a ratio per round cancels slow load drifts
        for name in names[n % len(names) :] + names[: n % len(names)]:
            samples[name].append(_import_time(imports[name]))
    wall = {k: statistics.median(w for w, _ in v) * 1000 for k, v in samples.items()}
    cpu = {k: statistics.median(c for _, c in v) * 1000 for k, v in samples.items()}
    own = {m: statistics.median(own_import_ms(m) for _ in range(3)) for m in FUNCTION_MODULES}
    report: dict[str, Any] = {"runs": runs, "deps_ms": wall["deps"], "deps_cpu_ms": cpu["deps"]}
    for m in FUNCTION_MODULES:
        pairs = list(zip(samples[m], samples["deps"], strict=True))
        report |= {
            f"{m}_ms": wall[m],
            f"{m}_cpu_ms": cpu[m],
            f"{m}_own_ms": own[m],
            f"{m}_ratio": statistics.median(c / dc for (_, c), (_, dc) in pairs),
            f"{m}_wall_ratio": statistics.median(w / dw for (w, _), (dw, _) in pairs),
        }
    return report
