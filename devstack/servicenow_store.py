"""The ServiceNow simulator's tables and how the Table API renders and queries them. Vendor pages
are cited in ``devstack.servicenow_simulator``.

A field holds a string, a ``Ref`` (a reference: table and sys_id; its display value is the display
field of the record it points at) or a ``Choice`` (stored value and label). Journal fields
(``work_notes``, ``comments``) read as ``""`` and keep their entries in ``sys_journal_field``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from .servicenow_query import Query

TASK_PREFIXES = {"sc_req_item": "RITM", "incident": "INC", "change_request": "CHG", "sc_request": "REQ",
                 "sc_task": "SCTASK", "problem": "PRB"}  # fmt: skip
SYS_FIELDS = frozenset({"sys_id", "sys_created_on", "sys_created_by", "sys_updated_on", "sys_updated_by",
                        "sys_mod_count", "sys_class_name"})  # fmt: skip
JOURNAL_FIELDS = frozenset({"work_notes", "comments"})
DEFAULT_STATES = {"sc_req_item": "1", "incident": "1", "change_request": "-5"}
TASK_SCHEMA: dict[str, str | None] = {
    "number": None, "short_description": None, "description": None, "state": None, "approval": None,
    "active": None, "requested_for": "sys_user", "opened_by": "sys_user", "assigned_to": "sys_user",
    "caller_id": "sys_user", "cmdb_ci": "cmdb_ci", "work_notes": None, "comments": None,
}  # fmt: skip
SCHEMAS: dict[str, dict[str, str | None]] = {
    "sys_user": {"user_name": None, "name": None, "email": None, "active": None, "manager": "sys_user"},
    "cmdb_ci": {"name": None, "sys_class_name": None, "serial_number": None, "ip_address": None},
    "sysapproval_approver": {"sysapproval": "task", "approver": "sys_user", "state": None, "comments": None,
                             "source_table": None},
    "sys_journal_field": {"element": None, "element_id": None, "name": None, "value": None},
    **{table: dict(TASK_SCHEMA) for table in TASK_PREFIXES},
}  # fmt: skip
CHOICES: dict[tuple[str, str], dict[str, str]] = {
    ("task", "approval"): {"not requested": "Not Yet Requested", "requested": "Requested",
                           "approved": "Approved", "rejected": "Rejected"},
    ("sc_req_item", "state"): {"-5": "Pending", "1": "Open", "2": "Work in Progress", "3": "Closed Complete",
                               "4": "Closed Incomplete", "7": "Closed Skipped"},
    ("incident", "state"): {"1": "New", "2": "In Progress", "3": "On Hold", "6": "Resolved", "7": "Closed",
                            "8": "Canceled"},
    ("change_request", "state"): {"-5": "New", "-4": "Assess", "-3": "Authorize", "-2": "Scheduled",
                                  "-1": "Implement", "0": "Review", "3": "Closed", "4": "Canceled"},
    ("sysapproval_approver", "state"): {"not_yet_requested": "Not Yet Requested", "requested": "Requested",
                                        "approved": "Approved", "rejected": "Rejected",
                                        "cancelled": "Cancelled", "not_required": "No Longer Required"},
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Ref:
    table: str
    sys_id: str


@dataclasses.dataclass(frozen=True)
class Choice:
    value: str
    display: str


Value = str | Ref | Choice
Record = dict[str, Value]


def sn_time(ts: float) -> str:
    """ServiceNow's stored date-time form (UTC): ``2016-01-19 04:52:04``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def seed_sys_id(*parts: str) -> str:
    """A stable 32-hex sys_id for seed data."""
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:32]


def raw(value: Value) -> str:
    """The stored value: a reference's sys_id, a choice's value."""
    return value.sys_id if isinstance(value, Ref) else value.value if isinstance(value, Choice) else value


