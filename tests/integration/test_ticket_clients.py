"""The Jira and ServiceNow clients against the dev stack's simulators (built from the stack's app
settings), and a Data Center Jira with a fake clock: every method, every error class and code,
Retry-After as a value, changelog paging, hostile identifiers refused before any request, and no
credential in any error or log record."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devstack.control import JiraControl
from devstack.jira_simulator import BOT_ACCOUNT_ID, JiraSimulator
from devstack.jira_store import Account
from devstack.stack import LocalStack
from shared.adapters.jira import JiraClient, JiraIncompleteChangelog
from shared.adapters.servicenow import ServiceNowClient, value_of
from shared.adapters.ticket_http import TicketApiError
from shared.errors import InvalidRequest
from tests.fakeclock import FakeClock

pytestmark = pytest.mark.integration

ANA, HANNAH = "5b10a2844c20165700ede21b", "5b10a2844c20165700ede21c"
LABEL = {"field": "labels", "fieldtype": "jira", "from": None, "fromString": "", "to": None, "toString": "x"}
DC_PASSWORD, PAT = "dc-password-0123456789", "dc-pat-0123456789abcdef"
HOSTILE_KEYS = [
    "SEC-1/comment",
    "../SEC-1",
    "SEC-1?fields=*all",
    "SEC-1#x",
    "sec-1",
    "SEC-1\r\nX: y",
    "",
    "SEC-1 ",
]


def stack_jira(stack: LocalStack, sleep: Callable[[float], None]) -> JiraClient:
    """A Jira client built from the stack's app settings, as the Function App would build it."""
    settings = stack.app_settings()
    return JiraClient(
        settings["JIRA_BASE_URL"],
        api_version=3 if settings["JIRA_API_VERSION"] == "3" else 2,
        user_email=settings["JIRA_USER_EMAIL"],
        api_token=settings["JIRA_API_TOKEN"],
        sleep=sleep,
    )


def stack_servicenow(stack: LocalStack, sleep: Callable[[float], None]) -> ServiceNowClient:
    settings = stack.app_settings()
    return ServiceNowClient(
        settings["SERVICENOW_BASE_URL"],
        username=settings["SERVICENOW_USERNAME"],
        password=settings["SERVICENOW_PASSWORD"],
        sleep=sleep,
    )


@pytest.fixture
def tickets(stack: LocalStack) -> LocalStack:
    stack.jira_control.reset()
    stack.servicenow_control.reset()
    return stack


@pytest.fixture
def naps() -> list[float]:
    """What the clients would have slept between retries (they never really sleep here)."""
    return []


@pytest.fixture
def jira(tickets: LocalStack, naps: list[float]) -> JiraClient:
    return stack_jira(tickets, naps.append)


@pytest.fixture
def snow(tickets: LocalStack, naps: list[float]) -> ServiceNowClient:
    return stack_servicenow(tickets, naps.append)


@pytest.fixture(scope="module")
def dc_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def dc_sim(dc_clock: FakeClock) -> Iterator[JiraSimulator]:
    sim = JiraSimulator(deployment="datacenter", accounts=[Account("bot", DC_PASSWORD, BOT_ACCOUNT_ID, PAT)],
                        clock=dc_clock)  # fmt: skip
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture
def dc(dc_sim: JiraSimulator) -> JiraControl:
    dc_sim.reset()
    return JiraControl(dc_sim.url)


def raised(call: Callable[[], Any]) -> TicketApiError:
    with pytest.raises(TicketApiError) as caught:
        call()
    return caught.value


# -- Jira -----------------------------------------------------------------------------------------


