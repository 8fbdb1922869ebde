"""Result messages (``result.schema.json``) and the publisher that writes them to the results queue."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError
from azure.storage.queue import ExponentialRetry, QueueClient

from .canonical import Action, ContainmentRequest, Source
from .errors import ConfigError, ContainmentError, TransientError
from .mde import MachineAction
from .settings import StorageSettings

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
    request: ContainmentRequest | None = None,
    machine: dict[str, Any] | None = None,
    machine_action: MachineAction | None = None,
    error: ContainmentError | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """One result message. ``machine`` is ``{"id", "computerDnsName"}`` when known."""
    if machine is None and request is not None and request.device.machine_id:
        machine = {"id": request.device.machine_id, "computerDnsName": None}
    if machine is None and request is not None and request.device.device_name:
        machine = {"id": None, "computerDnsName": request.device.device_name}
    return {
        "schemaVersion": SCHEMA_VERSION,
        "resultId": str(uuid.uuid4()),
        "timestamp": (now or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
        "action": action,
        "outcome": outcome,
        "requestId": request_id,
        "source": {"system": source.system, "id": source.id, "url": source.url},
        "requestedBy": request.requested_by if request else None,
        "machine": machine,
        "isolationType": request.isolation_type if request and action == "Isolate" else None,
        "machineAction": dict(machine_action.raw) if machine_action else None,
        "error": error.to_result_error() if error else None,
        "delivery": {
            "queue": delivery.queue,
            "messageId": delivery.message_id,
            "dequeueCount": delivery.dequeue_count,
        },
    }


class ResultPublisher(Protocol):
    """Writes result messages somewhere a SOC can read them."""

    def publish(self, result: dict[str, Any]) -> None: ...


class QueueResultPublisher:
    """Writes result messages as plain JSON text to a storage queue."""

    def __init__(self, queue: QueueClient) -> None:
        self._queue = queue

    @classmethod
    def from_settings(
        cls, storage: StorageSettings, queue_name: str, credential: TokenCredential | None
    ) -> QueueResultPublisher:
        """Same connection rules as the trigger bindings' ``CONTAINMENT_STORAGE`` setting."""
        # A few quick retries: a longer outage is the host's business (redelivery).
        options: dict[str, Any] = {
            "retry_policy": ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=2),
            "connection_timeout": 5,
            "read_timeout": 15,
        }
        if storage.connection_string:
            client = QueueClient.from_connection_string(storage.connection_string, queue_name, **options)
        elif storage.queue_service_uri:
            client = QueueClient(storage.queue_service_uri, queue_name, credential=credential, **options)
        else:
            raise ConfigError("CONTAINMENT_STORAGE is not configured")
        return cls(client)

    def publish(self, result: dict[str, Any]) -> None:
        try:
            self._queue.send_message(json.dumps(result, separators=(",", ":")))
        except AzureError as e:
            raise TransientError("ResultsQueueUnavailable", f"could not write the result: {e}") from e
        action_id = (result.get("machineAction") or {}).get("id")
        logger.info(
            "result outcome=%s action=%s request_id=%s machine_id=%s action_id=%s",
            result["outcome"],
            result["action"],
            result["requestId"],
            (result.get("machine") or {}).get("id"),
            action_id,
        )
