"""In-memory fakes of every port (shared/ports.py) and a fixed clock, so a use case runs in
microseconds with no server. The MDE fake keeps machines and actions the way the API does (new
actions Pending, one pending action per type and machine, cancel only while not final) and can be
told to fail a call; every other fake keeps what the table adapters would store."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from azure.functions.queue import QueueMessage

from shared.adapters.ticket_http import TicketNotFound
from shared.domain.breaker import BreakerResult, BreakerState, check_breaker, take_breaker_slot
from shared.domain.messages import schema_errors
from shared.domain.model import IsolationType, MachineAction, is_final
from shared.domain.policy_config import BreakerPolicy
from shared.domain.tracking import Submission
from shared.errors import ActionAlreadyPending, MdeApiError, MdeNotFound, MdePermanentError
from shared.ports import ApiGroup, AuditEntry, Claim, Machine, Ports
from shared.settings import load_settings
from shared.usecases.context import Context

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
TICKETS = {  # both ticket systems configured (the fakes answer for them)
    "JIRA_BASE_URL": "https://contoso.atlassian.net",
    "JIRA_USER_EMAIL": "bot@contoso.com",
    "JIRA_API_TOKEN": "token",
    "SERVICENOW_BASE_URL": "https://contoso.service-now.com",
    "SERVICENOW_USERNAME": "svc",
    "SERVICENOW_PASSWORD": "password",
}
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
        self._find(action_id).update(status=status, lastUpdateDateTimeUtc=self.clock().isoformat())

    def _find(self, action_id: str) -> dict[str, Any]:
        found = next((a for a in self.actions if a["id"] == action_id), None)
        if found is None:
            raise _not_found("MachineAction", action_id)
        return found

    def _of(self, machine_id: str, action_type: str | None) -> list[dict[str, Any]]:
        mine = [a for a in self.actions if a["machineId"] == machine_id and action_type in (None, a["type"])]
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

    def list_actions(self, machine_id: str, action_type: str | None = None) -> list[MachineAction]:
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

    def app_id(self) -> str:
        return APP_ID


@dataclass
class FakeClaims:
    rows: dict[str, Claim] = field(default_factory=dict)

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

    def record_isolation(self, machine_id: str, request_id: str, action_id: str, now: datetime) -> None:
        self.rows[machine_id] = Claim(False, request_id, action_id, "submitted", now)

    def record_release(self, machine_id: str, request_id: str, action_id: str, now: datetime) -> None:
        self.rows.pop(machine_id, None)


@dataclass
class FakeApprovals:
    used: dict[str, str] = field(default_factory=dict)

    def use(self, approval_id: str, request_id: str, now: datetime) -> tuple[str, bool]:
        recorded = approval_id not in self.used
        return self.used.setdefault(approval_id, request_id), recorded


@dataclass
class FakeSubmissions:
    """Submissions beside the final-result markers (one table partition per action, as stored)."""

    finals: FakeFinals
    rows: dict[tuple[str, str], Submission] = field(default_factory=dict)

    def record(self, submission: Submission) -> None:
        self.rows[(submission.action_id, submission.subject.request_id)] = submission

    def get(self, action_id: str, request_id: str) -> Submission | None:
        row = self.rows.get((action_id, request_id))
        if row is None:
            return None
        return replace(row, reported=self.finals.finals.get((action_id, request_id)) is not None)


@dataclass
class FakeJira:
    """Jira issues as ``GET /rest/api/3/issue/{key}?expand=changelog`` returns them."""

    issues: dict[str, dict[str, Any]] = field(default_factory=dict)
    comments: list[tuple[str, str]] = field(default_factory=list)
    calls: int = 0
    fail: list[Exception] = field(default_factory=list)
    comment_fail: list[Exception] = field(default_factory=list)

    def issue(self, key: str, fields: Sequence[str]) -> dict[str, Any]:
        self.calls += 1
        if self.fail:
            raise self.fail.pop(0)
        if key not in self.issues:
            message = "Issue does not exist or you do not have permission to see it."
            raise TicketNotFound("JiraTicketNotFound", message, system="Jira", method="GET", url=key)
        return copy(self.issues[key])

    def add_comment(self, key: str, text: str) -> dict[str, Any]:
        if self.comment_fail:
            raise self.comment_fail.pop(0)
        self.comments.append((key, text))
        return {"id": str(len(self.comments))}


def jira_issue(
    key: str, device: str, *, status: str = "Approved for release", approver: str = "ana@contoso.com",
    reporter: str = "ben@contoso.com",
) -> dict[str, Any]:  # fmt: skip
    """An issue moved into ``status`` by ``approver`` (its latest history)."""
    history = {
        "id": f"1{len(key)}0{sum(map(ord, key + status + approver))}",
        "author": {"accountId": "acc-" + approver.split("@")[0], "emailAddress": approver},
        "created": "2026-11-23T09:00:00.000+0000",
        "items": [
            {"field": "status", "fieldtype": "jira", "fromString": "Awaiting approval", "toString": status}
        ],
    }
    return {
        "key": key,
        "fields": {
            "status": {"name": status},
            "summary": f"Release {device}",
            "reporter": {"accountId": "acc-reporter", "emailAddress": reporter, "displayName": "Ben"},
            "customfield_10050": device,
        },
        "changelog": {"startAt": 0, "maxResults": 1, "total": 1, "histories": [history]},
    }


@dataclass
class FakeServiceNow:
    """ServiceNow records and approvals as the Table API returns them (display values ``all``)."""

    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    approval_rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    notes: list[tuple[str, str, str]] = field(default_factory=list)

    def record(self, table: str, number: str, fields: Sequence[str]) -> dict[str, Any] | None:
        found = self.records.get(number)
        return copy(found) if found is not None else None

    def approvals(self, record_sys_id: str) -> list[dict[str, Any]]:
        return list(self.approval_rows.get(record_sys_id, []))

    def add_work_note(self, table: str, sys_id: str, text: str) -> dict[str, Any]:
        self.notes.append((table, sys_id, text))
        return {"sys_id": sys_id}


def both(value: str) -> dict[str, str]:
    """A field as ``sysparm_display_value=all`` gives it."""
    return {"display_value": value, "value": value}


def servicenow_record(number: str, device: str, *, approval: str = "approved") -> dict[str, Any]:
    sys_id = f"{sum(map(ord, number)):032x}"
    return {
        "number": both(number),
        "sys_id": both(sys_id),
        "approval": {"display_value": approval.capitalize(), "value": approval},
        "cmdb_ci": {"display_value": device, "value": "9d3e7b1c1b2a5110a7e3f0c2dd4bcb21", "link": "x"},
        "requested_for": {"display_value": "Ben Requester", "value": "62826bf03710200044e0bfc8bcbe5df1"},
        "short_description": both(f"Release {device}"),
    }


def servicenow_approval_row(record: dict[str, Any], approver: str) -> dict[str, Any]:
    return {
        "sys_id": both(f"{sum(map(ord, approver)):032x}"),
        "approver": {"display_value": approver, "value": "a" * 32},
        "state": {"display_value": "Approved", "value": "approved"},
        "sys_updated_on": both("2026-11-23 09:00:00"),
        "sysapproval": both(record["sys_id"]["value"]),
    }


@dataclass
class FakeBreaker:
    policy: BreakerPolicy = field(default_factory=BreakerPolicy)
    state: BreakerState = field(default_factory=BreakerState)
    taken: list[str] = field(default_factory=list)  # request ids that asked for a slot
    checked: list[str] = field(default_factory=list)  # request ids checked before any look-up

    def check(self, request_id: str, now: datetime) -> BreakerResult | None:
        self.checked.append(request_id)
        return check_breaker(self.state, request_id, now, self.policy)

    def take_slot(self, request_id: str, machine_id: str, now: datetime) -> BreakerResult:
        self.taken.append(request_id)
        self.state, result = take_breaker_slot(self.state, request_id, now, self.policy)
        return result


@dataclass
class FakeFinals:
    finals: dict[tuple[str, str], tuple[str, dict[str, Any]] | None] = field(default_factory=dict)
    dups: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def claim(self, action_id: str, request_id: str, now: datetime) -> Literal["won", "done", "busy"]:
        if (action_id, request_id) in self.finals:
            return "busy" if self.finals[(action_id, request_id)] is None else "done"
        self.finals[(action_id, request_id)] = None
        return "won"

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
        message = json.loads(json.dumps(result))
        problems = schema_errors("result.schema.json", message)
        if problems:  # every result a use case writes is one a SOC's parser accepts
            raise AssertionError(f"result breaks result.schema.json: {problems}: {message}")
        self.results.append(message)

    @property
    def outcomes(self) -> list[str]:
        return [r["outcome"] for r in self.results]


def copy(document: Mapping[str, Any]) -> dict[str, Any]:
    """What a client gets: a copy of the service's document."""
    copied: dict[str, Any] = json.loads(json.dumps(document))
    return copied


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
    approvals: FakeApprovals
    submissions: FakeSubmissions
    jira: FakeJira
    servicenow: FakeServiceNow

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
    env = {
        "CONTAINMENT_STORAGE": "UseDevelopmentStorage=true",
        "DEVICE_CACHE_SECONDS": "0",
        **TICKETS,
        **settings,
    }
    if policy is not None:
        env["ISOLATION_POLICY"] = json.dumps(policy)
    config = load_settings(env)
    clock = FixedClock()
    finals = FakeFinals()
    fakes: dict[str, Any] = {
        "mde": FakeMde(clock),
        "claims": FakeClaims(),
        "breaker": FakeBreaker(config.isolation_policy.breaker),
        "finals": finals,
        "audit": FakeAudit(),
        "outbox": FakeOutbox(),
        "approvals": FakeApprovals(),
        "submissions": FakeSubmissions(finals),
        "jira": FakeJira(),
        "servicenow": FakeServiceNow(),
    }
    ports = Ports(clock=clock, rng=random.Random(7), **fakes)
    return World(Context.of(config, ports), clock, **fakes)


def _not_found(what: str, key: str) -> MdeNotFound:
    return MdeNotFound("ResourceNotFound", f"{what} {key} not found", method="GET", url=key, status=404)


def raises(error: type[MdeApiError], code: str, status: int, **facts: Any) -> MdeApiError:
    """An MDE error as the client raises it."""
    return error(code, f"{code} from the fake", method="POST", url="fake", status=status, **facts)
