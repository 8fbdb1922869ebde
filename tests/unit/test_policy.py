"""The isolation policy with plain values: parsing and validation, every rule, their order, the
breaker's arithmetic and release decisions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain.model import ContainmentRequest, DeviceRef, Source
from shared.domain.policy import Decision, decide_isolation, needs_machine_lookup
from shared.domain.policy_config import (
    BreakerPolicy,
    IsolationPolicy,
    Protected,
    ReleasePolicy,
    load_isolation_policy,
)
from shared.errors import ConfigError

PC = "c28460d93e441d30869ebb33920c06acbb6fd75e"
DC = "63b87ad1411d2aa6afc5dcd92f0f66ccdb94157e"
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)

EXAMPLE = {
    "minimumSeverity": "Medium",
    "protected": {
        "machineIds": [DC.upper()],
        "dnsNames": ["dc*.corp.contoso.com", "*.tier0.contoso.com"],
        "tags": ["NoAutoIsolate"],
        "deviceGroups": ["Domain Controllers"],
    },
    "isolationTypes": [
        {
            "match": {
                "osPlatform": ["WindowsServer2019", "WindowsServer2022"],
                "tags": ["Server"],
                "deviceGroups": ["Servers"],
                "dnsNames": ["srv-*"],
            },
            "isolationType": "Selective",
        }
    ],
    "defaultIsolationType": "Full",
    "unmanagedIsolationType": "UnManagedDevice",
    "breaker": {"maxIsolations": 20, "windowMinutes": 60},
    "release": {
        "requireApproval": True,
        "allowedRequesters": ["*@contoso.com", "soc-lead@contoso.com"],
        "onlyReleaseOwnIsolations": False,
    },
}

# The recommended starting policy of docs/security.md: it must stay valid.
RECOMMENDED = {
    "minimumSeverity": "High",
    "protected": {
        "dnsNames": ["dc*.corp.contoso.com", "*.tier0.contoso.com"],
        "tags": ["NoAutoIsolate"],
        "deviceGroups": ["Domain Controllers", "Tier 0", "Servers"],
    },
    "isolationTypes": [
        {"match": {"osPlatform": ["Windows10", "Windows11"], "tags": ["VIP"]}, "isolationType": "Selective"}
    ],
    "defaultIsolationType": "Full",
    "breaker": {"maxIsolations": 10, "windowMinutes": 60},
    "release": {
        "requireApproval": True,
        "allowedRequesters": ["*@contoso.com"],
        "onlyReleaseOwnIsolations": True,
    },
}


def policy(**document: Any) -> IsolationPolicy:
    return load_isolation_policy(json.dumps(document))


def isolate(
    severity: str | None = "High",
    *,
    machine_id: str | None = PC,
    device_name: str | None = None,
    isolation_type: Any = "Full",
) -> ContainmentRequest:
    return ContainmentRequest(
        action="Isolate",
        request_id="req-1",
        source=Source("sentinel", "4711"),
        device=DeviceRef(machine_id=machine_id, device_name=device_name),
        severity=severity,
        isolation_type=isolation_type,
    )


def machine(**facts: Any) -> dict[str, Any]:
    """A full MDE Machine (the facts policy reads), overridable."""
    return {
        "id": PC,
        "computerDnsName": "ws-fin-0142.contoso.local",
        "osPlatform": "Windows10",
        "machineTags": [],
        "rbacGroupName": "Finance",
        "onboardingStatus": "Onboarded",
        **facts,
    }


def release(
    *, approved: bool = True, requested_by: str | None = "ana@contoso.com", ticket: str = "INC001"
) -> ContainmentRequest:
    return ContainmentRequest(
        action="Unisolate",
        request_id="rel-1",
        source=Source("servicenow", ticket),
        device=DeviceRef(machine_id=PC),
        ticket_id=ticket,
        requested_by=requested_by,
        approved=approved,
    )


# --- parsing ------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [None, "", "   \n"])
def test_missing_policy_means_the_documented_defaults(raw: str | None) -> None:
    loaded = load_isolation_policy(raw)
    assert loaded == IsolationPolicy()
    assert loaded.minimum_severity == "High" and loaded.missing_severity == "High"
    assert loaded.breaker == BreakerPolicy(20, timedelta(minutes=60))
    assert loaded.default_isolation_type == "Full" and loaded.unmanaged_isolation_type == "UnManagedDevice"
    assert loaded.release == ReleasePolicy(True, None, False)
    assert loaded.dedupe_window == timedelta(minutes=60)


def test_the_documented_example_parses() -> None:
    loaded = load_isolation_policy(json.dumps(EXAMPLE))
    assert loaded.minimum_severity == "Medium"
    assert loaded.protected == Protected(
        machine_ids=(DC,),  # lower-cased
        dns_names=("dc*.corp.contoso.com", "*.tier0.contoso.com"),
        tags=("NoAutoIsolate",),
        device_groups=("Domain Controllers",),
    )
    (rule,) = loaded.isolation_types
    assert rule.isolation_type == "Selective" and rule.match.os_platforms == (
        "WindowsServer2019",
        "WindowsServer2022",
    )
    assert loaded.release.allowed_requesters == ("*@contoso.com", "soc-lead@contoso.com")


def test_the_recommended_starting_policy_parses() -> None:
    loaded = load_isolation_policy(json.dumps(RECOMMENDED))
    assert loaded.breaker.max_isolations == 10 and loaded.release.only_release_own_isolations


def test_enumerated_values_are_accepted_in_any_case() -> None:
    loaded = policy(minimumSeverity="medium", defaultIsolationType="SELECTIVE", unmanagedIsolationType=None)
    assert (loaded.minimum_severity, loaded.default_isolation_type) == ("Medium", "Selective")
    assert loaded.unmanaged_isolation_type is None


@pytest.mark.parametrize(
    ("document", "names"),
    [
        ({"minimumSeverty": "High"}, "ISOLATION_POLICY: unknown key 'minimumSeverty'"),
        ({"protected": {"tag": ["x"]}}, "ISOLATION_POLICY.protected: unknown key 'tag'"),
        (
            {"isolationTypes": [{"match": {"osplatform": ["Windows10"]}, "isolationType": "Full"}]},
            "ISOLATION_POLICY.isolationTypes[0].match: unknown key 'osplatform'",
        ),
        ({"breaker": {"max": 5}}, "ISOLATION_POLICY.breaker: unknown key 'max'"),
        (
            {"release": {"allowedRequestors": ["a"]}},
            "ISOLATION_POLICY.release: unknown key 'allowedRequestors'",
        ),
        ({"minimumSeverity": "Critical"}, "ISOLATION_POLICY.minimumSeverity: must be one of"),
        ({"minimumSeverity": "Unknown"}, "ISOLATION_POLICY.minimumSeverity"),
        ({"missingSeverity": 3}, "ISOLATION_POLICY.missingSeverity"),
        ({"protected": []}, "ISOLATION_POLICY.protected: must be a JSON object"),
        ({"protected": {"machineIds": ["abc"]}}, "ISOLATION_POLICY.protected.machineIds[0]: must be 40 hex"),
        ({"protected": {"tags": "NoAutoIsolate"}}, "ISOLATION_POLICY.protected.tags: must be a JSON array"),
        ({"protected": {"tags": [""]}}, "ISOLATION_POLICY.protected.tags[0]: must be a non-empty string"),
        ({"protected": {"deviceGroups": [7]}}, "ISOLATION_POLICY.protected.deviceGroups[0]"),
        ({"protected": {"dnsNames": ["dc 01"]}}, "ISOLATION_POLICY.protected.dnsNames[0]: must not contain"),
        ({"isolationTypes": {}}, "ISOLATION_POLICY.isolationTypes: must be a JSON array"),
        (
            {"isolationTypes": [{"match": {}, "isolationType": "Full"}]},
            "ISOLATION_POLICY.isolationTypes[0].match",
        ),
        ({"isolationTypes": [{"match": {"tags": ["x"]}}]}, "ISOLATION_POLICY.isolationTypes[0]: needs both"),
        (
            {"isolationTypes": [{"match": {"tags": []}, "isolationType": "Full"}]},
            "ISOLATION_POLICY.isolationTypes[0].match.tags: must not be empty",
        ),
        (
            {"isolationTypes": [{"match": {"tags": ["x"]}, "isolationType": "UnManagedDevice"}]},
            "ISOLATION_POLICY.isolationTypes[0].isolationType",
        ),
        (
            {"isolationTypes": [{"match": {"tags": ["x"]}, "isolationType": "Full", "name": "x"}]},
            "ISOLATION_POLICY.isolationTypes[0]: unknown key 'name'",
        ),
        ({"defaultIsolationType": "UnManagedDevice"}, "ISOLATION_POLICY.defaultIsolationType"),
        ({"unmanagedIsolationType": "Full"}, "ISOLATION_POLICY.unmanagedIsolationType"),
        (
            {"breaker": {"maxIsolations": 0}},
            "ISOLATION_POLICY.breaker.maxIsolations: must be between 1 and 500",
        ),
        ({"breaker": {"maxIsolations": 501}}, "ISOLATION_POLICY.breaker.maxIsolations"),
        (
            {"breaker": {"maxIsolations": "20"}},
            "ISOLATION_POLICY.breaker.maxIsolations: must be a whole number",
        ),
        ({"breaker": {"maxIsolations": True}}, "ISOLATION_POLICY.breaker.maxIsolations"),
        ({"breaker": {"windowMinutes": 0}}, "ISOLATION_POLICY.breaker.windowMinutes"),
        ({"dedupeWindowMinutes": 1441}, "ISOLATION_POLICY.dedupeWindowMinutes"),
        ({"release": {"requireApproval": False}}, "ISOLATION_POLICY.release.requireApproval: must be true"),
        (
            {"release": {"allowedRequesters": []}},
            "ISOLATION_POLICY.release.allowedRequesters: must not be empty",
        ),
        (
            {"release": {"onlyReleaseOwnIsolations": "yes"}},
            "ISOLATION_POLICY.release.onlyReleaseOwnIsolations",
        ),
    ],
)
def test_invalid_policy_names_the_setting_and_the_field(document: dict[str, Any], names: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_isolation_policy(json.dumps(document))
    assert str(error.value).startswith(names)


def test_a_typo_suggests_the_key_it_resembles() -> None:
    with pytest.raises(ConfigError, match="did you mean 'deviceGroups'"):
        policy(protected={"deviceGroup": ["Domain Controllers"]})


@pytest.mark.parametrize("raw", ["{not json", "[]", '"High"'])
def test_malformed_policy_text_names_the_setting(raw: str) -> None:
    with pytest.raises(ConfigError, match=r"^ISOLATION_POLICY: "):
        load_isolation_policy(raw)


# --- when a machine lookup is needed ------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "needed"),
    [
        ({}, True),  # unmanaged handling is on by default: it needs onboardingStatus
        ({"unmanagedIsolationType": None}, False),
        ({"unmanagedIsolationType": None, "protected": {"machineIds": [PC]}}, False),
        (
            {"unmanagedIsolationType": None, "minimumSeverity": "Low", "defaultIsolationType": "Selective"},
            False,
        ),
        (
            {"unmanagedIsolationType": None, "protected": {"dnsNames": ["dc*"]}},
            True,
        ),  # a request by id has no name
        ({"unmanagedIsolationType": None, "protected": {"tags": ["NoAutoIsolate"]}}, True),
        ({"unmanagedIsolationType": None, "protected": {"deviceGroups": ["DCs"]}}, True),
        (
            {
                "unmanagedIsolationType": None,
                "isolationTypes": [{"match": {"osPlatform": ["Windows10"]}, "isolationType": "Selective"}],
            },
            True,
        ),
    ],
)
def test_machine_lookup_only_when_a_rule_needs_machine_facts(document: dict[str, Any], needed: bool) -> None:
    assert needs_machine_lookup(policy(**document)) is needed


# --- protected devices --------------------------------------------------------------------------


def test_protected_machine_id_is_skipped_whatever_the_case_in_the_policy() -> None:
    decision = decide_isolation(isolate(machine_id=DC), None, policy(protected={"machineIds": [DC.upper()]}))
    assert decision == Decision("Skipped", f"protected.machineIds: {DC}", reason="Protected")


@pytest.mark.parametrize(
    ("pattern", "name", "protected"),
    [
        ("dc*.corp.contoso.com", "DC01.corp.contoso.com", True),  # FQDN, case-insensitive
        ("dc*", "dc01.corp.contoso.com", True),  # first label
        ("DC*", "dc01.corp.contoso.com", True),  # patterns are case-insensitive too
        ("dc*", "ws-dc01.corp.contoso.com", False),
        ("*.tier0.contoso.com", "sql01.tier0.contoso.com", True),
        ("*.tier0.contoso.com", "tier0.contoso.com", False),
        ("dc0?", "dc01.corp.contoso.com", True),
        ("dc0?", "dc011.corp.contoso.com", False),
        ("dc01.corp.contoso.com", "dc01.corp.contoso.com.", True),  # a trailing root dot
        ("dc01.corp.contoso.com", "dc01.corp.contoso.com.evil.com", False),
        ("srv-[0-9]*", "srv-1.contoso.local", True),
    ],
)
def test_dns_globs_match_the_fqdn_or_its_first_label(pattern: str, name: str, protected: bool) -> None:
    rules = policy(protected={"dnsNames": [pattern]})
    decision = decide_isolation(isolate(), machine(computerDnsName=name), rules)
    assert (decision.kind == "Skipped") is protected
    if protected:
        assert decision.rule == f"protected.dnsNames: {pattern.lower()}"


def test_dns_protection_uses_the_requests_name_when_there_is_no_machine() -> None:
    rules = policy(protected={"dnsNames": ["dc*"]}, unmanagedIsolationType=None)
    decision = decide_isolation(isolate(machine_id=None, device_name="DC02.corp.contoso.com"), None, rules)
    assert decision.reason == "Protected"


def test_dns_protection_checks_mdes_name_even_when_the_request_names_another() -> None:
    rules = policy(protected={"dnsNames": ["dc*"]})
    request = isolate(device_name="innocent.contoso.com")
    assert (
        decide_isolation(request, machine(computerDnsName="dc01.corp.contoso.com"), rules).reason
        == "Protected"
    )


@pytest.mark.parametrize(
    ("configured", "on_machine", "protected"),
    [
        ("NoAutoIsolate", ["noautoisolate"], True),
        ("noautoisolate", ["VIP", "NoAutoIsolate"], True),
        ("NoAutoIsolate", ["NoAutoIsolateLater"], False),
        ("NoAutoIsolate", [], False),
    ],
)
def test_protected_tags_match_whole_tags_case_insensitively(
    configured: str, on_machine: list[str], protected: bool
) -> None:
    decision = decide_isolation(
        isolate(), machine(machineTags=on_machine), policy(protected={"tags": [configured]})
    )
    assert (decision.rule == f"protected.tags: {configured}") is protected
    assert (decision.kind == "Skipped") is protected


@pytest.mark.parametrize(
    ("group", "protected"),
    [("domain controllers", True), ("DOMAIN CONTROLLERS", True), ("Domain", False), (None, False)],
)
def test_protected_device_groups_match_case_insensitively(group: str | None, protected: bool) -> None:
    rules = policy(protected={"deviceGroups": ["Domain Controllers"]})
    decision = decide_isolation(isolate(), machine(rbacGroupName=group), rules)
    assert (decision.rule == "protected.deviceGroups: Domain Controllers") is protected
    assert (decision.kind == "Skipped") is protected  # a device in no group is simply not protected


@pytest.mark.parametrize(
    ("protected", "known", "missing"),
    [
        ({"tags": ["NoAutoIsolate"]}, None, "tags"),
        ({"tags": ["NoAutoIsolate"]}, {"id": PC}, "tags"),
        ({"deviceGroups": ["Domain Controllers"]}, {"id": PC, "machineTags": []}, "deviceGroups"),
        ({"dnsNames": ["dc*"]}, None, "dnsNames"),
    ],
)
def test_a_device_that_cannot_be_checked_against_protection_is_not_isolated(
    protected: dict[str, Any], known: dict[str, Any] | None, missing: str
) -> None:
    decision = decide_isolation(isolate(), known, policy(protected=protected))
    assert decision.kind == "Skipped" and decision.reason == "MachineFactsUnavailable"
    assert decision.rule.startswith(f"protected: cannot check {missing}")


def test_protection_rules_are_reported_in_order_machine_id_dns_tag_group() -> None:
    rules = policy(
        protected={"machineIds": [PC], "dnsNames": ["ws-*"], "tags": ["VIP"], "deviceGroups": ["Finance"]}
    )
    facts = machine(machineTags=["VIP"])
    assert decide_isolation(isolate(), facts, rules).rule == f"protected.machineIds: {PC}"
    without_id = policy(protected={"dnsNames": ["ws-*"], "tags": ["VIP"], "deviceGroups": ["Finance"]})
    assert decide_isolation(isolate(), facts, without_id).rule == "protected.dnsNames: ws-*"
    only_tag_and_group = policy(protected={"tags": ["VIP"], "deviceGroups": ["Finance"]})
    assert decide_isolation(isolate(), facts, only_tag_and_group).rule == "protected.tags: VIP"


def test_a_match_on_available_facts_protects_even_if_other_facts_are_missing() -> None:
    rules = policy(protected={"machineIds": [PC], "tags": ["NoAutoIsolate"]})
    assert decide_isolation(isolate(), None, rules).reason == "Protected"


# --- severity -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minimum", "severity", "isolated"),
    [
        ("High", "High", True),
        ("High", "high", True),
        ("High", " HIGH ", True),
        ("High", "Medium", False),
        ("Medium", "Medium", True),
        ("Medium", "Low", False),
        ("Medium", "Informational", False),
        ("Low", "Low", True),
        ("Low", "informational", False),
        ("Informational", "Informational", True),
        ("Medium", "Unknown", False),  # a severity we cannot place is below every threshold...
        ("Medium", "Critical", False),
        ("Low", "UnSpecified", False),
        ("Informational", "Critical", True),  # ...except "isolate everything"
        ("Informational", "Unknown", True),
        ("High", None, True),  # no severity: an explicit request (missingSeverity High)
        ("High", "", True),
    ],
)
def test_severity_is_normalised_and_compared_with_the_threshold(
    minimum: str, severity: str | None, isolated: bool
) -> None:
    decision = decide_isolation(isolate(severity), machine(), policy(minimumSeverity=minimum))
    assert decision.kind == ("Isolate" if isolated else "Skipped")
    if not isolated:
        assert decision.reason == "BelowMinimumSeverity"
        assert decision.rule.startswith(f"minimumSeverity: {minimum} > ")


def test_skipped_for_severity_names_the_threshold_and_the_severity() -> None:
    decision = decide_isolation(isolate("low"), machine(), policy(minimumSeverity="Medium"))
    assert decision.rule == "minimumSeverity: Medium > Low"
    unknown = decide_isolation(isolate("Critical"), machine(), policy(minimumSeverity="Medium"))
    assert unknown.rule == "minimumSeverity: Medium > Unknown (unrecognised severity 'Critical')"


def test_the_default_threshold_is_high() -> None:
    assert decide_isolation(isolate("Medium"), machine(), IsolationPolicy()).kind == "Skipped"
    assert decide_isolation(isolate("High"), machine(), IsolationPolicy()).kind == "Isolate"


def test_missing_severity_can_be_made_subject_to_the_threshold() -> None:
    rules = policy(minimumSeverity="Medium", missingSeverity="Low")
    decision = decide_isolation(isolate(None), machine(), rules)
    assert decision.rule == "minimumSeverity: Medium > missingSeverity Low"


@given(st.one_of(st.none(), st.text(max_size=40)))
def test_any_severity_text_gives_a_decision(severity: str | None) -> None:
    assert decide_isolation(isolate(severity), machine(), policy(minimumSeverity="Low")).kind in (
        "Isolate",
        "Skipped",
    )


# --- order of the rules -------------------------------------------------------------------------


def test_protected_beats_severity() -> None:
    rules = policy(minimumSeverity="High", protected={"tags": ["NoAutoIsolate"]})
    decision = decide_isolation(isolate("Low"), machine(machineTags=["NoAutoIsolate"]), rules)
    assert decision.reason == "Protected"


def test_severity_beats_the_isolation_type_rules() -> None:
    rules = policy(
        minimumSeverity="High",
        isolationTypes=[{"match": {"osPlatform": ["Windows10"]}, "isolationType": "Selective"}],
    )
    assert decide_isolation(isolate("Low"), machine(), rules).reason == "BelowMinimumSeverity"
