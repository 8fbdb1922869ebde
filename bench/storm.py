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
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import json
import logging
import math
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "events"
DOMAIN = "corp.contoso.com"
MINUTE, HOUR = 60.0, 3600.0
RATE_PER_MINUTE, RATE_PER_HOUR = 100, 1500  # the simulator's (and MDE's) limits per API group
# Every severity passes; the breaker is far above the storm; the rest is the documented default
# (notably unmanagedIsolationType "UnManagedDevice", which needs each machine's onboardingStatus).
POLICY = {"minimumSeverity": "Informational", "breaker": {"maxIsolations": 500, "windowMinutes": 60}}
TRACKING_SCHEDULE = "3600"  # real seconds: no tracking read happens during a phase (counted anyway)
SHAPES = (
    "canonical",
    "mde-alert",
    "graph-alert-v2",
    "sentinel-incident",
    "sentinel-alert",
    "defender-streaming",
)
MULTI_DEVICE_SHAPES = ("graph-alert-v2", "sentinel-incident", "defender-streaming")
SEVERITIES = ("High", "Medium", "Low", "Informational")
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
FUNCTION_MODULES = ("isolate_fn", "release_fn")
TARGETS = {
    "writes_per_device": 1.02,
    "drain_ratio": 1.1,
    "lost": 0,
    "overhead_p50_ms": 2.0,
    "cold_ratio": 1.2,
}

logger = logging.getLogger("bench.storm")


# --- configuration -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
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
)


# --- devices and events ------------------------------------------------------------------------


@dataclass(frozen=True)
class Device:
    index: int
    id: str
    name: str  # FQDN

    @property
    def host(self) -> str:
        return self.name.split(".", 1)[0]


def make_devices(prefix: str, count: int) -> list[Device]:
    return [
        Device(
            k,
            hashlib.sha1(f"mde-containment-bench:{prefix}:{k}".encode(), usedforsecurity=False).hexdigest(),
            f"{prefix}-{k:03d}.{DOMAIN}",
        )
        for k in range(count)
    ]


def sim_machine(device: Device, group: str) -> dict[str, Any]:
    """The simulator's Machine record: Active, onboarded, seen now (defaults fill the rest)."""
    return {
        "id": device.id,
        "computerDnsName": device.name,
        "osPlatform": "Windows11",
        "healthStatus": "Active",
        "onboardingStatus": "Onboarded",
        "lastIpAddress": f"10.{50 + len(group)}.{device.index // 250}.{device.index % 250 + 1}",
        "rbacGroupName": group,
    }


@dataclass
class Message:
    """One queue message of a workload: an alert (isolation queue) or a release ticket."""

    index: int
    at: float  # simulated seconds after the workload starts
    kind: str  # "alert" | "release"
    shape: str
    devices: tuple[Device, ...]
    body: dict[str, Any]


def _fixture(name: str) -> dict[str, Any]:
    return dict(json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8")))


class EventFactory:
    """Alerts of every supported shape, built from the fixture corpus with our devices substituted."""

    def __init__(self) -> None:
        self.canonical = _fixture("canonical-fanned-out")
        self.mde = _fixture("mde-alert-full")
        self.graph = _fixture("graph-alert-two-devices")
        self.incident = _fixture("sentinel-incident-three-hosts")
        self.alert = _fixture("sentinel-alert-entities-list")
        self.alert_by_name = _fixture("sentinel-alert-entities-string")
        self.streaming = _fixture("streaming-two-alerts")

    def build(
        self, shape: str, i: int, devices: Sequence[Device], severity: str, by_name: bool = False
    ) -> dict[str, Any]:
        builder: Callable[..., dict[str, Any]] = getattr(self, "_" + shape.replace("-", "_"))
        return builder(i, devices, severity, by_name)

    def _canonical(self, i: int, devices: Sequence[Device], severity: str, _: bool) -> dict[str, Any]:
        body = copy.deepcopy(self.canonical)
        body.pop("deviceName", None)
        body.pop("attempt", None)
        body.update(
            requestId=f"bench-{i:05d}",
            machineId=devices[0].id,
            severity=severity,
            comment=f"[{severity}] Ransomware behaviour detected (SIEM rule hit {i})",
            source={"system": "siem", "id": f"rule-hit-{i}"},
        )
        return body

    def _mde_alert(self, i: int, devices: Sequence[Device], severity: str, _: bool) -> dict[str, Any]:
        body = copy.deepcopy(self.mde)
        body.update(
            id=f"da{638000000000000000 + i}_{1364969609 + i}",
            incidentId=1126093 + i,
            severity=severity,
            machineId=devices[0].id,
            computerDnsName=devices[0].name,
        )
        return body

    def _graph_alert_v2(self, i: int, devices: Sequence[Device], severity: str, _: bool) -> dict[str, Any]:
        body = copy.deepcopy(self.graph)
        alert_id = f"da{637578995287051192 + i}_{756343937 + i}"
        tid = body["tenantId"]
        body.update(
            id=alert_id,
            providerAlertId=alert_id,
            severity=severity.lower(),
            alertWebUrl=f"https://security.microsoft.com/alerts/{alert_id}?tid={tid}",
        )
        device_evidence, process_evidence, _second, user_evidence = self.graph["evidence"]
        evidence = []
        for n, device in enumerate(devices):
            item = copy.deepcopy(device_evidence)
            item.update(mdeDeviceId=device.id, deviceDnsName=device.name, roles=["compromised"])
            evidence.append(item)
            if n == 0:
                process = copy.deepcopy(process_evidence)
                process["mdeDeviceId"] = device.id.upper()  # as the fixture: repeated, other case
                evidence.append(process)
        evidence.append(copy.deepcopy(user_evidence))
        body["evidence"] = evidence
        return body

    def _sentinel_incident(self, i: int, devices: Sequence[Device], severity: str, _: bool) -> dict[str, Any]:
        body = copy.deepcopy(self.incident)
        incident = body["object"]
        name = str(uuid.uuid5(uuid.NAMESPACE_URL, f"mde-containment-bench:incident:{i}"))
        arm_id = incident["id"].rsplit("/", 1)[0] + "/" + name
        incident.update(id=arm_id, name=name)
        props = incident["properties"]
        props.update(
            severity=severity,
            incidentNumber=4711 + i,
            incidentUrl=props["incidentUrl"].rsplit("/Incidents/", 1)[0] + "/Incidents/" + name,
        )
        host_template, *_, account, ip = self.incident["object"]["properties"]["relatedEntities"]
        entities = []
        for device in devices:
            host = copy.deepcopy(host_template)
            host["properties"].update(hostName=device.host, dnsDomain=DOMAIN, friendlyName=device.host)
            host["properties"]["additionalData"].update(MdatpDeviceId=device.id, DeviceDnsName=device.name)
            entities.append(host)
        props["relatedEntities"] = [*entities, copy.deepcopy(account), copy.deepcopy(ip)]
        return body

    def _sentinel_alert(
        self, i: int, devices: Sequence[Device], severity: str, by_name: bool
    ) -> dict[str, Any]:
        alert_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"mde-containment-bench:sentinel-alert:{i}"))
        device = devices[0]
        if by_name:  # SecurityAlert table row: Entities as a JSON string, host by name only
            body = copy.deepcopy(self.alert_by_name)
            body["Entities"] = json.dumps(
                [
                    {
                        "$id": "2",
                        "HostName": device.host.upper(),
                        "DnsDomain": DOMAIN,
                        "OSFamily": "Windows",
                        "Type": "host",
                    },
                    {"$id": "3", "Address": "203.0.113.7", "Type": "ip"},
                ]
            )
        else:
            body = copy.deepcopy(self.alert)
            host, *rest = body["Entities"]
            host.update(HostName=device.host, DnsDomain=DOMAIN, MdatpDeviceId=device.id)
            body["Entities"] = [host, *rest]
        body.update(
            SystemAlertId=alert_id,
            Severity=severity,
            AlertLink=body["AlertLink"].rsplit("/", 1)[0] + "/" + alert_id.split("-")[0],
        )
        return body

    def _defender_streaming(
        self, i: int, devices: Sequence[Device], severity: str, _: bool
    ) -> dict[str, Any]:
        machine, file_record, other, *_ = self.streaming["records"]
        records = []
        for n, device in enumerate(devices):
            record = copy.deepcopy(machine)
            record["properties"].update(
                AlertId=f"da{638502400001234567 + i}_-{1122334455 + n}",
                Severity=severity,
                DeviceId=device.id,
                DeviceName=device.name,
            )
            records.append(record)
            if n == 0:
                evidence = copy.deepcopy(file_record)
                evidence["properties"].update(
                    AlertId=record["properties"]["AlertId"], DeviceId=device.id, DeviceName=device.name
                )
                records.append(evidence)
        records.append(copy.deepcopy(other))  # a DeviceEvents record: ignored
        return {"records": records}


