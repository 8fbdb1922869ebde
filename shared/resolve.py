"""Which MDE machine a request names (see docs/messages.md "Device resolution").

The 40-hex machine id is used as given. A DNS name is looked up exactly (FQDN, case-insensitive; a
bare host name matches the first label of the records' FQDN), then an IP + timestamp with
``findbyip``. Never substring matching, never "first one wins": several candidates are a clear
``AmbiguousDevice`` unless exactly one is onboarded and Active and all the others are not Active
(stale records a re-imaged device leaves behind), which is picked and said so.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from .canonical import DeviceRef
from .errors import InvalidRequest
from .mde import MdeClient, validate_machine_id


class DeviceResolver:
    """Resolves devices through the MDE API, caching lookups for ``ttl_s`` seconds per process."""

    def __init__(self, mde: MdeClient, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._mde = mde
        self._ttl = ttl_s
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, list[dict[str, Any]]]] = {}
        self._lock = threading.Lock()

    def resolve(self, device: DeviceRef) -> tuple[dict[str, Any], str | None]:
        """(machine, note): the machine has at least ``id`` and ``computerDnsName``; the note says
        why one of several candidates was picked."""
        if device.machine_id:
            return {"id": device.machine_id, "computerDnsName": device.device_name}, None
        if device.device_name:
            name = device.device_name.lower()
            if "." in name:
                candidates = self._lookup("dns", name, lambda: self._mde.find_machines_by_dns_name(name))
            else:
                found = self._lookup("host", name, lambda: self._mde.find_machines_by_dns_prefix(name))
                candidates = [c for c in found if _first_label(c) == name]
            described = f"computerDnsName {device.device_name!r}"
        elif device.ip_address and device.timestamp:
            key = f"{device.ip_address}@{device.timestamp.isoformat()}"
            ip, when = device.ip_address, device.timestamp
            candidates = self._lookup("ip", key, lambda: self._mde.find_machines_by_ip(ip, when))
            described = f"IP {device.ip_address} at {device.timestamp.isoformat()}"
        else:
            raise InvalidRequest("NoDevice", "the request names no device")
        machine, note = choose(candidates, described)
        return {**machine, "id": validate_machine_id(machine.get("id"))}, note

    def machine(self, machine_id: str, *, fetch: bool = True) -> dict[str, Any] | None:
        """The Machine record (``GET /api/machines/{id}``), cached like the look-ups, so a request
        retried after a 429 does not spend the ``machines`` budget on it again. ``None`` when it is
        not cached and ``fetch`` is false."""
        found = self._lookup("id", machine_id, lambda: [self._mde.get_machine(machine_id)], fetch=fetch)
        return found[0] if found else None

    def _lookup(
        self, kind: str, key: str, call: Callable[[], list[dict[str, Any]]], *, fetch: bool = True
    ) -> list[dict[str, Any]]:
        now = self._clock()
        with self._lock:
            hit = self._cache.get((kind, key))
        if hit is not None and hit[0] > now:
            return hit[1]
        if not fetch:
            return []
        candidates = call()
        with self._lock:
            self._cache[(kind, key)] = (now + self._ttl, candidates)
        return candidates


def _first_label(machine: dict[str, Any]) -> str:
    return str(machine.get("computerDnsName") or "").lower().split(".", 1)[0]


def choose(candidates: list[dict[str, Any]], described: str) -> tuple[dict[str, Any], str | None]:
    """The one machine among ``candidates``, or a clear refusal."""
    if not candidates:
        raise InvalidRequest("DeviceNotFound", f"no MDE machine has {described}")
    if len(candidates) == 1:
        return candidates[0], None
    live = [c for c in candidates if _is_live(c)]
    others_inactive = all(c.get("healthStatus") != "Active" for c in candidates if c not in live)
    if len(live) == 1 and others_inactive:
        stale = ", ".join(str(c.get("id")) for c in candidates if c is not live[0])
        return live[0], (
            f"{len(candidates)} machines have {described}: picked the only onboarded, Active one; "
            f"stale records ignored: {stale}"
        )
    listed = ", ".join(
        f"{c.get('id')} ({c.get('computerDnsName')}, lastSeen {c.get('lastSeen')}, {c.get('healthStatus')})"
        for c in candidates[:10]
    )
    raise InvalidRequest("AmbiguousDevice", f"{len(candidates)} machines have {described}: {listed}")


def _is_live(machine: dict[str, Any]) -> bool:
    return (
        machine.get("healthStatus") == "Active"
        and machine.get("onboardingStatus", "Onboarded") == "Onboarded"
    )
