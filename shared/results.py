"""Result messages (``result.schema.json``) and the publisher that writes them to the results queue."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from .canonical import Action, Source
from .errors import ContainmentError, TransientError
from .mde import MachineAction
from .queues import MessageSender

logger = logging.getLogger(__name__)

SCHEMA_VERSION = "1.0"


@dataclass(frozen=True)
class Delivery:
    """The queue message being processed."""

    queue: str
    message_id: str
    dequeue_count: int


def build_result(
    *,
    action: Action,
    outcome: str,
    delivery: Delivery,
    request_id: str,
    source: Source,
    sequence: int,
    machine: dict[str, Any] | None = None,
    machine_action: MachineAction | None = None,
    error: ContainmentError | None = None,
    details: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """One result message (``result.schema.json``).

    ``machine`` is ``{"id", "computerDnsName"}`` when known; ``details`` adds the optional fields
    (``isolationType``, ``requestedBy``, ``ticketId``, ``deviceOnline``, ``lastSeen``,
    ``cancelledActions``, ``lastStatus``).
    """
    result: dict[str, Any] = {
        "schemaVersion": SCHEMA_VERSION,
        "resultId": str(uuid.uuid4()),
        "timestamp": (now or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
        "action": action,
        "outcome": outcome,
        "sequence": sequence,
        "requestId": request_id,
        "source": {"system": source.system, "id": source.id, "url": source.url},
        "machine": (
            {"id": machine.get("id"), "computerDnsName": machine.get("computerDnsName")} if machine else None
        ),
        "machineAction": dict(machine_action.raw) if machine_action else None,
        "error": error.to_result_error() if error else None,
        "delivery": {
            "queue": delivery.queue,
            "messageId": delivery.message_id,
            "dequeueCount": delivery.dequeue_count,
        },
    }
    for key, value in (details or {}).items():
        result.setdefault(key, value)
    return result


class ResultPublisher(Protocol):
    """Writes result messages somewhere a SOC can read them."""

    def publish(self, result: dict[str, Any]) -> None: ...


class QueueResultPublisher:
    """Writes result messages as plain JSON text to the results queue."""

    def __init__(self, sender: MessageSender, queue: str) -> None:
        self._sender = sender
        self._queue = queue

    def publish(self, result: dict[str, Any]) -> None:
        try:
            self._sender.send(self._queue, result)
        except TransientError as e:
            raise TransientError("ResultsQueueUnavailable", e.message) from e
        action_id = (result.get("machineAction") or {}).get("id")
        logger.info(
            "result outcome=%s action=%s request_id=%s machine_id=%s action_id=%s",
            result["outcome"],
            result["action"],
            result["requestId"],
            (result.get("machine") or {}).get("id"),
            action_id,
        )
