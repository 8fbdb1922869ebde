"""A local Azure Functions host for the classic (v1) Python model, queue triggers only.

It reads ``host.json`` and every ``<function>/function.json`` under the script root and drives the
functions against real storage (Azurite locally) the way the Functions host with the Storage Queues
extension v5 does. Sources read, in Azure/azure-sdk-for-net under
sdk/storage/Microsoft.Azure.WebJobs.Extensions.Storage.{Common,Queues}/src:
``Shared/Queues/{QueueListener,QueueProcessor,QueuesOptions}.cs``,
``Shared/Timers/RandomizedExponentialBackoffStrategy.cs``, ``QueueServiceClientProvider.cs`` and
``Listeners/QueueListenerFactory.cs``:

* a message is received with a 10-minute visibility lease, renewed halfway while the function runs;
* up to ``batchSize`` messages are fetched at a time, and the next batch once no more than
  ``newBatchThreshold`` are in flight (so at most ``batchSize + newBatchThreshold`` run at once);
* an empty queue is polled with a randomized exponential backoff from 100 ms to ``maxPollingInterval``
  (``PollingBackoff``), back to 100 ms once a poll finds messages, and at once again while it does;
* success deletes the message; failure makes it visible again after ``visibilityTimeout``, or moves it to
  ``<queue>-poison`` once its dequeue count reached ``maxDequeueCount``; a message received with a dequeue
  count above ``maxDequeueCount`` (the host died mid-run) and, with base64 encoding, a body that is not
  base64 go to the poison queue without an invocation.

Run ``python -m devstack.funchost --script-root .`` for a host that runs until Ctrl-C; with
``DEVSTACK_HTTP_TRACE=1`` it logs every HTTP request it makes (``devstack.httptrace``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import importlib
import inspect
import json
import logging
import math
import os
import random
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import azure.functions as func
from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.functions.queue import QueueMessage as TriggerMessage
from azure.storage.queue import ExponentialRetry, QueueMessage, QueueServiceClient

from . import httptrace

logger = logging.getLogger(__name__)
# Every poll is an HTTP request: keep the SDK's per-request INFO lines out of the invocation log.
_storage_http_logger = logging.getLogger(f"{__name__}.storage_http")
_storage_http_logger.setLevel(logging.WARNING)

JOBHOST_PREFIX = "AzureFunctionsJobHost__"
DEFAULT_CONNECTION = "AzureWebJobsStorage"
POISON_SUFFIX = "-poison"
MAX_BATCH_SIZE = 32  # a Get Messages call returns at most 32
MIN_POLLING_INTERVAL_S = 0.1  # QueuePollingIntervals.Minimum
# QueueListener: invisible for 10 minutes while running, renewed halfway. Tests of a host crash
# shorten it (DEVSTACK_PROCESSING_LEASE_S) so the orphaned message reappears within seconds.
PROCESSING_LEASE_S = int(os.environ.get("DEVSTACK_PROCESSING_LEASE_S", "600"))
DEFAULT_FUNCTION_TIMEOUT_S = 30 * 60.0  # the host's default outside Consumption (there: 5 minutes)
BODY_PREFIX_CHARS = 24  # of a message body in a log line, never more

_EXPRESSION = re.compile(r"%([^%]+)%")
_QUEUE_NAME = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?!-)){1,61}[a-z0-9]")
_TIMESPAN = re.compile(r"(-)?(?:(\d+)\.)?(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{1,7}))?)?")


class HostConfigError(ValueError):
    """host.json, a function.json or an app setting is invalid; the message names which."""


class FunctionLoadError(RuntimeError):
    """The function's script could not be imported or has no such entry point."""


class FunctionTimeoutError(TimeoutError):
    """The invocation ran longer than ``functionTimeout``."""


# --- configuration: pure functions of host.json, function.json and the app settings ---------------------


def effective_host_json(script_root: Path, env: Mapping[str, str]) -> dict[str, Any]:
    """host.json as the host sees it: ``AzureFunctionsJobHost__a__b=v`` app settings override ``a.b``.

    Keys match case-insensitively, as in .NET configuration; override values stay strings.
    """
    path = Path(script_root) / "host.json"
    try:
        config: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HostConfigError(f"{path} not found: a script root needs a host.json") from None
    except json.JSONDecodeError as e:
        raise HostConfigError(f"{path} is not valid JSON: {e}") from e
    for key, value in env.items():
        if not key.lower().startswith(JOBHOST_PREFIX.lower()):
            continue
        *parents, leaf = key[len(JOBHOST_PREFIX) :].split("__")
        node = config
        for part in parents:
            name = _key(node, part)
            if not isinstance(node.get(name), dict):
                node[name] = {}
            node = node[name]
        node[_key(node, leaf)] = value
    return config