class ServiceNowStore:
    """Plain state; the simulator serialises access with its lock."""

    def __init__(self) -> None:
        self.schemas: dict[str, dict[str, str | None]] = {t: dict(s) for t, s in SCHEMAS.items()}
        self.tables: dict[str, dict[str, Record]] = {t: {} for t in self.schemas}
        self.hidden: set[str] = set()  # sys_ids row-level ACLs hide from the integration user
        self._numbers: dict[str, int] = {}

    def is_task(self, table: str) -> bool:
        return table in TASK_PREFIXES or table == "task" or "number" in self.schemas.get(table, {})

    def field_target(self, table: str, field: str) -> str | None:
        """The table a reference field points at, or None for other fields."""
        return self.schemas.get(table, {}).get(field)

    def has_field(self, table: str, field: str) -> bool:
        return (
            field in SYS_FIELDS
            or field in self.schemas.get(table, {})
            or (table == "task" and field in TASK_SCHEMA)
        )

    def resolve(self, ref: Ref) -> tuple[str, Record] | None:
        """The record a reference points at (``task`` looks in every task table)."""
        tables = [t for t in self.tables if self.is_task(t)] if ref.table == "task" else [ref.table]
        for table in tables:
            record = self.tables.get(table, {}).get(ref.sys_id)
            if record is not None:
                return table, record
        return None

    def rows(self, table: str) -> Iterable[Record]:
        """What the integration user may read: row-level ACLs filter, they do not refuse."""
        return (r for sid, r in self.tables[table].items() if sid not in self.hidden)

    # -- changes ----------------------------------------------------------------------------------

    def ensure_table(self, table: str) -> None:
        if table not in self.tables:
            self.schemas[table] = dict(TASK_SCHEMA)
            self.tables[table] = {}

    def coerce(self, table: str, field: str, given: Any) -> Value:
        """Control or PATCH input as a stored value: ``{"table", "sys_id"}`` is a reference,
        ``{"value", "display_value"}`` a choice; a string in a reference field is a sys_id."""
        if isinstance(given, dict) and "sys_id" in given:
            pointed = str(given.get("table") or self.field_target(table, field) or "")
            self.schemas.setdefault(table, {})[field] = pointed
            return Ref(pointed, str(given["sys_id"]))
        if isinstance(given, dict) and "value" in given:
            return Choice(str(given["value"]), str(given.get("display_value", given["value"])))
        text = "" if given is None else str(given).lower() if isinstance(given, bool) else str(given)
        target = self.field_target(table, field)
        if target is not None:
            return Ref(target, text)
        labels = CHOICES.get((table, field)) or (
            CHOICES.get(("task", field)) if self.is_task(table) else None
        )
        if labels is not None:
            return Choice(text, labels.get(text, text))
        self.schemas.setdefault(table, {}).setdefault(field, None)
        return text

    def upsert(
        self, table: str, sys_id: str | None, fields: Mapping[str, Any], user: str, now: float
    ) -> Record:
        self.ensure_table(table)
        record = self.tables[table].get(sys_id or "")
        if record is None:
            record = self._new(table, sys_id or uuid.uuid4().hex, user, now)
        for field, given in fields.items():
            if field in JOURNAL_FIELDS and self.has_field(table, field):
                if given:
                    self.add_journal(table, record, field, str(given), user, now)
            elif not field.startswith("sys_"):
                record[field] = self.coerce(table, field, given)
        record.update(sys_updated_on=sn_time(now), sys_updated_by=user)
        record["sys_mod_count"] = str(int(raw(record["sys_mod_count"])) + 1)
        return record

    def _new(self, table: str, sys_id: str, user: str, now: float) -> Record:
        record: Record = {f: "" for f in self.schemas[table]}
        for field in self.schemas[table]:
            if self.field_target(table, field) is not None:
                record[field] = Ref(str(self.field_target(table, field)), "")
        record.update(sys_id=sys_id, sys_created_on=sn_time(now), sys_created_by=user, sys_mod_count="-1")
        record["sys_class_name"] = table
        if self.is_task(table):
            record["number"] = self._next_number(table)
            record["approval"] = self.coerce(table, "approval", "not requested")
            record["state"] = self.coerce(table, "state", DEFAULT_STATES.get(table, ""))
            record["active"] = "true"
        self.tables[table][sys_id] = record
        return record

    def _next_number(self, table: str) -> str:
        count = self._numbers.get(table, 10000) + 1
        self._numbers[table] = count
        return f"{TASK_PREFIXES.get(table, table[:4].upper())}{count:07d}"

    def add_journal(self, table: str, record: Record, element: str, text: str, user: str, now: float) -> None:
        entry = {"element": element, "element_id": raw(record["sys_id"]), "name": table, "value": text}
        self.upsert("sys_journal_field", None, entry, user, now)

    def journal(self, record: Record, element: str) -> list[Record]:
        sys_id = raw(record["sys_id"])
        entries = self.tables["sys_journal_field"].values()
        return [e for e in entries if e["element_id"] == sys_id and e["element"] == element]

    # -- reading ----------------------------------------------------------------------------------

    def display_of(self, table: str, record: Record) -> str:
        """A record's display value: its number, else its name, else its sys_id."""
        for field in ("number", "name"):
            if raw(record.get(field, "")):
                return self.display(table, record, field)
        if table == "sysapproval_approver":
            return self.display(table, record, "sysapproval")
        return raw(record["sys_id"])

    def display(self, table: str, record: Record, field: str) -> str:
        value = record.get(field, "")
        if field in JOURNAL_FIELDS:
            entries = sorted(
                self.journal(record, field), key=lambda e: raw(e["sys_created_on"]), reverse=True
            )
            label = "Work notes" if field == "work_notes" else "Additional comments"
            return "".join(f"{raw(e['sys_created_on'])} - {raw(e['sys_created_by'])} ({label})\n"
                           f"{raw(e['value'])}\n\n" for e in entries)  # fmt: skip
        if isinstance(value, Choice):
            return value.display
        if isinstance(value, Ref):
            target = self.resolve(value) if value.sys_id else None
            return self.display_of(*target) if target else ""
        return value

    def walk(self, table: str, record: Record, path: str) -> tuple[str, Record, str] | None:
        """Follow a dot-walked path to (table, record, last field); None when a hop is empty."""
        *hops, last = path.split(".")
        for hop in hops:
            value = record.get(hop)
            target = self.resolve(value) if isinstance(value, Ref) and value.sys_id else None
            if target is None:
                return None
            table, record = target
        return table, record, last

    def valid_path(self, table: str, path: str) -> bool:
        """Each hop a reference field of its table, the last a field of the table reached."""
        *hops, last = path.split(".")
        for hop in hops:
            target = self.field_target(table, hop)
            if target is None:
                return False
            table = target
        return self.has_field(table, last)

    def value_at(self, table: str, record: Record, path: str) -> str:
        """The stored value a query compares (``""`` past an empty reference)."""
        walked = self.walk(table, record, path)
        return raw(walked[1].get(walked[2], "")) if walked else ""

    def render(self, table: str, record: Record, path: str, mode: str, links: bool, base: str) -> Any:
        """One field as the Table API shows it for ``sysparm_display_value`` = ``mode``."""
        walked = self.walk(table, record, path)
        value: Value = walked[1].get(walked[2], "") if walked else ""
        display = self.display(*walked) if walked else ""
        stored = "" if walked and walked[2] in JOURNAL_FIELDS else raw(value)
        if not (isinstance(value, Ref) and value.sys_id):
            return stored if mode == "false" else display if mode == "true" else {
                "display_value": display, "value": stored}  # fmt: skip
        link = {"link": f"{base}/api/now/table/{value.table}/{value.sys_id}"} if links else {}
        if mode == "false":
            return {**link, "value": stored} if links else stored
        if mode == "true":
            return {"display_value": display, **link} if links else display
        return {"display_value": display, **link, "value": stored}

    def select(self, table: str, query: Query, no_rows_when_invalid: bool) -> list[Record]:
        """The rows of ``table`` the encoded query selects, in the order it asks for."""
        if query.invalid and no_rows_when_invalid:
            return []
        rows = [r for r in self.rows(table) if query.matches(functools.partial(self.value_at, table, r))]
        for path, descending in reversed(query.order):
            rows.sort(key=functools.partial(self._sort_key, table, path), reverse=descending)
        return rows

    def _sort_key(self, table: str, path: str, record: Record) -> str:
        return self.value_at(table, record, path)
