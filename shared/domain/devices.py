"""Choosing the one MDE machine a device reference means, among the records a look-up returned.

Never substring matching, never "first one wins": several candidates are a clear
``AmbiguousDevice`` unless exactly one is onboarded and Active and all the others are not Active
(stale records a re-imaged device leaves behind), which is picked and said so.
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidRequest


def first_label(machine: dict[str, Any]) -> str:
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
