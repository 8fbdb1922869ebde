"""The two entry points: a queue message -> decoded -> routed to its story -> its reply carried out.

Routing: a tracking message is one check of a submitted action (follow-up); an event naming several
devices is fanned out, one canonical request per device, each with its own retries and result; a
request is isolated or released. Every message ends in results on the results queue, messages sent
on, or a failure the host redelivers (on the last delivery the requester is answered first).
"""

from __future__ import annotations

import logging
from typing import Any

import azure.functions as func

from .bootstrap import context
from .domain import events
from .domain.lease import LeaseKey
from .domain.messages import decode_body, to_canonical
from .domain.model import Action, ContainmentRequest
from .domain.policy import Decision, event_too_large
from .domain.results import Delivery, Result, Subject
from .domain.tracking import TrackingKey
from .errors import PermanentError
from .usecases.context import Context
from .usecases.follow_up import follow_up
from .usecases.isolate import isolate
from .usecases.lease import remind
from .usecases.outcomes import interrupted, refused
from .usecases.release import release
from .usecases.reply import Reply, Send
from .usecases.respond import respond

logger = logging.getLogger(__name__)


def handle_isolation(msg: func.QueueMessage) -> None:
    """Entry point of ``isolate_fn``."""
    handle(msg, "Isolate", context())


def handle_release(msg: func.QueueMessage) -> None:
    """Entry point of ``release_fn``."""
    handle(msg, "Unisolate", context())


def handle(msg: func.QueueMessage, action: Action, ctx: Context) -> None:
    """One queue message of ``action``'s trigger queue, start to finish."""
    queue = ctx.settings.isolation_queue if action == "Isolate" else ctx.settings.release_queue
    delivery = Delivery(queue, msg.id or "", msg.dequeue_count or 1)
    reply = route(msg.get_body(), action, delivery, ctx)
    try:
        respond(reply, ctx, delivery)
    except Exception as e:
        if reply.failure is not None:
            raise
        subject = (
            reply.results[0].subject
            if reply.results
            else Subject.unknown(action, None, delivery.fallback_request_id())
        )
        respond(interrupted(subject, e, delivery, ctx), ctx, delivery)
        raise
    if reply.failure is not None:
        raise reply.failure


def route(body: bytes, action: Action, delivery: Delivery, ctx: Context) -> Reply:
    """Which story a message is, and that story's reply."""
    document: Any = None
    fallback_id = delivery.fallback_request_id()
    try:
        document = decode_body(body)
        if "tracking" in document:
            return follow_up(TrackingKey.from_message(document), action, delivery, ctx)
        if "lease" in document:
            return remind(LeaseKey.from_message(document), action, delivery, ctx)
        requests = parse(document, action, fallback_id, ctx)
    except PermanentError as e:
        return refused(Subject.unknown(action, document, fallback_id), e)
    except Exception as e:  # noqa: BLE001 - transient, or a bug: the host redelivers either way
        return interrupted(Subject.unknown(action, document, fallback_id), e, delivery, ctx)
    if action == "Isolate":
        held = event_too_large(len(requests), ctx.settings.isolation_policy)
        if held is not None:
            return hold_event(requests, held, fallback_id)
    if len(requests) > 1:
        return fan_out(requests)
    story = isolate if action == "Isolate" else release
    return story(requests[0], delivery, ctx)


def parse(
    document: dict[str, Any], action: Action, fallback_id: str, ctx: Context
) -> list[ContainmentRequest]:
    """An alert event (one request per device) or a release ticket (one request)."""
    if action == "Isolate":
        return events.parse_alert_event(document, fallback_id)
    return [events.parse_release_event(document, fallback_id, ctx.settings.ticket_mappings)]


def fan_out(requests: list[ContainmentRequest]) -> Reply:
    """One event naming several devices: one queue message per device, all with the event's source."""
    logger.info("event fanned out devices=%d source_id=%s", len(requests), requests[0].source.id)
    return Reply(sends=tuple(Send(to_canonical(request)) for request in requests))


def hold_event(requests: list[ContainmentRequest], held: Decision, event_id: str) -> Reply:
    """An event naming too many devices: one ``HeldForApproval`` result for the whole event."""
    logger.warning("event held: %s source_id=%s", held.rule, requests[0].source.id)
    subject = Subject("Isolate", event_id, requests[0].source)
    details = {"rule": held.rule, "reason": held.reason, "devices": len(requests)}
    return Reply(results=(Result(subject.with_details(**details), "HeldForApproval"),))
