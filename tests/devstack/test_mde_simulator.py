"""The MDE simulator over real HTTP: the behaviours docs/mde-api.md describes."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from devstack.mde_simulator import MdeSimulator
from devstack.tokens import mint_token
from tests.fakeclock import FakeClock

pytestmark = pytest.mark.integration

SECRET = "test-signing-secret-0123456789abcdef"
AUDIENCE = "https://api.securitycenter.microsoft.com"
APP_ID = "7d1c2b3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
FIN = "c28460d93e441d30869ebb33920c06acbb6fd75e"  # ws-fin-0142, Active, 10.1.2.3
MAC = "944974c69e94e0df3a5a09da21b5f138ab0d9b67"  # mac-design-03, Active, macOS
HR_OFFLINE = "9c4f08247909332d14a6ae9170a78b792337ff0b"  # ws-hr-0031, Inactive
SALES_LIVE = "58e7b99603ae8ab07c70b95172007a23b6d37fdc"  # ws-sales-0099 (+ two stale records)
ACTION_FIELDS = {
    "@odata.context", "id", "type", "title", "requestor", "requestorComment", "status", "machineId",
    "computerDnsName", "creationDateTimeUtc", "lastUpdateDateTimeUtc", "cancellationRequestor",
    "cancellationComment", "cancellationDateTimeUtc", "errorHResult", "scope", "externalId",
    "requestSource", "relatedFileInfo", "commands", "troubleshootInfo",
}  # fmt: skip
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z")


def token(roles: tuple[str, ...] = ("Machine.Isolate", "Machine.Read.All"), **overrides: Any) -> str:
    args: dict[str, Any] = {
        "audience": AUDIENCE, "roles": list(roles), "client_id": APP_ID,
        "tenant_id": "00000000-0000-4000-8000-000000000001", "lifetime_s": 3600, "secret": SECRET,
    } | overrides  # fmt: skip
    return mint_token(**args)[0]


class Api:
    """A tiny client: the simulator's base URL plus a bearer token."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.token = token()

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}"} | kwargs.pop("headers", {})
        return requests.get(self.url + path, headers=headers, timeout=5, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}"} | kwargs.pop("headers", {})
        if "data" not in kwargs:
            kwargs["json"] = body
        return requests.post(self.url + path, headers=headers, timeout=5, **kwargs)

    def isolate(self, machine_id: str, **body: Any) -> requests.Response:
        return self.post(f"/api/machines/{machine_id}/isolate", {"Comment": "alert 42"} | body)

    def control(self, method: str, path: str, body: Any = None) -> Any:
        response = requests.request(method, f"{self.url}/_control/{path}", json=body, timeout=5)
        assert response.status_code == 200, response.text
        return response.json()

    def machine_state(self, machine_id: str) -> dict[str, Any]:
        return next(m for m in self.control("GET", "machines") if m["id"] == machine_id)


@pytest.fixture
def start() -> Iterator[Callable[..., Api]]:
    simulators: list[MdeSimulator] = []

    def _start(**options: Any) -> Api:
        simulator = MdeSimulator(signing_secret=SECRET, **options)
        simulators.append(simulator)
        return Api(simulator.start())

    yield _start
    for simulator in simulators:
        simulator.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def api(start: Callable[..., Api], clock: FakeClock) -> Api:
    # One simulated minute per real second: pending 60 s and in progress 120 s take 1 s and 2 s.
    return start(time_scale=60, pending_s=60, in_progress_s=120, action_timeout_s=3600, clock=clock)


def assert_error(response: requests.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "target"}
    assert body["error"]["code"] == code
    assert UUID.fullmatch(body["error"]["target"])
    return dict(body["error"])


# -- actions --------------------------------------------------------------------------------------


