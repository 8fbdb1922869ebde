"""The ServiceNow simulator's own control endpoints (no auth; JSON in and out), beside the shared
ones in ``devstack.simbase`` (reset: tables back to the seed, ACLs, config and accounts to the
start; requests; faults), and its seed data. Records come back as ``sysparm_display_value=all``
renders them. Errors are ``{"error": message}`` with 400 (bad input) or 404 (no such record, user
or endpoint).

    POST /_control/users                   {"user_name", "name"?, "email"?, "sys_id"?} or a list;
                                           upsert by user_name
    POST /_control/cis                     {"name", "sys_class_name"?, "sys_id"?} or a list; upsert
                                           by name (table cmdb_ci)
    POST /_control/records                 {"table"?: "sc_req_item", "sys_id"?, "number"?,
                                           "fields": {...}} or a list; upsert by sys_id, else number.
                                           A reference is a sys_id string (or {"table", "sys_id"}),
                                           a choice its value (or {"value", "display_value"})
    GET  /_control/records?table=&number=  records (display_value=all)
    POST /_control/approvals               {"record": sys_id | number, "table"?, "approver": sys_id |
                                           user_name, "state"?: "approved", "updateRecord"?: true,
                                           "at"?} creates or updates that approver's
                                           sysapproval_approver row; the record's ``approval``
                                           follows unless ``updateRecord`` is false
    GET  /_control/work_notes[?sys_id=]    work notes in order: table, sys_id, number, text,
                                           createdBy, createdOn
    POST /_control/visibility              {"sys_id", "visible": bool} row-level ACL for the
                                           integration user
    POST /_control/config                  {"rateLimit": n | null, "rateWindowS"?,
                                           "invalidQueryReturnsNoRows"?: bool, "deniedTables"?: [...]}
    POST /_control/accounts                {"username", "password"} or a list
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .servicenow_store import CHOICES, Record, raw, seed_sys_id
from .simkit import ControlNotFound, many, when

if TYPE_CHECKING:
    from .servicenow_simulator import ServiceNowSimulator

SEED_USERS = (
    ("svc_containment", "Containment Integration", "svc_containment@contoso.com"),
    ("ana.approver", "Ana Approver", "ana.approver@contoso.com"),
    ("ben.requester", "Ben Requester", "ben.requester@contoso.com"),
)
SEED_CIS = (
    ("ws-fin-0142", "cmdb_ci_computer"),
    ("ws-eng-0007", "cmdb_ci_computer"),
    ("srv-sql-01", "cmdb_ci_server"),
)
_SYS_ID = re.compile(r"[0-9a-f]{32}")


def seed(sim: ServiceNowSimulator) -> None:
    """Seed users and configuration items with stable sys_ids."""
    for user_name, name, email in SEED_USERS:
        fields = {"user_name": user_name, "name": name, "email": email, "active": "true"}
        sim.store.upsert("sys_user", seed_sys_id("sys_user", user_name), fields, "system", sim.clock())
    for name, ci_class in SEED_CIS:
        fields = {"name": name, "sys_class_name": ci_class}
        sim.store.upsert("cmdb_ci", seed_sys_id("cmdb_ci", name), fields, "system", sim.clock())


def control(sim: ServiceNowSimulator, method: str, path: str, args: Mapping[str, str], body: Any) -> Any:
    """One control call (the simulator's lock is held); ``args`` are the first query values."""
    match (method, path):
        case ("POST", "/_control/users"):
            return [_upsert_by(sim, "sys_user", "user_name", spec) for spec in many(body)]
        case ("POST", "/_control/cis"):
            return [_upsert_by(sim, "cmdb_ci", "name", spec) for spec in many(body)]
        case ("POST", "/_control/records"):
            return [_upsert_record(sim, spec) for spec in many(body)]
        case ("GET", "/_control/records"):
            table = args.get("table", "sc_req_item")
            rows = sim.store.tables.get(table, {}).values()
            return [
                _view(sim, table, r) for r in rows if args.get("number") in (None, raw(r.get("number", "")))
            ]
        case ("POST", "/_control/approvals"):
            return _approve(sim, body)
        case ("GET", "/_control/work_notes"):
            return _work_notes(sim, args.get("sys_id"))
        case ("POST", "/_control/visibility"):
            sys_id = str(body["sys_id"])
            (sim.store.hidden.discard if body["visible"] else sim.store.hidden.add)(sys_id)
            return {"hidden": sorted(sim.store.hidden)}
        case ("POST", "/_control/config"):
            return _configure(sim, body)
        case ("POST", "/_control/accounts"):
            sim.accounts.update({str(a["username"]): str(a["password"]) for a in many(body)})
            return {"accounts": sorted(sim.accounts)}
    raise ControlNotFound(f"no control endpoint {method} {path}")


def _configure(sim: ServiceNowSimulator, body: Mapping[str, Any]) -> dict[str, Any]:
    if "rateLimit" in body or "rateWindowS" in body:
        sim.rate_limit.configure(body.get("rateLimit"), body.get("rateWindowS"))
    if "invalidQueryReturnsNoRows" in body:
        sim.invalid_query_returns_no_rows = bool(body["invalidQueryReturnsNoRows"])
    if "deniedTables" in body:
        sim.denied_tables = {str(t) for t in body["deniedTables"]}
    return {
        "rateLimit": sim.rate_limit.limit,
        "rateWindowS": sim.rate_limit.window_s,
        "invalidQueryReturnsNoRows": sim.invalid_query_returns_no_rows,
        "deniedTables": sorted(sim.denied_tables),
    }


def _view(sim: ServiceNowSimulator, table: str, record: Record) -> dict[str, Any]:
    return {f: sim.store.render(table, record, f, "all", True, sim.url) for f in record}


def _upsert_by(sim: ServiceNowSimulator, table: str, key: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    fields = {k: v for k, v in spec.items() if k != "sys_id"}
    existing = next((r for r in sim.store.tables[table].values() if raw(r.get(key, "")) == spec[key]), None)
    sys_id = spec.get("sys_id") or (raw(existing["sys_id"]) if existing else None)
    return _view(sim, table, sim.store.upsert(table, _checked_sys_id(sys_id), fields, "system", sim.clock()))


def _upsert_record(sim: ServiceNowSimulator, spec: Mapping[str, Any]) -> dict[str, Any]:
    table = str(spec.get("table", "sc_req_item"))
    sim.store.ensure_table(table)
    fields = dict(spec.get("fields") or {})
    sys_id = spec.get("sys_id")
    if sys_id is None and spec.get("number"):
        found = _by_number(sim, table, str(spec["number"]))
        sys_id = raw(found["sys_id"]) if found else None
    record = sim.store.upsert(table, _checked_sys_id(sys_id), fields, "system", when(sim.clock, spec))
    if spec.get("number"):
        record["number"] = str(spec["number"])
    return _view(sim, table, record)


def _approve(sim: ServiceNowSimulator, body: Mapping[str, Any]) -> dict[str, Any]:
    table = str(body.get("table", "sc_req_item"))
    record = _find(sim, table, str(body["record"]))
    approver = _find(sim, "sys_user", str(body["approver"]), key="user_name")
    state = str(body.get("state", "approved"))
    if state not in CHOICES[("sysapproval_approver", "state")]:
        raise ValueError(f"state must be one of {sorted(CHOICES[('sysapproval_approver', 'state')])}")
    record_id, approver_id = raw(record["sys_id"]), raw(approver["sys_id"])
    rows = sim.store.tables["sysapproval_approver"].values()
    row = next(
        (r for r in rows if (raw(r["sysapproval"]), raw(r["approver"])) == (record_id, approver_id)), None
    )
    fields = {"sysapproval": {"table": "task", "sys_id": record_id}, "approver": approver_id, "state": state,
              "source_table": table}  # fmt: skip
    at = when(sim.clock, body)
    row = sim.store.upsert("sysapproval_approver", raw(row["sys_id"]) if row else None, fields, "system", at)
    if body.get("updateRecord", True) and state in ("requested", "approved", "rejected"):
        sim.store.upsert(table, record_id, {"approval": state}, "system", at)
    return _view(sim, "sysapproval_approver", row)


def _work_notes(sim: ServiceNowSimulator, sys_id: str | None) -> list[dict[str, Any]]:
    notes = []
    for entry in sim.store.tables["sys_journal_field"].values():
        if entry["element"] != "work_notes" or sys_id not in (None, entry["element_id"]):
            continue
        record = sim.store.tables.get(raw(entry["name"]), {}).get(raw(entry["element_id"]), {})
        notes.append(
            {
                "table": entry["name"],
                "sys_id": entry["element_id"],
                "number": raw(record.get("number", "")),
                "text": entry["value"],
                "createdBy": entry["sys_created_by"],
                "createdOn": entry["sys_created_on"],
            }
        )
    return notes


def _find(sim: ServiceNowSimulator, table: str, ref: str, key: str = "number") -> Record:
    record = sim.store.tables.get(table, {}).get(ref) or _by_number(sim, table, ref, key)
    if record is None:
        raise ControlNotFound(f"no {table} record {ref}")
    return record


def _by_number(sim: ServiceNowSimulator, table: str, value: str, key: str = "number") -> Record | None:
    return next((r for r in sim.store.tables.get(table, {}).values() if raw(r.get(key, "")) == value), None)


def _checked_sys_id(sys_id: Any) -> str | None:
    if sys_id is not None and not _SYS_ID.fullmatch(str(sys_id)):
        raise ValueError("sys_id must be 32 lowercase hexadecimal characters")
    return None if sys_id is None else str(sys_id)
