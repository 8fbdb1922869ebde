import base64
import json
from datetime import UTC, datetime

import pytest

from shared.domain.comment import COMMENT_MAX, mde_comment
from shared.domain.messages import decode_body, parse_isolation, parse_release, schema_errors
from shared.domain.model import DeviceRef
from shared.errors import InvalidRequest

MACHINE = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"


def isolation(**fields: object) -> dict[str, object]:
    return {"machineId": MACHINE, "requestId": "req-1", **fields}


def release(**fields: object) -> dict[str, object]:
    return {
        "machineId": MACHINE,
        "ticketId": "INC0012345",
        "requestedBy": "ana@contoso.com",
        "approved": True,
        **fields,
    }


def test_plain_and_base64_bodies_decode_to_the_same_object() -> None:
    text = json.dumps(isolation()).encode()
    assert decode_body(text) == decode_body(base64.b64encode(text)) == isolation()


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "InvalidJson"),
        (b"   ", "InvalidJson"),
        (b"not json", "InvalidJson"),
        (b"[1, 2]", "NotAnObject"),
        (b'"a string"', "NotAnObject"),
        (b"\xff\xfe{}", "InvalidJson"),
        (b"e30=!!", "InvalidJson"),
        (b"[" * 100_000 + b"]" * 100_000, "MessageTooLarge"),
        (b"[" * 30_000 + b"]" * 30_000, "InvalidJson"),
        (b"{" + b" " * (64 * 1024) + b"}", "MessageTooLarge"),
    ],
)
def test_undecodable_bodies_are_rejected_with_a_code(body: bytes, code: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        decode_body(body)
    assert raised.value.code == code


def test_deep_but_valid_nesting_under_the_limit_is_still_an_object_error_not_a_crash() -> None:
    with pytest.raises(InvalidRequest, match="NotAnObject"):
        decode_body(b"[" * 500 + b"]" * 500)


def test_canonical_isolation_request_parses_with_defaults() -> None:
    request = parse_isolation(isolation(), "msg-1")
    assert request.action == "Isolate"
    assert request.device.machine_id == MACHINE
    assert request.isolation_type == "Full"
    assert request.request_id == "req-1"
    assert request.source.system == "canonical"


def test_uppercase_machine_id_is_normalised_to_lowercase() -> None:
    assert parse_isolation(isolation(machineId=MACHINE.upper()), "m").device.machine_id == MACHINE


def test_missing_request_id_falls_back_to_the_message_id() -> None:
    document = isolation()
    del document["requestId"]
    assert parse_isolation(document, "msg-abc").request_id == "msg-abc"


def test_ip_and_timestamp_name_a_device() -> None:
    request = parse_isolation({"ipAddress": "10.1.2.3", "timestamp": "2026-11-20T10:00:00+01:00"}, "m")
    assert request.device.ip_address == "10.1.2.3"
    assert request.device.timestamp == datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "document",
    [
        {"requestId": "x"},  # no device
        isolation(machineId="../../machines/1e5bc9d7e413ddd7902c2932e418702b84d0cc0"),
        isolation(machineId=MACHINE + "/isolate"),
        isolation(machineId=MACHINE[:-1] + "?"),
        isolation(machineId=MACHINE[:-3] + "%2F"),
        isolation(machineId=MACHINE[:-1] + "\u0661"),
        isolation(machineId=MACHINE + "\n"),
        isolation(machineId=12345),
        isolation(isolationType="full"),
        isolation(isolationType="Partial"),
        isolation(comment="line\nbreak"),
        isolation(comment="x" * 10_000),
        isolation(deviceName="pc' or 1 eq 1"),
        isolation(requestId="has space"),
        isolation(source={"system": "sentinel", "url": "javascript:alert(1)"}),
        isolation(Comment="wrong case"),
        {"deviceName": "", "requestId": "r"},
        {"ipAddress": "10.1.2.3"},
        {"ipAddress": "not-an-ip", "timestamp": "2026-11-20T10:00:00Z"},
        {"ipAddress": "10.1.2.3", "timestamp": "2026-13-45T99:00:00Z"},
    ],
)
def test_invalid_isolation_requests_are_refused(document: dict[str, object]) -> None:
    with pytest.raises(InvalidRequest):
        parse_isolation(document, "m")


