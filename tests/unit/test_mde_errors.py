"""The MDE client's mapping of responses to typed errors (the table in shared/adapters/mde.py).

The simulator produces these responses too (tests/integration); here each mapping is checked on
its own, with responses built in memory.
"""

import json
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from shared.adapters.mde import MdeClient, _error_from_response, odata_string
from shared.domain.model import validate_action_id, validate_machine_id
from shared.errors import (
    ActionAlreadyPending,
    InvalidRequest,
    MdeNotFound,
    MdePermanentError,
    MdeThrottled,
    MdeTransientError,
    PermanentError,
    TransientError,
)


def response(status: int, body: object = None, headers: dict[str, str] | None = None) -> requests.Response:
    r = requests.Response()
    r.status_code = status
    r._content = json.dumps(body).encode() if body is not None else b"<html>gateway</html>"
    r.headers.update(headers or {})
    r.reason = "Reason"
    return r


def mde_error(code: str, message: str = "m") -> dict[str, object]:
    return {"error": {"code": code, "message": message, "target": "c0ffee00-0000-4000-8000-000000000001"}}


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (400, "InvalidRequestBody", MdePermanentError),
        (400, "MissingRequiredParameter", MdePermanentError),
        (400, "OsPlatformNotSupported", MdePermanentError),
        (401, "Unauthorized", MdePermanentError),
        (403, "Forbidden", MdePermanentError),
        (403, "DisallowedOperation", MdePermanentError),
        (404, "ResourceNotFound", MdeNotFound),
        (429, "TooManyRequests", MdeThrottled),
        (500, "InternalServerError", MdeTransientError),
        (503, "ServiceUnavailable", MdeTransientError),
    ],
)
def test_status_maps_to_the_error_family(status: int, code: str, expected: type) -> None:
    error = _error_from_response("POST", "https://api/x", response(status, mde_error(code)))
    assert type(error) is expected
    assert (error.status, error.code, error.target) == (status, code, "c0ffee00-0000-4000-8000-000000000001")
    assert error.retryable is issubclass(expected, TransientError)
    assert "POST https://api/x" in str(error)


@pytest.mark.parametrize(
    "body",
    [
        mde_error("ActiveRequestAlreadyExists", "Action is already in progress"),
        mde_error("BadRequest", "Action is already in progress"),
    ],
)
def test_already_in_progress_is_recognised_by_code_or_message(body: dict[str, object]) -> None:
    error = _error_from_response("POST", "u", response(400, body))
    assert isinstance(error, ActionAlreadyPending)
    assert isinstance(error, PermanentError)


def test_429_carries_retry_after_seconds() -> None:
    error = _error_from_response(
        "GET", "u", response(429, mde_error("TooManyRequests"), {"Retry-After": "7"})
    )
    assert isinstance(error, MdeTransientError)
    assert error.retry_after == 7.0


@pytest.mark.parametrize(("header", "expected"), [("86400", 3600.0), ("-5", 0.0), ("soon", None)])
def test_retry_after_is_bounded_by_the_longest_mde_window(header: str, expected: float | None) -> None:
    error = _error_from_response(
        "GET", "u", response(429, mde_error("TooManyRequests"), {"Retry-After": header})
    )
    assert isinstance(error, MdeTransientError)
    assert error.retry_after == expected


def test_error_without_a_json_body_still_has_a_code() -> None:
    error = _error_from_response("GET", "u", response(502))
    assert isinstance(error, MdeTransientError)
    assert error.code == "Reason"
    assert error.to_result_error() == {
        "code": "Reason",
        "message": "HTTP 502",
        "retryable": True,
        "httpStatus": 502,
        "mdeTarget": None,
    }


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "../" * 13 + "a",
        "1e5bc9d7e413ddd7902c2932e418702b84d0cc0/",
        "1e5bc9d7e413ddd7902c2932e418702b84d0cc0%",
        None,
        7,
    ],
)
def test_machine_ids_are_validated_before_use(bad: object) -> None:
    with pytest.raises(InvalidRequest, match="InvalidMachineId"):
        validate_machine_id(bad)