def test_issue_pages_a_changelog_over_100_histories_and_returns_all_oldest_first(
    tickets: LocalStack, jira: JiraClient
) -> None:
    control = tickets.jira_control
    control.upsert_issue("SEC-7", {"summary": "Release", "customfield_10050": {"value": "ws-fin-0142"}})
    control.add_history("SEC-7", HANNAH, [LABEL], count=150)
    control.transition("SEC-7", "Approved", ANA)
    issue = jira.issue("SEC-7", ["status", "customfield_10050"])
    assert set(issue["fields"]) == {"status", "customfield_10050"}
    assert issue["fields"]["status"]["name"] == "Approved"
    changelog = issue["changelog"]
    assert (changelog["startAt"], changelog["total"], len(changelog["histories"])) == (0, 151, 151)
    ids = [int(h["id"]) for h in changelog["histories"]]
    assert ids == sorted(ids) and len(set(ids)) == 151
    last = changelog["histories"][-1]
    assert (last["author"]["accountId"], last["items"][0]["toString"]) == (ANA, "Approved")
    sent = [(r["path"], r["query"]) for r in control.requests()]
    assert sent == [
        ("/rest/api/3/issue/SEC-7", {"fields": "status,customfield_10050", "expand": "changelog"}),
        (f"/rest/api/3/issue/{issue['id']}/changelog", {"startAt": "0", "maxResults": "100"}),
        (f"/rest/api/3/issue/{issue['id']}/changelog", {"startAt": "100", "maxResults": "100"}),
    ]


def test_a_short_changelog_takes_one_request(tickets: LocalStack, jira: JiraClient) -> None:
    tickets.jira_control.upsert_issue("SEC-8", {"summary": "Release"})
    tickets.jira_control.transition("SEC-8", "Approved", HANNAH)
    histories = jira.issue("SEC-8", ["status"])["changelog"]["histories"]
    assert len(histories) == 1 and "emailAddress" not in histories[0]["author"]
    assert len(tickets.jira_control.requests()) == 1


def test_add_comment_posts_adf_on_v3_and_plain_text_on_v2(tickets: LocalStack, jira: JiraClient) -> None:
    tickets.jira_control.upsert_issue("SEC-9", {"summary": "Release"})
    created = jira.add_comment("SEC-9", "Release Succeeded\nMDE action 42")
    settings = tickets.app_settings()
    v2 = JiraClient(settings["JIRA_BASE_URL"], api_version=2, user_email=settings["JIRA_USER_EMAIL"],
                    api_token=settings["JIRA_API_TOKEN"])  # fmt: skip
    plain = v2.add_comment("SEC-9", "Release Failed")
    assert plain["body"] == "Release Failed"
    recorded = tickets.jira_control.comments("SEC-9")
    assert [(c["id"], c["text"], c["apiVersion"]) for c in recorded] == [
        (created["id"], "Release Succeeded\nMDE action 42", "3"),
        (plain["id"], "Release Failed", "2"),
    ]


def test_data_center_with_a_personal_access_token_gets_every_history_in_one_request(
    dc_sim: JiraSimulator, dc: JiraControl
) -> None:
    dc.upsert_issue("OPS-3", {"summary": "Release"})
    dc.add_history("OPS-3", HANNAH, [LABEL], count=130)
    dc.transition("OPS-3", "Approved", ANA)
    client = JiraClient(dc_sim.url, api_version=2, user_email=None, api_token=PAT)
    changelog = client.issue("OPS-3", ["status"])["changelog"]
    assert changelog["total"] == len(changelog["histories"]) == 131
    assert changelog["histories"][-1]["author"]["name"] == "ana.approver"
    assert len(dc.requests()) == 1
    assert client.add_comment("OPS-3", "Released")["body"] == "Released"


