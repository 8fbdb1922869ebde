"""The isolation policy's decisions: which device may be isolated automatically, how, and who may
release it. Pure: facts (the MDE Machine, whether this service isolated a device) are passed in.

Isolation (first that applies): ``protected`` -> ``Skipped`` ``Protected`` (or
``MachineFactsUnavailable`` when a rule cannot be checked: a device we cannot prove unprotected is
not isolated automatically); ``minimumSeverity`` -> ``Skipped`` ``BelowMinimumSeverity``; else
``Isolate`` with the isolation type. Release (of an approval verified with the ticket system):
requester or approver not on an allow-list -> ``RequesterNotAllowed`` / ``ApproverNotAllowed``.
Where these decisions sit among the storm de-duplication and the breaker is the isolate use case's
story (shared/usecases/isolate.py).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from .approval import Approval, ascii_identity
from .events.severity import normalise_severity
from .model import ContainmentRequest, IsolationType
from .policy_config import (
    SEVERITY_ORDER,
    IsolationPolicy,
    IsolationTypeRule,
    MachineMatch,
    Protected,
    Severity,
)

DecisionKind = Literal["Isolate", "Skipped", "Release", "Rejected"]


@dataclass(frozen=True)
class Decision:
    """What policy says about one request, and the rule that said it.

    ``kind``: ``Isolate`` | ``Skipped`` (isolation), ``Release`` | ``Rejected`` (release).
    ``reason``: a code for ``Skipped`` (``Protected``, ``MachineFactsUnavailable``,
    ``BelowMinimumSeverity``) and ``Rejected`` (``NotApproved``, ``RequesterNotAllowed``,
    ``NotIsolatedByService``); ``None`` otherwise. ``isolation_type``: only for ``Isolate``.
    """

    kind: DecisionKind
    rule: str
    isolation_type: IsolationType | None = None
    reason: str | None = None

    def to_details(self) -> dict[str, Any]:
        """The decision as result-message / audit ``details``."""
        details: dict[str, Any] = {"decision": self.kind, "rule": self.rule}
        if self.reason is not None:
            details["reason"] = self.reason
        if self.isolation_type is not None:
            details["isolationType"] = self.isolation_type
        return details


def needs_machine_lookup(policy: IsolationPolicy) -> bool:
    """True when deciding needs MDE Machine facts that a request by machine id does not carry.

    Tags, device groups and OS platform are only on the Machine; DNS-name rules need the name,
    which a request naming the machine by id lacks; unmanaged handling needs ``onboardingStatus``.
    The isolate use case then calls ``GET /api/machines/{id}`` unless it holds the full Machine
    (a request by DNS name is resolved with one).
    """
    protected = policy.protected
    if protected.dns_names or protected.tags or protected.device_groups:
        return True
    if policy.unmanaged_isolation_type is not None:
        return True
    return any(
        rule.match.os_platforms or rule.match.tags or rule.match.device_groups or rule.match.dns_names
        for rule in policy.isolation_types
    )


def decide_isolation(
    request: ContainmentRequest, machine: Mapping[str, Any] | None, policy: IsolationPolicy
) -> Decision:
    """``Isolate`` (with the isolation type) or ``Skipped`` (with the rule), in the documented order:
    protected, then severity. ``machine`` is the MDE Machine as far as it is known (``None`` or a
    partial mapping when not looked up)."""
    facts = _Facts.of(request, machine)
    protection = _protection(facts, policy.protected)
    if protection is not None:
        return protection
    below = _below_threshold(request.severity, policy)
    if below is not None:
        return Decision("Skipped", below, reason="BelowMinimumSeverity")
    isolation_type, rule = _isolation_type(request, facts, policy)
    return Decision("Isolate", rule, isolation_type=isolation_type)


def decide_release(approval: Approval, policy: IsolationPolicy) -> Decision:
    """``Release`` or ``Rejected`` (``RequesterNotAllowed``, ``ApproverNotAllowed``) for an approved
    ticket. Allow-lists compare ASCII addresses only (``ascii_identity``): a look-alike never passes."""
    release = policy.release
    approver = f" by {approval.approved_by}" if approval.approved_by else ""
    passed = [f"ticket {approval.ticket_id} approved{approver}"]
    for who, value, allowed, reason in (
        ("requester", approval.requested_by, release.allowed_requesters, "RequesterNotAllowed"),
        ("approver", approval.approved_by, release.allowed_approvers, "ApproverNotAllowed"),
    ):
        if allowed is None:
            continue
        identity = ascii_identity(value)
        pattern = next((p for p in allowed if identity and _glob(identity, p)), None)
        setting = f"release.allowed{who.capitalize()}s"
        if pattern is None:
            return Decision("Rejected", f"{setting}: {value!r} matches no allowed {who}", reason=reason)
        passed.append(f"{who} matches {setting}: {pattern}")
    return Decision("Release", "release: " + "; ".join(passed))


@dataclass(frozen=True)
class _Facts:
    """What is known about the device, lower-cased for matching; ``None``: not known."""

    machine_ids: tuple[str, ...]
    dns_names: tuple[str, ...]  # every name we hold for it (request's and MDE's), FQDN-normalised
    tags: tuple[str, ...] | None
    device_group: str | None
    has_device_group: bool
    os_platform: str | None
    onboarding_status: str | None

    @classmethod
    def of(cls, request: ContainmentRequest, machine: Mapping[str, Any] | None) -> _Facts:
        machine = machine or {}
        ids = {str(v).lower() for v in (machine.get("id"), request.device.machine_id) if v}
        names = {
            str(v).strip().lower().rstrip(".")
            for v in (machine.get("computerDnsName"), request.device.device_name)
            if isinstance(v, str) and v.strip()
        }
        raw_tags = machine.get("machineTags")
        tags = tuple(str(t).casefold() for t in raw_tags) if isinstance(raw_tags, list) else None
        group = machine.get("rbacGroupName")
        os_platform = machine.get("osPlatform")
        onboarding = machine.get("onboardingStatus")
        return cls(
            machine_ids=tuple(sorted(ids)),
            dns_names=tuple(sorted(names)),
            tags=tags,
            device_group=str(group).casefold() if group else None,
            # MDE sends rbacGroupName null for a device in no group: present-and-null is a fact.
            has_device_group="rbacGroupName" in machine,
            os_platform=str(os_platform).casefold() if os_platform else None,
            onboarding_status=str(onboarding) if onboarding else None,
        )


def _glob(name: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(name, pattern)


def _dns_match(names: Iterable[str], patterns: Iterable[str]) -> str | None:
    """The first pattern matching any name, as the FQDN or as its first label."""
    candidates = [c for name in names for c in (name, name.split(".", 1)[0])]
    return next((p for p in patterns if any(_glob(c, p) for c in candidates)), None)


def _protection(facts: _Facts, protected: Protected) -> Decision | None:
    def skipped(rule: str) -> Decision:
        return Decision("Skipped", rule, reason="Protected")

    machine_id = next((m for m in facts.machine_ids if m in protected.machine_ids), None)
    if machine_id is not None:
        return skipped(f"protected.machineIds: {machine_id}")
    pattern = _dns_match(facts.dns_names, protected.dns_names)
    if pattern is not None:
        return skipped(f"protected.dnsNames: {pattern}")
    tag = next((t for t in protected.tags if t.casefold() in (facts.tags or ())), None)
    if tag is not None:
        return skipped(f"protected.tags: {tag}")
    group = next((g for g in protected.device_groups if g.casefold() == facts.device_group), None)
    if group is not None:
        return skipped(f"protected.deviceGroups: {group}")
    # Nothing matched; that only clears the device if every configured rule could be checked.
    missing = []
    if protected.dns_names and not facts.dns_names:
        missing.append("dnsNames (no DNS name known)")
    if protected.tags and facts.tags is None:
        missing.append("tags (no machineTags known)")
    if protected.device_groups and not facts.has_device_group:
        missing.append("deviceGroups (no rbacGroupName known)")
    if missing:
        return Decision(
            "Skipped", "protected: cannot check " + ", ".join(missing), reason="MachineFactsUnavailable"
        )
    return None


def _below_threshold(raw: str | None, policy: IsolationPolicy) -> str | None:
    """The rule text when the request's severity is below ``minimumSeverity``, else ``None``."""
    minimum = policy.minimum_severity
    severity = normalise_severity(raw)
    if severity is None:
        effective, label = policy.missing_severity, f"missingSeverity {policy.missing_severity}"
    elif severity == "Unknown":
        # Only an "isolate everything" threshold accepts a severity we cannot place.
        if minimum == "Informational":
            return None
        return f"minimumSeverity: {minimum} > Unknown (unrecognised severity {raw!r})"
    else:
        effective, label = cast(Severity, severity), severity
    if SEVERITY_ORDER.index(effective) < SEVERITY_ORDER.index(minimum):
        return f"minimumSeverity: {minimum} > {label}"
    return None