def test_isolate_creates_a_pending_action_with_the_documented_fields(api: Api) -> None:
    response = api.isolate(FIN, IsolationType="Selective")

    assert response.status_code == 201
    action = response.json()
    assert set(action) == ACTION_FIELDS
    assert UUID.fullmatch(action["id"])
    assert action["type"] == "Isolate" and action["status"] == "Pending" and action["scope"] == "Selective"
    assert action["requestor"] == APP_ID and action["requestorComment"] == "alert 42"
    assert action["machineId"] == FIN and action["computerDnsName"] == "ws-fin-0142.contoso.local"
    assert action["requestSource"] == "PublicApi" and action["commands"] == []
    assert TIMESTAMP.fullmatch(action["creationDateTimeUtc"])
    assert TIMESTAMP.fullmatch(action["lastUpdateDateTimeUtc"])
    assert api.get(f"/api/machineactions/{action['id']}").json() == action


def test_action_moves_pending_in_progress_succeeded_and_isolates(api: Api, clock: FakeClock) -> None:
    action_id = api.isolate(FIN).json()["id"]

    def status() -> str:
        return str(api.get(f"/api/machineactions/{action_id}").json()["status"])

    clock.advance(0.9)
    assert status() == "Pending"
    clock.advance(0.2)
    assert status() == "InProgress"
    assert api.machine_state(FIN)["isolated"] is False
    clock.advance(2.0)
    assert status() == "Succeeded"
    assert api.machine_state(FIN)["isolated"] is True

    api.post(f"/api/machines/{FIN}/unisolate", {"Comment": "released"})
    clock.advance(3.1)
    assert api.machine_state(FIN)["isolated"] is False


def test_time_scale_drives_real_time_progress(start: Callable[..., Api]) -> None:
    api = start(time_scale=100, pending_s=5, in_progress_s=5)  # 50 ms each, real clock
    action_id = api.isolate(FIN).json()["id"]
    time.sleep(0.15)
    assert api.get(f"/api/machineactions/{action_id}").json()["status"] == "Succeeded"


def test_offline_machine_action_stays_pending_then_times_out(api: Api, clock: FakeClock) -> None:
    action_id = api.isolate(HR_OFFLINE).json()["id"]

    clock.advance(59)  # 59 simulated minutes
    assert api.get(f"/api/machineactions/{action_id}").json()["status"] == "Pending"
    clock.advance(2)
    action = api.get(f"/api/machineactions/{action_id}").json()
    assert action["status"] == "TimeOut"
    assert api.machine_state(HR_OFFLINE)["isolated"] is False


def test_offline_machine_action_starts_when_the_machine_checks_in(api: Api, clock: FakeClock) -> None:
    action_id = api.isolate(HR_OFFLINE).json()["id"]
    clock.advance(10)
    api.control("POST", "machines", [api.machine_state(HR_OFFLINE) | {"healthStatus": "Active"}])
    assert api.get(f"/api/machineactions/{action_id}").json()["status"] == "InProgress"
    clock.advance(2.1)
    assert api.get(f"/api/machineactions/{action_id}").json()["status"] == "Succeeded"


def test_injected_final_status_per_machine(api: Api, clock: FakeClock) -> None:
    api.control("POST", "machines", [api.machine_state(FIN) | {"simFinalStatus": "Failed"}])
    action_id = api.isolate(FIN).json()["id"]
    clock.advance(3.1)
    assert api.get(f"/api/machineactions/{action_id}").json()["status"] == "Failed"
    assert api.machine_state(FIN)["isolated"] is False


def test_control_completes_an_action(api: Api) -> None:
    action_id = api.isolate(FIN).json()["id"]
    api.control("POST", f"actions/{action_id}/complete", {"status": "Succeeded"})
    assert api.get(f"/api/machineactions/{action_id}").json()["status"] == "Succeeded"
    assert api.machine_state(FIN)["isolated"] is True


def test_second_isolate_while_pending_is_400_already_in_progress(api: Api) -> None:
    assert api.isolate(FIN).status_code == 201
    error = assert_error(api.isolate(FIN), 400, "ActiveRequestAlreadyExists")
    assert error["message"] == "Action is already in progress"
    # The opposite action is a different type: it is accepted.
    assert api.post(f"/api/machines/{FIN}/unisolate", {"Comment": "x"}).status_code == 201


def test_second_isolate_in_201_existing_mode_returns_the_pending_action(start: Callable[..., Api]) -> None:
    api = start(duplicate_mode="201-existing")
    first = api.isolate(FIN).json()
    second = api.isolate(FIN)
    assert second.status_code == 201
    assert second.json()["id"] == first["id"]


