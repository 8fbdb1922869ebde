"""Event parsing (shared/domain/events): the fixture corpus, then focused behaviour.

Every ``tests/fixtures/{events,tickets}/*.json`` payload has a sibling ``*.expected.json``:
``{"shape", "requests": [...]}`` (or ``"request"`` for tickets) with the exact devices, comments,
severities and sources, or ``{"shape", "error": "<code>"}``. A ticket expectation may carry
``"mappings"``: the ``TICKET_MAPPINGS`` value to parse it with.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from shared.domain.events import (
    ALERT_SHAPES,
    DEFAULT_TICKET_MAPPINGS_JSON,
    JiraMapping,
    ServiceNowMapping,
    TicketMappings,
    derive_request_id,
    detect_alert_shape,
    detect_release_shape,
    load_ticket_mappings,
    matching_alert_shapes,
    normalise_severity,
    parse_alert_event,
    parse_release_event,
)
from shared.domain.events.common import COMMENT_MAX, build_comment, dedupe
from shared.domain.messages import schema_errors, to_canonical
from shared.domain.model import ContainmentRequest, DeviceRef, Source
from shared.errors import ConfigError, InvalidRequest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
EVENTS = sorted(p for p in (FIXTURES / "events").glob("*.json") if not p.name.endswith(".expected.json"))
TICKETS = sorted(p for p in (FIXTURES / "tickets").glob("*.json") if not p.name.endswith(".expected.json"))
BASE = "msg-5b8e1f7a-3c2d-4e9f-8a1b-6c7d8e9f0a1b"  # what the pipeline passes: msg-<queue message id>
MACHINE = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
OTHER_MACHINE = "73e7e2de709dff64ef64b1d0c30e67fab63279db"


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def expected_for(path: Path) -> dict[str, Any]:
    expected: dict[str, Any] = load(path.with_name(path.name.removesuffix(".json") + ".expected.json"))
    return expected


def project(request: ContainmentRequest) -> dict[str, Any]:
    """The facts a fixture expectation pins down, without the None noise."""
    view: dict[str, Any] = {
        "action": request.action,
        "requestId": request.request_id,
        "machineId": request.device.machine_id,
        "deviceName": request.device.device_name,
        "comment": request.comment,
        "severity": request.severity,
        "source": {k: v for k, v in vars(request.source).items() if v is not None},
    }
    if request.action == "Unisolate":
        view.update(ticketId=request.ticket_id, requestedBy=request.requested_by, approved=request.approved)
    else:
        view["isolationType"] = request.isolation_type
    return {k: v for k, v in view.items() if v is not None}


# --- the corpus -------------------------------------------------------------------------------


def test_every_fixture_has_an_expectation_and_every_shape_is_covered() -> None:
    assert EVENTS and TICKETS
    for path in EVENTS + TICKETS:
        assert path.with_name(path.name.removesuffix(".json") + ".expected.json").exists(), path.name
    shapes = {expected_for(path)["shape"] for path in EVENTS}
    assert set(ALERT_SHAPES) <= shapes
    assert {"canonical", "jira", "servicenow"} <= {expected_for(path)["shape"] for path in TICKETS}


@pytest.mark.parametrize("path", EVENTS, ids=lambda p: p.name)
def test_alert_event_fixture(path: Path) -> None:
    document, expected = load(path), expected_for(path)
    if expected["shape"] is None:
        assert matching_alert_shapes(document) == []
    else:
        # Exclusive markers: exactly one shape claims each realistic payload.
        assert matching_alert_shapes(document) == [expected["shape"]]
    if "error" in expected:
        with pytest.raises(InvalidRequest) as raised:
            parse_alert_event(document, BASE)
        assert raised.value.code == expected["error"]
        return
    requests = parse_alert_event(document, BASE)
    assert [project(r) for r in requests] == expected["requests"]
    for request in requests:
        # Fan-out re-enqueues each request as a canonical message: it must pass the schema.
        assert schema_errors("isolation-request.schema.json", to_canonical(request)) == []


@pytest.mark.parametrize("path", TICKETS, ids=lambda p: p.name)
def test_release_ticket_fixture(path: Path) -> None:
    document, expected = load(path), expected_for(path)
    mappings = load_ticket_mappings(json.dumps(expected["mappings"]) if "mappings" in expected else None)
    if "error" in expected:
        with pytest.raises(InvalidRequest) as raised:
            parse_release_event(document, BASE, mappings)
        assert raised.value.code == expected["error"]
        return
    assert detect_release_shape(document) == expected["shape"]
    request = parse_release_event(document, BASE, mappings)
    assert project(request) == expected["request"]
    assert schema_errors("release-request.schema.json", to_canonical(request)) == []


def test_refanned_canonical_requests_parse_back_to_the_same_request() -> None:
    requests = parse_alert_event(load(FIXTURES / "events" / "sentinel-incident-three-hosts.json"), BASE)
    for request in requests:
        # canonical.parse_isolation keeps only machineId when a message has both it and deviceName.
        device = request.device
        expected = (
            replace(request, device=DeviceRef(machine_id=device.machine_id)) if device.machine_id else request
        )
        assert parse_alert_event(to_canonical(request), "msg-other") == [expected]


# --- shape detection --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "shape"),
    [
        ({"machineId": MACHINE}, "canonical"),
        ({"deviceName": "ws-1", "severity": "High"}, "canonical"),
        ({"@odata.type": "#microsoft.graph.security.alert", "id": "x"}, "graph-alert-v2"),
        (
            {"id": "da1", "evidence": [{"@odata.type": "#microsoft.graph.security.deviceEvidence"}]},
            "graph-alert-v2",
        ),
        ({"object": {"properties": {"relatedEntities": []}}}, "sentinel-incident"),
        (
            {"object": {"id": "/subscriptions/s/providers/Microsoft.SecurityInsights/Incidents/i"}},
            "sentinel-incident",
        ),
        ({"SystemAlertId": "a", "Entities": []}, "sentinel-alert"),
        ({"records": [{"category": "AdvancedHunting-AlertEvidence"}]}, "defender-streaming"),
        ({"alertCreationTime": "2021-01-01T00:00:00Z", "machineId": MACHINE}, "mde-alert"),
        ({"id": "da637472900382838869_1364969609", "computerDnsName": "ws-1"}, "mde-alert"),
        ({"detectionSource": "WindowsDefenderAv", "machineId": MACHINE}, "mde-alert"),
    ],
)
def test_shape_is_detected_by_its_markers(document: dict[str, Any], shape: str) -> None:
    assert detect_alert_shape(document) == shape


@pytest.mark.parametrize(
    "document",
    [
        {},
        {"id": "x"},
        {"machineId": MACHINE, "hostname": "ws-1"},  # one unknown field: not canonical
        {"id": "not-an-mde-alert-id", "machineId": MACHINE},
        {"object": {"id": "/subscriptions/s/providers/Microsoft.Compute/virtualMachines/vm"}},
        {"records": [{"category": "Audit"}]},
        {"records": "AdvancedHunting-AlertEvidence"},
        {"@odata.type": "#microsoft.graph.alert"},
    ],
)
def test_documents_without_markers_are_an_unknown_shape_naming_what_is_accepted(
    document: dict[str, Any],
) -> None:
    with pytest.raises(InvalidRequest) as raised:
        detect_alert_shape(document)
    assert raised.value.code == "UnknownEventShape"
    assert "Sentinel incident" in raised.value.message and "Defender streaming export" in raised.value.message


def test_a_document_carrying_two_shapes_markers_is_ambiguous_not_guessed() -> None:
    document = {"SystemAlertId": "a", "records": [{"category": "AdvancedHunting-AlertEvidence"}]}
    with pytest.raises(InvalidRequest) as raised:
        parse_alert_event(document, BASE)
    assert raised.value.code == "AmbiguousEventShape"
    assert "sentinel-alert" in raised.value.message and "defender-streaming" in raised.value.message


def test_canonical_documents_get_the_schemas_precise_error_not_unknown_shape() -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse_alert_event({"machineId": "123", "requestId": "r1"}, BASE)
    assert raised.value.code == "SchemaViolation"


@pytest.mark.parametrize(
    ("document", "shape"),
    [
        ({"deviceName": "ws-1", "ticketId": "T-1", "requestedBy": "a", "approved": True}, "canonical"),
        ({"webhookEvent": "jira:issue_updated"}, "jira"),
        ({"issue": {"key": "SEC-1", "fields": {}}}, "jira"),
        ({"sys_id": "abc", "number": "RITM1"}, "servicenow"),
    ],
)
def test_release_shape_is_detected_by_its_markers(document: dict[str, Any], shape: str) -> None:
    assert detect_release_shape(document) == shape


def test_unknown_release_shape_names_what_is_accepted() -> None:
    with pytest.raises(InvalidRequest) as raised:
        detect_release_shape({"number": "RITM1"})
    assert raised.value.code == "UnknownEventShape"
    assert "Jira" in raised.value.message and "ServiceNow" in raised.value.message


# --- severity ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "normalised"),
    [
        ("Informational", "Informational"),
        ("informational", "Informational"),
        ("Low", "Low"),
        ("LOW", "Low"),
        ("Medium", "Medium"),
        ("medium", "Medium"),
        ("High", "High"),
        ("high", "High"),
        (" High ", "High"),
        ("UnSpecified", "Unknown"),
        ("unspecified", "Unknown"),
        ("unknown", "Unknown"),
        ("Unknown", "Unknown"),
        ("unknownFutureValue", "Unknown"),
        ("Critical", "Unknown"),
        (3, "Unknown"),
        (None, None),
        ("", None),
        ("   ", None),
    ],
)
def test_severities_normalise_to_one_scale(value: object, normalised: str | None) -> None:
    assert normalise_severity(value) == normalised


# --- devices: de-duplication and validation ---------------------------------------------------


def test_mentions_of_one_device_merge_by_id_or_case_insensitive_name() -> None:
    refs = [
        DeviceRef(device_name="WS-1.corp.contoso.com"),
        DeviceRef(machine_id=MACHINE),
        DeviceRef(machine_id=MACHINE, device_name="ws-1.corp.contoso.com"),
        DeviceRef(device_name="ws-2"),
        DeviceRef(device_name="WS-2"),
    ]
    assert dedupe(refs) == [
        DeviceRef(machine_id=MACHINE, device_name="WS-1.corp.contoso.com"),
        DeviceRef(device_name="ws-2"),
    ]


def test_two_machine_ids_with_one_name_stay_two_devices() -> None:
    # A re-imaged device leaves a stale record under the same name: the resolver decides, not us.
    refs = [DeviceRef(MACHINE, "ws-1"), DeviceRef(OTHER_MACHINE, "WS-1")]
    assert dedupe(refs) == refs


def test_a_host_name_is_never_matched_as_a_substring_of_another() -> None:
    refs = [DeviceRef(device_name="ws-1"), DeviceRef(device_name="ws-1.corp.contoso.com")]
    assert dedupe(refs) == refs


def graph_alert(*evidence: dict[str, Any]) -> dict[str, Any]:
    return {"@odata.type": "#microsoft.graph.security.alert", "id": "da1_1", "evidence": list(evidence)}


def device_evidence(**fields: Any) -> dict[str, Any]:
    return {"@odata.type": "#microsoft.graph.security.deviceEvidence", **fields}


def test_a_malformed_machine_id_falls_back_to_the_device_name() -> None:
    (request,) = parse_alert_event(
        graph_alert(device_evidence(mdeDeviceId="1234", deviceDnsName="ws-1")), BASE
    )
    assert request.device == DeviceRef(device_name="ws-1")


def test_a_device_with_neither_usable_id_nor_name_refuses_the_whole_event() -> None:
    document = graph_alert(
        device_evidence(mdeDeviceId=MACHINE), device_evidence(mdeDeviceId="1234", deviceDnsName="a b")
    )
    with pytest.raises(InvalidRequest) as raised:
        parse_alert_event(document, BASE)
    assert raised.value.code == "InvalidDevice"
    assert "evidence[1]" in raised.value.message and "'1234'" in raised.value.message


@pytest.mark.parametrize(
    "name",
    ["ws 1", "-ws1", "ws1;rm", "ws1'", "a" * 256, "ws\u00e9"],
)
def test_device_names_outside_the_canonical_pattern_are_refused(name: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse_alert_event(graph_alert(device_evidence(deviceDnsName=name)), BASE)
    assert raised.value.code == "InvalidDevice"


def test_an_fqdn_root_dot_is_dropped_and_names_keep_their_case() -> None:
    (request,) = parse_alert_event(graph_alert(device_evidence(deviceDnsName="WS-1.Contoso.com.")), BASE)
    assert request.device == DeviceRef(device_name="WS-1.Contoso.com")
    assert request.request_id == f"{BASE}:ws-1.contoso.com"


# --- request ids ------------------------------------------------------------------------------


def test_request_id_is_base_colon_device() -> None:
    assert derive_request_id(BASE, MACHINE) == f"{BASE}:{MACHINE}"


def test_request_ids_too_long_or_with_odd_characters_keep_a_prefix_and_a_hash() -> None:
    long_name = "a" * 200 + ".contoso.com"
    first = derive_request_id(BASE, long_name)
    assert len(first) <= 128 and first.startswith(f"{BASE}:aaaa")
    assert derive_request_id(BASE, long_name) == first  # deterministic: redeliveries agree
    assert derive_request_id(BASE, long_name + "x") != first
    odd = derive_request_id("msg-a b\u00e9", "ws-1")
    assert odd.startswith("msg-a-b-:ws-1+")
    for request_id in (first, odd):
        assert (
            schema_errors("isolation-request.schema.json", {"deviceName": "x", "requestId": request_id}) == []
        )


def test_each_device_of_an_event_gets_its_own_request_id_and_shares_the_source() -> None:
    document = graph_alert(device_evidence(mdeDeviceId=MACHINE), device_evidence(mdeDeviceId=OTHER_MACHINE))
    requests = parse_alert_event(document, BASE)
    assert [r.request_id for r in requests] == [f"{BASE}:{MACHINE}", f"{BASE}:{OTHER_MACHINE}"]
    assert {r.source for r in requests} == {Source(system="graph", id="da1_1")}


# --- comments ---------------------------------------------------------------------------------


def test_comment_carries_severity_title_and_source_id() -> None:
    assert (
        build_comment("High", "Ransomware detected", "Sentinel incident 4711")
        == "[High] Ransomware detected (Sentinel incident 4711)"
    )


def test_comment_without_title_or_severity_still_names_the_source() -> None:
    assert build_comment(None, None, "MDE alert da1_1") == "MDE alert da1_1"
    assert build_comment("Low", "  \t ", "MDE alert da1_1") == "[Low] MDE alert da1_1"


def test_a_huge_title_with_control_characters_is_bounded_and_keeps_the_reference() -> None:
    comment = build_comment("High", "Bad\x00\x1b[31m\r\n" + "x" * 10_000, "Sentinel incident 4711")
    assert len(comment) <= COMMENT_MAX
    assert comment.startswith("[High] Bad [31m xxx") and comment.endswith("… (Sentinel incident 4711)")
    assert all(ch.isprintable() for ch in comment)


# --- ticket mappings --------------------------------------------------------------------------


def test_the_default_mappings_json_is_what_an_unset_setting_means() -> None:
    assert load_ticket_mappings(DEFAULT_TICKET_MAPPINGS_JSON) == load_ticket_mappings(None)
    assert load_ticket_mappings(None) == load_ticket_mappings("  ") == TicketMappings()


def test_a_partial_setting_keeps_the_defaults_for_what_it_leaves_out() -> None:
    mappings = load_ticket_mappings('{"jira": {"deviceField": "issue.fields.customfield_12345"}}')
    assert mappings.jira == JiraMapping(device_field="issue.fields.customfield_12345")
    assert mappings.servicenow == ServiceNowMapping()


def test_servicenow_approval_rules_parse_into_field_value_pairs() -> None:
    raw = '{"servicenow": {"approvedWhen": {"state": ["Approved", "-5"], "approval": ["approved"]}}}'
    assert load_ticket_mappings(raw).servicenow.approved_when == (
        ("state", ("Approved", "-5")),
        ("approval", ("approved",)),
    )


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "JSON object"),
        ('{"jira": [], "servicenow": {}}', "jira must be a JSON object"),
        ('{"zendesk": {}}', "unknown field zendesk"),
        ('{"jira": {"deviceFeild": "x"}}', "unknown field jira.deviceFeild"),
        ('{"jira": {"deviceField": ""}}', "jira.deviceField"),
        ('{"jira": {"deviceField": "issue..fields"}}', "jira.deviceField"),
        ('{"jira": {"deviceField": 10050}}', "jira.deviceField"),
        ('{"jira": {"deviceKind": "hostname"}}', "jira.deviceKind"),
        ('{"jira": {"approvedStatuses": []}}', "jira.approvedStatuses"),
        ('{"jira": {"approvedStatuses": ["Done", ""]}}', "jira.approvedStatuses"),
        ('{"jira": {"requesterFields": "user.emailAddress"}}', "jira.requesterFields"),
        ('{"jira": {"commentField": 5}}', "jira.commentField"),
        ('{"servicenow": {"approvedWhen": {}}}', "servicenow.approvedWhen"),
        ('{"servicenow": {"approvedWhen": {"state": "approved"}}}', "servicenow.approvedWhen.state"),
        ('{"servicenow": {"approvedWhen": {"a b": ["x"]}}}', "servicenow.approvedWhen"),
        ('{"servicenow": {"urlField": ["u"]}}', "servicenow.urlField"),
    ],
)
def test_bad_mappings_fail_at_startup_naming_the_setting_and_field(raw: str, names: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_ticket_mappings(raw)
    assert "TICKET_MAPPINGS" in str(raised.value)
    assert names in str(raised.value)


def test_optional_mapping_fields_can_be_switched_off_with_null() -> None:
    mappings = load_ticket_mappings('{"jira": {"commentField": null}}')
    assert mappings.jira.comment_field is None
    document = load(FIXTURES / "tickets" / "jira-issue-updated-approved.json")
    assert parse_release_event(document, BASE, mappings).comment is None


# --- tickets: focused -------------------------------------------------------------------------


def jira_webhook(to_status: str | None, device: object = MACHINE) -> dict[str, Any]:
    items = [{"field": "status", "toString": to_status}] if to_status else []
    return {
        "webhookEvent": "jira:issue_updated",
        "user": {"displayName": "Ana", "emailAddress": "ana@contoso.com"},  # who made this update
        "issue": {
            "key": "SEC-1",
            "fields": {
                "status": {"name": "Approved for release"},
                "customfield_10050": device,
                "reporter": {"displayName": "Ben", "emailAddress": "ben@contoso.com"},
            },
        },
        "changelog": {"items": items},
    }


def test_a_jira_webhook_approves_only_on_the_transition_to_an_approved_status() -> None:
    mappings = TicketMappings()
    assert parse_release_event(jira_webhook("Approved for release"), BASE, mappings).approved
    # Still approved, but this update changed something else: editing an old ticket must not
    # release a device that has been isolated again since.
    assert not parse_release_event(jira_webhook(None), BASE, mappings).approved
    assert not parse_release_event(jira_webhook("Rejected"), BASE, mappings).approved


def test_a_jira_device_field_with_several_devices_is_refused() -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse_release_event(jira_webhook("Approved for release", ["ws-1", "ws-2"]), BASE, TicketMappings())
    assert raised.value.code == "SeveralDevices"


def test_device_kind_machine_id_refuses_a_name() -> None:
    mappings = load_ticket_mappings('{"jira": {"deviceKind": "machineId"}}')
    with pytest.raises(InvalidRequest) as raised:
        parse_release_event(jira_webhook("Approved for release", "ws-1"), BASE, mappings)
    assert raised.value.code == "InvalidMachineId"


def test_device_kind_device_name_takes_even_a_hex_value_as_a_name() -> None:
    mappings = load_ticket_mappings('{"jira": {"deviceKind": "deviceName"}}')
    request = parse_release_event(jira_webhook("Approved for release", MACHINE), BASE, mappings)
    assert request.device == DeviceRef(device_name=MACHINE)


def test_release_request_id_and_source_come_from_the_ticket() -> None:
    request = parse_release_event(jira_webhook("Approved for release"), BASE, TicketMappings())
    assert request.request_id == f"{BASE}:SEC-1"
    assert request.source == Source(system="jira", id="SEC-1")
    assert (request.ticket_system, request.ticket_id) == ("jira", "SEC-1")
    assert request.requested_by == "ben@contoso.com"  # the reporter, not whoever made the update


def test_a_webhook_is_a_hint_a_missing_requester_or_device_is_left_to_the_ticket() -> None:
    document = jira_webhook("Approved for release", device=None)
    del document["issue"]["fields"]["reporter"]
    request = parse_release_event(document, BASE, TicketMappings())
    assert (request.ticket_id, request.requested_by, request.device) == ("SEC-1", None, DeviceRef())


def test_a_ticket_without_an_id_is_refused() -> None:
    document = {"sys_id": "x", "cmdb_ci": "ws-1", "requested_for": "Ana", "approval": "approved"}
    with pytest.raises(InvalidRequest) as raised:
        parse_release_event(document, BASE, TicketMappings())
    assert raised.value.code == "NoTicketId"


# --- sources ----------------------------------------------------------------------------------


def sentinel_incident(arm_id: str) -> dict[str, Any]:
    host = {"kind": "Host", "properties": {"hostName": "ws-1"}}
    return {"object": {"id": arm_id, "name": "7e3a1d52", "properties": {"relatedEntities": [host]}}}


def test_a_sentinel_incident_is_identified_by_its_arm_id() -> None:
    arm_id = "/subscriptions/s/resourceGroups/soc/providers/Microsoft.SecurityInsights/Incidents/7e3a1d52"
    (request,) = parse_alert_event(sentinel_incident(arm_id), BASE)
    assert request.source == Source(system="sentinel", id=arm_id)
    assert request.comment == "Sentinel incident 7e3a1d52"  # no number, no title, no severity


def test_an_arm_id_too_long_for_a_source_id_gives_way_to_the_incident_name_not_a_cut_id() -> None:
    arm_id = f"/subscriptions/s/resourceGroups/{'r' * 90}/providers/Microsoft.OperationalInsights/" + (
        f"workspaces/{'w' * 63}/providers/Microsoft.SecurityInsights/Incidents/7e3a1d52"
    )
    (request,) = parse_alert_event(sentinel_incident(arm_id), BASE)
    assert request.source.id == "7e3a1d52"
