"""The workload: the benchmark's devices and their simulator records, the alert events of every
supported shape (built from the fixture corpus with our devices substituted), the storm and release
workloads (a fixed seed, so every run sends the same messages), and the requests the pipeline is
expected to make of each message, derived with the pipeline's own parsers."""

from __future__ import annotations

import copy
import hashlib
import json
import random
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from shared.domain import events
from shared.domain.events.ticket_mappings import load_ticket_mappings
from shared.domain.results import Delivery

from .config import ROOT, Config

FIXTURES = ROOT / "tests" / "fixtures" / "events"
DOMAIN = "corp.contoso.com"
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
HOST_TICKET_MAPPINGS = load_ticket_mappings(None)  # the host runs without TICKET_MAPPINGS: the defaults


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
    """A release naming its Jira issue (approved in the simulator before the phase): every release is
    verified with Jira at release time, as in production."""
    ticket = f"REL-{i + 1}"
    return {
        "ticketSystem": "jira",
        "ticketId": ticket,
        "machineId": device.id,
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


def expected_requests(message: Message, delivery: Delivery) -> list[tuple[str, Device]]:
    """(request id, device) of every request the message makes when ``delivery`` hands it to the
    pipeline, derived by the pipeline's own parsers and fallback id (from the queue message id
    unless the body names its own): one first result is due for each."""
    document = copy.deepcopy(message.body)
    fallback = delivery.fallback_request_id()
    if message.kind == "release":
        requests = [events.parse_release_event(document, fallback, HOST_TICKET_MAPPINGS)]
    else:
        requests = events.parse_alert_event(document, fallback)
    by_key = {d.id: d for d in message.devices} | {d.name.lower(): d for d in message.devices}
    return [
        (request.request_id, by_key[request.device.machine_id or (request.device.device_name or "").lower()])
        for request in requests
    ]


def check_workload(messages: Iterable[Message]) -> None:
    """Every generated event parses to exactly the devices it was built for (a generator bug would
    otherwise show up as a pipeline failure)."""
    for message in messages:
        delivery = Delivery("workload-check", f"check-{message.index}", 1)
        got = [device for _, device in expected_requests(message, delivery)]
        if message.kind == "alert" and sorted(d.id for d in got) != sorted(d.id for d in message.devices):
            raise AssertionError(f"event {message.index} ({message.shape}) parsed to other devices")


@dataclass(frozen=True)
class Workloads:
    """Everything a run sends: the storm, the release tickets, and the devices they name."""

    storm_devices: list[Device]
    release_devices: list[Device]
    storm: list[Message]
    releases: list[Message]

    @property
    def mixed(self) -> list[Message]:
        return [*self.storm, *self.releases]

    @property
    def machines(self) -> list[dict[str, Any]]:
        """The simulator's machine records of every device (storm and release)."""
        return [sim_machine(d, "Workstations") for d in self.storm_devices] + [
            sim_machine(d, "Released") for d in self.release_devices
        ]


def build_workloads(cfg: Config) -> Workloads:
    """The run's workloads, each event checked to parse to the devices it was built for."""
    storm_devices = make_devices("ws-storm", cfg.devices)
    release_devices = make_devices("ws-rel", cfg.releases)
    workloads = Workloads(
        storm_devices,
        release_devices,
        storm_workload(cfg, storm_devices),
        release_workload(cfg, release_devices),
    )
    check_workload(workloads.mixed)
    return workloads
