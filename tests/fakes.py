"""In-memory fakes of every port (shared/ports.py) and a fixed clock, so a use case runs in
microseconds with no server. The MDE fake keeps machines and actions the way the API does (new
actions Pending, one pending action per type and machine, cancel only while not final) and can be
told to fail a call; every other fake keeps what the table adapters would store."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.functions.queue import QueueMessage

from shared.domain.breaker import BreakerResult, BreakerState, take_breaker_slot
from shared.domain.model import IsolationType, MachineAction, is_final
from shared.domain.policy_config import BreakerPolicy
from shared.errors import ActionAlreadyPending, MdeApiError, MdeNotFound, MdePermanentError
from shared.ports import ApiGroup, AuditEntry, Claim, Machine, Ports
from shared.settings import load_settings
from shared.usecases.context import Context

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
APP_ID = "7d1c2b3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d"  # this service's client id: MDE's requestor
ANALYST = "0c0ffee0-0000-4000-8000-00000000a11a"


class FixedClock:
    """Now is ``T0`` until a test moves it."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def machine(machine_id: str, name: str, **fields: Any) -> Machine:
    """An onboarded, Active machine seen just now."""
    return {
        "id": machine_id,
        "computerDnsName": name,
        "healthStatus": "Active",
        "onboardingStatus": "Onboarded",
        "osPlatform": "Windows11",
        "lastSeen": T0.isoformat(),
        "machineTags": [],
        "rbacGroupName": None,
        **fields,
    }


@dataclass
class FakeMde:
    """The MDE API in memory. ``fail[api]``: errors raised by the next calls to that API, in order."""

    clock: Callable[[], datetime]
    machines: dict[str, Machine] = field(default_factory=dict)
    actions: list[dict[str, Any]] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)  # (api, what): every call made
    fail: dict[str, list[Exception]] = field(default_factory=dict)
    final_status: str | None = None  # actions are created final (e.g. "Succeeded") when set
    answer_201_with_existing: bool = False  # MDE's other way of saying "already pending"
    spare: bool = True
    admits_releases: bool = True

    def add(self, *records: Machine) -> None:
        self.machines.update({r["id"]: r for r in records})

    def count(self, api: str) -> int:
        return sum(1 for called, _ in self.calls if called == api)

    def _call(self, api: str, what: str) -> None:
        self.calls.append((api, what))
        pending = self.fail.get(api)
        if pending:
            raise pending.pop(0)

    def isolate(self, machine_id: str, comment: str, isolation_type: IsolationType) -> MachineAction:
        self._call("isolate", machine_id)
        return self._create("Isolate", machine_id, comment, APP_ID, scope=isolation_type)

    def unisolate(self, machine_id: str, comment: str) -> MachineAction:
        self._call("unisolate", machine_id)
        return self._create("Unisolate", machine_id, comment, APP_ID)

    def analyst_action(self, action_type: str, machine_id: str, status: str = "Pending") -> MachineAction:
        """An action someone else made in the portal (not through this service)."""
        action = self._create(action_type, machine_id, "by the on-call analyst", ANALYST)
        self.complete(action.id, status)
        return MachineAction(self._find(action.id))

    def _create(
        self, action_type: str, machine_id: str, comment: str, requestor: str, scope: str | None = None
    ) -> MachineAction:
        if machine_id not in self.machines:
            raise _not_found("Machine", machine_id)
        existing = [a for a in self._of(machine_id, action_type) if not is_final(a["status"])]
        if existing and requestor == APP_ID:
            if self.answer_201_with_existing:
                return MachineAction(dict(existing[0]))
            message = "Action is already in progress"
            raise ActionAlreadyPending(
                "ActiveRequestAlreadyExists", message, method="POST", url="", status=400
            )
        action = {
            "id": str(uuid.uuid4()),
            "type": action_type,
            "requestor": requestor,
            "requestorComment": comment,
            "status": self.final_status or "Pending",
            "machineId": machine_id,
            "computerDnsName": self.machines[machine_id].get("computerDnsName"),
            "creationDateTimeUtc": (self.clock() + timedelta(microseconds=len(self.actions))).isoformat(),
            "scope": scope,
        }
        self.actions.append(action)
        return MachineAction(dict(action))

    def complete(self, action_id: str, status: str) -> None:
        self._find(action_id)["status"] = status

    def _find(self, action_id: str) -> dict[str, Any]:
        found = next((a for a in self.actions if a["id"] == action_id), None)
        if found is None:
            raise _not_found("MachineAction", action_id)
        return found

    def _of(self, machine_id: str, action_type: str) -> list[dict[str, Any]]:
        mine = [a for a in self.actions if a["machineId"] == machine_id and a["type"] == action_type]
        return sorted(mine, key=lambda a: a["creationDateTimeUtc"], reverse=True)

    def get_action(self, action_id: str) -> MachineAction:
        self._call("machineactions", action_id)
        return MachineAction(dict(self._find(action_id)))

    def cancel_action(self, action_id: str, comment: str) -> MachineAction:
        self._call("cancel", action_id)
        action = self._find(action_id)
        if is_final(action["status"]):
            raise MdePermanentError("BadRequest", "action is final", method="POST", url=action_id, status=400)
        action.update(status="Cancelled", cancellationComment=comment)
        return MachineAction(dict(action))

    def list_actions(self, machine_id: str, action_type: str) -> list[MachineAction]:
        self._call("machineactions", f"{machine_id} {action_type}")
        return [MachineAction(dict(a)) for a in self._of(machine_id, action_type)]

    def get_machine(self, machine_id: str) -> Machine:
        self._call("machines", machine_id)
        if machine_id not in self.machines:
            raise _not_found("Machine", machine_id)
        return dict(self.machines[machine_id])

    def find_machines_by_dns_name(self, dns_name: str) -> list[Machine]:
        self._call("machines", f"name {dns_name}")
        found = self.machines.values()
        return [dict(m) for m in found if str(m["computerDnsName"]).lower() == dns_name.lower()]

    def find_machines_by_dns_prefix(self, prefix: str) -> list[Machine]:
        self._call("machines", f"prefix {prefix}")
        found = self.machines.values()
        return [dict(m) for m in found if str(m["computerDnsName"]).lower().startswith(prefix.lower())]

    def find_machines_by_ip(self, ip_address: str, timestamp: datetime) -> list[Machine]:
        self._call("findbyip", ip_address)
        return [dict(m) for m in self.machines.values() if m.get("lastIpAddress") == ip_address]

    def has_spare(self, group: ApiGroup) -> bool:
        return self.spare

    def admit_release(self, group: ApiGroup) -> bool:
        return self.admits_releases