def test_action_ids_must_be_guids() -> None:
    assert (
        validate_action_id("7f1a2b3c-0000-4000-8000-000000000001") == "7f1a2b3c-0000-4000-8000-000000000001"
    )
    for bad in ("7f1a2b3c-0000-4000-8000-000000000001/cancel", "x", "7f1a2b3c-0000-4000-8000-00000000000\n"):
        with pytest.raises(InvalidRequest):
            validate_action_id(bad)


def test_odata_literals_double_quotes() -> None:
    assert odata_string("pc' or 1 eq 1") == "'pc'' or 1 eq 1'"


class NoNetwork(requests.Session):
    """A session that records what would have been sent and sends nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        self.sent.append(f"{method!s} {url!s}")
        raise AssertionError(f"an identifier that should have been refused reached HTTP: {url!s}")


class NoToken:
    def get_token(self) -> str:
        raise AssertionError("no call, so no token")


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (
            lambda mde: mde.find_machines_by_ip("fe80::1%eth0", datetime(2026, 11, 23, tzinfo=UTC)),
            "InvalidIpAddress",
        ),
        (
            lambda mde: mde.find_machines_by_ip("fe80::1%25x", datetime(2026, 11, 23, tzinfo=UTC)),
            "InvalidIpAddress",
        ),
        (
            lambda mde: mde.find_machines_by_ip("10.1.2.3\n", datetime(2026, 11, 23, tzinfo=UTC)),
            "InvalidIpAddress",
        ),
        (lambda mde: mde.find_machines_by_dns_prefix("ws-eng-0007\n"), "InvalidDeviceName"),
        (lambda mde: mde.find_machines_by_dns_name("ws-eng-0007.contoso.local\n"), "InvalidDeviceName"),
        (lambda mde: mde.find_machines_by_dns_name("pc' or 1 eq 1"), "InvalidDeviceName"),
    ],
)
def test_lookups_refuse_identifiers_that_are_not_what_they_claim_before_any_http(
    call: Any, code: str
) -> None:
    session = NoNetwork()
    mde = MdeClient("https://api.securitycenter.microsoft.com", NoToken(), session=session)
    with pytest.raises(InvalidRequest, match=code):
        call(mde)
    assert session.sent == []


class Scripted(requests.Session):
    """A session that answers each request with the next scripted response."""

    def __init__(self, *answers: requests.Response) -> None:
        super().__init__()
        self.answers = list(answers)

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        return self.answers.pop(0)


class Token:
    def get_token(self) -> str:
        return "t"


def test_a_429_and_each_call_refused_after_it_say_when_their_slot_frees_after_retry_after() -> None:
    from shared.adapters.budget import CallBudget
    from shared.errors import MdeThrottledLocally

    now = [100.0]
    machine = {"id": "c28460d93e441d30869ebb33920c06acbb6fd75e", "computerDnsName": "pc"}
    session = Scripted(
        response(200, machine),
        response(200, machine),
        response(429, mde_error("TooManyRequests"), {"Retry-After": "58"}),
    )
    budget = CallBudget(lambda: now[0])
    mde = MdeClient("https://api.securitycenter.microsoft.com", Token(), session=session, budget=budget)
    mde.get_machine(machine["id"])
    now[0] += 0.75
    mde.get_machine(machine["id"])
    now[0] += 0.5
    with pytest.raises(MdeThrottled) as throttled:
        mde.get_machine(machine["id"])
    assert (throttled.value.retry_after, throttled.value.frees_within) == (58.0, 0.0)  # the first slot
    now[0] += 10
    with pytest.raises(MdeThrottledLocally) as refused:
        mde.get_machine(machine["id"])  # not sent: nothing is left in the script
    assert (refused.value.retry_after, refused.value.frees_within) == (48.0, 0.75)  # the second
    with pytest.raises(MdeThrottledLocally) as refused:
        mde.get_machine(machine["id"])
    assert refused.value.frees_within == 0.75  # the last slot: the call MDE refused took none
    assert budget.spent("machines", 60) == 2
