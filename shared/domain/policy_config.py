"""``ISOLATION_POLICY``: the app setting's JSON text -> a validated, frozen ``IsolationPolicy``.

Every key is optional; an empty or missing setting means all defaults; an unknown key anywhere is a
``ConfigError`` naming the path, so a typo fails at startup instead of silently protecting nothing.
docs/configuration.md documents every key, its default and why.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, Literal, cast

from ..errors import ConfigError
from .model import MACHINE_ID, IsolationType

SETTING = "ISOLATION_POLICY"
SEVERITY_ORDER = ("Informational", "Low", "Medium", "High")
MAX_BREAKER_ISOLATIONS = 500  # the breaker's recent isolations live in one table entity
MAX_DEVICES_PER_EVENT = 1000  # a queue message (64 KiB) cannot name many more

Severity = Literal["Informational", "Low", "Medium", "High"]


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
    """Who may release. An allow-list ``None``: anybody (with an approved ticket)."""

    require_approval: bool = True
    allowed_requesters: tuple[str, ...] | None = None
    allowed_approvers: tuple[str, ...] | None = None
    only_release_own_isolations: bool = False
    trust_unverified_requests: bool = False  # releases no ticket system confirms: trusted (unsafe)
    cancel_foreign_isolations: bool = False  # a release may cancel someone else's pending isolation


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
    max_devices_per_event: int = 10
    lease: timedelta = timedelta(hours=24)  # a reminder while a device stays isolated by us
    ticket_write_back: bool = True  # a release's results are written back to its ticket
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
    if "leaseHours" in root:
        policy = replace(policy, lease=timedelta(hours=_hours(root["leaseHours"], "leaseHours")))
    if "ticketWriteBack" in root:
        write_back = root["ticketWriteBack"]
        if not isinstance(write_back, bool):
            raise _fail("ticketWriteBack", f"must be true or false (got {write_back!r})")
        policy = replace(policy, ticket_write_back=write_back)
    if "maxDevicesPerEvent" in root:
        cap = _int(root["maxDevicesPerEvent"], "maxDevicesPerEvent", 1, MAX_DEVICES_PER_EVENT)
        policy = replace(policy, max_devices_per_event=cap)
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
    "maxDevicesPerEvent",
    "leaseHours",
    "ticketWriteBack",
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


def _hours(value: object, path: str) -> float:
    """Hours, fractions allowed down to 0.001 (3.6 s: tests run a lease in seconds), up to a year."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(path, f"must be a number of hours (got {value!r})")
    if not 0.001 <= value <= 24 * 366:
        raise _fail(path, f"must be between 0.001 and 8784 hours (got {value})")
    return float(value)


def _protected(value: object) -> Protected:
    document = _object(value, "protected", _PROTECTED_KEYS)
    machine_ids = _strings(document.get("machineIds", []), "protected.machineIds")
    for i, machine_id in enumerate(machine_ids):
        if not MACHINE_ID.fullmatch(machine_id.lower()):
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
    keys = (
        "requireApproval", "allowedRequesters", "allowedApprovers", "onlyReleaseOwnIsolations",
        "trustUnverifiedRequests", "cancelForeignIsolations",
    )  # fmt: skip
    document = _object(value, "release", keys)
    if document.get("requireApproval", True) is not True:
        raise _fail("release.requireApproval", "must be true: an unapproved ticket never releases a device")
    return ReleasePolicy(
        allowed_requesters=_addresses(document, "allowedRequesters"),
        allowed_approvers=_addresses(document, "allowedApprovers"),
        only_release_own_isolations=_flag(document, "onlyReleaseOwnIsolations"),
        trust_unverified_requests=_flag(document, "trustUnverifiedRequests"),
        cancel_foreign_isolations=_flag(document, "cancelForeignIsolations"),
    )


def _addresses(document: dict[str, Any], key: str) -> tuple[str, ...] | None:
    """An allow-list of address globs, ASCII only (compared lower-cased); absent: anybody."""
    if key not in document:
        return None
    # An empty list would read as "nobody"; leaving the key out means "anybody": say which.
    _list(document[key], f"release.{key}")
    patterns = _strings(document[key], f"release.{key}")
    for i, pattern in enumerate(patterns):
        if not pattern.isascii():
            raise _fail(f"release.{key}[{i}]", f"must be ASCII (got {pattern!r})")
    return tuple(p.lower() for p in patterns)


def _flag(document: dict[str, Any], key: str) -> bool:
    value = document.get(key, False)
    if not isinstance(value, bool):
        raise _fail(f"release.{key}", f"must be true or false (got {value!r})")
    return value
