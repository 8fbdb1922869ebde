"""What every event parser shares: bounded text, device extraction and de-duplication, request ids.

Everything here is pure. The bounds mirror the canonical schemas (``shared/schemas``), because a
multi-device event is fanned out as canonical messages (``messages.to_canonical``) that must pass
those schemas when they come back.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ...errors import InvalidRequest
from ..messages import SCHEMA_DIR
from ..model import (
    DEVICE_NAME,
    DEVICE_NAME_MAX,
    REQUEST_ID,
    ContainmentRequest,
    DeviceRef,
    Source,
    validate_machine_id,
)

logger = logging.getLogger(__name__)

_REQUEST_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._:@/+=-]")
COMMENT_MAX = 500  # well under the schema's 1000: mde_comment still appends request and source
TITLE_MAX = 300  # so the reference (the alert or incident id) always survives at the end
REFERENCE_MAX = 150
SOURCE_ID_MAX = 256
URL_MAX = 2048
_HASH_CHARS = 16


def clean_text(value: object, limit: int) -> str | None:
    """Printable one-line text of at most ``limit`` characters, or ``None`` when there is none.

    Event titles can hold control characters or run to kilobytes; MDE shows the comment to
    analysts and the schemas refuse control characters, so they become spaces and runs collapse.
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = "".join(ch if ch.isprintable() else " " for ch in str(value))
    text = " ".join(text.split())
    if not text:
        return None
    return text if len(text) <= limit else text[: limit - 1] + "…"