def _rule_matches(match: MachineMatch, facts: _Facts) -> bool:
    if match.os_platforms and facts.os_platform not in _folded(match.os_platforms):
        return False
    if match.tags and not _folded(match.tags) & set(facts.tags or ()):
        return False
    if match.device_groups and facts.device_group not in _folded(match.device_groups):
        return False
    return not (match.dns_names and _dns_match(facts.dns_names, match.dns_names) is None)


def _folded(values: Iterable[str]) -> set[str]:
    return {v.casefold() for v in values}


def _describe(rule: IsolationTypeRule) -> str:
    parts = [
        f"{key}={','.join(values)}"
        for key, values in (
            ("osPlatform", rule.match.os_platforms),
            ("tags", rule.match.tags),
            ("deviceGroups", rule.match.device_groups),
            ("dnsNames", rule.match.dns_names),
        )
        if values
    ]
    return f"isolationTypes[{rule.index}]: {' '.join(parts)} -> {rule.isolation_type}"


def _isolation_type(
    request: ContainmentRequest, facts: _Facts, policy: IsolationPolicy
) -> tuple[IsolationType, str]:
    status = facts.onboarding_status
    unmanaged = status is not None and status.lower() != "onboarded"
    if unmanaged and policy.unmanaged_isolation_type is not None:
        return (
            policy.unmanaged_isolation_type,
            f"unmanagedIsolationType: {policy.unmanaged_isolation_type} (onboardingStatus {status})",
        )
    for rule in policy.isolation_types:
        if _rule_matches(rule.match, facts):
            return rule.isolation_type, _describe(rule)
    requested: str | None = request.isolation_type
    # UnManagedDevice for a device MDE says is onboarded would be refused by MDE: ignore it.
    refused = requested == "UnManagedDevice" and status is not None and not unmanaged
    if requested is not None and requested != "Full" and not refused:
        return cast(IsolationType, requested), f"request.isolationType: {requested}"
    return policy.default_isolation_type, f"defaultIsolationType: {policy.default_isolation_type}"


def event_too_large(devices: int, policy: IsolationPolicy) -> Decision | None:
    """An event naming more devices than ``maxDevicesPerEvent``: held as a whole for a person, at
    no MDE cost (a storm of hosts in one alert is what the breaker alone would meet too late)."""
    cap = policy.max_devices_per_event
    if devices <= cap:
        return None
    rule = f"maxDevicesPerEvent: the event names {devices} devices, more than {cap}"
    return Decision("Skipped", rule, reason="TooManyDevices")
