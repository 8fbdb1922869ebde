"""The isolation policy: which device may be isolated automatically, how, and who may release it.

Pure: no HTTP, no queue, no clock, no settings reads. Facts (the MDE Machine, whether this service
isolated a device) and time are passed in; ``load_isolation_policy`` parses the ``ISOLATION_POLICY``
app setting's text.

``ISOLATION_POLICY`` (JSON; every key optional; an empty or missing setting means all defaults;
an unknown key anywhere is a ``ConfigError``, so a typo fails at startup instead of silently
protecting nothing)::

    {
      "minimumSeverity": "Medium",            // default "High"
      "missingSeverity": "High",              // default "High": requests that carry no severity
      "protected": {                          // never isolated automatically; default: nothing
        "machineIds": ["<40 hex>"],
        "dnsNames": ["dc*.corp.contoso.com", "*.tier0.contoso.com"],
        "tags": ["NoAutoIsolate"],            // MDE machineTags, case-insensitive
        "deviceGroups": ["Domain Controllers"]  // MDE rbacGroupName, case-insensitive
      },
      "isolationTypes": [                     // first match wins; default: none
        {"match": {"osPlatform": ["WindowsServer2019", "WindowsServer2022"], "tags": ["Server"],
                   "deviceGroups": ["Servers"], "dnsNames": ["srv-*"]},
         "isolationType": "Selective"}
      ],
      "defaultIsolationType": "Full",         // default "Full"
      "unmanagedIsolationType": "UnManagedDevice",  // default; null turns unmanaged handling off
      "breaker": {"maxIsolations": 20, "windowMinutes": 60},   // defaults 20 per 60 minutes
      "dedupeWindowMinutes": 60,              // default 60: storm duplicates -> AlreadyPending
      "release": {
        "requireApproval": true,              // always true; false is refused
        "allowedRequesters": ["*@contoso.com"],  // default: absent = any requester
        "onlyReleaseOwnIsolations": false     // default false
      }
    }

Why these defaults:

* ``minimumSeverity`` ``High``: with no policy configured, only the alerts a SOC would isolate for
  anyway are acted on automatically. Lowering the threshold is a deliberate act.
* ``missingSeverity`` ``High``: a request without any severity is an explicit ask (an analyst or a
  playbook posting a canonical request; every supported alert shape carries a severity), so it is
  not second-guessed. Set it lower to make such requests subject to ``minimumSeverity``.
* A severity the source gave but we cannot place (normalised to ``Unknown``, e.g. ``Critical``) is
  below every threshold except ``Informational``: we do not act on what we do not understand; the
  ``Skipped`` result says so.
* ``unmanagedIsolationType`` ``UnManagedDevice``: the only type MDE accepts for a device it
  discovered but does not manage. It needs the machine's ``onboardingStatus``, hence a lookup.
* Breaker 20 isolations per 60 minutes: a real incident rarely needs more per hour; a noisy rule
  that does is exactly what the breaker is for. At most 500 (the breaker's state is one entity).
* ``onlyReleaseOwnIsolations`` ``false``: it needs the service's own history, which does not cover
  isolations made before deployment; turning it on is recommended once the service has run a while.

Order of decisions for an isolation (first that applies wins):

1. ``protected`` (machineIds, dnsNames, tags, deviceGroups, in that order) -> ``Skipped`` ``Protected``.
   When a protection rule needs a fact that is not available (no machine name for ``dnsNames``, no
   ``machineTags``/``rbacGroupName`` for tags/groups) -> ``Skipped`` ``MachineFactsUnavailable``:
   a device we cannot prove unprotected is not isolated automatically.
2. ``minimumSeverity`` -> ``Skipped`` ``BelowMinimumSeverity``.
3. ``Isolate`` with the isolation type. Then, outside this module: storm de-duplication (ledger
   claim: a duplicate is ``AlreadyPending``) and the breaker (ledger slot: over the limit is
   ``HeldForApproval``). ``isolation_gate`` states that order.

Isolation type (first that applies): unmanaged machine (``onboardingStatus`` other than
``Onboarded``) -> ``unmanagedIsolationType``; the first matching ``isolationTypes`` rule (policy beats
the request: the SOC lead's rule for, e.g., servers must not be overridden by a SIEM rule's
payload); the request's own ``isolationType`` when it names one other than ``Full`` (``Full`` is the
canonical default, so a request naming it cannot be told from one naming nothing);
``defaultIsolationType``. A rule's ``match`` needs every criterion it names to hold (any listed
value per criterion); DNS patterns are ``fnmatch`` globs, matched case-insensitively against the
FQDN and its first label, so ``dc*`` and ``dc*.corp.contoso.com`` both match
``DC01.corp.contoso.com``. MDE documents ``Selective`` for Windows 10 1709+ and Windows 11 only:
a rule sending it to servers or other platforms can be refused by MDE (the result says so).

Release (first that applies): not approved -> ``Rejected`` ``NotApproved``; ``allowedRequesters`` set
and the requester matches none (case-insensitive globs) -> ``RequesterNotAllowed``;
``onlyReleaseOwnIsolations`` and the device was not (or cannot be shown to have been) isolated by
this service -> ``NotIsolatedByService``; else ``Release``.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from .canonical import ContainmentRequest
from .errors import ConfigError
from .events.severity import normalise_severity
from .mde import IsolationType

SETTING = "ISOLATION_POLICY"
SEVERITY_ORDER = ("Informational", "Low", "Medium", "High")
MAX_BREAKER_ISOLATIONS = 500  # the breaker's recent isolations live in one table entity (64 KiB)
_MACHINE_ID = re.compile(r"[0-9a-fA-F]{40}")

Severity = Literal["Informational", "Low", "Medium", "High"]
DecisionKind = Literal["Isolate", "Skipped", "Release", "Rejected"]
Gate = Literal["Skipped", "AlreadyPending", "HeldForApproval", "Submit"]


# --- the policy ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Protected:
    """Devices never isolated automatically. Machine ids and DNS patterns are stored lower-cased;
    tags and groups as configured (they are compared case-insensitively)."""

    machine_ids: tuple[str, ...] = ()
    dns_names: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    device_groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class MachineMatch:
    """What an ``isolationTypes`` rule matches on: every non-empty criterion must hold."""

    os_platforms: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    device_groups: tuple[str, ...] = ()
    dns_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class IsolationTypeRule:
    """``isolationTypes[index]``: machines matching ``match`` get ``isolation_type``."""

    index: int
    match: MachineMatch
    isolation_type: IsolationType


@dataclass(frozen=True)
class BreakerPolicy:
    """At most ``max_isolations`` isolations per sliding ``window``, across all instances."""

    max_isolations: int = 20
    window: timedelta = timedelta(minutes=60)


@dataclass(frozen=True)
class ReleasePolicy:
    """Who may release. ``allowed_requesters`` ``None``: any requester of an approved ticket."""

    require_approval: bool = True
    allowed_requesters: tuple[str, ...] | None = None
    only_release_own_isolations: bool = False


@dataclass(frozen=True)
class IsolationPolicy:
    """The validated ``ISOLATION_POLICY``; ``IsolationPolicy()`` is the documented default."""

    minimum_severity: Severity = "High"
    missing_severity: Severity = "High"
    protected: Protected = field(default_factory=Protected)
    isolation_types: tuple[IsolationTypeRule, ...] = ()
    default_isolation_type: IsolationType = "Full"
    unmanaged_isolation_type: IsolationType | None = "UnManagedDevice"
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)
    dedupe_window: timedelta = timedelta(minutes=60)
    release: ReleasePolicy = field(default_factory=ReleasePolicy)


# --- parsing ------------------------------------------------------------------------------------


def load_isolation_policy(raw: str | None) -> IsolationPolicy:
    """Parse the ``ISOLATION_POLICY`` app setting; empty or ``None`` means the defaults.

    Raises ``ConfigError`` naming ``ISOLATION_POLICY`` and the offending field, e.g.
    ``ISOLATION_POLICY.protected.tags[0]: must be a non-empty string``.
    """
    if raw is None or not raw.strip():
        return IsolationPolicy()
    try:
        document = json.loads(raw)
    except ValueError as e:
        raise ConfigError(f"{SETTING}: not valid JSON ({e})") from None
    root = _object(document, SETTING, _TOP_KEYS)
    policy = IsolationPolicy()
    if "minimumSeverity" in root:
        policy = replace(policy, minimum_severity=_severity(root["minimumSeverity"], "minimumSeverity"))
    if "missingSeverity" in root:
        policy = replace(policy, missing_severity=_severity(root["missingSeverity"], "missingSeverity"))
    if "protected" in root:
        policy = replace(policy, protected=_protected(root["protected"]))
    if "isolationTypes" in root:
        rules = _list(root["isolationTypes"], "isolationTypes", allow_empty=True)
        policy = replace(policy, isolation_types=tuple(_type_rule(i, r) for i, r in enumerate(rules)))
    if "defaultIsolationType" in root:
        value = _choice(root["defaultIsolationType"], "defaultIsolationType", ("Full", "Selective"))
        policy = replace(policy, default_isolation_type=cast(IsolationType, value))
    if "unmanagedIsolationType" in root:
        unmanaged = root["unmanagedIsolationType"]
        if unmanaged is not None:
            unmanaged = _choice(unmanaged, "unmanagedIsolationType", ("UnManagedDevice",), nullable=True)
        policy = replace(policy, unmanaged_isolation_type=unmanaged)
    if "breaker" in root:
        policy = replace(policy, breaker=_breaker(root["breaker"]))
    if "dedupeWindowMinutes" in root:
        minutes = _int(root["dedupeWindowMinutes"], "dedupeWindowMinutes", 1, 24 * 60)
        policy = replace(policy, dedupe_window=timedelta(minutes=minutes))
    if "release" in root:
        policy = replace(policy, release=_release(root["release"]))
    return policy


_TOP_KEYS = (
    "minimumSeverity",
    "missingSeverity",
    "protected",
    "isolationTypes",
    "defaultIsolationType",
    "unmanagedIsolationType",
    "breaker",
    "dedupeWindowMinutes",
    "release",
)
_PROTECTED_KEYS = ("machineIds", "dnsNames", "tags", "deviceGroups")
_MATCH_KEYS = ("osPlatform", "tags", "deviceGroups", "dnsNames")


def _fail(path: str, problem: str) -> ConfigError:
    where = path if path.startswith(SETTING) else f"{SETTING}.{path}"
    return ConfigError(f"{where}: {problem}")


def _object(value: object, path: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path, f"must be a JSON object (got {type(value).__name__})")
    for key in value:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise _fail(path, f"unknown key {key!r} (expected one of: {', '.join(allowed)}){hint}")
    return value


def _list(value: object, path: str, *, allow_empty: bool = False) -> list[Any]:
    # A bare string is the commonest mistake ("tags": "NoAutoIsolate"): refuse it, do not iterate it.
    if not isinstance(value, list):
        raise _fail(path, f"must be a JSON array (got {type(value).__name__})")
    if not value and not allow_empty:
        raise _fail(path, "must not be empty (leave the key out instead)")
    return value


def _strings(value: object, path: str) -> tuple[str, ...]:
    items = _list(value, path, allow_empty=True)
    for i, item in enumerate(items):
        if not isinstance(item, str) or not item.strip():
            raise _fail(f"{path}[{i}]", f"must be a non-empty string (got {item!r})")
    return tuple(item.strip() for item in items)


def _choice(value: object, path: str, allowed: tuple[str, ...], *, nullable: bool = False) -> str:
    for option in allowed:
        if isinstance(value, str) and value.strip().lower() == option.lower():
            return option
    extra = " or null" if nullable else ""
    raise _fail(path, f"must be one of {', '.join(allowed)}{extra} (got {value!r})")


def _severity(value: object, path: str) -> Severity:
    return cast(Severity, _choice(value, path, SEVERITY_ORDER))


def _int(value: object, path: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(path, f"must be a whole number (got {value!r})")
    if not low <= value <= high:
        raise _fail(path, f"must be between {low} and {high} (got {value})")
    return value


def _protected(value: object) -> Protected:
    document = _object(value, "protected", _PROTECTED_KEYS)
    machine_ids = _strings(document.get("machineIds", []), "protected.machineIds")
    for i, machine_id in enumerate(machine_ids):
        if not _MACHINE_ID.fullmatch(machine_id):
            raise _fail(
                f"protected.machineIds[{i}]", f"must be 40 hexadecimal characters (got {machine_id!r})"
            )
    return Protected(
        machine_ids=tuple(m.lower() for m in machine_ids),
        dns_names=_dns_patterns(document.get("dnsNames", []), "protected.dnsNames"),
        tags=_strings(document.get("tags", []), "protected.tags"),
        device_groups=_strings(document.get("deviceGroups", []), "protected.deviceGroups"),
    )


def _dns_patterns(value: object, path: str) -> tuple[str, ...]:
    patterns = _strings(value, path)
    for i, pattern in enumerate(patterns):
        if any(ch.isspace() for ch in pattern):
            raise _fail(f"{path}[{i}]", f"must not contain whitespace (got {pattern!r})")
    return tuple(p.lower().rstrip(".") for p in patterns)


def _type_rule(index: int, value: object) -> IsolationTypeRule:
    path = f"isolationTypes[{index}]"
    document = _object(value, path, ("match", "isolationType"))
    if "match" not in document or "isolationType" not in document:
        raise _fail(path, "needs both 'match' and 'isolationType'")
    match = _object(document["match"], f"{path}.match", _MATCH_KEYS)
    if not match:
        # An empty match would catch every device: that is what defaultIsolationType is for.
        raise _fail(f"{path}.match", "must name at least one of " + ", ".join(_MATCH_KEYS))
    for key, criterion in match.items():
        _list(criterion, f"{path}.match.{key}")
    isolation_type = _choice(document["isolationType"], f"{path}.isolationType", ("Full", "Selective"))
    return IsolationTypeRule(
        index=index,
        match=MachineMatch(
            os_platforms=_strings(match.get("osPlatform", []), f"{path}.match.osPlatform"),
            tags=_strings(match.get("tags", []), f"{path}.match.tags"),
            device_groups=_strings(match.get("deviceGroups", []), f"{path}.match.deviceGroups"),
            dns_names=_dns_patterns(match.get("dnsNames", []), f"{path}.match.dnsNames"),
        ),
        isolation_type=cast(IsolationType, isolation_type),
    )


def _breaker(value: object) -> BreakerPolicy:
    document = _object(value, "breaker", ("maxIsolations", "windowMinutes"))
    default = BreakerPolicy()
    limit = document.get("maxIsolations", default.max_isolations)
    minutes = document.get("windowMinutes", int(default.window.total_seconds() // 60))
    return BreakerPolicy(
        max_isolations=_int(limit, "breaker.maxIsolations", 1, MAX_BREAKER_ISOLATIONS),
        window=timedelta(minutes=_int(minutes, "breaker.windowMinutes", 1, 7 * 24 * 60)),
    )


def _release(value: object) -> ReleasePolicy:
    document = _object(value, "release", ("requireApproval", "allowedRequesters", "onlyReleaseOwnIsolations"))
    if document.get("requireApproval", True) is not True:
        raise _fail("release.requireApproval", "must be true: an unapproved ticket never releases a device")
    allowed = None
    if "allowedRequesters" in document:
        # An empty list would read as "nobody"; leaving the key out means "anybody": say which.
        _list(document["allowedRequesters"], "release.allowedRequesters")
        allowed = _strings(document["allowedRequesters"], "release.allowedRequesters")
    own = document.get("onlyReleaseOwnIsolations", False)
    if not isinstance(own, bool):
        raise _fail("release.onlyReleaseOwnIsolations", f"must be true or false (got {own!r})")
    return ReleasePolicy(allowed_requesters=allowed, only_release_own_isolations=own)


# --- decisions ----------------------------------------------------------------------------------


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
    The pipeline then calls ``GET /api/machines/{id}`` unless it already holds the full Machine
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


def decide_release(
    request: ContainmentRequest, policy: IsolationPolicy, *, isolated_by_us: bool | None
) -> Decision:
    """``Release`` or ``Rejected`` (``NotApproved``, ``RequesterNotAllowed``, ``NotIsolatedByService``).

    ``isolated_by_us``: whether this service isolated the device (from the ledger or the machine's
    action history); ``None`` when not checked. With ``onlyReleaseOwnIsolations`` an unchecked or
    unknown answer rejects: a release we cannot justify is not made.
    """
    release = policy.release
    ticket = request.ticket_id or "(no ticket)"
    if not request.approved:
        return Decision(
            "Rejected", f"release.requireApproval: ticket {ticket} is not approved", reason="NotApproved"
        )
    passed = [f"ticket {ticket} approved"]
    if release.allowed_requesters is not None:
        requester = (request.requested_by or "").strip().casefold()
        pattern = next(
            (p for p in release.allowed_requesters if requester and _glob(requester, p.casefold())), None
        )
        if pattern is None:
            return Decision(
                "Rejected",
                f"release.allowedRequesters: {request.requested_by!r} matches no allowed requester",
                reason="RequesterNotAllowed",
            )
        passed.append(f"requester matches release.allowedRequesters: {pattern}")
    if release.only_release_own_isolations:
        if isolated_by_us is not True:
            why = "was not isolated" if isolated_by_us is False else "cannot be shown to have been isolated"
            return Decision(
                "Rejected",
                f"release.onlyReleaseOwnIsolations: the device {why} by this service",
                reason="NotIsolatedByService",
            )
        passed.append("isolated by this service")
    return Decision("Release", "release: " + "; ".join(passed))


def isolation_gate(
    decision: Decision, *, is_duplicate: Callable[[], bool], take_slot: Callable[[], bool]
) -> Gate:
    """The order after policy: protected/severity (``decision``), then storm de-duplication, then
    the breaker. Each check runs only when the earlier ones let the request through, so a
    protected, below-threshold or duplicate request never costs a breaker slot.

    ``is_duplicate``: the ledger claim was lost (another request holds this device in the window).
    ``take_slot``: the breaker granted a slot.
    """
    if decision.kind != "Isolate":
        return "Skipped"
    if is_duplicate():
        return "AlreadyPending"
    if not take_slot():
        return "HeldForApproval"
    return "Submit"


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


# --- the breaker's arithmetic (its state lives in the ledger) ----------------------------------


@dataclass(frozen=True)
class BreakerSlot:
    """One isolation counted by the breaker."""

    at: datetime
    request_key: str  # a hash of the request id: a redelivery is not counted twice
    machine_id: str


@dataclass(frozen=True)
class BreakerState:
    """The breaker as stored: recent isolations and whether it is open."""

    slots: tuple[BreakerSlot, ...] = ()
    open: bool = False
    opened_at: datetime | None = None
    reset_by: str | None = None
    reset_at: datetime | None = None


@dataclass(frozen=True)
class BreakerResult:
    """The breaker's answer to one isolation.

    ``taken``: the isolation may be sent. Otherwise it is held: ``opened_at`` says since when the
    breaker is open. ``count``: isolations in the window (including this one when taken).
    ``repeat``: this request already held a slot (a redelivery), nothing new was counted.
    """

    taken: bool
    count: int
    limit: int
    window: timedelta
    opened_at: datetime | None = None
    repeat: bool = False

    @property
    def held(self) -> bool:
        return not self.taken

    def to_details(self) -> dict[str, Any]:
        """The breaker's facts for a ``HeldForApproval`` result / audit entry."""
        return {
            "breaker": {
                "count": self.count,
                "maxIsolations": self.limit,
                "windowMinutes": self.window.total_seconds() / 60,
                "openedAt": self.opened_at.isoformat() if self.opened_at else None,
            }
        }


