"""The Jira simulator over real HTTP: the behaviours Atlassian documents for Cloud and Data Center."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from devstack.control import JiraControl
from devstack.jira_simulator import BOT_ACCOUNT_ID, JiraSimulator
from devstack.jira_store import Account
from tests.fakeclock import FakeClock

pytestmark = pytest.mark.integration

EMAIL, TOKEN = "bot@contoso.com", "cloud-api-token-0123456789"
DC_USER, DC_PASSWORD, PAT = "bot", "dc-password-0123456789", "dc-personal-access-token-0123"
ANA = "5b10a2844c20165700ede21b"  # Ana Approver, email visible
HANNAH = "5b10a2844c20165700ede21c"  # email hidden by her profile
NOT_FOUND = {"errorMessages": ["Issue does not exist or you do not have permission to see it."], "errors": {}}
LABEL_ITEM = {
    "field": "labels",
    "fieldtype": "jira",
    "from": None,
    "fromString": "",
    "to": None,
    "toString": "x",
}


class Jira:
    """The simulator's base URL with a credential, plus its control API."""

    def __init__(self, sim: JiraSimulator, auth: Any) -> None:
        self.url = sim.url
        self.auth = auth
        self.control = JiraControl(sim.url)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("auth", self.auth)
        return requests.get(self.url + path, timeout=5, **kwargs)

    def post(self, path: str, body: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("auth", self.auth)
        return requests.post(self.url + path, json=body, timeout=5, **kwargs)


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def cloud_sim(clock: FakeClock) -> Iterator[JiraSimulator]:
    sim = JiraSimulator(accounts=[Account(EMAIL, TOKEN, BOT_ACCOUNT_ID)], clock=clock)
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture(scope="module")
def dc_sim() -> Iterator[JiraSimulator]:
    sim = JiraSimulator(
        deployment="datacenter", accounts=[Account(DC_USER, DC_PASSWORD, BOT_ACCOUNT_ID, PAT)]
    )
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture
def cloud(cloud_sim: JiraSimulator) -> Jira:
    cloud_sim.reset()
    return Jira(cloud_sim, (EMAIL, TOKEN))


@pytest.fixture
def dc(dc_sim: JiraSimulator) -> Jira:
    dc_sim.reset()
    return Jira(dc_sim, (DC_USER, DC_PASSWORD))


def make_issue(jira: Jira, key: str = "SEC-1", **fields: Any) -> dict[str, Any]:
    defaults = {"summary": "Release ws-fin-0142", "reporter": ANA, "customfield_10050": "ws-fin-0142"}
    return jira.control.upsert_issue(key, defaults | fields)


# -- authentication and errors -------------------------------------------------------------------


def test_missing_or_wrong_credentials_are_401_in_jiras_error_shape(cloud: Jira) -> None:
    make_issue(cloud)
    for auth in (None, (EMAIL, "wrong-token"), ("someone@contoso.com", TOKEN)):
        response = cloud.get("/rest/api/3/issue/SEC-1", auth=auth)
        assert response.status_code == 401
        assert set(response.json()) == {"errorMessages", "errors"}
        assert response.json()["errorMessages"]
        assert "WWW-Authenticate" in response.headers


def test_cloud_refuses_a_bearer_token_where_data_center_takes_a_personal_access_token(
    cloud: Jira, dc: Jira
) -> None:
    make_issue(cloud)
    make_issue(dc)
    bearer = {"Authorization": f"Bearer {PAT}"}
    assert cloud.get("/rest/api/3/issue/SEC-1", auth=None, headers=bearer).status_code == 401
    assert dc.get("/rest/api/2/issue/SEC-1", auth=None, headers=bearer).status_code == 200
    assert (
        dc.get("/rest/api/2/issue/SEC-1", auth=None, headers={"Authorization": "Bearer nope"}).status_code
        == 401
    )


def test_an_account_jira_refuses_is_403(cloud: Jira) -> None:
    make_issue(cloud)
    cloud.control.account(EMAIL, TOKEN, BOT_ACCOUNT_ID, forbidden=True)
    response = cloud.get("/rest/api/3/issue/SEC-1")
    assert response.status_code == 403
    assert response.json()["errorMessages"] == ["You do not have permission to access this resource."]


def test_unknown_issue_and_issue_the_account_cannot_browse_are_the_same_404(cloud: Jira) -> None:
    make_issue(cloud)
    assert cloud.get("/rest/api/3/issue/SEC-404").json() == NOT_FOUND
    cloud.control.set_visible("SEC-1", False, login=EMAIL)
    hidden = cloud.get("/rest/api/3/issue/SEC-1")
    assert (hidden.status_code, hidden.json()) == (404, NOT_FOUND)
    cloud.control.set_visible("SEC-1", True, login=EMAIL)
    assert cloud.get("/rest/api/3/issue/SEC-1").status_code == 200


def test_issue_is_found_by_numeric_id_and_by_key_in_any_case(cloud: Jira) -> None:
    created = make_issue(cloud)
    by_id = cloud.get(f"/rest/api/3/issue/{created['id']}").json()
    by_lower = cloud.get("/rest/api/3/issue/sec-1").json()
    assert by_id["key"] == by_lower["key"] == "SEC-1"


def test_unknown_path_is_404_and_known_path_with_other_method_is_405(cloud: Jira) -> None:
    assert cloud.get("/rest/api/3/nothing/here").status_code == 404
    assert (
        requests.delete(f"{cloud.url}/rest/api/3/issue/SEC-1", auth=cloud.auth, timeout=5).status_code == 405
    )


# -- fields ---------------------------------------------------------------------------------------


def test_fields_parameter_returns_only_the_fields_named(cloud: Jira) -> None:
    make_issue(cloud)
    issue = cloud.get(
        "/rest/api/3/issue/SEC-1", params={"fields": "status,customfield_10050,nosuchfield"}
    ).json()
    assert set(issue) >= {"id", "key", "self", "fields"}
    assert set(issue["fields"]) == {"status", "customfield_10050"}
    status = issue["fields"]["status"]
    assert (status["name"], status["id"]) == ("To Do", "10000")
    assert status["statusCategory"]["key"] == "new"
    assert "changelog" not in issue


def test_all_fields_when_absent_or_star_all_and_minus_excludes(cloud: Jira) -> None:
    make_issue(cloud)
    absent = cloud.get("/rest/api/3/issue/SEC-1").json()["fields"]
    star = cloud.get("/rest/api/3/issue/SEC-1", params={"fields": "*all"}).json()["fields"]
    minus = cloud.get("/rest/api/3/issue/SEC-1", params={"fields": "*all,-summary"}).json()["fields"]
    assert set(absent) == set(star) >= {"summary", "status", "reporter", "customfield_10050", "created"}
    assert set(minus) == set(star) - {"summary"}


def test_custom_fields_keep_their_shapes_and_users_render_with_account_id(cloud: Jira) -> None:
    make_issue(
        cloud,
        customfield_10050={"value": "ws-fin-0142", "id": "10100"},
        customfield_10051=["ws-fin-0142", "ws-eng-0007"],
        customfield_10052=None,
        reporter=HANNAH,
    )
    fields = cloud.get("/rest/api/3/issue/SEC-1").json()["fields"]
    assert fields["customfield_10050"] == {"value": "ws-fin-0142", "id": "10100"}
    assert fields["customfield_10051"] == ["ws-fin-0142", "ws-eng-0007"]
    assert fields["customfield_10052"] is None
    assert fields["reporter"]["accountId"] == HANNAH
    assert "emailAddress" not in fields["reporter"]  # her profile hides it


# -- changelog ------------------------------------------------------------------------------------


def test_transition_appends_a_status_history_by_its_author(cloud: Jira) -> None:
    make_issue(cloud)
    cloud.control.transition("SEC-1", "Approved", ANA)
    issue = cloud.get("/rest/api/3/issue/SEC-1", params={"fields": "status", "expand": "changelog"}).json()
    assert issue["fields"]["status"]["name"] == "Approved"
    changelog = issue["changelog"]
    assert (changelog["startAt"], changelog["total"], len(changelog["histories"])) == (0, 1, 1)
    history = changelog["histories"][0]
    assert history["author"]["accountId"] == ANA
    assert history["author"]["emailAddress"] == "ana.approver@contoso.com"
    assert history["author"]["displayName"] == "Ana Approver"
    (item,) = history["items"]
    assert {k: item[k] for k in ("field", "fieldtype", "from", "fromString", "to", "toString")} == {
        "field": "status", "fieldtype": "jira", "from": "10000", "fromString": "To Do",
        "to": "10002", "toString": "Approved",
    }  # fmt: skip


def test_cloud_embeds_the_100_most_recent_histories_and_counts_them_all(cloud: Jira) -> None:
    make_issue(cloud)
    cloud.control.add_history("SEC-1", HANNAH, [LABEL_ITEM], count=120)
    cloud.control.transition("SEC-1", "Approved", ANA)
    changelog = cloud.get("/rest/api/3/issue/SEC-1", params={"expand": "changelog"}).json()["changelog"]
    assert (changelog["total"], changelog["maxResults"], len(changelog["histories"])) == (121, 100, 100)
    assert changelog["histories"][-1]["items"][0]["toString"] == "Approved"
    ids = [int(h["id"]) for h in changelog["histories"]]
    assert ids == sorted(ids)


def test_cloud_changelog_endpoint_pages_oldest_first_at_most_100(cloud: Jira) -> None:
    make_issue(cloud)
    cloud.control.transition("SEC-1", "In Progress", ANA)
    cloud.control.add_history("SEC-1", HANNAH, [LABEL_ITEM], count=149)
    first = cloud.get("/rest/api/3/issue/SEC-1/changelog", params={"maxResults": 500}).json()
    assert (first["startAt"], first["maxResults"], first["total"], first["isLast"]) == (0, 100, 150, False)
    assert len(first["values"]) == 100 and "nextPage" in first
    assert first["values"][0]["items"][0]["toString"] == "In Progress"
    second = cloud.get("/rest/api/2/issue/SEC-1/changelog", params={"startAt": 100}).json()
    assert (second["startAt"], len(second["values"]), second["isLast"]) == (100, 50, True)
    assert "nextPage" not in second
    ids = [int(h["id"]) for h in first["values"] + second["values"]]
    assert ids == sorted(set(ids)) and len(ids) == 150


def test_data_center_embeds_every_history_and_has_no_changelog_endpoint_or_v3(dc: Jira) -> None:
    make_issue(dc)
    dc.control.add_history("SEC-1", HANNAH, [LABEL_ITEM], count=130)
    dc.control.transition("SEC-1", "Approved", ANA)
    changelog = dc.get("/rest/api/2/issue/SEC-1", params={"expand": "changelog"}).json()["changelog"]
    assert (changelog["total"], changelog["maxResults"], len(changelog["histories"])) == (131, 131, 131)
    author = changelog["histories"][-1]["author"]
    assert "accountId" not in author and author["name"] == "ana.approver"
    assert "fieldId" not in changelog["histories"][-1]["items"][0]
    assert dc.get("/rest/api/2/issue/SEC-1/changelog").status_code == 404
    assert dc.get("/rest/api/3/issue/SEC-1").status_code == 404


# -- comments -------------------------------------------------------------------------------------


def adf(text: str) -> dict[str, Any]:
    return {
        "type": "doc",
        "version": 1,
        "content": [{"type": "paragraph", "content": [{"type": "text", "text": text}]}],
    }


def test_v3_comment_must_be_an_adf_document(cloud: Jira) -> None:
    make_issue(cloud)
    for body in ("plain text", {"type": "doc", "version": 1, "content": [{"type": "text", "text": "x"}]}):
        response = cloud.post("/rest/api/3/issue/SEC-1/comment", {"body": body})
        assert response.status_code == 400
        assert response.json() == {"errorMessages": [], "errors": {"comment": "Comment body is not valid!"}}
    assert cloud.control.comments() == []


def test_v3_comment_is_201_with_the_comment_and_recorded(cloud: Jira) -> None:
    make_issue(cloud)
    response = cloud.post("/rest/api/3/issue/SEC-1/comment", {"body": adf("Released: Succeeded")})
    assert response.status_code == 201
    comment = response.json()
    assert comment["body"] == adf("Released: Succeeded")
    assert comment["author"]["accountId"] == BOT_ACCOUNT_ID
    (recorded,) = cloud.control.comments("SEC-1")
    assert (recorded["id"], recorded["text"], recorded["apiVersion"]) == (
        comment["id"],
        "Released: Succeeded",
        "3",
    )


def test_v2_comment_is_a_plain_string_and_reads_as_adf_on_v3(cloud: Jira) -> None:
    make_issue(cloud)
    assert cloud.post("/rest/api/2/issue/SEC-1/comment", {"body": adf("x")}).status_code == 400
    created = cloud.post("/rest/api/2/issue/SEC-1/comment", {"body": "Released"})
    assert (created.status_code, created.json()["body"]) == (201, "Released")
    listed = cloud.get("/rest/api/3/issue/SEC-1/comment").json()
    assert listed["total"] == 1 and listed["comments"][0]["body"] == adf("Released")


def test_comment_without_permission_is_403_and_on_hidden_issue_404(cloud: Jira) -> None:
    make_issue(cloud)
    cloud.control.set_can_comment("SEC-1", False)
    assert cloud.post("/rest/api/3/issue/SEC-1/comment", {"body": adf("x")}).status_code == 403
    cloud.control.set_visible("SEC-1", False)
    assert cloud.post("/rest/api/3/issue/SEC-1/comment", {"body": adf("x")}).json() == NOT_FOUND
    assert cloud.control.comments() == []


def test_empty_or_too_long_comment_is_400(cloud: Jira) -> None:
    make_issue(cloud)
    empty = cloud.post("/rest/api/2/issue/SEC-1/comment", {"body": ""})
    assert empty.json()["errors"] == {"comment": "Comment body can not be empty!"}
    too_long = cloud.post("/rest/api/2/issue/SEC-1/comment", {"body": "x" * 32768})
    assert too_long.status_code == 400 and "too long" in too_long.json()["errors"]["comment"]


# -- throttling, faults, recording ----------------------------------------------------------------


def test_rate_limit_answers_429_with_the_exact_retry_after(cloud: Jira, clock: FakeClock) -> None:
    make_issue(cloud)
    cloud.control.rate_limit(2, 60)
    assert [cloud.get("/rest/api/3/issue/SEC-1").status_code for _ in range(2)] == [200, 200]
    throttled = cloud.get("/rest/api/3/issue/SEC-1")
    assert (throttled.status_code, throttled.headers["Retry-After"]) == (429, "60")
    assert throttled.json()["errorMessages"] == ["Rate limit exceeded."]
    clock.advance(59)
    assert cloud.get("/rest/api/3/issue/SEC-1").headers["Retry-After"] == "1"
    clock.advance(1)
    assert cloud.get("/rest/api/3/issue/SEC-1").status_code == 200


def test_injected_faults_answer_then_clear(cloud: Jira) -> None:
    make_issue(cloud)
    cloud.control.fault(503, count=2, retry_after=7, path_contains="/comment")
    assert cloud.get("/rest/api/3/issue/SEC-1").status_code == 200  # the fault matches comments only
    for _ in range(2):
        failed = cloud.post("/rest/api/3/issue/SEC-1/comment", {"body": adf("x")})
        assert (failed.status_code, failed.headers["Retry-After"]) == (503, "7")
    assert cloud.post("/rest/api/3/issue/SEC-1/comment", {"body": adf("x")}).status_code == 201
    assert cloud.control.faults() == []


def test_requests_are_recorded_with_the_authorization_redacted(cloud: Jira) -> None:
    make_issue(cloud)
    cloud.get("/rest/api/3/issue/SEC-1", params={"fields": "status", "expand": "changelog"})
    (recorded,) = cloud.control.requests()
    assert (recorded["method"], recorded["path"], recorded["status"]) == (
        "GET",
        "/rest/api/3/issue/SEC-1",
        200,
    )
    assert recorded["query"] == {"fields": "status", "expand": "changelog"}
    assert recorded["account"] == EMAIL
    assert recorded["headers"]["Authorization"] == "Basic <redacted>"
    assert TOKEN not in str(recorded)
