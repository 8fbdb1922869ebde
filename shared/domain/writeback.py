"""What a ticket hears back: one comment (Jira) or work note (ServiceNow) per result of a release that
came from it, naming the outcome, the MDE action, the device and the time (pure)."""

from __future__ import annotations

from datetime import datetime

from .results import Result

COMMENT_MAX = 2000


def ticket_comment(result: Result, now: datetime) -> str:
    """The comment a release's result leaves on its ticket."""
    subject, action, error = result.subject, result.machine_action, result.error
    machine = subject.machine
    device = (machine.computer_dns_name or machine.id or "the device") if machine else "the device"
    machine_id = f" ({machine.id})" if machine and machine.id and machine.id != device else ""
    lines = [f"mde-containment: release of {device}{machine_id}: {result.outcome}, {now:%Y-%m-%d %H:%M} UTC."]
    if action is not None:
        lines.append(f"MDE action {action.id}: {action.status or 'unknown status'}.")
    if error is not None:
        lines.append(f"{error.code}: {error.message}")
    approved_by, requested_by = subject.details.get("approvedBy"), subject.details.get("requestedBy")
    if approved_by or requested_by:
        lines.append(f"Approved by {approved_by or 'unknown'}, requested by {requested_by or 'unknown'}.")
    lines.append(f"Request {subject.request_id}.")
    text = "\n".join(lines)
    return text if len(text) <= COMMENT_MAX else text[: COMMENT_MAX - 1] + "…"