def present(value: object) -> str | None:
    """A non-blank string, stripped; anything else (``None``, ``""``, numbers, objects) is absent."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def build_comment(severity: str | None, title: object, reference: str) -> str:
    """The MDE comment lead: ``[High] Ransomware detected (Sentinel incident 4711)``."""
    reference_text = clean_text(reference, REFERENCE_MAX) or "unidentified event"
    title_text = clean_text(title, TITLE_MAX)
    text = f"{title_text} ({reference_text})" if title_text else reference_text
    if severity:
        text = f"[{severity}] {text}"
    return clean_text(text, COMMENT_MAX) or reference_text


def reference(label: str, event_id: object) -> str:
    """``"Sentinel incident 4711"``, or just the label when the event carries no id."""
    shown = clean_text(event_id, REFERENCE_MAX)
    return f"{label} {shown}" if shown else label


def make_source(system: str, event_id: object, url: object) -> Source:
    """The request's source. An id is bounded like the schema's; a URL that is not a plain https URL
    is dropped (it is a convenience link, not worth refusing the containment for)."""
    return Source(system=system, id=clean_text(event_id, SOURCE_ID_MAX), url=clean_url(url))


def clean_url(value: object) -> str | None:
    """``value`` if it is an https URL without spaces or control characters, else ``None``."""
    if not isinstance(value, str) or not value.startswith("https://") or len(value) > URL_MAX:
        return None
    if any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in value):
        return None
    return value


def fqdn(host: object, domain: object) -> str | None:
    """``hostName`` + ``dnsDomain`` -> ``host.domain``; a host that already has a dot is kept as is."""
    host_name = present(host)
    if host_name is None:
        return None
    domain_name = present(domain)
    if domain_name is None or "." in host_name:
        return host_name
    return f"{host_name}.{domain_name}"


def valid_device_name(value: str | None) -> str | None:
    """``value`` if it is a DNS name the canonical schema accepts (one trailing root dot dropped)."""
    if value is None:
        return None
    name = value[:-1] if value.endswith(".") else value
    if len(name) <= DEVICE_NAME_MAX and DEVICE_NAME.fullmatch(name):
        return name
    return None


@dataclass(frozen=True)
class DeviceMention:
    """One place in an event that names a device, as the event spelt it (not yet validated)."""

    where: str  # e.g. "relatedEntities[2]": named in errors so the sender can find it
    machine_id: object = None
    name: object = None


def device_refs(mentions: Iterable[DeviceMention], what: str) -> list[DeviceRef]:
    """Validated, de-duplicated devices, in order of first mention.

    A mention is usable through a valid 40-hex machine id, else through a valid DNS name: a
    malformed id next to a good name falls back to the name. A mention with an id or a name but
    neither usable refuses the whole event (``InvalidDevice``, listing the bad mentions):
    isolating the others and dropping one silently would let the SOC believe the event was
    contained. A mention with neither id nor name is no device; no device at all is ``NoDevice``.
    """
    refs: list[DeviceRef] = []
    bad: list[str] = []
    for mention in mentions:
        if present(mention.machine_id) is None and present(mention.name) is None:
            continue  # e.g. an alert whose machineId and computerDnsName are both null
        ref = _device_ref(mention)
        if ref is None:
            bad.append(
                f"{mention.where} (machine id {_shown(mention.machine_id)}, name {_shown(mention.name)})"
            )
        else:
            refs.append(ref)
    if bad:
        raise InvalidRequest(
            "InvalidDevice",
            f"{what} names a device by neither a 40-hex machine id nor a valid DNS name: "
            + "; ".join(bad[:5]),
        )
    if not refs:
        raise InvalidRequest("NoDevice", f"{what} names no device")
    return dedupe(refs)


def _device_ref(mention: DeviceMention) -> DeviceRef | None:
    machine_id = present(mention.machine_id)
    valid_id: str | None = None
    if machine_id is not None:
        try:
            valid_id = validate_machine_id(machine_id)
        except InvalidRequest:
            logger.info("malformed machine id in event where=%s, trying the device name", mention.where)
    name = valid_device_name(present(mention.name))
    if valid_id is None and name is None:
        return None
    return DeviceRef(machine_id=valid_id, device_name=name)


def _shown(value: object) -> str:
    if value is None or value == "":
        return "absent"
    text = clean_text(value, 80)
    return repr(text) if text is not None else f"a {type(value).__name__}, not text"


def dedupe(refs: Iterable[DeviceRef]) -> list[DeviceRef]:
    """One entry per device: mentions with the same machine id, or the same name (case-insensitive)
    where at most one of them has an id, are the same device; what each knows is merged.

    Two different machine ids are two devices even with the same name: a re-imaged device leaves
    a stale record under the same name, and choosing between them is the resolver's job.
    """
    merged: list[DeviceRef] = []
    for ref in refs:
        same = [i for i, seen in enumerate(merged) if _same_device(seen, ref)]
        if not same:
            merged.append(ref)
            continue
        combined = ref
        for i in same:
            combined = _merge(merged[i], combined)
        merged[same[0]] = combined
        for i in reversed(same[1:]):
            del merged[i]
    return merged


def _same_device(a: DeviceRef, b: DeviceRef) -> bool:
    if a.machine_id and b.machine_id:
        return a.machine_id == b.machine_id
    return bool(a.device_name and b.device_name and a.device_name.lower() == b.device_name.lower())


def _merge(first: DeviceRef, other: DeviceRef) -> DeviceRef:
    return DeviceRef(
        machine_id=first.machine_id or other.machine_id,
        device_name=first.device_name or other.device_name,
    )


def derive_request_id(base: str, key: str) -> str:
    """``f"{base}:{key}"`` when that is a valid request id; otherwise a readable prefix of it plus a
    hash of the whole, so the id stays unique, deterministic (a redelivery gets the same id) and
    within the schema's ``[A-Za-z0-9._:@/+=-]{1,128}``."""
    candidate = f"{base}:{key}"
    if REQUEST_ID.fullmatch(candidate):
        return candidate
    digest = hashlib.sha256(candidate.encode("utf-8")).hexdigest()[:_HASH_CHARS]
    prefix = _REQUEST_ID_UNSAFE.sub("-", candidate)[: 128 - 1 - _HASH_CHARS]
    return f"{prefix}+{digest}"


def device_key(device: DeviceRef) -> str:
    """What tells a device apart in a request id: the machine id, else the lower-cased name."""
    return device.machine_id or (device.device_name or "").lower()


def isolation_requests(
    devices: Iterable[DeviceRef],
    *,
    base: str,
    source: Source,
    comment: str,
    severity: str | None,
) -> list[ContainmentRequest]:
    """One isolation request per device, all tied to the same source event."""
    return [
        ContainmentRequest(
            action="Isolate",
            request_id=derive_request_id(base, device_key(device)),
            source=source,
            device=device,
            comment=comment,
            severity=severity,
        )
        for device in devices
    ]


def get_path(document: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted ``path`` (``issue.fields.status.name``), or ``None``.

    A key that itself contains dots (a ServiceNow dot-walked field such as ``cmdb_ci.name``) is
    found too: at each level the remaining path is first tried as one key.
    """
    current: Any = document
    remaining = path
    while remaining:
        if not isinstance(current, Mapping):
            return None
        if remaining in current:
            return current[remaining]
        head, _, remaining = remaining.partition(".")
        if head not in current:
            return None
        current = current[head]
    return current


@functools.cache
def schema_properties(name: str) -> frozenset[str]:
    """The top-level property names of one of our schemas: a document using only these is meant to
    be canonical (and gets the schema's precise errors rather than "unknown shape")."""
    schema = json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))
    return frozenset(schema["properties"])