def test_cancel_pending_action(api: Api) -> None:
    action_id = api.isolate(FIN).json()["id"]
    response = api.post(f"/api/machineactions/{action_id}/cancel", {"Comment": "false positive"})

    assert response.status_code == 200
    action = response.json()
    assert action["status"] == "Cancelled"
    assert action["cancellationRequestor"] == APP_ID
    assert action["cancellationComment"] == "false positive"
    assert TIMESTAMP.fullmatch(action["cancellationDateTimeUtc"])
    assert_error(api.post(f"/api/machineactions/{action_id}/cancel", {"Comment": "again"}), 400, "BadRequest")
    assert api.isolate(FIN).status_code == 201  # nothing pending any more


# -- requests refused -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"comment": "lower case"}, "InvalidRequestBody"),
        ({"Comment": "x", "isolationType": "Full"}, "InvalidRequestBody"),
        ({"Comment": "x", "IsolationType": "full"}, "InvalidRequestBody"),
        ({"Comment": 42}, "InvalidRequestBody"),
        (["Comment"], "InvalidRequestBody"),
        ({}, "MissingRequiredParameter"),
        ({"IsolationType": "Full"}, "MissingRequiredParameter"),
        ({"Comment": "  "}, "MissingRequiredParameter"),
    ],
)
def test_isolate_body_is_case_sensitive_and_validated(api: Api, body: Any, code: str) -> None:
    assert_error(api.post(f"/api/machines/{FIN}/isolate", body), 400, code)


def test_body_must_be_json_with_json_content_type(api: Api) -> None:
    path = f"/api/machines/{FIN}/isolate"
    plain = api.post(path, data=json.dumps({"Comment": "x"}), headers={"Content-Type": "text/plain"})
    assert_error(plain, 400, "InvalidRequestBody")
    broken = api.post(path, data="{not json", headers={"Content-Type": "application/json"})
    assert_error(broken, 400, "InvalidRequestBody")


def test_selective_isolation_needs_windows(api: Api) -> None:
    assert_error(api.isolate(MAC, IsolationType="Selective"), 400, "OsPlatformNotSupported")
    assert api.isolate(MAC, IsolationType="Full").status_code == 201


@pytest.mark.parametrize("machine_id", ["0" * 40, FIN.upper(), "not-a-machine-id"])
def test_unknown_or_malformed_machine_is_404(api: Api, machine_id: str) -> None:
    assert_error(api.isolate(machine_id), 404, "ResourceNotFound")