def test_release_request_names_its_ticket_and_the_rest_are_claims() -> None:
    request = parse_release(release(ticketSystem="servicenow"), "m")
    assert (request.action, request.ticket_system, request.ticket_id) == (
        "Unisolate",
        "servicenow",
        "INC0012345",
    )
    assert (request.requested_by, request.approved) == ("ana@contoso.com", True)  # claims, verified later
    assert request.source.id == "INC0012345"
    document = release()
    del document["ticketId"]
    with pytest.raises(InvalidRequest, match="ticketId"):
        parse_release(document, "m")
    bare = parse_release({"ticketId": "SEC-1", "ticketSystem": "jira"}, "m")
    assert (bare.requested_by, bare.approved, bare.device) == (None, False, DeviceRef())
    with pytest.raises(InvalidRequest, match="ticketSystem"):
        parse_release(release(ticketSystem="remedy"), "m")


def test_release_with_approved_as_a_string_is_a_schema_violation() -> None:
    with pytest.raises(InvalidRequest, match="SchemaViolation"):
        parse_release(release(approved="true"), "m")


def test_isolation_comment_names_the_request_and_source() -> None:
    request = parse_isolation(
        isolation(comment="Ransomware on host", source={"system": "sentinel", "id": "INC-42"}), "m"
    )
    assert mde_comment(request) == "Ransomware on host [mde-containment source=sentinel:INC-42 request=req-1]"


def test_release_comment_names_ticket_and_requester() -> None:
    request = parse_release(release(comment="cleaned and reimaged"), "m")
    assert mde_comment(request) == (
        "Release approved in ticket INC0012345, requested by ana@contoso.com: cleaned and reimaged"
        " [mde-containment request=m]"
    )


def test_comment_is_bounded() -> None:
    request = parse_isolation(isolation(comment="x" * 1000, requestId="r" * 128), "m")
    comment = mde_comment(request)
    assert len(comment) == COMMENT_MAX
    assert comment.endswith(" [mde-containment source=canonical request=" + "r" * 128 + "]")
    assert "…" in comment


def test_schema_errors_point_at_the_field() -> None:
    errors = schema_errors("isolation-request.schema.json", isolation(isolationType="Half"))
    assert errors == ["isolationType: 'Half' is not one of ['Full', 'Selective', 'UnManagedDevice']"]


# JSON Schema's pattern is a search: "$" also matches before a final newline, so every one of these
# passes the schemas alone.
TRAILING_NEWLINE_ISOLATIONS = [
    pytest.param({"deviceName": "ws-eng-0007\n", "requestId": "r"}, id="deviceName"),
    pytest.param(isolation(requestId="nl-req\n"), id="requestId"),
    pytest.param(isolation(comment="Ransomware\n"), id="comment"),
    pytest.param(isolation(severity="High\n"), id="severity"),
    pytest.param(isolation(source={"system": "sentinel\n"}), id="source.system"),
    pytest.param(isolation(source={"system": "sentinel", "id": "4711\n"}), id="source.id"),
    pytest.param(isolation(source={"system": "s", "url": "https://x.example/\n"}), id="source.url"),
]
TRAILING_NEWLINE_RELEASES = [
    pytest.param(release(ticketId="INC0012345\n"), id="ticketId"),
    pytest.param(release(requestedBy="ana@contoso.com\n"), id="requestedBy"),
    pytest.param(release(requestId="nl-req\n"), id="release requestId"),
    pytest.param({**release(), "machineId": None, "deviceName": "ws-eng-0007\n"}, id="release deviceName"),
]


@pytest.mark.parametrize("document", TRAILING_NEWLINE_ISOLATIONS)
def test_a_trailing_newline_passes_the_schema_but_not_the_request_parser(document: dict[str, object]) -> None:
    assert schema_errors("isolation-request.schema.json", document) == []  # why the code checks again
    with pytest.raises(InvalidRequest, match="control characters"):
        parse_isolation(document, "m")


@pytest.mark.parametrize("document", TRAILING_NEWLINE_RELEASES)
def test_a_trailing_newline_in_a_release_is_refused(document: dict[str, object]) -> None:
    document = {k: v for k, v in document.items() if v is not None}
    assert schema_errors("release-request.schema.json", document) == []
    with pytest.raises(InvalidRequest, match="control characters"):
        parse_release(document, "m")


@pytest.mark.parametrize("fallback", ["msg-\n", "", "msg with space"])
def test_a_fallback_request_id_is_checked_like_a_given_one(fallback: str) -> None:
    document = isolation()
    del document["requestId"]
    with pytest.raises(InvalidRequest, match="InvalidRequestId"):
        parse_isolation(document, fallback)