def test_jira_throttling_carries_retry_after_and_is_not_retried(
    dc_sim: JiraSimulator, dc: JiraControl, dc_clock: FakeClock, naps: list[float]
) -> None:
    dc.upsert_issue("OPS-4", {"summary": "Release"})
    dc.rate_limit(1, 60)
    client = JiraClient(dc_sim.url, api_version=2, user_email="bot", api_token=DC_PASSWORD, sleep=naps.append)
    client.issue("OPS-4", ["status"])
    error = raised(lambda: client.issue("OPS-4", ["status"]))
    assert (type(error).__name__, error.code, error.status, getattr(error, "retry_after", None)) == (
        "TicketThrottled", "JiraThrottled", 429, 60.0,
    )  # fmt: skip
    assert error.retryable and naps == [] and len(dc.requests()) == 2
    dc_clock.now += 60
    assert client.issue("OPS-4", ["status"])["key"] == "OPS-4"


@pytest.mark.parametrize(
    ("arrange", "call", "cls", "code", "status"),
    [
        ("wrong_token", "read", "TicketUnauthorized", "JiraUnauthorized", 401),
        ("forbidden", "read", "TicketForbidden", "JiraForbidden", 403),
        ("no_comment", "comment", "TicketForbidden", "JiraForbidden", 403),
        ("unknown", "read", "TicketNotFound", "JiraTicketNotFound", 404),
        ("hidden", "comment", "TicketNotFound", "JiraTicketNotFound", 404),
        ("fault_400", "read", "TicketBadRequest", "JiraBadRequest", 400),
        ("fault_302", "read", "TicketBadRequest", "JiraHttpError", 302),
        ("fault_429", "comment", "TicketThrottled", "JiraThrottled", 429),
        ("fault_503", "read", "TicketUnavailable", "JiraUnavailable", 503),
    ],
)
def test_each_jira_error_has_its_class_code_and_status(
    tickets: LocalStack, jira: JiraClient, arrange: str, call: str, cls: str, code: str, status: int
) -> None:
    control = tickets.jira_control
    control.upsert_issue("SEC-1", {"summary": "Release"})
    settings = tickets.app_settings()
    client = jira
    if arrange == "wrong_token":
        client = JiraClient(
            settings["JIRA_BASE_URL"], user_email=settings["JIRA_USER_EMAIL"], api_token="wrong"
        )
    elif arrange == "forbidden":
        control.account(
            settings["JIRA_USER_EMAIL"], settings["JIRA_API_TOKEN"], BOT_ACCOUNT_ID, forbidden=True
        )
    elif arrange == "no_comment":
        control.set_can_comment("SEC-1", False)
    elif arrange == "hidden":
        control.set_visible("SEC-1", False)
    elif arrange.startswith("fault_"):
        control.fault(int(arrange[6:]), count=5, retry_after=17)
    key = "SEC-404" if arrange == "unknown" else "SEC-1"
    error = raised(lambda: client.issue(key, ["status"]) if call == "read" else client.add_comment(key, "x"))
    assert (type(error).__name__, error.code, error.status, error.system) == (cls, code, status, "Jira")
    assert error.method == ("GET" if call == "read" else "POST") and "/rest/api/3/issue/" in error.url
    if status in (429, 503):
        assert getattr(error, "retry_after", None) == 17.0
    assert control.comments() == []


def test_reads_are_retried_on_5xx_and_429_never(
    tickets: LocalStack, jira: JiraClient, naps: list[float]
) -> None:
    control = tickets.jira_control
    control.upsert_issue("SEC-2", {"summary": "Release"})
    control.fault(502, count=2)
    assert jira.issue("SEC-2", ["status"])["key"] == "SEC-2"
    assert len(control.requests()) == 3 and len(naps) == 2
    control.fault(503, count=3)
    assert raised(lambda: jira.issue("SEC-2", ["status"])).code == "JiraUnavailable"
    assert len(control.requests()) == 6  # 1 + 2 retries


def test_a_comment_that_may_have_landed_is_not_posted_twice(tickets: LocalStack, jira: JiraClient) -> None:
    control = tickets.jira_control
    control.upsert_issue("SEC-3", {"summary": "Release"})
    control.fault(503, method="POST")  # the front door refused it: safe to post again
    jira.add_comment("SEC-3", "Release Submitted")
    assert len(control.comments("SEC-3")) == 1 and len(control.requests(method="POST")) == 2
    control.fault(500, method="POST")
    error = raised(lambda: jira.add_comment("SEC-3", "Release Succeeded"))
    assert (error.code, error.maybe_applied) == ("JiraUnavailable", True)
    assert len(control.requests(method="POST")) == 3  # not retried


