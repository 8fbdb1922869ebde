"""The isolation policy with plain values: parsing and validation, every rule, their order, the
breaker's arithmetic and release decisions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain.approval import Approval, unverified_approval
from shared.domain.breaker import BreakerState, check_breaker, take_breaker_slot
from shared.domain.model import ContainmentRequest, DeviceRef, Source
from shared.domain.policy import Decision, decide_isolation, decide_release, needs_machine_lookup
from shared.domain.policy_config import (
    BreakerPolicy,
    IsolationPolicy,
    Protected,
    ReleasePolicy,
    load_isolation_policy,
)
from shared.errors import ConfigError, InvalidRequest

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
    assert loaded.release == ReleasePolicy(True, None, None, False, False, False)
    assert not loaded.release.trust_unverified_requests and not loaded.release.cancel_foreign_isolations
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


ISOLATE = Decision("Isolate", "defaultIsolationType: Full", isolation_type="Full")
SKIPPED = Decision("Skipped", "protected.tags: NoAutoIsolate", reason="Protected")


# --- isolation type -----------------------------------------------------------------------------


SERVERS = {
    "isolationTypes": [
        {"match": {"osPlatform": ["WindowsServer2019", "WindowsServer2022"]}, "isolationType": "Selective"},
        {"match": {"tags": ["VIP"]}, "isolationType": "Full"},
        {"match": {"deviceGroups": ["Servers"], "dnsNames": ["srv-*"]}, "isolationType": "Full"},
    ],
    "defaultIsolationType": "Full",
}


@pytest.mark.parametrize("status", ["CanBeOnboarded", "Unsupported", "InsufficientInfo"])
def test_unmanaged_machine_gets_unmanaged_device_whatever_rule_or_request(status: str) -> None:
    facts = machine(onboardingStatus=status, osPlatform="WindowsServer2022")
    decision = decide_isolation(isolate(isolation_type="Selective"), facts, policy(**SERVERS))
    assert decision.isolation_type == "UnManagedDevice"
    assert decision.rule == f"unmanagedIsolationType: UnManagedDevice (onboardingStatus {status})"


def test_unmanaged_handling_off_treats_the_machine_like_any_other() -> None:
    facts = machine(onboardingStatus="CanBeOnboarded")
    decision = decide_isolation(isolate(), facts, policy(unmanagedIsolationType=None))
    assert (decision.kind, decision.isolation_type) == ("Isolate", "Full")


def test_unknown_onboarding_status_is_treated_as_managed() -> None:
    assert decide_isolation(isolate(), {"id": PC}, IsolationPolicy()).isolation_type == "Full"


def test_first_matching_isolation_type_rule_wins() -> None:
    facts = machine(osPlatform="windowsserver2022", machineTags=["vip"])  # matches rules 0 and 1
    decision = decide_isolation(isolate(), facts, policy(**SERVERS))
    assert decision.isolation_type == "Selective"
    assert decision.rule == "isolationTypes[0]: osPlatform=WindowsServer2019,WindowsServer2022 -> Selective"


def test_every_criterion_of_a_rule_must_hold() -> None:
    rules = policy(**SERVERS)
    in_group_only = machine(rbacGroupName="Servers", computerDnsName="app-01.contoso.local")
    assert decide_isolation(isolate(), in_group_only, rules).rule == "defaultIsolationType: Full"
    both = machine(rbacGroupName="servers", computerDnsName="SRV-APP-01.contoso.local")
    assert (
        decide_isolation(isolate(), both, rules).rule
        == "isolationTypes[2]: deviceGroups=Servers dnsNames=srv-* -> Full"
    )


def test_a_policy_rule_beats_the_requests_isolation_type() -> None:
    facts = machine(machineTags=["VIP"])
    decision = decide_isolation(isolate(isolation_type="Selective"), facts, policy(**SERVERS))
    assert (decision.isolation_type, decision.rule) == ("Full", "isolationTypes[1]: tags=VIP -> Full")


def test_the_requests_isolation_type_applies_when_no_rule_matches() -> None:
    decision = decide_isolation(isolate(isolation_type="Selective"), machine(), policy(**SERVERS))
    assert (decision.isolation_type, decision.rule) == ("Selective", "request.isolationType: Selective")


def test_a_request_saying_full_gets_the_default_type() -> None:
    # "Full" is the canonical default: it cannot be told from a request that names no type.
    decision = decide_isolation(
        isolate(isolation_type="Full"), machine(), policy(defaultIsolationType="Selective")
    )
    assert (decision.isolation_type, decision.rule) == ("Selective", "defaultIsolationType: Selective")


def test_unmanaged_device_requested_for_an_onboarded_machine_is_ignored() -> None:
    request = isolate(isolation_type="UnManagedDevice")
    assert decide_isolation(request, machine(), IsolationPolicy()).isolation_type == "Full"
    assert (
        decide_isolation(request, None, policy(unmanagedIsolationType=None)).isolation_type
        == "UnManagedDevice"
    )


def test_rules_needing_missing_facts_do_not_match() -> None:
    decision = decide_isolation(isolate(), {"id": PC}, policy(**SERVERS))
    assert decision.rule == "defaultIsolationType: Full"


def test_decision_details_for_results_and_audit() -> None:
    assert ISOLATE.to_details() == {
        "decision": "Isolate",
        "rule": "defaultIsolationType: Full",
        "isolationType": "Full",
    }
    assert SKIPPED.to_details() == {
        "decision": "Skipped",
        "rule": "protected.tags: NoAutoIsolate",
        "reason": "Protected",
    }


# --- release ------------------------------------------------------------------------------------


# --- release ------------------------------------------------------------------------------------


def approval(
    requested_by: str | None = "ana@contoso.com", approved_by: str | None = "lee@contoso.com"
) -> Approval:
    return Approval("jira", "SEC-1", "jira:SEC-1:10001", approved_by, requested_by, DeviceRef(machine_id=PC))


@pytest.mark.parametrize(
    ("requester", "allowed"),
    [
        ("ana@contoso.com", True),
        ("Ana@Contoso.COM", True),
        ("soc-lead@contoso.com", True),
        ("eve@evil.com", False),
        ("ana@contoso.com.evil.com", False),
        ("", False),
        (None, False),
        ("eve@conto\u017fo.com", False),  # a long s: casefold() and NFKC both turn it into "s"
        ("eve@contoso\uff0ecom", False),  # a fullwidth full stop, which NFKC folds to "."
        ("eve@\u0441ontoso.com", False),  # a Cyrillic es
        ("ana\u200b@contoso.com", False),  # a zero-width space
    ],
)
def test_requester_allow_list_matches_ascii_addresses_only(requester: str | None, allowed: bool) -> None:
    rules = policy(release={"allowedRequesters": ["*@Contoso.com", "soc-lead@contoso.com"]})
    decision = decide_release(approval(requested_by=requester), rules)
    assert decision.kind == ("Release" if allowed else "Rejected")
    if not allowed:
        assert decision.reason == "RequesterNotAllowed"


def test_without_allow_lists_any_requester_of_an_approved_ticket_may_release() -> None:
    decision = decide_release(approval(requested_by="anyone@example.org"), IsolationPolicy())
    assert decision == Decision("Release", "release: ticket SEC-1 approved by lee@contoso.com")


def test_the_approver_allow_list_checks_who_approved_in_the_ticket_system() -> None:
    rules = policy(release={"allowedRequesters": ["*@contoso.com"], "allowedApprovers": ["lee@*"]})
    refused = decide_release(approval(approved_by="ana@contoso.com"), rules)
    assert (refused.kind, refused.reason) == ("Rejected", "ApproverNotAllowed")
    ok = decide_release(approval(), rules)
    assert ok.rule == (
        "release: ticket SEC-1 approved by lee@contoso.com; requester matches release.allowedRequesters: "
        "*@contoso.com; approver matches release.allowedApprovers: lee@*"
    )


def test_the_requester_is_checked_before_the_approver() -> None:
    rules = policy(release={"allowedRequesters": ["*@contoso.com"], "allowedApprovers": ["lee@*"]})
    assert decide_release(approval("eve@evil.com", "eve@evil.com"), rules).reason == "RequesterNotAllowed"


def test_an_allow_list_must_be_ascii() -> None:
    with pytest.raises(ConfigError, match=r"release\.allowedRequesters"):
        policy(release={"allowedRequesters": ["*@conto\u017fo.com"]})


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (lambda: release(approved=False), "NotApproved"),
        (lambda: release(requested_by=None), "NoRequester"),
    ],
)
def test_an_unverified_release_stands_only_on_its_own_claims(request_: Any, code: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        unverified_approval(request_())
    assert refused.value.code == code


def test_an_unverified_approval_names_no_approver_and_no_approval_id() -> None:
    trusted = unverified_approval(release())
    assert (trusted.system, trusted.approval_id, trusted.approved_by, trusted.verified) == (
        "unverified",
        None,
        None,
        False,
    )
    assert trusted.requested_by == "ana@contoso.com"


# --- the breaker's arithmetic -------------------------------------------------------------------

BREAKER = BreakerPolicy(3, timedelta(minutes=60))


def take(state: BreakerState, key: str, minutes: float) -> tuple[BreakerState, Any]:
    return take_breaker_slot(state, key, T0 + timedelta(minutes=minutes), BREAKER)


def test_breaker_takes_n_then_opens_and_holds() -> None:
    state = BreakerState()
    for i in range(3):
        state, result = take(state, f"r{i}", i)
        assert result.taken and result.count == i + 1
    opened, held = take(state, "r3", 5)
    assert held.held and opened.open and opened.opened_at == T0 + timedelta(minutes=5)
    again, still = take(opened, "r4", 6)
    assert still.held and still.opened_at == T0 + timedelta(minutes=5)
    assert again == opened  # nothing to write while it stays open


def test_open_breaker_closes_a_full_window_after_it_opened() -> None:
    state = BreakerState()
    for i in range(4):
        state, _ = take(state, f"r{i}", 0)
    _, held = take(state, "x", 59)
    assert held.held
    closed, result = take(state, "y", 60)
    assert result.taken and result.count == 1 and not closed.open


def test_a_request_holding_a_slot_is_not_counted_twice() -> None:
    state, _ = take(BreakerState(), "same", 0)
    again, result = take(state, "same", 1)
    assert result.taken and result.repeat and again == state


def test_the_check_before_any_look_up_holds_only_while_the_breaker_is_open() -> None:
    state = BreakerState()
    for i in range(3):
        state, _ = take(state, f"r{i}", 0)
    assert check_breaker(state, "new", T0, BREAKER) is None  # full, not open yet: take_slot opens it
    opened, _ = take(state, "r3", 1)
    held = check_breaker(opened, "new", T0 + timedelta(minutes=2), BREAKER)
    assert held is not None and held.held and held.opened_at == T0 + timedelta(minutes=1)
    assert check_breaker(opened, "r1", T0 + timedelta(minutes=2), BREAKER) is None  # holds a slot
    assert check_breaker(opened, "new", T0 + timedelta(minutes=61), BREAKER) is None  # window over


@given(st.lists(st.tuples(st.integers(0, 10), st.integers(0, 20)), max_size=60))
def test_breaker_never_lets_more_than_n_through_in_any_window(steps: list[tuple[int, int]]) -> None:
    state, now, taken_at = BreakerState(), 0.0, []
    for gap, request in steps:
        now += gap
        state, result = take(state, f"r{request}", now)
        if result.taken and not result.repeat:
            taken_at.append(now)
    for t in taken_at:
        assert sum(1 for other in taken_at if t - 60 < other <= t) <= BREAKER.max_isolations
