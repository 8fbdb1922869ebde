"""The ticket clients' pure parts: base URL rules, Retry-After, the status table, identifier
validation, ADF building. No server."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from shared.adapters import jira, servicenow
from shared.adapters.jira import JiraClient, adf_document, validate_field_ids, validate_issue_key
from shared.adapters.servicenow import ServiceNowClient
from shared.adapters.ticket_http import (
    TicketBadRequest,
    TicketForbidden,
    TicketNotFound,
    TicketPermanentError,
    TicketThrottled,
    TicketTransientError,
    TicketUnauthorized,
    TicketUnavailable,
    error_class,
    parse_retry_after,
    validate_base_url,
)
from shared.errors import ConfigError, InvalidRequest, PermanentError, TransientError

# Full-width digits: str.isdigit() says yes, the full-match patterns must say no.
HOSTILE = ["", " SEC-1", "SEC-1 ", "SEC-1\n", "SEC-1/comment", "../SEC-1", "SEC-1?x=1", "SEC-1#", "SEC-1%2F",
           "SEC-1^ORnumber=X", "sec-1", "S-1", "1SEC-1", "SEC-01", "SEC-0", "SEC--1", "SEC-1.5",
           "\uff10\uff11", "SEC-\uff11"]  # fmt: skip


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://contoso.atlassian.net", "https://contoso.atlassian.net"),
        ("https://jira.contoso.com/jira/", "https://jira.contoso.com/jira"),
        ("http://127.0.0.1:8085", "http://127.0.0.1:8085"),
        ("http://localhost:8085/", "http://localhost:8085"),
        ("http://[::1]:8085", "http://[::1]:8085"),
    ],
)
def test_base_url_is_https_or_loopback_http(url: str, expected: str) -> None:
    assert validate_base_url(url, "JIRA_BASE_URL") == expected


@pytest.mark.parametrize(
    "url",
    ["http://contoso.atlassian.net", "http://10.0.0.5", "ftp://127.0.0.1", "contoso.atlassian.net", "https://",
     "https://x.example.com/?a=1", "https://x.example.com/#f", "https://x.example.com:notaport", ""],
)  # fmt: skip
def test_other_base_urls_are_a_config_error_naming_the_setting(url: str) -> None:
    with pytest.raises(ConfigError, match="SERVICENOW_BASE_URL"):
        validate_base_url(url, "SERVICENOW_BASE_URL")


def test_a_base_url_with_credentials_is_refused_without_repeating_them() -> None:
    with pytest.raises(ConfigError, match="JIRA_BASE_URL") as raised:
        validate_base_url("https://bot:s3cret-token@contoso.atlassian.net", "JIRA_BASE_URL")
    assert "s3cret-token" not in str(raised.value)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(None, None), ("0", 0.0), ("7", 7.0), ("2.5", 2.5), ("-3", 0.0), ("86400", 3600.0), ("soon", None)],
)
def test_retry_after_seconds_are_parsed_and_capped(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value) == seconds


def test_retry_after_as_an_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC).timestamp()
    later = format_datetime(datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC), usegmt=True)
    assert parse_retry_after(later, now=lambda: now) == 30.0


@pytest.mark.parametrize(
    ("status", "cls", "suffix", "family"),
    [
        (400, TicketBadRequest, "BadRequest", PermanentError),
        (401, TicketUnauthorized, "Unauthorized", PermanentError),
        (403, TicketForbidden, "Forbidden", PermanentError),
        (404, TicketNotFound, "TicketNotFound", PermanentError),
        (302, TicketBadRequest, "HttpError", PermanentError),
        (409, TicketBadRequest, "HttpError", PermanentError),
        (408, TicketUnavailable, "Unavailable", TransientError),
        (429, TicketThrottled, "Throttled", TransientError),
        (500, TicketUnavailable, "Unavailable", TransientError),
        (503, TicketUnavailable, "Unavailable", TransientError),
    ],
)
def test_one_table_maps_each_status_to_its_error(status: int, cls: type, suffix: str, family: type) -> None:
    assert error_class(status) == (cls, suffix)
    assert issubclass(cls, family)
    assert issubclass(cls, TicketTransientError if family is TransientError else TicketPermanentError)


def test_error_carries_the_facts_and_its_result_error_names_the_system() -> None:
    url = "https://x.atlassian.net/rest/api/3/issue/SEC-1"
    error = TicketThrottled(
        "JiraThrottled",
        "Rate limit exceeded.",
        retry_after=12.0,
        system="Jira",
        method="GET",
        url=url,
        status=429,
    )
    assert (error.retry_after, error.status, error.retryable) == (12.0, 429, True)
    assert (
        str(error)
        == "GET https://x.atlassian.net/rest/api/3/issue/SEC-1 -> 429: JiraThrottled: Rate limit exceeded."
    )
    assert error.to_result_error() == {
        "code": "JiraThrottled",
        "message": "Rate limit exceeded.",
        "retryable": True,
        "httpStatus": 429,
        "ticketSystem": "Jira",
    }


@pytest.mark.parametrize("key", ["SEC-1", "AB-99999", "MY_PROJ2-10", "10042"])
def test_issue_keys_and_ids_are_accepted(key: str) -> None:
    assert validate_issue_key(key) == key


@pytest.mark.parametrize("key", [*HOSTILE, None, 12])
def test_anything_else_is_not_an_issue_key(key: object) -> None:
    with pytest.raises(InvalidRequest) as raised:
        validate_issue_key(key)
    assert raised.value.code == "InvalidJiraIssueKey"


def test_field_ids_are_system_names_or_custom_fields() -> None:
    assert validate_field_ids(["status", "customfield_10050", "fixVersions", "status"]) == [
        "status", "customfield_10050", "fixVersions",
    ]  # fmt: skip
    for bad in (["*all"], ["-status"], ["status,summary"], ["customfield_"], ["Status"], [], "status"):
        with pytest.raises(InvalidRequest):
            validate_field_ids(bad)


def test_adf_document_has_paragraphs_and_hard_breaks() -> None:
    assert adf_document("Released: Succeeded\nAction 42\n\nDevice ws-fin-0142") == {
        "type": "doc",
        "version": 1,
        "content": [
            {"type": "paragraph", "content": [
                {"type": "text", "text": "Released: Succeeded"}, {"type": "hardBreak"},
                {"type": "text", "text": "Action 42"}]},
            {"type": "paragraph", "content": [{"type": "text", "text": "Device ws-fin-0142"}]},
        ],
    }  # fmt: skip


@pytest.mark.parametrize(
    ("validate", "good", "bad"),
    [
        (
            servicenow.validate_table,
            ["sc_req_item", "incident", "u_x1"],
            ["", "SC", "1x", "a-b", "a b", "x" * 81],
        ),
        (servicenow.validate_number, ["RITM0010001", "inc1"], [*HOSTILE[:10], "R" * 41, "RITM-1", "RITM1=1"]),
        (
            servicenow.validate_sys_id,
            ["0123456789abcdef0123456789abcdef"],
            ["0" * 31, "0" * 33, "A" * 32, "g" * 32],
        ),
    ],
)
def test_servicenow_identifiers_full_match(validate: object, good: list[str], bad: list[object]) -> None:
    assert callable(validate)
    for value in good:
        assert validate(value) == value
    for value in bad:
        with pytest.raises(InvalidRequest):
            validate(value)


def test_servicenow_fields_may_dot_walk_but_carry_no_query_syntax() -> None:
    assert servicenow.validate_fields(["cmdb_ci", "requested_for.email"]) == [
        "cmdb_ci",
        "requested_for.email",
    ]
    for bad in (["a=b"], ["a^b"], ["A"], ["a..b"], ["a,b"], "cmdb_ci"):
        with pytest.raises(InvalidRequest):
            servicenow.validate_fields(bad)


def test_client_settings_are_checked_at_construction() -> None:
    with pytest.raises(ConfigError, match="JIRA_BASE_URL"):
        JiraClient("http://jira.contoso.com", user_email="a@contoso.com", api_token="t")
    with pytest.raises(ConfigError, match="JIRA_API_VERSION"):
        JiraClient("https://x.atlassian.net", api_version=4, user_email="a@contoso.com", api_token="t")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="JIRA_API_TOKEN"):
        JiraClient("https://x.atlassian.net", user_email="a@contoso.com", api_token="")
    with pytest.raises(ConfigError, match="JIRA_API_TOKEN"):
        JiraClient("https://jira.contoso.com", user_email=None, api_token="pat with space")
    with pytest.raises(ConfigError, match="SERVICENOW_USERNAME"):
        ServiceNowClient("https://x.service-now.com", username="a:b", password="p")
    with pytest.raises(ConfigError, match="SERVICENOW_PASSWORD"):
        ServiceNowClient("https://x.service-now.com", username="svc", password="")


def test_module_constants_stay_inside_vendor_limits() -> None:
    assert jira.CHANGELOG_PAGE == 100 and jira.COMMENT_MAX_CHARS == 32767