def test_a_truncated_changelog_without_the_endpoint_is_a_permanent_error(
    tickets: LocalStack, jira: JiraClient
) -> None:
    control = tickets.jira_control
    control.upsert_issue("SEC-5", {"summary": "Release"})
    control.add_history("SEC-5", HANNAH, [LABEL], count=101)
    control.fault(404, path_contains="/changelog")
    error = raised(lambda: jira.issue("SEC-5", ["status"]))
    assert isinstance(error, JiraIncompleteChangelog) and error.code == "JiraIncompleteChangelog"


def test_hostile_keys_and_fields_never_reach_jira(tickets: LocalStack, jira: JiraClient) -> None:
    for key in HOSTILE_KEYS:
        with pytest.raises(InvalidRequest):
            jira.issue(key, ["status"])
        with pytest.raises(InvalidRequest):
            jira.add_comment(key, "x")
    for fields in (["status,summary"], ["*all"], ["status&expand=x"], []):
        with pytest.raises(InvalidRequest):
            jira.issue("SEC-1", fields)
    assert tickets.jira_control.requests() == []


# -- ServiceNow -----------------------------------------------------------------------------------


def requested_item(stack: LocalStack) -> dict[str, Any]:
    control = stack.servicenow_control
    ben = control.user("ben.requester")["sys_id"]["value"]
    ci = control.ci("ws-fin-0142")["sys_id"]["value"]
    return control.upsert_record(
        {"short_description": "Release ws-fin-0142", "requested_for": ben, "cmdb_ci": ci}
    )


def test_record_by_number_with_display_values_all(tickets: LocalStack, snow: ServiceNowClient) -> None:
    item = requested_item(tickets)
    number = item["number"]["value"]
    row = snow.record("sc_req_item", number, ["cmdb_ci", "requested_for.email", "approval"])
    assert row is not None
    assert list(row) == ["sys_id", "number", "cmdb_ci", "requested_for.email", "approval"]
    assert row["cmdb_ci"]["display_value"] == "ws-fin-0142" and "link" in row["cmdb_ci"]
    assert value_of(row, "requested_for.email") == "ben.requester@contoso.com"
    assert snow.record("sc_req_item", "RITM9999999", ["cmdb_ci"]) is None
    (first, _) = tickets.servicenow_control.requests()
    assert first["query"] == {
        "sysparm_query": f"number={number}",
        "sysparm_limit": "1",
        "sysparm_display_value": "all",
        "sysparm_fields": "sys_id,number,cmdb_ci,requested_for.email,approval",
    }


def test_approvals_lists_only_approved_rows_oldest_first_across_pages(
    tickets: LocalStack, snow: ServiceNowClient
) -> None:
    control = tickets.servicenow_control
    item = requested_item(tickets)
    record = item["sys_id"]["value"]
    control.approve(record, "ben.requester", state="rejected")
    for i in range(104):
        control.user(f"approver{i:03d}", f"Approver {i}", f"approver{i:03d}@contoso.com")
        control.approve(record, f"approver{i:03d}", at=1_700_000_000 + i)
    control.approve(record, "ana.approver", state="requested")
    rows = snow.approvals(record)
    assert [value_of(r, "approver.user_name") for r in rows] == [f"approver{i:03d}" for i in range(104)]
    assert {value_of(r, "state") for r in rows} == {"approved"}
    offsets = [r["query"]["sysparm_offset"] for r in control.requests(path_contains="sysapproval_approver")]
    assert offsets == ["0", "100"]