def test_unknown_action_is_404(api: Api) -> None:
    assert_error(api.get("/api/machineactions/0b5c1b3e-0000-4000-8000-000000000000"), 404, "ResourceNotFound")


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Basic abc",
        "Bearer not-a-jwt",
        "Bearer " + token(secret="another-secret-of-enough-length-000"),
        "Bearer " + token(audience="https://graph.microsoft.com"),
        "Bearer " + token(now=time.time() - 7200),
    ],
    ids=["missing", "not-bearer", "garbage", "bad-signature", "wrong-audience", "expired"],
)
def test_bad_token_is_401(api: Api, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = requests.get(f"{api.url}/api/machines/{FIN}", headers=headers, timeout=5)
    assert_error(response, 401, "Unauthorized")


@pytest.mark.parametrize(
    "audience",
    [
        "https://api.securitycenter.microsoft.com/",
        "https://api.security.microsoft.com",
        "https://api.securitycenter.windows.com",
    ],
)
def test_commercial_audiences_are_accepted(api: Api, audience: str) -> None:
    api.token = token(audience=audience)
    assert api.get(f"/api/machines/{FIN}").status_code == 200


def test_missing_role_is_403(api: Api) -> None:
    api.token = token(roles=("Machine.Read.All",))
    assert_error(api.isolate(FIN), 403, "Forbidden")
    assert api.get(f"/api/machines/{FIN}").status_code == 200
    api.token = token(roles=("Machine.Isolate",))
    assert_error(api.get(f"/api/machines/{FIN}"), 403, "Forbidden")
    api.token = token(roles=("Machine.ReadWrite.All",))
    assert api.get("/api/machineactions").status_code == 200


# -- rate limits and faults -----------------------------------------------------------------------


def test_rate_limit_429_with_retry_after_until_a_slot_frees(start: Callable[..., Api]) -> None:
    api = start(rate_per_minute=3, time_scale=60)  # a simulated minute is one real second
    for _ in range(3):
        assert api.get(f"/api/machines/{FIN}").status_code == 200
    throttled = api.get(f"/api/machines/{FIN}")
    assert_error(throttled, 429, "TooManyRequests")
    assert throttled.headers["Retry-After"] == "1"
    assert api.get(f"/api/machines/{FIN}").status_code == 429  # retrying early: throttled again
    assert api.get("/api/machineactions").status_code == 200  # another API has its own budget
    time.sleep(1.05)
    assert api.get(f"/api/machines/{FIN}").status_code == 200
    assert api.control("GET", "stats")["throttled"] == {"machines": 2}


def test_hourly_limit_gives_a_longer_retry_after(start: Callable[..., Api], clock: FakeClock) -> None:
    api = start(rate_per_minute=100, rate_per_hour=2, clock=clock)
    api.get("/api/machineactions")
    clock.advance(600)
    api.get("/api/machineactions")
    throttled = api.get("/api/machineactions")
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "3000"


def test_injected_faults_hit_the_next_calls_of_one_api(api: Api) -> None:
    api.control("POST", "faults", {"api": "isolate", "status": 500, "count": 2})
    api.control("POST", "faults", {"api": "machines", "status": 429, "retryAfter": 7})

    assert_error(api.isolate(FIN), 500, "InternalServerError")
    assert_error(api.isolate(FIN), 500, "InternalServerError")
    assert api.isolate(FIN).status_code == 201
    throttled = api.get(f"/api/machines/{FIN}")
    assert_error(throttled, 429, "TooManyRequests")
    assert throttled.headers["Retry-After"] == "7"
    assert api.control("GET", "faults") == []


def test_injected_fault_with_custom_code(api: Api) -> None:
    api.control("POST", "faults", {"api": "unisolate", "status": 403, "code": "DisallowedOperation"})
    assert_error(api.post(f"/api/machines/{FIN}/unisolate", {"Comment": "x"}), 403, "DisallowedOperation")


# -- queries --------------------------------------------------------------------------------------


def test_machine_by_dns_name_ignores_case_and_prefers_latest_record(api: Api) -> None:
    assert api.get("/api/machines/WS-FIN-0142.contoso.local").json()["id"] == FIN
    assert api.get("/api/machines/ws-sales-0099.contoso.local").json()["id"] == SALES_LIVE
    assert_error(api.get("/api/machines/nobody.contoso.local"), 404, "ResourceNotFound")


def test_machine_filter_returns_every_record_of_a_name(api: Api) -> None:
    response = api.get(
        "/api/machines", params={"$filter": "computerDnsName eq 'ws-sales-0099.contoso.local'"}
    )
    assert response.status_code == 200
    machines = response.json()["value"]
    assert len(machines) == 3 and SALES_LIVE in {m["id"] for m in machines}
    assert "isolated" not in machines[0]  # sim-only fields stay out of the API


def test_machine_filter_unescapes_doubled_quotes(api: Api) -> None:
    odd = {"id": "ab" * 20, "computerDnsName": "o'brien-pc.contoso.local", "healthStatus": "Inactive"}
    api.control("POST", "machines", [odd])
    found = api.get(
        "/api/machines",
        params={"$filter": "computerDnsName eq 'o''brien-pc.contoso.local' and healthStatus eq 'Inactive'"},
    ).json()["value"]
    assert [m["id"] for m in found] == [odd["id"]]


@pytest.mark.parametrize(
    "odata_filter",
    [
        "computerDnsName eq 'a' or computerDnsName eq 'b'",
        "computerDnsName eq 'unterminated",
        "machineTags/any(tag: tag eq 'VIP')",
        "ComputerDnsName eq 'a'",
        "computerDnsName eq 'a' and",
        "(computerDnsName eq 'a')",
        "computerDnsName gt 'a'",
    ],
)
def test_unparsable_filter_is_400_invalid_input(api: Api, odata_filter: str) -> None:
    assert_error(api.get("/api/machines", params={"$filter": odata_filter}), 400, "InvalidInput")


def test_machine_actions_filter_and_top(api: Api) -> None:
    api.isolate(FIN)
    api.post(f"/api/machines/{FIN}/unisolate", {"Comment": "x"})
    api.isolate(MAC)
    odata_filter = f"machineId eq '{FIN}' and type eq 'Isolate' and status eq 'Pending'"
    body = api.get("/api/machineactions", params={"$filter": odata_filter}).json()

    assert set(body) == {"@odata.context", "value"}
    assert [(a["machineId"], a["type"]) for a in body["value"]] == [(FIN, "Isolate")]
    assert len(api.get("/api/machineactions", params={"$top": "2"}).json()["value"]) == 2
    assert_error(api.get("/api/machineactions", params={"$top": "10001"}), 400, "InvalidInput")
    since = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    recent = api.get("/api/machineactions", params={"$filter": f"creationDateTimeUtc ge {since}"})
    assert len(recent.json()["value"]) == 3


def test_find_by_ip(api: Api) -> None:
    when = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    found = api.get(f"/api/machines/findbyip(ip='10.1.2.3',timestamp={when})").json()["value"]
    assert [m["id"] for m in found] == [FIN]
    assert api.get(f"/api/machines/findbyip(ip='10.9.9.9',timestamp={when})").json()["value"] == []

    too_old = (datetime.now(UTC) - timedelta(days=31)).strftime("%Y-%m-%dT%H:%M:%SZ")
    old = api.get(f"/api/machines/findbyip(ip='10.1.2.3',timestamp={too_old})")
    assert_error(old, 400, "InvalidInput")
    bad_ip = api.get(f"/api/machines/findbyip(ip='10.1.2',timestamp={when})")
    assert_error(bad_ip, 400, "InvalidInput")


# -- control API ----------------------------------------------------------------------------------


def test_request_log_redacts_the_token_and_keeps_its_claims(api: Api) -> None:
    api.isolate(FIN)
    requests.get(f"{api.url}/api/machines/{FIN}", timeout=5)  # no token at all

    log = api.control("GET", "requests")
    assert api.token not in json.dumps(log)
    first, second = log
    assert first["method"] == "POST" and first["path"] == f"/api/machines/{FIN}/isolate"
    assert first["headers"]["Authorization"] == "Bearer <redacted>"
    assert first["authorized"] is True and first["status"] == 201
    assert first["claims"] == {
        "aud": AUDIENCE,
        "roles": ["Machine.Isolate", "Machine.Read.All"],
        "appid": APP_ID,
    }
    assert first["json"] == {"Comment": "alert 42"} and json.loads(first["body"]) == first["json"]
    assert second["authorized"] is False and second["status"] == 401 and second["claims"] is None


def test_reset_clears_actions_and_restores_the_seed(api: Api) -> None:
    api.control("POST", "config", {"duplicate_mode": "201-existing"})
    action_id = api.isolate(FIN).json()["id"]
    api.control("POST", "machines", [{"id": "cd" * 20, "computerDnsName": "extra.contoso.local"}])

    api.control("POST", "reset")

    assert_error(api.get(f"/api/machineactions/{action_id}"), 404, "ResourceNotFound")
    assert "cd" * 20 not in {m["id"] for m in api.control("GET", "machines")}
    assert api.control("GET", "config")["duplicate_mode"] == "400"
    assert api.control("GET", "requests")[0]["path"].startswith("/api/machineactions/")


def test_control_rejects_bad_input(api: Api) -> None:
    assert (
        requests.post(f"{api.url}/_control/config", json={"duplicate_mode": "maybe"}, timeout=5).status_code
        == 400
    )
    assert requests.post(f"{api.url}/_control/machines", json=[{"id": "short"}], timeout=5).status_code == 400
    assert (
        requests.post(f"{api.url}/_control/faults", json={"api": "everything"}, timeout=5).status_code == 400
    )
