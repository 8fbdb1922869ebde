"""An opt-in trace of every HTTP request a local host process makes, for the benchmark's time and cost
accounting: queue and table calls to Azurite, token requests to the identity endpoint, MDE calls.

``DEVSTACK_HTTP_TRACE=1`` in the host's environment installs it (``devstack.funchost`` does, on
start). Every client in the process (the Azure SDKs' ``RequestsTransport``, the MDE and ticket
clients' ``requests`` sessions) ends in ``requests.adapters.HTTPAdapter.send``, so wrapping that one
method sees each request once, retries included: one line per request, which is one storage
transaction or one API call. A line names the queue message whose invocation made the request (the
host sets it with ``message_scope``), when it started and ended (epoch seconds), the method, host,
path and status, and for a queue's Get Messages / Put Message the message ids it returned. Never a
header or a body: no key, token or secret is written.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests
from requests.adapters import HTTPAdapter

logger = logging.getLogger(__name__)

TRACE_ENV = "DEVSTACK_HTTP_TRACE"
PREFIX = "trace "  # every trace line's message starts with it, then one JSON object
_MESSAGE_ID = re.compile(rb"<MessageId>([^<]{1,100})</MessageId>")
_HIDDEN_PARAMS = frozenset({"sig", "code", "client_secret"})  # a SAS signature or a credential
_scope = threading.local()
_installed = threading.Lock()
_original_send: Any = None


def enabled(env: Mapping[str, str]) -> bool:
    """Whether ``env`` asks for the trace."""
    return env.get(TRACE_ENV, "").strip().lower() in ("1", "true", "yes")


def install() -> None:
    """Wrap ``HTTPAdapter.send`` in this process (once; later calls do nothing)."""
    global _original_send
    with _installed:
        if _original_send is not None:
            return
        _original_send = HTTPAdapter.send
        HTTPAdapter.send = _traced_send  # type: ignore[method-assign,assignment] # the point of the trace
    logger.info("HTTP trace on: one '%s{...}' line per request", PREFIX.strip())


@contextmanager
def message_scope(message_id: str | None) -> Iterator[None]:
    """Requests made on this thread inside the block are the work of queue message ``message_id``."""
    previous = getattr(_scope, "message_id", None)
    _scope.message_id = message_id
    try:
        yield
    finally:
        _scope.message_id = previous


def span(kind: str, message_id: str | None, started: float, ended: float) -> None:
    """A trace line for something that is not a request (an invocation), when the trace is on."""
    if _original_send is not None:
        _emit({"kind": kind, "msg": message_id, "t0": round(started, 6), "t1": round(ended, 6)})


def _traced_send(self: HTTPAdapter, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
    started = time.time()
    record: dict[str, Any] = {"kind": "http", "msg": getattr(_scope, "message_id", None), "t0": started}
    try:
        response: requests.Response = _original_send(self, request, **kwargs)
    except Exception as e:
        record.update(_describe(request), status=None, error=type(e).__name__, t1=time.time())
        _emit(record)
        raise
    record.update(_describe(request), status=response.status_code, t1=time.time())
    if not kwargs.get("stream") and "/messages" in (request.path_url or ""):
        # Not streamed: requests reads the body right after this returns anyway.
        ids = [m.decode("utf-8", "replace") for m in _MESSAGE_ID.findall(response.content or b"")]
        if ids:
            record["ids"] = ids
    _emit(record)
    return response


def _describe(request: requests.PreparedRequest) -> dict[str, Any]:
    url = urlsplit(request.url or "")
    query = {k: v for k, v in parse_qsl(url.query, keep_blank_values=True) if k not in _HIDDEN_PARAMS}
    described: dict[str, Any] = {"m": request.method, "host": url.netloc, "path": url.path, "q": query}
    keys = _entity_keys(request.body)
    if keys:
        described["keys"] = keys
    return described


def _entity_keys(body: object) -> list[str] | None:
    """A table entity's PartitionKey and RowKey when the body is one (an insert names them only
    there): identifiers, the only part of a body the trace keeps."""
    if not isinstance(body, bytes | str) or "PartitionKey" not in (
        body if isinstance(body, str) else body.decode("utf-8", "replace")
    ):
        return None
    try:
        entity = json.loads(body)
    except ValueError:
        return None
    if not isinstance(entity, dict):
        return None
    return [str(entity.get("PartitionKey", "")), str(entity.get("RowKey", ""))]


def _emit(record: dict[str, Any]) -> None:
    record["t0"], record["t1"] = round(record["t0"], 6), round(record["t1"], 6)
    record["thread"] = threading.current_thread().name
    logger.info("%s%s", PREFIX, json.dumps(record, separators=(",", ":")))


def parse(log_text: str) -> list[dict[str, Any]]:
    """Every trace record in a host's log text, in the order written."""
    records = []
    marker = f"{__name__}: {PREFIX}"
    for line in log_text.splitlines():
        at = line.find(marker)
        if at >= 0:
            try:
                records.append(json.loads(line[at + len(marker) :]))
            except ValueError:
                continue  # a line cut short when the host was stopped
    return records
