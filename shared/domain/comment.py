"""The comments this service writes on MDE actions. Each carries the marker, so an action we
created can be told from an analyst's, and our request id, so a redelivery finds its own action."""

from __future__ import annotations

from .model import Action, ContainmentRequest

MARKER = "[mde-containment "  # how every comment of ours on an isolate or unisolate begins its tag
COMMENT_MAX = 1000  # as in the schemas; MDE shows the comment to analysts


def request_marker(request_id: str) -> str:
    """The tag every MDE comment of ours ends with: finds our own action again after a crash."""
    return f"request={request_id}]"


def is_ours(comment: str) -> bool:
    """Whether an action's ``requestorComment`` was written by this service."""
    return MARKER in comment


def mde_comment(request: ContainmentRequest) -> str:
    """The MDE ``Comment``: why, by which request, from where; bounded, no control characters."""
    if request.action == "Isolate":
        lead = request.comment or "Automatic isolation"
        origin = f"source={request.source.system}" + (f":{request.source.id}" if request.source.id else "")
        text = f"{lead} {MARKER}{origin} {request_marker(request.request_id)}"
    else:
        by = f" by {request.approved_by}" if request.approved_by else ""
        lead = f"Release approved in ticket {request.ticket_id}{by}, requested by {request.requested_by}"
        text = f"{lead}: {request.comment}" if request.comment else lead
        text += f" {MARKER}{request_marker(request.request_id)}"
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    if len(text) <= COMMENT_MAX:
        return text
    # Trim the lead, never the marker: it is how a redelivery finds this action again.
    tail = text[text.rindex(f" {MARKER}") :]
    return text[: COMMENT_MAX - len(tail) - 1] + "…" + tail


def cancel_comment(action: Action, request_id: str) -> str:
    """Why we cancelled a pending opposite action."""
    return f"Superseded by {action} request {request_id} {MARKER.strip()}]"
