"""The ServiceNow simulator over real HTTP: the Table API behaviours ServiceNow documents."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from devstack.control import ServiceNowControl
from devstack.servicenow_query import parse_query, split_terms
from devstack.servicenow_simulator import INTEGRATION_USER, ServiceNowSimulator
from tests.fakeclock import FakeClock

pytestmark = pytest.mark.integration

PASSWORD = "sn-password-0123456789"
UNAUTHENTICATED = {
    "error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"},
    "status": "failure",
}
NO_RECORD = {
    "error": {
        "message": "No Record found",
        "detail": "Record doesn't exist or ACL restricts the record retrieval",
    },
    "status": "failure",
}


class Instance:
    def __init__(self, sim: ServiceNowSimulator) -> None:
        self.url = sim.url
        self.control = ServiceNowControl(sim.url)

    def get(self, path: str, auth: Any = (INTEGRATION_USER, PASSWORD), **params: str) -> requests.Response:
        return requests.get(f"{self.url}{path}", params=params, auth=auth, timeout=5)

    def rows(self, table: str, **params: str) -> list[dict[str, Any]]:
        response = self.get(f"/api/now/table/{table}", **params)
        assert response.status_code == 200, response.text
        rows: list[dict[str, Any]] = response.json()["result"]
        return rows

    def patch(self, path: str, body: Any, **params: str) -> requests.Response:
        return requests.patch(
            f"{self.url}{path}", json=body, params=params, auth=(INTEGRATION_USER, PASSWORD), timeout=5
        )


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def sim(clock: FakeClock) -> Iterator[ServiceNowSimulator]:
    simulator = ServiceNowSimulator(accounts={INTEGRATION_USER: PASSWORD}, clock=clock)
    simulator.start()
    yield simulator
    simulator.stop()


@pytest.fixture
def sn(sim: ServiceNowSimulator) -> Instance:
    sim.reset()
    return Instance(sim)


def ritm(sn: Instance, **fields: Any) -> dict[str, Any]:
    """A requested item for ben.requester on ws-fin-0142 (display_value=all as the control shows it)."""
    ben = sn.control.user("ben.requester")["sys_id"]["value"]
    ci = sn.control.ci("ws-fin-0142")["sys_id"]["value"]
    return sn.control.upsert_record(
        {"short_description": "Release", "requested_for": ben, "cmdb_ci": ci} | fields
    )


def sys_id(row: dict[str, Any]) -> str:
    value: str = row["sys_id"]["value"]
    return value


# -- authentication and errors -------------------------------------------------------------------


def test_missing_or_wrong_credentials_are_401_with_servicenows_body(sn: Instance) -> None:
    for auth in (None, (INTEGRATION_USER, "wrong"), ("nobody", PASSWORD)):
        response = sn.get("/api/now/table/sc_req_item", auth=auth)
        assert (response.status_code, response.json()) == (401, UNAUTHENTICATED)
        assert response.headers["WWW-Authenticate"] == 'BASIC realm="Service-now"'


def test_unknown_table_is_400_and_acl_denied_table_is_403(sn: Instance) -> None:
    unknown = sn.get("/api/now/table/no_such_table")
    assert (unknown.status_code, unknown.json()["error"]["message"]) == (400, "Invalid table no_such_table")
    sn.control.configure(deniedTables=["sysapproval_approver"])
    denied = sn.get("/api/now/table/sysapproval_approver")
    assert denied.status_code == 403
    assert denied.json() == {
        "error": {"message": "User Not Authorized", "detail": "Failed API level ACL Validation"},
        "status": "failure",
    }


def test_unknown_uri_is_400_and_unsimulated_method_405(sn: Instance) -> None:
    assert (
        sn.get("/api/now/nothing").json()["error"]["message"]
        == "Requested URI does not represent any resource"
    )
    response = requests.post(
        f"{sn.url}/api/now/table/incident", json={}, auth=(INTEGRATION_USER, PASSWORD), timeout=5
    )
    assert response.status_code == 405


# -- reading --------------------------------------------------------------------------------------


def test_query_by_number_with_stored_values_gives_references_as_link_and_value(sn: Instance) -> None:
    record = ritm(sn)
    number = record["number"]["value"]
    (row,) = sn.rows("sc_req_item", sysparm_query=f"number={number}", sysparm_limit="1")
    assert row["number"] == number and row["sys_id"] == sys_id(record)
    assert row["cmdb_ci"] == {"link": f"{sn.url}/api/now/table/cmdb_ci/{record['cmdb_ci']['value']}",
                              "value": record["cmdb_ci"]["value"]}  # fmt: skip
    assert (row["approval"], row["state"], row["work_notes"]) == ("not requested", "1", "")


def test_display_values_true_and_all(sn: Instance) -> None:
    number = ritm(sn)["number"]["value"]
    query = {"sysparm_query": f"number={number}", "sysparm_fields": "cmdb_ci,state,number"}
    (shown,) = sn.rows("sc_req_item", sysparm_display_value="true", **query)
    assert shown["state"] == "Open" and shown["cmdb_ci"]["display_value"] == "ws-fin-0142"
    assert set(shown["cmdb_ci"]) == {"display_value", "link"}
    (both,) = sn.rows("sc_req_item", sysparm_display_value="all", **query)
    assert both["state"] == {"display_value": "Open", "value": "1"}
    assert both["number"] == {"display_value": number, "value": number}
    assert set(both["cmdb_ci"]) == {"display_value", "link", "value"}
    (bare,) = sn.rows(
        "sc_req_item", sysparm_display_value="all", sysparm_exclude_reference_link="true", **query
    )
    assert set(bare["cmdb_ci"]) == {"display_value", "value"}


def test_fields_select_dot_walk_and_ignore_invalid_names(sn: Instance) -> None:
    number = ritm(sn)["number"]["value"]
    (row,) = sn.rows(
        "sc_req_item",
        sysparm_query=f"number={number}",
        sysparm_fields="number,requested_for.email,requested_for.nonsense,nonsense,cmdb_ci.name",
        sysparm_display_value="all",
    )
    assert list(row) == ["number", "requested_for.email", "cmdb_ci.name"]
    assert row["requested_for.email"]["value"] == "ben.requester@contoso.com"
    assert row["cmdb_ci.name"] == {"display_value": "ws-fin-0142", "value": "ws-fin-0142"}


def test_get_by_sys_id_is_an_object_and_unknown_or_hidden_is_404(sn: Instance) -> None:
    record = ritm(sn)
    found = sn.get(f"/api/now/table/sc_req_item/{sys_id(record)}").json()["result"]
    assert isinstance(found, dict) and found["sys_id"] == sys_id(record)
    assert sn.get(f"/api/now/table/sc_req_item/{'0' * 32}").json() == NO_RECORD
    sn.control.set_visible(sys_id(record), False)
    assert sn.get(f"/api/now/table/sc_req_item/{sys_id(record)}").json() == NO_RECORD
    assert sn.rows("sc_req_item") == []  # row-level ACLs filter a query, they do not refuse it


def test_an_invalid_query_part_is_dropped_unless_the_instance_returns_no_rows(sn: Instance) -> None:
    first, second = ritm(sn), ritm(sn)
    numbers = {first["number"]["value"], second["number"]["value"]}
    dropped = sn.rows("sc_req_item", sysparm_query="no_such_field=x", sysparm_fields="number")
    assert {r["number"] for r in dropped} == numbers  # ServiceNow's documented default
    bad_operator = sn.rows(
        "sc_req_item", sysparm_query=f"number~~{first['number']['value']}", sysparm_fields="number"
    )
    assert {r["number"] for r in bad_operator} == numbers
    sn.control.configure(invalidQueryReturnsNoRows=True)
    assert sn.rows("sc_req_item", sysparm_query="no_such_field=x") == []


def test_encoded_query_and_or_order_limit_offset_and_total(sn: Instance) -> None:
    numbers = [ritm(sn, short_description=f"item {i}")["number"]["value"] for i in range(4)]
    either = sn.rows(
        "sc_req_item", sysparm_query=f"number={numbers[0]}^ORnumber={numbers[2]}", sysparm_fields="number"
    )
    assert [r["number"] for r in either] == [numbers[0], numbers[2]]
    newest = sn.rows("sc_req_item", sysparm_query="short_descriptionSTARTSWITHitem^ORDERBYDESCnumber",
                     sysparm_fields="number", sysparm_limit="2", sysparm_offset="1")  # fmt: skip
    assert [r["number"] for r in newest] == [numbers[2], numbers[1]]
    response = sn.get("/api/now/table/sc_req_item", sysparm_limit="1")
    assert response.headers["X-Total-Count"] == "4" and len(response.json()["result"]) == 1
    assert sn.get("/api/now/v1/table/sc_req_item", sysparm_query="number=NONE").status_code == 404
    assert sn.get("/api/now/v2/table/sc_req_item", sysparm_query="number=NONE").json() == {"result": []}
    assert sn.get("/api/now/table/sc_req_item", sysparm_limit="ten").status_code == 400


def test_query_on_a_reference_compares_its_sys_id(sn: Instance) -> None:
    record = ritm(sn)
    ritm(sn, requested_for="")
    rows = sn.rows("sc_req_item", sysparm_query=f"requested_for={record['requested_for']['value']}")
    assert [r["sys_id"] for r in rows] == [sys_id(record)]
    by_email = sn.rows("sc_req_item", sysparm_query="requested_for.email=ben.requester@contoso.com")
    assert [r["sys_id"] for r in by_email] == [sys_id(record)]


# -- approvals and work notes ---------------------------------------------------------------------


def test_approvals_are_rows_of_sysapproval_approver(sn: Instance) -> None:
    record = ritm(sn)
    sn.control.approve(record["number"]["value"], "ana.approver", state="requested")
    row = sn.control.approve(sys_id(record), "ana.approver", at="2026-01-02T03:04:05+00:00")
    rows = sn.rows(
        "sysapproval_approver",
        sysparm_query=f"sysapproval={sys_id(record)}^state=approved",
        sysparm_display_value="all",
        sysparm_fields="approver,approver.email,state,sys_updated_on",
    )
    assert len(rows) == 1 and sys_id(row) == row["sys_id"]["value"]
    assert rows[0]["approver"]["display_value"] == "Ana Approver"
    assert rows[0]["approver.email"]["value"] == "ana.approver@contoso.com"
    assert rows[0]["state"] == {"display_value": "Approved", "value": "approved"}
    assert rows[0]["sys_updated_on"]["value"] == "2026-01-02 03:04:05"
    assert sn.control.records(number=record["number"]["value"])[0]["approval"]["value"] == "approved"


def test_patch_work_notes_appends_journal_entries(sn: Instance, clock: FakeClock) -> None:
    record = ritm(sn)
    path = f"/api/now/table/sc_req_item/{sys_id(record)}"
    first = sn.patch(path, {"work_notes": "Released: Submitted", "sys_id": "f" * 32, "nonsense": "x"})
    assert first.status_code == 200 and first.json()["result"]["sys_id"] == sys_id(record)
    assert first.json()["result"]["work_notes"] == ""
    clock.now += 1
    second = sn.patch(
        path, {"work_notes": "Released: Succeeded"}, sysparm_display_value="true", sysparm_fields="work_notes"
    )
    assert list(second.json()["result"]) == ["work_notes"]
    journal = second.json()["result"]["work_notes"]
    assert journal.index("Released: Succeeded") < journal.index("Released: Submitted")  # newest first
    notes = sn.control.work_notes(sys_id(record))
    assert [(n["text"], n["createdBy"], n["number"]) for n in notes] == [
        ("Released: Submitted", INTEGRATION_USER, record["number"]["value"]),
        ("Released: Succeeded", INTEGRATION_USER, record["number"]["value"]),
    ]


def test_patch_errors(sn: Instance) -> None:
    record = ritm(sn)
    bad = requests.patch(f"{sn.url}/api/now/table/sc_req_item/{sys_id(record)}", data="not json",
                         auth=(INTEGRATION_USER, PASSWORD), timeout=5)  # fmt: skip
    assert bad.status_code == 400 and bad.json()["status"] == "failure"
    assert sn.patch(f"/api/now/table/sc_req_item/{'0' * 32}", {"work_notes": "x"}).json() == NO_RECORD
    assert sn.control.work_notes() == []


# -- throttling, faults, recording ----------------------------------------------------------------


def test_rate_limit_429_with_the_exact_retry_after(sn: Instance, clock: FakeClock) -> None:
    sn.control.configure(rateLimit=1, rateWindowS=3600)
    assert sn.get("/api/now/table/sc_req_item").status_code == 200
    throttled = sn.get("/api/now/table/sc_req_item")
    assert (throttled.status_code, throttled.headers["Retry-After"]) == (429, "3600")
    assert throttled.json()["error"]["message"] == "Rate limit exceeded"
    clock.now += 3600
    assert sn.get("/api/now/table/sc_req_item").status_code == 200


def test_injected_fault_then_recovery_and_requests_recorded_redacted(sn: Instance) -> None:
    sn.control.fault(503, retry_after=4, method="GET")
    failed = sn.get("/api/now/table/incident")
    assert (failed.status_code, failed.headers["Retry-After"]) == (503, "4")
    assert sn.get("/api/now/table/incident").status_code == 200
    recorded = sn.control.requests()
    assert [r["status"] for r in recorded] == [503, 200]
    assert all(r["headers"]["Authorization"] == "Basic <redacted>" for r in recorded)
    assert PASSWORD not in str(recorded)


# -- the encoded query parser ---------------------------------------------------------------------


def test_split_terms_keeps_an_escaped_caret_in_the_value() -> None:
    assert split_terms("short_description=a^^b^number=X") == ["short_description=a^b", "number=X"]


def test_parse_query_groups_or_and_nq() -> None:
    query = parse_query("a=1^ORb=2^c!=3^NQd=4^ORDERBYDESCa", lambda path: path in {"a", "b", "c", "d"})
    assert [[[c.path for c in clause] for clause in group] for group in query.groups] == [
        [["a", "b"], ["c"]],
        [["d"]],
    ]
    assert query.order == [("a", True)] and not query.invalid
    assert parse_query("x=1^a=1", lambda path: path == "a").invalid
