"""Azure Storage queues: the ``Outbox`` port (fan-out, delayed retries and follow-ups on the trigger
queues; result messages on the results queue)."""

from __future__ import annotations

import json
import logging
import math
import threading
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError
from azure.storage.queue import ExponentialRetry, QueueClient

from ..domain.backoff import MAX_DELAY_S
from ..errors import ConfigError, TransientError
from ..settings import StorageSettings

logger = logging.getLogger(__name__)


class StorageQueueSender:
    """azure-storage-queue clients, one per queue, with the bindings' connection rules."""

    def __init__(self, storage: StorageSettings, credential: TokenCredential | None) -> None:
        if not (storage.connection_string or storage.queue_service_uri):
            raise ConfigError("CONTAINMENT_STORAGE is not configured")
        self._storage = storage
        self._credential = credential
        self._clients: dict[str, QueueClient] = {}
        self._lock = threading.Lock()

    def _client(self, queue: str) -> QueueClient:
        with self._lock:
            client = self._clients.get(queue)
            if client is None:
                # A few quick retries: a longer outage is the host's business (redelivery).
                options: dict[str, Any] = {
                    "retry_policy": ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=2),
                    "connection_timeout": 5,
                    "read_timeout": 15,
                }
                if self._storage.connection_string:
                    client = QueueClient.from_connection_string(
                        self._storage.connection_string, queue, **options
                    )
                else:
                    client = QueueClient(
                        str(self._storage.queue_service_uri), queue, credential=self._credential, **options
                    )
                self._clients[queue] = client
            return client

    def send(self, queue: str, document: dict[str, Any], delay_s: float = 0) -> None:
        """Put ``document`` on ``queue`` as JSON text, invisible for ``delay_s`` seconds.

        It never expires (``time_to_live=-1``): the default lifetime is 7 days, no longer than the
        longest delay (a lease message hidden that long would expire unseen), and a result waiting
        for a consumer that is down must not vanish either."""
        delay = min(MAX_DELAY_S, math.ceil(delay_s)) if delay_s > 0 else None
        try:
            self._client(queue).send_message(
                json.dumps(document, separators=(",", ":")), visibility_timeout=delay, time_to_live=-1
            )
        except AzureError as e:
            raise TransientError("QueueUnavailable", f"could not write to queue {queue}: {e}") from e


class QueueOutbox:
    """The ``Outbox`` on storage queues: result messages go to the results queue as plain JSON text."""

    def __init__(self, sender: StorageQueueSender, results_queue: str) -> None:
        self._sender = sender
        self._results_queue = results_queue

    def send(self, queue: str, document: dict[str, Any], delay_s: float = 0) -> None:
        self._sender.send(queue, document, delay_s)

    def publish(self, result: dict[str, Any]) -> None:
        try:
            self._sender.send(self._results_queue, result)
        except TransientError as e:
            raise TransientError("ResultsQueueUnavailable", e.message) from e
        logger.info(
            "result outcome=%s action=%s request_id=%s machine_id=%s action_id=%s",
            result["outcome"],
            result["action"],
            result["requestId"],
            (result.get("machine") or {}).get("id"),
            (result.get("machineAction") or {}).get("id"),
        )