def _key(node: Mapping[str, Any], key: str) -> str:
    """The spelling of ``key`` already in ``node`` (case-insensitive), else ``key``."""
    return next((k for k in node if k.lower() == key.lower()), key)


def _get(node: Any, *path: str) -> Any:
    for part in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(_key(node, part))
    return node


def parse_timespan(value: object, name: str) -> float:
    """Seconds from a .NET TimeSpan ``[-][d.]hh:mm[:ss[.fffffff]]`` or from a number of milliseconds."""
    if (isinstance(value, int | float) and not isinstance(value, bool)) or (
        isinstance(value, str) and value.strip().isdigit()
    ):
        logger.warning(
            "%s=%r read as milliseconds (Functions 1.x style); the v2+ host binds it as a .NET TimeSpan, "
            "where a bare number means days: write hh:mm:ss[.fff]",
            name,
            value,
        )
        return float(value) / 1000
    match = _TIMESPAN.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise HostConfigError(f"{name}: {value!r} is not a TimeSpan such as 00:00:30 or 00:00:00.200")
    sign, days, hours, minutes, seconds, fraction = match.groups()
    if int(hours) > 23 or int(minutes) > 59 or int(seconds or 0) > 59:
        raise HostConfigError(f"{name}: {value!r} is out of range (hh <= 23, mm and ss <= 59)")
    total = int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + int(seconds or 0)
    total_s = total + float(f"0.{fraction or 0}")
    return -total_s if sign else total_s