@dataclass
class FakeClaims:
    rows: dict[str, Claim] = field(default_factory=dict)
    owned: dict[str, bool] = field(default_factory=dict)

    def claim(self, machine_id: str, request_id: str, now: datetime, window: timedelta) -> Claim:
        holder = self.rows.get(machine_id)
        if holder is not None and holder.request_id == request_id:
            return replace(holder, won=True)
        if holder is not None and now - holder.at < window:
            return replace(holder, won=False)
        self.rows[machine_id] = Claim(False, request_id, None, "claimed", now)
        return Claim(True, request_id, None, "claimed", now)

    def abandon(self, machine_id: str, request_id: str) -> None:
        holder = self.rows.get(machine_id)
        if holder is not None and holder.request_id == request_id and holder.state == "claimed":
            del self.rows[machine_id]

    def record_isolation(
        self, machine_id: str, request_id: str, action_id: str, now: datetime, *, owned: bool
    ) -> None:
        self.rows[machine_id] = Claim(False, request_id, action_id, "submitted", now)
        if owned:
            self.owned[machine_id] = True

    def record_release(self, machine_id: str, request_id: str, action_id: str, now: datetime) -> None:
        self.rows.pop(machine_id, None)
        self.owned[machine_id] = False

    def isolated_by_us(self, machine_id: str) -> bool:
        return self.owned.get(machine_id, False)


@dataclass
class FakeBreaker:
    policy: BreakerPolicy = field(default_factory=BreakerPolicy)
    state: BreakerState = field(default_factory=BreakerState)
    taken: list[str] = field(default_factory=list)  # request ids that asked for a slot

    def take_slot(self, request_id: str, machine_id: str, now: datetime) -> BreakerResult:
        self.taken.append(request_id)
        self.state, result = take_breaker_slot(self.state, request_id, now, self.policy)
        return result