def take_breaker_slot(
    state: BreakerState, request_key: str, machine_id: str, now: datetime, breaker: BreakerPolicy
) -> tuple[BreakerState, BreakerResult]:
    """The breaker's transition for one isolation: ``(new state, result)``.

    The new state equals ``state`` when nothing needs writing. Open means held until an operator
    resets it or a full window has passed since it opened (by then every isolation it counted has
    left the window, so the next one starts a fresh count).
    """
    slots = tuple(s for s in state.slots if s.at > now - breaker.window)
    is_open, opened_at = state.open, state.opened_at
    if is_open and (opened_at is None or now - opened_at >= breaker.window):
        is_open, opened_at = False, None
    limit, window = breaker.max_isolations, breaker.window
    if any(s.request_key == request_key for s in slots):
        return state, BreakerResult(True, len(slots), limit, window, repeat=True)
    if is_open:
        return state, BreakerResult(False, len(slots), limit, window, opened_at)
    if len(slots) >= limit:
        opened = replace(state, slots=slots, open=True, opened_at=now)
        return opened, BreakerResult(False, len(slots), limit, window, now)
    slot = BreakerSlot(now, request_key, machine_id)
    taken = replace(state, slots=(*slots, slot), open=False, opened_at=None)
    return taken, BreakerResult(True, len(slots) + 1, limit, window)