def release_body(i: int, device: Device) -> dict[str, Any]:
    ticket = f"INC{7000000 + i}"
    return {
        "machineId": device.id,
        "ticketId": ticket,
        "requestedBy": "ana@contoso.com",
        "approved": True,
        "comment": "Reimaged and verified clean",
        "requestId": f"{ticket}-release",
    }


def storm_workload(cfg: Config, devices: Sequence[Device]) -> list[Message]:
    """``cfg.alerts`` alerts within ``cfg.window_s`` (simulated), an incident spreading: device k
    first alerts at ``k * window / devices`` (its onset); every other alert falls at a uniform
    random time and names a device already affected then. Onset alerts name one device, so the
    onset is exactly the device's first arrival."""
    rng = random.Random(cfg.seed)  # noqa: S311 - a reproducible workload, not a secret
    factory = EventFactory()
    step = cfg.window_s / len(devices)
    slots: list[tuple[float, list[int]]] = [(k * step, [k]) for k in range(len(devices))]
    for _ in range(cfg.alerts - len(devices)):
        at = rng.uniform(0, cfg.window_s)
        affected = min(len(devices), int(at / step) + 1)
        slots.append((at, [rng.randrange(affected)]))
    slots.sort(key=lambda s: s[0])
    messages = []
    for i, (at, picked) in enumerate(slots):
        shape = SHAPES[i % len(SHAPES)]
        affected = min(len(devices), int(at / step) + 1)
        onset = at == picked[0] * step
        if (
            shape in MULTI_DEVICE_SHAPES
            and not onset
            and affected > 1
            and rng.random() < cfg.multi_device_share
        ):
            other = rng.randrange(affected - 1)
            picked.append(other if other < picked[0] else other + 1)
        by_name = shape == "sentinel-alert" and rng.random() < cfg.name_only_share
        chosen = tuple(devices[k] for k in picked)
        severity = SEVERITIES[rng.randrange(len(SEVERITIES))]
        body = factory.build(shape, i, chosen, severity, by_name)
        messages.append(Message(i, at, "alert", shape + ("/by-name" if by_name else ""), chosen, body))
    return messages


def release_workload(cfg: Config, devices: Sequence[Device]) -> list[Message]:
    """``cfg.releases`` approved release tickets at uniform random times within the window."""
    rng = random.Random(cfg.seed + 1)  # noqa: S311 - a reproducible workload, not a secret
    times = sorted(rng.uniform(0, cfg.window_s) for _ in devices)
    return [
        Message(10_000 + i, at, "release", "canonical-release", (device,), release_body(i, device))
        for i, (at, device) in enumerate(zip(times, devices, strict=True))
    ]


def expected_requests(message: Message, message_id: str) -> list[tuple[str, Device]]:
    """(request id, device) of every request the message makes, as the pipeline derives them (from
    the queue message id unless the body names its own): one first result is due for each."""
    from shared.domain import events

    by_key = {d.id: d for d in message.devices} | {d.name.lower(): d for d in message.devices}
    if message.kind == "release":
        return [(message.body["requestId"], message.devices[0])]
    parsed = events.parse_alert_event(copy.deepcopy(message.body), f"msg-{message_id}")
    out = []
    for request in parsed:
        key = request.device.machine_id or (request.device.device_name or "").lower()
        out.append((request.request_id, by_key[key]))
    return out


def check_workload(messages: Iterable[Message]) -> None:
    """Every generated event parses to exactly the devices it was built for (a generator bug would
    otherwise show up as a pipeline failure)."""
    for message in messages:
        got = [device for _, device in expected_requests(message, f"check-{message.index}")]
        if message.kind == "alert" and sorted(d.id for d in got) != sorted(d.id for d in message.devices):
            raise AssertionError(f"event {message.index} ({message.shape}) parsed to other devices")


# --- the rate-limit lower bound ------------------------------------------------------------------


def rate_limit_bound(
    first_arrivals: Iterable[float], per_minute: int = RATE_PER_MINUTE, per_hour: int = RATE_PER_HOUR
) -> float:
    """The earliest time (simulated s) by which every device can have its isolate admitted: one call
    per device, each no earlier than the device's first alert, admitted by sliding windows of
    ``per_minute`` per 60 s and ``per_hour`` per 3,600 s (greedy in arrival order is optimal)."""
    admitted: list[float] = []
    for arrival in sorted(first_arrivals):
        at = arrival
        if len(admitted) >= per_minute:
            at = max(at, admitted[-per_minute] + MINUTE)
        if len(admitted) >= per_hour:
            at = max(at, admitted[-per_hour] + HOUR)
        admitted.append(at)
    return admitted[-1] if admitted else 0.0


# --- per-message overhead (in process, no I/O) ---------------------------------------------------