@dataclass
class FakeFinals:
    finals: dict[tuple[str, str], tuple[str, dict[str, Any]] | None] = field(default_factory=dict)
    dups: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def reported(self, action_id: str, request_id: str) -> bool:
        return self.finals.get((action_id, request_id)) is not None

    def claim(self, action_id: str, request_id: str, now: datetime) -> bool:
        if (action_id, request_id) in self.finals:
            return False
        self.finals[(action_id, request_id)] = None
        return True

    def release(self, action_id: str, request_id: str) -> None:
        self.finals.pop((action_id, request_id), None)

    def mark_reported(
        self, action_id: str, request_id: str, outcome: str, action: Mapping[str, Any], now: datetime
    ) -> None:
        self.finals[(action_id, request_id)] = (outcome, dict(action))

    def final_of(self, action_id: str, request_id: str) -> tuple[str, dict[str, Any]] | None:
        return self.finals.get((action_id, request_id))

    def add_duplicate(self, action_id: str, request_id: str, subject: Mapping[str, Any]) -> None:
        self.dups.setdefault(action_id, []).append(json.loads(json.dumps(dict(subject))))

    def duplicates(self, action_id: str) -> list[dict[str, Any]]:
        return list(self.dups.get(action_id, []))


@dataclass
class FakeAudit:
    entries: list[AuditEntry] = field(default_factory=list)
    fail: list[Exception] = field(default_factory=list)

    def record(self, entry: AuditEntry) -> None:
        if self.fail:
            raise self.fail.pop(0)
        self.entries.append(entry)


@dataclass
class FakeOutbox:
    sent: list[tuple[str, dict[str, Any], float]] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)

    def send(self, queue: str, document: dict[str, Any], delay_s: float = 0) -> None:
        self.sent.append((queue, json.loads(json.dumps(document)), delay_s))

    def publish(self, result: dict[str, Any]) -> None:
        self.results.append(json.loads(json.dumps(result)))

    @property
    def outcomes(self) -> list[str]:
        return [r["outcome"] for r in self.results]


@dataclass
class World:
    """A context on fakes, and the fakes themselves for the test to arrange and inspect."""

    ctx: Context
    clock: FixedClock
    mde: FakeMde
    claims: FakeClaims
    breaker: FakeBreaker
    finals: FakeFinals
    audit: FakeAudit
    outbox: FakeOutbox

    def deliver(self, body: dict[str, Any] | bytes, action: str = "Isolate", dequeue_count: int = 1) -> None:
        """Hand one queue message to ``shared.app.handle`` as the Functions worker would."""
        from shared import app

        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        message = QueueMessage(  # type: ignore[no-untyped-call]
            id=f"m{len(self.outbox.sent)}", body=data, dequeue_count=dequeue_count
        )
        app.handle(message, "Isolate" if action == "Isolate" else "Unisolate", self.ctx)


def world(*, policy: Mapping[str, Any] | None = None, **settings: str) -> World:
    """Fakes behind a context whose settings come from the real parser (``settings`` are app
    settings, e.g. ``DRY_RUN="true"``; ``policy`` is ``ISOLATION_POLICY``)."""
    env = {"CONTAINMENT_STORAGE": "UseDevelopmentStorage=true", "DEVICE_CACHE_SECONDS": "0", **settings}
    if policy is not None:
        env["ISOLATION_POLICY"] = json.dumps(policy)
    config = load_settings(env)
    clock = FixedClock()
    mde, breaker = FakeMde(clock), FakeBreaker(config.isolation_policy.breaker)
    claims, finals, audit, outbox = FakeClaims(), FakeFinals(), FakeAudit(), FakeOutbox()
    ports = Ports(mde, claims, breaker, finals, audit, outbox, clock, random.Random(7))
    return World(Context.of(config, ports), clock, mde, claims, breaker, finals, audit, outbox)


def _not_found(what: str, key: str) -> MdeNotFound:
    return MdeNotFound("ResourceNotFound", f"{what} {key} not found", method="GET", url=key, status=404)


def raises(error: type[MdeApiError], code: str, status: int, **facts: Any) -> MdeApiError:
    """An MDE error as the client raises it."""
    return error(code, f"{code} from the fake", method="POST", url="fake", status=status, **facts)