def test_add_work_note_appends_one_entry(tickets: LocalStack, snow: ServiceNowClient) -> None:
    item = requested_item(tickets)
    result = snow.add_work_note("sc_req_item", item["sys_id"]["value"], "Release Succeeded: MDE action 42")
    assert result["sys_id"] == item["sys_id"]["value"] and result["number"] == item["number"]["value"]
    notes = tickets.servicenow_control.work_notes(item["sys_id"]["value"])
    assert [(n["text"], n["createdBy"]) for n in notes] == [
        ("Release Succeeded: MDE action 42", "svc_containment")
    ]


def test_an_answer_that_ignored_the_query_is_refused(tickets: LocalStack, snow: ServiceNowClient) -> None:
    # cmdb_ci has no number field: ServiceNow drops that condition and answers with any CI.
    error = raised(lambda: snow.record("cmdb_ci", "RITM0010001", ["name"]))
    assert (type(error).__name__, error.code) == ("TicketBadRequest", "ServiceNowInvalidQuery")


@pytest.mark.parametrize(
    ("arrange", "cls", "code", "status"),
    [
        ("wrong_password", "TicketUnauthorized", "ServiceNowUnauthorized", 401),
        ("denied", "TicketForbidden", "ServiceNowForbidden", 403),
        ("unknown_record", "TicketNotFound", "ServiceNowTicketNotFound", 404),
        ("unknown_table", "TicketBadRequest", "ServiceNowBadRequest", 400),
        ("fault_429", "TicketThrottled", "ServiceNowThrottled", 429),
        ("fault_503", "TicketUnavailable", "ServiceNowUnavailable", 503),
    ],
)
def test_each_servicenow_error_has_its_class_code_and_status(
    tickets: LocalStack, snow: ServiceNowClient, arrange: str, cls: str, code: str, status: int
) -> None:
    control = tickets.servicenow_control
    sys_id = requested_item(tickets)["sys_id"]["value"]
    client, table = snow, "sc_req_item"
    if arrange == "wrong_password":
        client = ServiceNowClient(tickets.servicenow_url, username="svc_containment", password="wrong")
    elif arrange == "denied":
        control.configure(deniedTables=["sc_req_item"])
    elif arrange == "unknown_record":
        sys_id = "0" * 32
    elif arrange == "unknown_table":
        table = "u_no_such_table"
    elif arrange.startswith("fault_"):
        control.fault(int(arrange[6:]), count=5, retry_after=9)
    error = raised(lambda: client.add_work_note(table, sys_id, "Released"))
    assert (type(error).__name__, error.code, error.status, error.system) == (cls, code, status, "ServiceNow")
    if status in (429, 503):
        assert getattr(error, "retry_after", None) == 9.0
    assert control.work_notes() == []


def test_hostile_servicenow_identifiers_never_reach_the_instance(
    tickets: LocalStack, snow: ServiceNowClient
) -> None:
    good_id = "0123456789abcdef0123456789abcdef"
    attempts: list[Callable[[], Any]] = [
        lambda: snow.record("sc_req_item", "RITM1^ORnumberISNOTEMPTY", ["cmdb_ci"]),
        lambda: snow.record("sc_req_item", "RITM1=", ["cmdb_ci"]),
        lambda: snow.record("sc_req_item/../sys_user", "RITM1", []),
        lambda: snow.record("sc_req_item", "RITM1", ["cmdb_ci^ORactive=true"]),
        lambda: snow.approvals(f"{good_id}^ORstate=rejected"),
        lambda: snow.approvals(good_id.upper()),
        lambda: snow.add_work_note("sc_req_item", f"{good_id}/x", "x"),
        lambda: snow.add_work_note("Sc_Req_Item", good_id, "x"),
        lambda: snow.add_work_note("sc_req_item", good_id, " "),
    ]
    for attempt in attempts:
        with pytest.raises(InvalidRequest):
            attempt()
    assert tickets.servicenow_control.requests() == []