def measure_overhead(cfg: Config, messages: Sequence[Message], policy_json: dict[str, Any]) -> dict[str, Any]:
    """CPU time of our own code per message: the functions' real code path (decode, parse, fan-out,
    resolve, claim, policy, breaker, MDE request, result building and serialisation) on in-memory
    ports, each message's fanned-out requests included. No network."""
    from tests.fakes import World, world

    now = datetime.now(UTC)
    bodies = [m.body for m in messages if m.kind == "alert"]
    machines = [
        sim_machine(d, "Workstations") | {"lastSeen": now.isoformat()} for m in messages for d in m.devices
    ]

    def fresh() -> World:  # a fresh ledger: every device is new, as in a storm's first wave
        w = world(policy=policy_json)
        w.mde.add(*machines)
        return w

    def one(w: World, body: dict[str, Any]) -> int:
        w.deliver(body)
        fanned = [document for _, document, _ in w.outbox.sent if "tracking" not in document]
        for document in fanned:
            w.deliver(document)
        return max(1, len(fanned))

    first = fresh()
    cold_start = time.process_time_ns()
    one(first, bodies[0])  # the first message also compiles the JSON schemas and regexes
    cold_ns = time.process_time_ns() - cold_start
    for body in bodies:  # warm-up pass
        one(fresh(), body)
    cpu: list[int] = []
    wall: list[int] = []
    pairs = 0
    for _ in range(cfg.overhead_passes):
        for body in bodies:
            ports = fresh()
            wall_ns, cpu_ns = time.perf_counter_ns(), time.process_time_ns()
            pairs += one(ports, body)
            cpu.append(time.process_time_ns() - cpu_ns)
            wall.append(time.perf_counter_ns() - wall_ns)
    cpu.sort()
    return {
        "messages": len(bodies),
        "samples": len(cpu),
        "p50_ms": _pct(cpu, 50) / 1e6,
        "p99_ms": _pct(cpu, 99) / 1e6,
        "mean_ms": statistics.fmean(cpu) / 1e6,
        "wall_p50_ms": _pct(sorted(wall), 50) / 1e6,
        "per_request_ms": sum(cpu) / max(1, pairs) / 1e6,
        "first_ms": cold_ns / 1e6,
    }


def _pct(sorted_values: Sequence[float], pct: float) -> float:
    if not sorted_values:
        return math.nan
    rank = max(0, min(len(sorted_values) - 1, math.ceil(pct / 100 * len(sorted_values)) - 1))
    return float(sorted_values[rank])


# --- cold start -----------------------------------------------------------------------------------