def _integer(value: object, name: str, default: int, low: int, high: int | None = None) -> int:
    if value is None:
        return default
    try:
        number = int(str(value).strip()) if not isinstance(value, bool) else None
    except ValueError:
        number = None
    if number is None or number < low or (high is not None and number > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise HostConfigError(f"{name} must be an integer {bounds} (got {value!r})")
    return number


@dataclass(frozen=True)
class QueueOptions:
    """``extensions.queues`` of host.json, with the extension's defaults (QueuesOptions.cs)."""

    batch_size: int = 16
    new_batch_threshold: int = 8
    max_polling_interval: float = 60.0
    visibility_timeout: float = 0.0
    max_dequeue_count: int = 5
    message_encoding: str = "base64"

    @classmethod
    def from_host_json(cls, host_json: Mapping[str, Any], settings: Mapping[str, str]) -> QueueOptions:
        """Parse and validate; ``settings`` are the lower-cased app settings (for ``WEBSITE_SKU``)."""
        section = _get(host_json, "extensions", "queues") or {}
        if not isinstance(section, Mapping):
            raise HostConfigError("host.json extensions.queues must be an object")
        prefix = "host.json extensions.queues."
        batch = _integer(_get(section, "batchSize"), prefix + "batchSize", 16, 1, MAX_BATCH_SIZE)
        # Default: batchSize/2 per processor; on Consumption ("Dynamic" SKU) one processor counts.
        processors = 1 if settings.get("website_sku", "").lower() == "dynamic" else os.cpu_count() or 1
        threshold = _integer(
            _get(section, "newBatchThreshold"), prefix + "newBatchThreshold", batch // 2 * processors, 0
        )
        raw_interval = _get(section, "maxPollingInterval")
        interval = (
            60.0 if raw_interval is None else parse_timespan(raw_interval, prefix + "maxPollingInterval")
        )
        if interval < MIN_POLLING_INTERVAL_S:
            raise HostConfigError(f"{prefix}maxPollingInterval must not be less than 00:00:00.100")
        raw_visibility = _get(section, "visibilityTimeout")
        visibility = (
            0.0 if raw_visibility is None else parse_timespan(raw_visibility, prefix + "visibilityTimeout")
        )
        if not 0 <= visibility <= 7 * 86400:
            raise HostConfigError(f"{prefix}visibilityTimeout must be between 00:00:00 and 7.00:00:00")
        encoding = str(_get(section, "messageEncoding") or "base64").lower()
        if encoding not in ("base64", "none"):
            raise HostConfigError(f"{prefix}messageEncoding must be base64 or none (got {encoding!r})")
        return cls(
            batch_size=batch,
            new_batch_threshold=threshold,
            max_polling_interval=interval,
            visibility_timeout=visibility,
            max_dequeue_count=_integer(_get(section, "maxDequeueCount"), prefix + "maxDequeueCount", 5, 1),
            message_encoding=encoding,
        )


def function_timeout(host_json: Mapping[str, Any]) -> float | None:
    """``functionTimeout`` in seconds; None when unbounded ("-1" or null)."""
    raw = _get(host_json, "functionTimeout")
    if raw is None:
        return DEFAULT_FUNCTION_TIMEOUT_S
    if str(raw).strip() in ("-1", "-00:00:01"):
        return None
    seconds = parse_timespan(raw, "host.json functionTimeout")
    if seconds <= 0:
        raise HostConfigError(f"host.json functionTimeout must be positive or -1 (got {raw!r})")
    return seconds


def resolve_expression(raw: str, settings: Mapping[str, str], where: str) -> str:
    """Replace every ``%SETTING%`` with that app setting; a missing one is an error, as in the host."""

    def setting(match: re.Match[str]) -> str:
        value = settings.get(match.group(1).lower())
        if value is None:
            raise HostConfigError(
                f"{where}: '%{match.group(1)}%' does not resolve to a value: "
                f"app setting {match.group(1)} is not set"
            )
        return value

    return _EXPRESSION.sub(setting, raw)


@dataclass(frozen=True)
class StorageConnection:
    """A binding's ``connection``: a connection string, or a queue endpoint used with a token credential."""

    setting: str
    connection_string: str | None = None
    queue_service_uri: str | None = None
    credential: str | None = None
    client_id: str | None = None
    tenant_id: str | None = None
    client_secret: str | None = None

    def __repr__(self) -> str:  # never print a key or secret
        kind = "connection string" if self.connection_string else self.queue_service_uri
        return f"StorageConnection({self.setting}: {kind})"


def resolve_connection(name: str, settings: Mapping[str, str]) -> StorageConnection:
    """Find connection ``name`` the way the host does: ``AzureWebJobs<name>``, then ``<name>``.

    Either setting holds a connection string, or its ``__queueServiceUri`` / ``__accountName`` children
    describe an identity-based connection (with ``__credential``, ``__clientId``, ``__tenantId``,
    ``__clientSecret``).
    """
    name = name or DEFAULT_CONNECTION
    for candidate in (f"AzureWebJobs{name}", name):
        lowered = candidate.lower()
        children = {
            k[len(lowered) + 2 :]: v for k, v in settings.items() if k.startswith(lowered + "__") and v
        }
        if settings.get(lowered):
            return StorageConnection(candidate, connection_string=settings[lowered])
        if not children:
            continue
        uri = children.get("queueserviceuri")
        if not uri and children.get("accountname"):
            uri = f"https://{children['accountname']}.queue.core.windows.net"
        if not uri:
            raise HostConfigError(
                f"connection {candidate}: set {candidate}__queueServiceUri (or __accountName) for an "
                f"identity-based connection, or {candidate} to a connection string"
            )
        return StorageConnection(
            candidate,
            queue_service_uri=uri.rstrip("/"),
            credential=children.get("credential"),
            client_id=children.get("clientid"),
            tenant_id=children.get("tenantid"),
            client_secret=children.get("clientsecret"),
        )
    raise HostConfigError(
        f"storage connection '{name}' does not exist: set app setting {name} (or AzureWebJobs{name}) to a "
        f"connection string, or {name}__queueServiceUri for an identity-based connection"
    )


def _token_credential(connection: StorageConnection) -> TokenCredential:
    """The credential Microsoft.Extensions.Azure builds from a connection's settings."""
    from azure.identity import ClientSecretCredential, DefaultAzureCredential, ManagedIdentityCredential

    if (connection.credential or "").lower() == "managedidentity":
        return ManagedIdentityCredential(client_id=connection.client_id)
    if connection.tenant_id and connection.client_id and connection.client_secret:
        return ClientSecretCredential(connection.tenant_id, connection.client_id, connection.client_secret)
    return DefaultAzureCredential(managed_identity_client_id=connection.client_id)


@dataclass(frozen=True)
class QueueFunction:
    """One queue-triggered function as declared by its function.json."""

    name: str
    script_file: Path
    entry_point: str
    binding_name: str
    queue_name: str
    connection: StorageConnection
    data_type: str | None = None

    @property
    def poison_queue_name(self) -> str | None:
        """``<queue>-poison``; none for a poison queue itself or when the name would be too long."""
        name = self.queue_name + POISON_SUFFIX
        if self.queue_name.endswith(POISON_SUFFIX) or not _QUEUE_NAME.fullmatch(name):
            return None
        return name


def discover_functions(
    script_root: Path, host_json: Mapping[str, Any], settings: Mapping[str, str]
) -> list[QueueFunction]:
    """Every enabled queue-triggered function under ``script_root`` (one folder each)."""
    allowed = _get(host_json, "functions")
    found = []
    for directory in sorted(p for p in Path(script_root).iterdir() if (p / "function.json").is_file()):
        name = directory.name
        if allowed is not None and name not in allowed:
            continue
        try:
            metadata = json.loads((directory / "function.json").read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise HostConfigError(f"{directory / 'function.json'} is not valid JSON: {e}") from e
        disabled = settings.get(f"azurewebjobs.{name}.disabled".lower(), metadata.get("disabled", False))
        if str(disabled).lower() == "true":
            logger.info("Function %s is disabled", name)
            continue
        function = _queue_function(directory, metadata, settings)
        if function is not None:
            found.append(function)
    return found


def _queue_function(
    directory: Path, metadata: Mapping[str, Any], settings: Mapping[str, str]
) -> QueueFunction | None:
    name = directory.name
    bindings = metadata.get("bindings") or []
    triggers = [b for b in bindings if str(b.get("type", "")).lower() == "queuetrigger"]
    if len(triggers) != 1:
        logger.warning("Function %s: not queue-triggered (the local host runs only those); skipped", name)
        return None
    for other in (b for b in bindings if b not in triggers):
        logger.warning(
            "Function %s: binding type %r is not supported locally; ignored", name, other.get("type")
        )
    trigger = triggers[0]
    where = f"function {name}, binding {trigger.get('name')!r}"
    if str(trigger.get("direction", "in")).lower() != "in" or not trigger.get("name"):
        raise HostConfigError(f'{where}: a queueTrigger needs "direction": "in" and a "name"')
    queue_name = resolve_expression(str(trigger.get("queueName", "")), settings, where + " queueName").lower()
    if not _QUEUE_NAME.fullmatch(queue_name):
        raise HostConfigError(
            f"{where}: invalid queue name {queue_name!r} (3-63 of a-z, 0-9 and single dashes)"
        )
    connection = resolve_expression(str(trigger.get("connection") or ""), settings, where + " connection")
    script_file = (directory / metadata.get("scriptFile", "__init__.py")).resolve()
    return QueueFunction(
        name=name,
        script_file=script_file,
        entry_point=metadata.get("entryPoint") or "main",
        binding_name=trigger["name"],
        queue_name=queue_name,
        connection=resolve_connection(connection, settings),
        data_type=trigger.get("dataType"),
    )


def load_entry_point(script_root: Path, function: QueueFunction) -> Callable[..., Any]:
    """Import the function as the Python worker does (script root on sys.path) and return its entry point."""
    root = Path(script_root).resolve()
    if function.script_file.suffix != ".py" or not function.script_file.is_relative_to(root):
        raise FunctionLoadError(
            f"function {function.name}: scriptFile {function.script_file} is not a .py file in {root}"
        )
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    parts = list(function.script_file.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    module = importlib.import_module(".".join(parts))
    entry = getattr(module, function.entry_point, None)
    if not callable(entry):
        raise FunctionLoadError(
            f"function {function.name}: {function.entry_point}() is not defined in {module.__name__}"
        )
    return cast(Callable[..., Any], entry)


def decode_body(text: str, encoding: str) -> bytes | None:
    """The bytes a stored message carries, or None when base64 encoding is set and it is not base64."""
    if encoding == "none":
        return text.encode("utf-8")
    try:  # like .NET Convert.FromBase64String: whitespace is ignored, anything else must be base64
        return base64.b64decode(re.sub(r"[ \t\r\n]", "", text), validate=True)
    except binascii.Error:
        return None


# --- the host ---------------------------------------------------------------------------------------------


@dataclass
class FunctionStats:
    """Counters of one function since the host started."""

    invocations: int = 0
    failures: int = 0
    poisoned: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0


class PollingBackoff:
    """The wait between polls of an empty queue: the extension's ``RandomizedExponentialBackoffStrategy``
    (``Shared/Timers/RandomizedExponentialBackoffStrategy.cs``), which ``QueueListener`` builds from
    ``QueuePollingIntervals.Minimum`` (100 ms) and ``maxPollingInterval``.

    After a poll that found messages the next empty poll waits the minimum; each further empty poll
    waits ``minimum + U(0.8, 1.2) x 2^(n-1) x minimum`` (n = 1, 2, ...) until that reaches the
    maximum, and from then on exactly the maximum (no jitter there). ``uniform`` draws the factor
    (``random.uniform``; the benchmark passes the bounds to get the slowest ramp).
    """

    RANDOMIZATION = 0.2  # RandomizedExponentialBackoffStrategy.RandomizationFactor

    def __init__(
        self, minimum: float, maximum: float, uniform: Callable[[float, float], float] = random.uniform
    ) -> None:
        if not 0 <= minimum <= maximum:
            raise ValueError("the minimum interval must be between 0 and the maximum")
        self.minimum, self.maximum = minimum, maximum
        self._uniform = uniform
        self._current, self._exponent = 0.0, 0

    def next_delay(self, found_message: bool) -> float:
        """Seconds to wait before the next poll; ``found_message``: a poll since the last wait found some."""
        if found_message:
            self._current, self._exponent = self.minimum, 1
        elif self._current != self.maximum:
            interval = self.minimum
            if self._exponent > 0:
                factor = self._uniform(1 - self.RANDOMIZATION, 1 + self.RANDOMIZATION)
                interval += factor * 2 ** (self._exponent - 1) * self.minimum
            if interval < self.maximum:
                self._current, self._exponent = interval, self._exponent + 1
            else:
                self._current = self.maximum
        return self._current


class _Lease:
    """The message's current pop receipt: renewing the visibility changes it."""

    def __init__(self, message: QueueMessage) -> None:
        self.message_id: str = message.id
        self.pop_receipt: str | None = message.pop_receipt


class _Listener:
    """One function's trigger queue: the extension's QueueListener and QueueProcessor, on threads."""

    def __init__(self, host: FunctionHost, function: QueueFunction, service: QueueServiceClient) -> None:
        self.host = host
        self.function = function
        self.options = host.queue_options
        self.queue = service.get_queue_client(function.queue_name)
        poison_name = function.poison_queue_name
        self.poison = service.get_queue_client(poison_name) if poison_name else None
        self.stats = FunctionStats()
        self.entry: Callable[..., Any] | None = None
        self.load_error: Exception | None = None
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._poll, name=f"funchost-{function.name}", daemon=True)

    def start(self) -> None:
        try:
            self.entry = load_entry_point(self.host.script_root, self.function)
        except Exception as e:  # the worker reports a load error; every invocation then fails with it
            logger.error("Function %s failed to load: %s", self.function.name, e, exc_info=e)
            self.load_error = e
        self._thread.start()

    def snapshot(self) -> FunctionStats:
        with self._changed:
            return replace(self.stats)

    def join(self, timeout: float) -> None:
        with self._changed:
            self._changed.notify_all()
        self._thread.join(timeout)

    def wait_in_flight(self, deadline: float) -> bool:
        with self._changed:
            return self._changed.wait_for(
                lambda: self.stats.in_flight == 0, max(0.0, deadline - time.monotonic())
            )

    def idle(self) -> bool:
        with self._changed:
            if self.stats.in_flight:
                return False
        try:  # counts invisible messages too: a message waiting for its retry is not idle
            return self.queue.get_queue_properties().approximate_message_count == 0
        except ResourceNotFoundError:
            return True
        except AzureError:
            return False

    # QueueListener.ExecuteAsync, as a loop
    def _poll(self) -> None:
        backoff = PollingBackoff(MIN_POLLING_INTERVAL_S, self.options.max_polling_interval)
        found_since_delay, queue_ready, healthy = False, False, True
        stopping = self.host._stopping
        while not stopping.is_set():
            with self._changed:  # WaitForNewBatchThreshold
                self._changed.wait_for(
                    lambda: stopping.is_set() or self.stats.in_flight <= self.options.new_batch_threshold
                )
            if stopping.is_set():
                break
            try:
                queue_ready = queue_ready or self._queue_ready()
                batch = self._receive() if queue_ready else []
                if not healthy:
                    logger.info(
                        "Function %s: queue %s reachable again", self.function.name, self.function.queue_name
                    )
                healthy = True
            except AzureError as e:
                if healthy:
                    logger.warning(
                        "Function %s: polling queue %s failed, backing off: %s",
                        self.function.name,
                        self.function.queue_name,
                        str(e).splitlines()[0],
                    )
                queue_ready, healthy, batch = False, False, []
            if batch:
                for message in batch:
                    self._dispatch(message)
                found_since_delay = True
                continue
            delay = backoff.next_delay(found_since_delay)
            found_since_delay = False
            with self._changed:
                self._changed.wait_for(stopping.is_set, delay)

    def _queue_ready(self) -> bool:
        if self.host.create_queues:
            try:
                self.queue.create_queue()
                logger.info("Created queue %s", self.function.queue_name)
            except ResourceExistsError:
                pass
            return True
        try:
            self.queue.get_queue_properties()
            return True
        except ResourceNotFoundError:  # the real host polls (with backoff) until the queue appears
            return False

    def _receive(self) -> list[QueueMessage]:
        pages = self.queue.receive_messages(
            messages_per_page=self.options.batch_size, visibility_timeout=PROCESSING_LEASE_S
        ).by_page()
        return list(next(pages, []))

    def _dispatch(self, message: QueueMessage) -> None:
        with self._changed:
            self.stats.in_flight += 1
            self.stats.peak_in_flight = max(self.stats.peak_in_flight, self.stats.in_flight)
        self.host._dispatcher.submit(self._process, message)

    def _process(self, message: QueueMessage) -> None:
        try:
            with httptrace.message_scope(message.id):
                self._handle(message, _Lease(message))
        except Exception:  # like the listener: report, and the message reappears when its lease ends
            logger.exception(
                "Function %s: handling message %s failed in the host", self.function.name, message.id
            )
        finally:
            with self._changed:
                self.stats.in_flight -= 1
                self._changed.notify_all()

    # QueueProcessor: BeginProcessingMessageAsync, the invocation, CompleteProcessingMessageAsync
    def _handle(self, message: QueueMessage, lease: _Lease) -> None:
        body = decode_body(message.content or "", self.options.message_encoding)
        exhausted = f"it has reached MaxDequeueCount of {self.options.max_dequeue_count}"
        if body is None:
            self._move_to_poison(message, lease, "its body is not valid base64 (messageEncoding is base64)")
            return
        dequeue_count = message.dequeue_count or 0
        if dequeue_count > self.options.max_dequeue_count:
            self._move_to_poison(message, lease, exhausted)
            return
        error = self._invoke(message, body, lease)
        if error is None:
            self._complete(lambda: self.queue.delete_message(lease.message_id, lease.pop_receipt))
        elif self.poison is None:
            pass  # no poison queue: the message stays invisible until its lease ends (no fast retry loop)
        elif dequeue_count >= self.options.max_dequeue_count:
            self._move_to_poison(message, lease, exhausted)
        else:
            self._complete(
                lambda: self.queue.update_message(
                    lease.message_id,
                    lease.pop_receipt,
                    visibility_timeout=int(self.options.visibility_timeout),
                )
            )

    def _invoke(self, message: QueueMessage, body: bytes, lease: _Lease) -> BaseException | None:
        name = self.function.name
        if self.function.data_type != "binary":  # the host hands the worker a string
            body = body.decode("utf-8", errors="replace").encode("utf-8")
        msg = TriggerMessage(  # type: ignore[no-untyped-call] # the worker's own type: azure.functions.QueueMessage plus trigger metadata
            id=message.id,
            body=body,
            dequeue_count=message.dequeue_count,
            expiration_time=message.expires_on,
            insertion_time=message.inserted_on,
            time_next_visible=message.next_visible_on,
            pop_receipt=message.pop_receipt,
        )
        with self._changed:
            self.stats.invocations += 1
        started = time.monotonic()
        future: Future[None] = self.host._worker.submit(self._call, msg)
        error = self._await(future, started, lease)
        duration_ms = (time.monotonic() - started) * 1000
        outcome = "Succeeded" if error is None else f"Failed ({type(error).__name__})"
        logger.info(
            "Executed function=%s message_id=%s dequeue_count=%s outcome=%s duration_ms=%.0f body_prefix=%r",
            name,
            message.id,
            message.dequeue_count,
            outcome,
            duration_ms,
            body[:BODY_PREFIX_CHARS].decode("utf-8", errors="replace"),
        )
        if error is not None:
            with self._changed:
                self.stats.failures += 1
            logger.warning("Function %s failed on message %s: %s", name, message.id, error, exc_info=error)
        return error

    def _call(self, msg: func.QueueMessage) -> None:
        if self.entry is None:
            raise FunctionLoadError(f"function {self.function.name} failed to load") from self.load_error
        started = time.time()
        try:
            with httptrace.message_scope(msg.id):
                result = self.entry(**{self.function.binding_name: msg})
                if inspect.iscoroutine(result):
                    asyncio.run(result)
        finally:
            httptrace.span("invoke", msg.id, started, time.time())

    def _await(self, future: Future[None], started: float, lease: _Lease) -> BaseException | None:
        """Wait for the invocation, renewing the lease halfway; past functionTimeout it has failed."""
        timeout = self.host.function_timeout
        deadline = math.inf if timeout is None else started + timeout
        while True:
            wait([future], timeout=min(PROCESSING_LEASE_S / 2, max(0.0, deadline - time.monotonic())))
            if future.done():
                return future.exception()
            if time.monotonic() >= deadline:
                future.cancel()
                logger.error(
                    "Function %s exceeded functionTimeout (%ss) on message %s; its thread cannot be stopped "
                    "and keeps running (the real host restarts the worker process)",
                    self.function.name,
                    timeout,
                    lease.message_id,
                )
                return FunctionTimeoutError(
                    f"timeout value of {timeout}s exceeded by function {self.function.name}"
                )
            self._renew(lease)

    def _renew(self, lease: _Lease) -> None:
        try:
            receipt = self.queue.update_message(
                lease.message_id, lease.pop_receipt, visibility_timeout=PROCESSING_LEASE_S
            )
            lease.pop_receipt = receipt.pop_receipt
        except AzureError as e:
            logger.warning(
                "Function %s: renewing the lease of message %s failed: %s",
                self.function.name,
                lease.message_id,
                e,
            )

    def _move_to_poison(self, message: QueueMessage, lease: _Lease, reason: str) -> None:
        if self.poison is None:
            logger.warning(
                "Message %s is poison (%s) but queue %s has no poison queue",
                message.id,
                reason,
                self.function.queue_name,
            )
            return
        logger.warning("Moving message %s to queue %s: %s", message.id, self.poison.queue_name, reason)
        try:
            self.poison.send_message(message.content or "")
        except ResourceNotFoundError:
            try:
                self.poison.create_queue()
            except ResourceExistsError:
                pass
            self.poison.send_message(message.content or "")
        with self._changed:
            self.stats.poisoned += 1
        self._complete(lambda: self.queue.delete_message(lease.message_id, lease.pop_receipt))

    def _complete(self, operation: Callable[[], object]) -> None:
        """Delete or release a message; it being gone or taken over by another receiver is fine."""
        try:
            operation()
        except ResourceNotFoundError:
            logger.debug("Function %s: message or queue already gone", self.function.name)
        except HttpResponseError as e:
            if getattr(e, "error_code", None) != "PopReceiptMismatch":
                raise
            logger.debug("Function %s: message taken over by another receiver", self.function.name)


class FunctionHost:
    """Runs the queue-triggered functions under ``script_root`` until stopped.

    ``env`` are the app settings (default: ``os.environ``). Construction reads and validates host.json and
    every function.json (raising ``HostConfigError``); ``start()`` imports the functions and starts polling.
    ``create_queues`` creates missing trigger queues on start; with False the host polls with backoff
    until they appear, as the real host does.
    """

    def __init__(
        self, script_root: Path, env: Mapping[str, str] | None = None, *, create_queues: bool = True
    ) -> None:
        self.script_root = Path(script_root).resolve()
        self.env: Mapping[str, str] = dict(os.environ if env is None else env)
        self.create_queues = create_queues
        settings = {k.lower(): v for k, v in self.env.items()}
        self.host_config = effective_host_json(self.script_root, self.env)
        self.queue_options = QueueOptions.from_host_json(self.host_config, settings)
        self.function_timeout = function_timeout(self.host_config)
        self.functions = discover_functions(self.script_root, self.host_config, settings)
        threads = settings.get("python_threadpool_thread_count")
        self._worker_threads = int(threads) if threads else min(32, (os.cpu_count() or 1) + 4)
        self._stopping = threading.Event()
        self._listeners: dict[str, _Listener] = {}
        self._clients: dict[StorageConnection, QueueServiceClient] = {}
        # Host side: one thread per message in flight (bounded by the listeners); worker side: the Python
        # worker's pool for sync functions. Both start their threads lazily.
        in_flight = (self.queue_options.batch_size + self.queue_options.new_batch_threshold) * len(
            self.functions
        )
        self._dispatcher = ThreadPoolExecutor(max(1, in_flight), thread_name_prefix="funchost-dispatch")
        self._worker = ThreadPoolExecutor(self._worker_threads, thread_name_prefix="funchost-worker")

    @property
    def stats(self) -> dict[str, FunctionStats]:
        """A snapshot of each function's counters."""
        return {name: listener.snapshot() for name, listener in self._listeners.items()}

    def start(self) -> None:
        """Import the functions and start polling their queues on background threads."""
        if self._listeners:
            return
        if httptrace.enabled(self.env):
            httptrace.install()
        logger.info("Queue options %s, functionTimeout=%ss", self.queue_options, self.function_timeout)
        for function in self.functions:
            listener = _Listener(self, function, self._service(function.connection))
            self._listeners[function.name] = listener
            listener.start()
            logger.info(
                "Function %s listening on queue %s (connection %s)",
                function.name,
                function.queue_name,
                function.connection.setting,
            )

    def _service(self, connection: StorageConnection) -> QueueServiceClient:
        client = self._clients.get(connection)
        if client is None:
            options: dict[str, Any] = {
                # Short SDK retries: an outage is ridden out by the poll loop's backoff instead.
                "retry_policy": ExponentialRetry(
                    initial_backoff=1, increment_base=2, retry_total=2, random_jitter_range=1
                ),
                "connection_timeout": 5,
                "read_timeout": 30,
                "logger": _storage_http_logger,
            }
            if connection.connection_string:
                client = QueueServiceClient.from_connection_string(connection.connection_string, **options)
            else:
                client = QueueServiceClient(
                    str(connection.queue_service_uri), credential=_token_credential(connection), **options
                )
            self._clients[connection] = client
        return client

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop polling and wait up to ``timeout`` s for running invocations; True if all finished."""
        self._stopping.set()
        deadline = time.monotonic() + timeout
        for listener in self._listeners.values():
            listener.join(max(0.0, deadline - time.monotonic()))
        finished = all(listener.wait_in_flight(deadline) for listener in self._listeners.values())
        if not finished:
            logger.warning("Stopped with invocations still running after %ss", timeout)
        self._dispatcher.shutdown(wait=finished)
        self._worker.shutdown(wait=finished)
        return finished

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until no invocation runs and every trigger queue is empty (invisible messages included)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(listener.idle() for listener in self._listeners.values()):
                return True
            time.sleep(0.05)
        return False

    def run_forever(self) -> None:
        """Run until Ctrl-C or SIGTERM, then stop gracefully."""
        requested = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: requested.set())
        self.start()
        try:
            while not requested.wait(0.5):
                continue
        except KeyboardInterrupt:
            pass
        finally:
            logger.info("Stopping: no new messages, waiting for running invocations")
            self.stop()

    def __enter__(self) -> FunctionHost:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _local_settings(script_root: Path) -> dict[str, str]:
    """``Values`` of local.settings.json, if there is one (as Core Tools loads them)."""
    path = script_root / "local.settings.json"
    if not path.is_file():
        return {}
    values = json.loads(path.read_text(encoding="utf-8")).get("Values") or {}
    return {str(k): str(v) for k, v in values.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Local Functions host for queue-triggered Python functions")
    parser.add_argument(
        "--script-root", type=Path, default=Path("."), help="folder with host.json (default .)"
    )
    parser.add_argument(
        "--no-create-queues", action="store_true", help="wait for missing trigger queues instead"
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("azure").setLevel(logging.WARNING)
    env = {**_local_settings(args.script_root), **os.environ}  # the environment wins over the file
    try:
        host = FunctionHost(args.script_root, env, create_queues=not args.no_create_queues)
    except HostConfigError as e:
        raise SystemExit(f"funchost: {e}") from e
    host.run_forever()


if __name__ == "__main__":
    from devstack.funchost import main as package_main  # so records are logged as devstack.funchost

    package_main()