def _import_time(modules: Sequence[str]) -> tuple[float, float]:
    """(wall, CPU) seconds to import ``modules`` in a fresh interpreter, start-up excluded."""
    code = (
        "import time; w, c = time.perf_counter(), time.process_time()\n"
        + "".join(f"import {m}\n" for m in modules)
        + "print(time.perf_counter() - w, time.process_time() - c)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    wall, cpu = out.stdout.split()[-2:]
    return float(wall), float(cpu)


def own_import_ms(module: str) -> float:
    """Self import time of our own modules (the function module and ``shared.*``) when importing
    ``module`` in a fresh interpreter, from ``-X importtime``: the part of the cold start that is ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    total = 0
    for line in out.stderr.splitlines():
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


# --- the stack ------------------------------------------------------------------------------------


def _iso_to_epoch(text: str) -> float:
    """The simulator's ``2026-11-23T10:00:00.1234560Z`` -> epoch seconds."""
    return datetime.fromisoformat(text.rstrip("Z")[:26]).replace(tzinfo=UTC).timestamp()


def _timespan(seconds: float) -> str:
    whole = int(seconds)
    fraction = round((seconds - whole) * 1000)
    return f"00:{whole // 60:02d}:{whole % 60:02d}.{fraction:03d}"


def host_overrides(time_scale: float) -> dict[str, str]:
    """host.json's queue timings scaled like the simulator's (2 s polling, 30 s retry delay); the
    host's own processing time cannot be scaled and is what it is."""
    return {
        "maxPollingInterval": _timespan(max(0.1, 2.0 / time_scale)),
        "visibilityTimeout": _timespan(max(1.0, round(30.0 / time_scale))),
    }


@dataclass
class Sent:
    message: Message
    message_id: str
    sent_at: float  # epoch seconds (real)


class Collector(threading.Thread):
    """Reads the results queue while a phase runs (leaving the messages invisible, not deleted)."""

    def __init__(self, queue: Any) -> None:
        super().__init__(name="bench-results", daemon=True)
        self.queue = queue
        self.results: list[tuple[float, dict[str, Any]]] = []
        self.stop_event = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        from azure.core.exceptions import AzureError

        while not self.stop_event.is_set():
            try:
                batch = list(
                    self.queue.receive_messages(
                        messages_per_page=32, max_messages=32, visibility_timeout=3600
                    )
                )
            except AzureError as e:  # a hiccup of the emulator must not end the collection
                logger.warning("reading the results queue failed, retrying: %s", e)
                batch = []
            now = time.time()
            with self.lock:
                for message in batch:
                    self.results.append((now, json.loads(message.content)))
            if not batch:
                self.stop_event.wait(0.2)

    def snapshot(self) -> list[tuple[float, dict[str, Any]]]:
        with self.lock:
            return list(self.results)


def send_workload(
    connection: str,
    queues: dict[str, str],
    messages: Sequence[Message],
    t0: float,
    time_scale: float,
    workers: int = 6,
) -> list[Sent]:
    """Put each message on its queue at its (scaled) arrival time, from a few producer threads."""
    from azure.storage.queue import QueueClient

    order = sorted(messages, key=lambda m: m.at)
    sent: list[Sent] = []
    lock = threading.Lock()
    cursor = iter(order)

    def producer() -> None:
        clients = {
            kind: QueueClient.from_connection_string(connection, name) for kind, name in queues.items()
        }
        while True:
            with lock:
                message = next(cursor, None)
            if message is None:
                return
            delay = t0 + message.at / time_scale - time.time()
            if delay > 0:
                time.sleep(delay)
            receipt = clients[message.kind].send_message(json.dumps(message.body))
            with lock:
                sent.append(Sent(message, receipt.id, time.time()))

    threads = [threading.Thread(target=producer, name=f"bench-producer-{n}") for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if len(sent) != len(messages):
        raise RuntimeError(f"only {len(sent)} of {len(messages)} messages could be sent")
    return sent


class Bench:
    """The local stack for all phases, and one method per phase."""

    def __init__(self, cfg: Config) -> None:
        from devstack.stack import LocalStack

        self.cfg = cfg
        self.stack = LocalStack(time_scale=cfg.time_scale, host_overrides=host_overrides(cfg.time_scale))
        self.phase_no = 0
        self.keep_logs: Path | None = None

    def __enter__(self) -> Bench:
        from devstack.control import IdentityControl, MdeControl

        self.stack.start()
        self.sim = MdeControl(self.stack.mde_url)
        self.identity = IdentityControl(self.stack.identity_url)
        return self

    def __exit__(self, *_: object) -> None:
        self.stack.stop()

    def _fresh(self, machines: list[dict[str, Any]]) -> tuple[dict[str, str], str]:
        """New queues and ledger table for a phase; simulator and identity endpoint reset."""
        from azure.data.tables import TableServiceClient
        from azure.storage.queue import QueueServiceClient

        self.phase_no += 1
        n = self.phase_no
        queues = {
            "alert": f"bench{n}-isolation",
            "release": f"bench{n}-release",
            "results": f"bench{n}-results",
        }
        service = QueueServiceClient.from_connection_string(self.stack.azurite.connection_string)
        for name in queues.values():
            service.create_queue(name)
        table = f"bench{n}ledger"
        TableServiceClient.from_connection_string(self.stack.azurite.connection_string).create_table(table)
        self.sim.reset()
        self.sim.machines(machines, replace=True)
        self.identity.reset()
        return queues, table

    def _drop(self, queues: dict[str, str], table: str) -> None:
        """Delete a finished phase's queues and table: Azurite keeps its whole database in memory
        and writes it out every few seconds, so a phase run after another one's 2,000 results and
        ledger rows would be slower for that alone."""
        from azure.core.exceptions import ResourceNotFoundError
        from azure.data.tables import TableServiceClient
        from azure.storage.queue import QueueServiceClient

        connection = self.stack.azurite.connection_string
        service = QueueServiceClient.from_connection_string(connection)
        for name in queues.values():
            for queue in (name, f"{name}-poison"):
                with contextlib.suppress(ResourceNotFoundError):  # a poison queue that never appeared
                    service.delete_queue(queue)
        TableServiceClient.from_connection_string(connection).delete_table(table)

    def _wait_host_ready(self, log: Path, offset: int, queues: Iterable[str], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        wanted = [f"listening on queue {q} " for q in queues]
        while time.monotonic() < deadline:
            text = log.read_text(errors="replace")[offset:] if log.exists() else ""
            if all(w in text for w in wanted):
                return
            if "Traceback" in text or "\nfunchost: " in text:
                raise RuntimeError(f"the host did not start:\n{text[-3000:]}")
            time.sleep(0.05)
        raise TimeoutError("the host did not start listening in time")

    def run_pipeline(
        self,
        label: str,
        messages: Sequence[Message],
        machines: list[dict[str, Any]],
        storm_devices: Sequence[Device],
        policy: dict[str, Any],
    ) -> dict[str, Any]:
        """One phase through the local Functions host; returns the raw observations, analysed."""
        cfg, ts = self.cfg, self.cfg.time_scale
        queues, table = self._fresh(machines)
        log = self.stack.log_dir / "funchost-0.log"
        offset = len(log.read_text(errors="replace")) if log.exists() else 0
        self.stack.start_host(
            ISOLATION_QUEUE=queues["alert"],
            RELEASE_QUEUE=queues["release"],
            RESULTS_QUEUE=queues["results"],
            LEDGER_TABLE=table,
            ISOLATION_POLICY=json.dumps(policy),
            TRACKING_SCHEDULE=TRACKING_SCHEDULE,
        )
        self._wait_host_ready(log, offset, (queues["alert"], queues["release"]))
        connection = self.stack.azurite.connection_string
        collector = Collector(self.stack.queue(queues["results"]))
        collector.start()
        started = time.monotonic()
        t0 = time.time() + 0.3
        sent = send_workload(connection, queues, messages, t0, ts)
        expected: dict[str, tuple[Message, Device]] = {}
        for s in sent:
            for request_id, device in expected_requests(s.message, s.message_id):
                expected[request_id] = (s.message, device)
        # The measured window: until every storm device has an isolate and every release an unisolate
        # submitted, or the cutoff. Timing figures come from this window only.
        wanted = {("Isolate", d.id) for d in storm_devices} | {
            ("Unisolate", m.devices[0].id) for m in messages if m.kind == "release"
        }
        cutoff = t0 + cfg.cutoff_s / ts
        while time.time() < cutoff:
            done = {(a["type"], a["machineId"]) for a in self.sim.actions()}
            if wanted <= done:
                break
            time.sleep(0.1)
        window_end = time.time()
        window_stats = self.sim.stats()
        # The tail: every remaining result must still arrive exactly once (nothing lost), but its
        # timing is not measured, so the simulator's clock is sped up to get there quickly.
        firsts = {r["requestId"] for _, r in collector.snapshot() if r.get("sequence") == 1}
        tail = not expected.keys() <= firsts
        if tail and cfg.tail_time_scale > ts:
            self.sim.config(time_scale=cfg.tail_time_scale)
        deadline = time.monotonic() + cfg.drain_timeout_s
        while time.monotonic() < deadline:
            firsts = {r["requestId"] for _, r in collector.snapshot() if r.get("sequence") == 1}
            if expected.keys() <= firsts:
                break
            time.sleep(0.1)
        time.sleep(max(0.5, 5.0 / ts))  # a late duplicate would show up now
        drained_real = time.monotonic() - started
        collector.stop_event.set()
        collector.join(5)
        stats = self.sim.stats()
        recorded = self.sim.requests()
        tokens = self.identity.stats()["tokenRequests"]
        self.stack.stop_hosts()
        host_log = log.read_text(errors="replace")[offset:]
        if self.keep_logs:
            self.keep_logs.mkdir(parents=True, exist_ok=True)
            (self.keep_logs / f"{label}-funchost.log").write_text(host_log)
            (self.keep_logs / f"{label}-mde-requests.json").write_text(json.dumps(recorded))
        poison = sum(_queue_length(self.stack, f"{q}-poison") for q in (queues["alert"], queues["release"]))
        self._drop(queues, table)
        return analyse(
            label=label,
            cfg=cfg,
            t0=t0,
            sent=sent,
            expected=expected,
            results=collector.snapshot(),
            recorded=recorded,
            stats=stats,
            token_requests=tokens,
            processes=1,
            poison=poison,
            storm_devices=storm_devices,
            host_log=host_log,
            real_s=drained_real,
            window_end=window_end,
            window_stats=window_stats,
            tail=tail,
        )

    def run_naive(
        self,
        label: str,
        messages: Sequence[Message],
        machines: list[dict[str, Any]],
        storm_devices: Sequence[Device],
    ) -> dict[str, Any]:
        """The per-alert playbook: one POST per alert-device on arrival, 429 retried at once."""
        from devstack.identity_endpoint import DEV_TENANT_ID
        from devstack.stack import CLIENT_ID
        from devstack.tokens import mint_token

        cfg, ts = self.cfg, self.cfg.time_scale
        self._fresh(machines)
        token, _ = mint_token(
            audience="https://api.securitycenter.microsoft.com",
            roles=["Machine.Isolate", "Machine.Read.All"],
            client_id=CLIENT_ID,
            tenant_id=DEV_TENANT_ID,
            lifetime_s=3600,
            secret=self.stack.mde.signing_secret,
        )
        jobs: list[tuple[Message, Device, str]] = []
        for m in sorted(messages, key=lambda m: m.at):
            for n, device in enumerate(m.devices):
                jobs.append((m, device, f"{m.kind}-{m.index}-{n}"))
        outcomes: dict[str, str] = {}
        attempts: dict[str, int] = {}
        lock = threading.Lock()
        cursor = iter(jobs)
        t0 = time.time() + 0.3
        started = time.monotonic()

        def playbook() -> None:
            http = requests.Session()
            headers = {"Authorization": f"Bearer {token}"}
            while True:
                with lock:
                    job = next(cursor, None)
                if job is None:
                    return
                message, device, key = job
                delay = t0 + message.at / ts - time.time()
                if delay > 0:
                    time.sleep(delay)
                verb = "isolate" if message.kind == "alert" else "unisolate"
                body: dict[str, Any] = {"Comment": f"Playbook: {message.shape} {message.index}"}
                if verb == "isolate":
                    body["IsolationType"] = "Full"
                outcome = "GaveUp"
                for attempt in range(1, 2 + cfg.naive_retries):
                    attempts[key] = attempt
                    response = http.post(
                        f"{self.stack.mde_url}/api/machines/{device.id}/{verb}",
                        json=body,
                        headers=headers,
                        timeout=30,
                    )
                    if response.status_code == 429:
                        continue
                    if response.status_code == 201:
                        outcome = "Submitted"
                    elif response.status_code == 400 and "already in progress" in response.text:
                        outcome = "AlreadyPending"
                    else:
                        outcome = f"Failed{response.status_code}"
                    break
                with lock:
                    outcomes[key] = outcome

        with ThreadPoolExecutor(cfg.naive_workers) as pool:
            runs = [pool.submit(playbook) for _ in range(cfg.naive_workers)]
        for finished in runs:
            finished.result()  # a playbook run that crashed would otherwise go unnoticed
        real_s = time.monotonic() - started
        stats = self.sim.stats()
        recorded = self.sim.requests()
        sent = [Sent(m, f"naive-{m.index}", t0 + m.at / ts) for m in messages]
        expected = {key: (m, d) for m, d, key in jobs}
        # The playbook "writes" its outcome itself: one per alert-device; a give-up is a lost request.
        results = [
            (t0, {"requestId": key, "sequence": 1, "outcome": outcome, "action": "Isolate"})
            for key, outcome in outcomes.items()
        ]
        figures = analyse(
            label=label,
            cfg=cfg,
            t0=t0,
            sent=sent,
            expected=expected,
            results=results,
            recorded=recorded,
            stats=stats,
            token_requests=1,
            processes=1,
            poison=0,
            storm_devices=storm_devices,
            host_log="",
            real_s=real_s,
        )
        figures["max_attempt"] = max(attempts.values(), default=1)
        return figures


def _queue_length(stack: Any, name: str) -> int:
    """Messages in a queue, visible or not; 0 for a queue never created (a poison queue appears
    with its first message)."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return int(stack.queue(name).get_queue_properties().approximate_message_count or 0)
    except ResourceNotFoundError:
        return 0


# --- analysis -------------------------------------------------------------------------------------


_EXECUTED = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO devstack\.funchost: Executed function=\S+ "
    r"message_id=(\S+) dequeue_count=(\d+) outcome=.*? duration_ms=(\d+)",
    re.MULTILINE,
)


def host_starts(host_log: str) -> dict[str, float]:
    """message id -> epoch seconds when the host first started an invocation for it (from the
    host's "Executed ... duration_ms" lines, local time, millisecond resolution)."""
    starts: dict[str, float] = {}
    for stamp, message_id, _, duration_ms in _EXECUTED.findall(host_log):
        ended = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()  # local time, like the log
        start = ended - int(duration_ms) / 1000
        starts[message_id] = min(starts.get(message_id, math.inf), start)
    return starts


def analyse(
    *,
    label: str,
    cfg: Config,
    t0: float,
    sent: Sequence[Sent],
    expected: dict[str, tuple[Message, Device]],
    results: Sequence[tuple[float, dict[str, Any]]],
    recorded: Sequence[dict[str, Any]],
    stats: dict[str, dict[str, int]],
    token_requests: int,
    processes: int,
    poison: int,
    storm_devices: Sequence[Device],
    host_log: str,
    real_s: float,
    window_end: float = math.inf,
    window_stats: dict[str, dict[str, int]] | None = None,
    tail: bool = False,
) -> dict[str, Any]:
    """The figures of one phase. Times are simulated seconds since the workload started; only
    simulator requests made within the measured window count for timing."""
    ts = cfg.time_scale
    first = Counter(r["requestId"] for _, r in results if r.get("sequence") == 1)
    missing = [rid for rid in expected if first[rid] == 0]
    duplicates = sum(n - 1 for rid, n in first.items() if rid in expected and n > 1)
    unexpected = sum(n for rid, n in first.items() if rid not in expected)
    outcomes = Counter(r["outcome"] for _, r in results if r.get("sequence") == 1)
    gave_up = [
        r
        for _, r in results
        if r.get("sequence") == 1
        and (
            r["outcome"] == "GaveUp" or (r["outcome"] == "Failed" and (r.get("error") or {}).get("retryable"))
        )
    ]
    lost = len(missing) + len(gave_up) + poison
    alert_ids = {rid for rid, (m, _) in expected.items() if m.kind == "alert"}
    outcomes_alert = Counter(
        r["outcome"] for _, r in results if r.get("sequence") == 1 and r["requestId"] in alert_ids
    )
    release_requests = {rid for rid, (m, _) in expected.items() if m.kind == "release"}
    state_unknown = sum(
        1
        for _, r in results
        if r.get("sequence") == 1
        and r["requestId"] in release_requests
        and r.get("outcome") == "Submitted"
        and "deviceOnline" in r
        and r["deviceOnline"] is None
    )
    lost_alerts = sum(1 for rid in missing if rid in alert_ids) + sum(
        1 for r in gave_up if r["requestId"] in alert_ids
    )

    calls = Counter[str]()
    throttled = Counter[str]()
    first_submit: dict[str, float] = {}
    submitted_any: set[str] = set()  # over the whole phase, tail included
    tracking_reads = 0
    for entry in recorded:
        if not entry.get("authorized"):
            continue
        api, status = entry.get("api") or "?", int(entry.get("status") or 0)
        (throttled if status == 429 else calls)[api] += 1
        path = entry["path"]
        if entry["method"] == "GET" and path.startswith("/api/machineactions/"):
            tracking_reads += 1
        if entry["method"] == "POST" and status == 201 and path.endswith(("/isolate", "/unisolate")):
            submitted_any.add(f"{path.rsplit('/', 1)[1]}:{path.split('/')[3]}")
        at = _iso_to_epoch(entry["time"])
        if (
            entry["method"] == "POST"
            and status == 201
            and path.endswith(("/isolate", "/unisolate"))
            and at <= window_end
        ):
            key = f"{path.rsplit('/', 1)[1]}:{path.split('/')[3]}"
            first_submit.setdefault(key, (at - t0) * ts)
    # The simulator's own counters must agree with its request log.
    if dict(stats.get("calls", {})) != dict(calls) or dict(stats.get("throttled", {})) != dict(throttled):
        logger.warning(
            "request log and /_control/stats disagree: %s %s vs %s", dict(calls), dict(throttled), stats
        )
    window_throttled = dict((window_stats or stats).get("throttled", {}))

    storm_ids = {d.id for d in storm_devices}
    release_msgs = [s for s in sent if s.message.kind == "release"]
    release_ids = {s.message.devices[0].id for s in release_msgs}
    onsets: dict[str, float] = {}
    onset_message: dict[str, Sent] = {}
    for s in sorted(sent, key=lambda s: s.message.at):
        if s.message.kind == "alert":
            for d in s.message.devices:
                if d.id not in onsets:
                    onsets[d.id], onset_message[d.id] = s.message.at, s
    isolated = {mid: first_submit[f"isolate:{mid}"] for mid in storm_ids if f"isolate:{mid}" in first_submit}
    drain = max(isolated.values()) if len(isolated) == len(storm_ids) else None
    bound = rate_limit_bound(onsets.values())
    cutoff = min(cfg.cutoff_s, (window_end - t0) * ts) if window_end < math.inf else None
    waits = sorted(
        first_submit[f"unisolate:{s.message.devices[0].id}"] - s.message.at
        for s in release_msgs
        if f"unisolate:{s.message.devices[0].id}" in first_submit
    )
    release_done = [
        first_submit[f"unisolate:{mid}"] for mid in release_ids if f"unisolate:{mid}" in first_submit
    ]
    writes = Counter[str]()
    for api in ("isolate", "unisolate", "cancel"):
        writes[api] = calls[api] + throttled[api]
    # Stack lag: how long a message waited before the host started on it (real seconds, x ts in the
    # simulated figures). Large values mean the local stack, not MDE, was the bottleneck.
    starts = host_starts(host_log)
    lags = sorted(starts[s.message_id] - s.sent_at for s in sent if s.message_id in starts)
    onset_lags = sorted(
        starts[m.message_id] - m.sent_at for m in onset_message.values() if m.message_id in starts
    )
    return {
        "label": label,
        "real_s": real_s,
        "messages": len(sent),
        "alert_messages": sum(1 for s in sent if s.message.kind == "alert"),
        "alert_devices": sum(1 for m, _ in expected.values() if m.kind == "alert"),
        "storm_devices": len(storm_ids),
        "release_devices": len(release_ids),
        "expected_results": len(expected),
        "written_results": sum(first[rid] for rid in expected),
        "missing": len(missing),
        "missing_ids": missing[:5],
        "duplicates": duplicates,
        "unexpected": unexpected,
        "outcomes": dict(outcomes),
        "outcomes_alert": dict(outcomes_alert),
        "lost_alerts": lost_alerts,
        "gave_up": len(gave_up),
        "poison": poison,
        "lost": lost,
        "calls": dict(calls),
        "throttled": dict(throttled),
        "window_throttled": window_throttled,
        "tail": tail,
        "writes": dict(writes),
        "isolate_writes_per_device": writes["isolate"] / max(1, len(storm_ids)),
        "unisolate_writes_per_device": writes["unisolate"] / max(1, len(release_ids))
        if release_ids
        else None,
        "tracking_reads": tracking_reads,
        "devices_isolated": len(isolated),
        "devices_isolated_total": sum(1 for mid in storm_ids if f"isolate:{mid}" in submitted_any),
        "releases_submitted_total": sum(1 for mid in release_ids if f"unisolate:{mid}" in submitted_any),
        "cutoff_s": cutoff,
        "drain_s": drain,
        "bound_s": bound,
        "drain_ratio": drain / bound if drain is not None and bound > 0 else None,
        "releases_submitted": len(release_done),
        "release_state_unknown": state_unknown,
        "release_wait_p50_s": _pct(waits, 50) if waits else None,
        "release_wait_max_s": waits[-1] if waits else None,
        "release_drain_s": max(release_done)
        if len(release_done) == len(release_ids) and release_ids
        else None,
        "release_bound_s": rate_limit_bound(s.message.at for s in release_msgs) if release_msgs else None,
        "token_requests": token_requests,
        "tokens_per_process": token_requests / processes,
        "invocations": host_log.count("Executed function="),
        "redeliveries": len(
            re.findall(r"Executed function=\S+ message_id=\S+ dequeue_count=(?:[2-9]|\d\d)", host_log)
        ),
        "throttled_reenqueues": host_log.count("throttled, re-enqueued"),
        "max_attempt": max(
            (int(n) for n in re.findall(r"throttled, re-enqueued \S+ attempt=(\d+)", host_log)), default=1
        ),
        "lag_p50_s": _pct(lags, 50) * ts if lags else None,
        "lag_max_s": lags[-1] * ts if lags else None,
        "onset_lag_max_s": onset_lags[-1] * ts if onset_lags else None,
    }


# --- the report -----------------------------------------------------------------------------------


def machine_info() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor() or model
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()} ({platform.system()})"


def _f(value: Any, digits: int = 2, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.{digits}f}{unit}"
    return f"{value:,}{unit}" if isinstance(value, int) else f"{value}{unit}"


def _ratio(ours: Any, base: Any) -> str:
    if not isinstance(ours, int | float) or not isinstance(base, int | float) or not base:
        return "-"
    return f"{ours / base:.3f}"


def _verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("PASS" if ok else "FAIL")


def _apis(*phases: dict[str, Any]) -> list[str]:
    order = ["isolate", "unisolate", "cancel", "machineactions", "machines", "findbyip"]
    seen = set().union(*(set(p["calls"]) | set(p["throttled"]) for p in phases))
    return [a for a in order if a in seen] + sorted(seen - set(order))


def _admitted_throttled(phase: dict[str, Any], api: str) -> str:
    return f"{phase['calls'].get(api, 0):,} / {phase['throttled'].get(api, 0):,}"


def _drain(phase: dict[str, Any], naive: bool = False) -> tuple[str, str]:
    """(time until every device isolated, its ratio to the bound) as shown."""
    if phase["drain_s"] is not None:
        return _f(phase["drain_s"], 1), _f(phase["drain_ratio"])
    shown = f"{phase['devices_isolated']}/{phase['storm_devices']}"
    if naive or phase["cutoff_s"] is None:
        return f"never ({shown})", "never"
    return f"> {phase['cutoff_s']:.0f} ({shown} by then)", f"> {phase['cutoff_s'] / phase['bound_s']:.2f}"


def _throttled_total(phase: dict[str, Any]) -> str:
    window = sum(phase["window_throttled"].values())
    total = sum(phase["throttled"].values())
    return f"{window:,}" + (f" (+{total - window:,} tail)" if total != window else "")


def verdicts(report: dict[str, Any]) -> dict[str, bool | None]:
    storm, mixed = report["storm"], report["mixed"]
    overhead, cold = report["overhead"], report.get("cold")
    lost_ok = all(p["lost"] == 0 and p["duplicates"] + p["unexpected"] == 0 for p in (storm, mixed))
    return {
        "writes": max(
            storm["isolate_writes_per_device"],
            mixed["isolate_writes_per_device"],
            mixed["unisolate_writes_per_device"] or 0,
        )
        <= TARGETS["writes_per_device"],
        "drain": storm["drain_ratio"] is not None and storm["drain_ratio"] <= TARGETS["drain_ratio"],
        "mixed_drain": mixed["drain_ratio"] is not None and mixed["drain_ratio"] <= TARGETS["drain_ratio"],
        "releases": mixed["releases_submitted"] == mixed["release_devices"],
        "lost": lost_ok,
        "tokens": storm["tokens_per_process"] <= 1 and mixed["tokens_per_process"] <= 1,
        "overhead": overhead["p50_ms"] < TARGETS["overhead_p50_ms"],
        "cold": None
        if not cold
        else max(cold[f"{m}_ratio"] for m in FUNCTION_MODULES) <= TARGETS["cold_ratio"],
    }


_ATTEMPTS = "highest attempt of a request (limit: 20 / 4)"


def render(report: dict[str, Any]) -> str:
    cfg: Config = report["config"]
    storm, mixed, naive = report["storm"], report["mixed"], report["naive"]
    overhead, cold = report["overhead"], report.get("cold")
    v = verdicts(report)
    ts = cfg.time_scale
    lines: list[str] = []
    add = lines.append
    add(
        f"mde-containment storm benchmark ({cfg.name}), {report['when']}, {report['wall_s']:.0f} s wall clock"
    )
    add(f"machine: {report['machine']}")
    policy = json.dumps(report["policy"])
    add(f"pipeline settings: ISOLATION_POLICY={policy} TRACKING_SCHEDULE={TRACKING_SCHEDULE}")
    add(
        f"MDE simulator: real limits {RATE_PER_MINUTE}/min and {RATE_PER_HOUR}/h per API group; time_scale "
        f"{ts:g} (1 simulated min = {MINUTE / ts:.0f} s real); every time below is simulated seconds"
    )
    add(
        f"storm: {storm['alert_messages']:,} alerts = {storm['alert_devices']:,} alert-devices over "
        f"{storm['storm_devices']} devices within {cfg.window_s:.0f} s (device k first alerts at "
        f"k x {cfg.window_s / cfg.devices:.1f} s), {len(SHAPES)} shapes; mixed: + {mixed['release_devices']} "
        "release tickets for other devices; naive: the mixed workload, one POST per alert-device"
    )
    rows: list[tuple[str, ...]] = []

    def row(
        name: str, ours: Any, base: Any = None, ratio: str | None = None, target: str = "", ok: str = ""
    ) -> None:
        shown_ours = ours if isinstance(ours, str) else _f(ours)
        shown_base = base if isinstance(base, str) else _f(base)
        rows.append(
            (name, shown_ours, shown_base, _ratio(ours, base) if ratio is None else ratio, target, ok)
        )

    def section(title: str) -> None:
        rows.append((title,))

    def api_rows(phase: dict[str, Any]) -> None:
        row("API calls admitted, all groups", sum(phase["calls"].values()), sum(naive["calls"].values()))
        for api in _apis(phase, naive):
            row(
                f"  {api}: admitted / 429",
                _admitted_throttled(phase, api),
                _admitted_throttled(naive, api),
                "",
            )
        row(
            "429s received (measured window)",
            _throttled_total(phase),
            _throttled_total(naive),
            _ratio(sum(phase["window_throttled"].values()), sum(naive["window_throttled"].values())),
        )

    def lag_row(phase: dict[str, Any]) -> None:
        row(
            "  stack lag p50 / max; first alerts max (s)",
            f"{_f(phase['lag_p50_s'], 1)} / {_f(phase['lag_max_s'], 1)}; {_f(phase['onset_lag_max_s'], 1)}",
            "-",
            "",
        )

    def host_rows(phase: dict[str, Any]) -> None:
        row(
            "host invocations / redeliveries / 429 re-enqueues",
            f"{phase['invocations']:,} / {phase['redeliveries']:,} / {phase['throttled_reenqueues']:,}",
            "-",
            "",
        )
        row(_ATTEMPTS, phase["max_attempt"], naive["max_attempt"], "")
        row("phase wall clock (s real)", phase["real_s"], naive["real_s"])

    section(f"STORM: {storm['alert_messages']:,} alerts, {storm['storm_devices']} devices")
    row(
        "MDE write calls per distinct device",
        storm["isolate_writes_per_device"],
        naive["isolate_writes_per_device"],
        target=f"<= {TARGETS['writes_per_device']}",
        ok=_verdict(v["writes"]),
    )
    api_rows(storm)
    drain, ratio = _drain(storm)
    naive_drain, naive_ratio = _drain(naive, naive=True)
    row(
        "time until every device isolated (s)", drain, naive_drain, _ratio(storm["drain_s"], naive["drain_s"])
    )
    row("  rate-limit lower bound (s)", storm["bound_s"], naive["bound_s"], "")
    row("  drain / bound", ratio, naive_ratio, "", f"<= {TARGETS['drain_ratio']}", _verdict(v["drain"]))
    lag_row(storm)
    row(
        "first results: expected / written",
        f"{storm['expected_results']:,} / {storm['written_results']:,}",
        f"{naive['expected_results'] - naive['release_devices']:,} / -",
        "",
    )
    row("  missing / extra", f"{storm['missing']} / {storm['duplicates'] + storm['unexpected']}", "-", "")
    row("  outcomes", _outcomes(storm), _outcomes(naive, "alert"), "")
    row(
        "requests lost (no result, gave up, poison)",
        storm["lost"],
        naive["lost_alerts"],
        "",
        "0",
        _verdict(v["lost"]),
    )
    row("token requests per process", storm["tokens_per_process"], 1.0, target="1", ok=_verdict(v["tokens"]))
    row("tracking reads (GET machineactions/{id})", storm["tracking_reads"], 0, "")
    host_rows(storm)

    section(f"MIXED: the storm + {mixed['release_devices']} release tickets")
    drain, ratio = _drain(mixed)
    row(
        "containment: every device isolated (s)",
        drain,
        naive_drain,
        _ratio(mixed["drain_s"], naive["drain_s"]),
    )
    row("  drain / bound", ratio, naive_ratio, "", f"<= {TARGETS['drain_ratio']}", _verdict(v["mixed_drain"]))
    delay = mixed["drain_s"] - storm["drain_s"] if mixed["drain_s"] and storm["drain_s"] else None
    row("  delay vs the storm alone (s)", delay, None, "", "~0")
    row(
        "releases: unisolate submitted",
        f"{mixed['releases_submitted']}/{mixed['release_devices']}",
        f"{naive['releases_submitted']}/{naive['release_devices']}",
        "",
        "all",
        _verdict(v["releases"]),
    )
    row(
        "  wait after the ticket p50 / max (s)",
        f"{_f(mixed['release_wait_p50_s'], 1)} / {_f(mixed['release_wait_max_s'], 1)}",
        f"{_f(naive['release_wait_p50_s'], 1)} / {_f(naive['release_wait_max_s'], 1)}",
        "",
    )
    row(
        "  last release submitted / its bound (s)",
        f"{_f(mixed['release_drain_s'], 1)} / {_f(mixed['release_bound_s'], 1)}",
        f"{_f(naive['release_drain_s'], 1)} / {_f(naive['release_bound_s'], 1)}",
        "",
    )
    row("  release results with deviceOnline unknown", mixed["release_state_unknown"], "-", "")
    row(
        "write calls per device: isolate / unisolate",
        f"{_f(mixed['isolate_writes_per_device'])} / {_f(mixed['unisolate_writes_per_device'])}",
        f"{_f(naive['isolate_writes_per_device'])} / {_f(naive['unisolate_writes_per_device'])}",
        "",
        f"<= {TARGETS['writes_per_device']}",
        _verdict(v["writes"]),
    )
    api_rows(mixed)
    lag_row(mixed)
    row(
        "first results: expected / written",
        f"{mixed['expected_results']:,} / {mixed['written_results']:,}",
        f"{naive['expected_results']:,} / -",
        "",
    )
    row("  missing / extra", f"{mixed['missing']} / {mixed['duplicates'] + mixed['unexpected']}", "-", "")
    row("  outcomes", _outcomes(mixed), _outcomes(naive), "")
    row("requests lost", mixed["lost"], naive["lost"], "", "0", _verdict(v["lost"]))
    row("token requests per process", mixed["tokens_per_process"], 1.0, target="1", ok=_verdict(v["tokens"]))
    host_rows(mixed)

    section(f"PER-MESSAGE OVERHEAD: CPU in our code, no I/O ({overhead['samples']:,} messages)")
    row(
        "p50 per message (ms)",
        overhead["p50_ms"],
        None,
        "",
        f"< {TARGETS['overhead_p50_ms']}",
        _verdict(v["overhead"]),
    )
    row("p99 per message (ms)", overhead["p99_ms"], None, "")
    row(
        "mean per message / per alert-device (ms)",
        f"{overhead['mean_ms']:.3f} / {overhead['per_request_ms']:.3f}",
        None,
        "",
    )
    row("first message of a process (ms)", overhead["first_ms"], None, "")

    if cold:
        section(
            f"COLD START: import in a fresh interpreter, {cold['runs']} rounds; ms CPU / wall (medians), "
            "ratio = median of per-round ratios"
        )
        row("third-party dependencies alone", f"{cold['deps_cpu_ms']:.0f} / {cold['deps_ms']:.0f}", None, "")
        for m in FUNCTION_MODULES:
            row(
                f"{m}; CPU ratio to the dependencies (wall)",
                f"{cold[f'{m}_cpu_ms']:.0f} / {cold[f'{m}_ms']:.0f}",
                f"{cold['deps_cpu_ms']:.0f} / {cold['deps_ms']:.0f}",
                f"{cold[f'{m}_ratio']:.3f} ({cold[f'{m}_wall_ratio']:.2f})",
                f"<= {TARGETS['cold_ratio']}",
                _verdict(cold[f"{m}_ratio"] <= TARGETS["cold_ratio"]),
            )
            row("  of which our own modules (self, -X importtime)", cold[f"{m}_own_ms"], None, "")
    else:
        section("COLD START: skipped (--quick)")

    headers = ("figure", "ours", "naive", "ours/naive", "target", "")
    table = [r for r in rows if len(r) > 1]
    widths = [max(len(r[i]) for r in [*table, headers]) for i in range(6)]
    fmt = "  ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
    add("")
    add(fmt.format(*headers).rstrip())
    for r in rows:
        if len(r) == 1:
            add("-" * (sum(widths) + 10))
            add(r[0])
        else:
            add(fmt.format(*r).rstrip())
    add("-" * (sum(widths) + 10))
    summary = [
        ("writes/device <= 1.02", v["writes"]),
        ("storm drain <= 1.1 x bound", v["drain"]),
        ("mixed drain <= 1.1 x bound", v["mixed_drain"]),
        ("releases all submitted", v["releases"]),
        ("zero lost", v["lost"]),
        ("1 token/process", v["tokens"]),
        ("overhead p50 < 2 ms", v["overhead"]),
        ("cold import <= 1.2 x deps", v["cold"]),
    ]
    add("TARGETS: " + ", ".join(f"{name} {_verdict(ok)}" for name, ok in summary))
    notes = []
    for phase in (storm, mixed):
        lag, bound = phase["onset_lag_max_s"], phase["bound_s"]
        if lag is not None and bound and lag > 0.1 * bound:
            notes.append(
                f"{phase['label']}: the local stack ran up to {lag:.0f} s behind on a device's first alert "
                f"(> 10% of the bound): its timing includes the stack's own capacity at time_scale {ts:g}"
            )
        if phase["tail"] and cfg.tail_time_scale > ts:
            notes.append(
                f"{phase['label']}: results still due after the measured window were collected with the "
                f"simulator at time_scale {cfg.tail_time_scale:g} (their 429s are listed as tail)"
            )
    for note in notes:
        add(f"note: {note}")
    return "\n".join(lines)


def _outcomes(phase: dict[str, Any], kind: str | None = None) -> str:
    counts = phase["outcomes_alert"] if kind == "alert" and "outcomes_alert" in phase else phase["outcomes"]
    return " ".join(f"{k}:{n:,}" for k, n in sorted(counts.items())) or "-"


# --- main -----------------------------------------------------------------------------------------


def run(
    cfg: Config, *, policy: dict[str, Any] | None = None, keep_logs: Path | None = None
) -> dict[str, Any]:
    """The whole benchmark; returns the report (``render`` prints it)."""
    started = time.monotonic()
    policy = POLICY if policy is None else policy
    storm_devices = make_devices("ws-storm", cfg.devices)
    release_devices = make_devices("ws-rel", cfg.releases)
    storm = storm_workload(cfg, storm_devices)
    releases = release_workload(cfg, release_devices)
    check_workload([*storm, *releases])
    machines = [sim_machine(d, "Workstations") for d in storm_devices]
    machines += [sim_machine(d, "Released") for d in release_devices]
    report: dict[str, Any] = {
        "config": cfg,
        "policy": policy,
        "machine": machine_info(),
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    # In-process measurements first, while nothing else of ours runs.
    report["overhead"] = measure_overhead(cfg, storm, policy)
    report["cold"] = measure_cold_start(cfg.cold_runs) if cfg.cold_runs else None
    with Bench(cfg) as bench:
        bench.keep_logs = keep_logs
        report["storm"] = bench.run_pipeline("storm", storm, machines, storm_devices, policy)
        report["mixed"] = bench.run_pipeline("mixed", [*storm, *releases], machines, storm_devices, policy)
        report["naive"] = bench.run_naive("naive", [*storm, *releases], machines, storm_devices)
    report["wall_s"] = time.monotonic() - started
    return report


def main(argv: Sequence[str] | None = None) -> None:
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
    parser.add_argument("--json", type=Path, help="also write the raw report as JSON here")
    parser.add_argument("--keep-logs", type=Path, help="keep each phase's host log and MDE request log here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
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
    report = run(cfg, policy=json.loads(args.policy), keep_logs=args.keep_logs)
    print(render(report), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, default=lambda o: getattr(o, "__dict__", str(o)), indent=1))


if __name__ == "__main__":
    main()
