"""The local Functions host against a real Azurite, with the fixture app in ``app/``."""

from __future__ import annotations

import base64
import importlib
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient

from devstack.azurite import Azurite, AzuriteError
from devstack.funchost import (
    FunctionHost,
    HostConfigError,
    QueueOptions,
    effective_host_json,
    parse_timespan,
)

APP = Path(__file__).resolve().parent / "app"

pytestmark = pytest.mark.integration


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def wait_for(condition: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def azurite() -> Iterator[Azurite]:
    with Azurite() as instance:
        yield instance


@pytest.fixture
def settings(azurite: Azurite) -> dict[str, str]:
    """App settings of the fixture app, with queues of their own for each test."""
    suffix = uuid.uuid4().hex[:8]
    return {
        "DEVSTACK_STORAGE": azurite.connection_string,
        "RECORD_QUEUE": f"record-{suffix}",
        "FAIL_QUEUE": f"fail-{suffix}",
        "PYTHON_THREADPOOL_THREAD_COUNT": "8",
    }


@pytest.fixture
def recorder() -> ModuleType:
    if str(APP) not in sys.path:
        sys.path.insert(0, str(APP))
    module = importlib.import_module("recorder")
    module.reset()
    return module


def new_queue(settings: dict[str, str], name: str) -> QueueClient:
    client = QueueClient.from_connection_string(settings["DEVSTACK_STORAGE"], name)
    client.create_queue()
    return client


def poison_queue(settings: dict[str, str], setting: str) -> QueueClient:
    return QueueClient.from_connection_string(settings["DEVSTACK_STORAGE"], settings[setting] + "-poison")


def overrides(**queues: str) -> dict[str, str]:
    return {f"AzureFunctionsJobHost__extensions__queues__{key}": value for key, value in queues.items()}


def test_base64_body_is_decoded_and_main_gets_the_real_message(
    settings: dict[str, str], recorder: ModuleType
) -> None:
    trigger = new_queue(settings, settings["RECORD_QUEUE"])
    sent = trigger.send_message(b64('{"machineId": "héllo"}'.encode()))

    with FunctionHost(APP, settings) as host:
        assert host.wait_idle(10)
        stats = host.stats["record_fn"]

    (call,) = recorder.calls("record_fn")
    assert call.body == '{"machineId": "héllo"}'.encode()
    assert call.id == sent.id
    assert call.dequeue_count == 1
    assert call.pop_receipt
    assert call.insertion_time == sent.inserted_on
    assert call.expiration_time == sent.expires_on
    assert call.time_next_visible > call.insertion_time
    assert (stats.invocations, stats.failures, stats.poisoned) == (1, 0, 0)
    assert trigger.get_queue_properties().approximate_message_count == 0


def test_message_encoding_none_override_passes_the_stored_text(
    settings: dict[str, str], recorder: ModuleType
) -> None:
    trigger = new_queue(settings, settings["RECORD_QUEUE"])
    trigger.send_message('{"machineId": "héllo"}')

    with FunctionHost(APP, {**settings, **overrides(messageEncoding="none")}) as host:
        assert host.host_config["extensions"]["queues"]["messageEncoding"] == "none"
        assert host.wait_idle(10)

    assert [call.body for call in recorder.calls("record_fn")] == ['{"machineId": "héllo"}'.encode()]


def test_body_that_is_not_base64_goes_to_poison_without_invocation(
    settings: dict[str, str], recorder: ModuleType
) -> None:
    trigger = new_queue(settings, settings["RECORD_QUEUE"])
    trigger.send_message("plain text, not base64!")
    poison = poison_queue(settings, "RECORD_QUEUE")

    with FunctionHost(APP, settings) as host:
        assert host.wait_idle(10)
        stats = host.stats["record_fn"]

    assert recorder.calls("record_fn") == []
    assert [m.content for m in poison.peek_messages(5)] == ["plain text, not base64!"]
    assert (stats.invocations, stats.poisoned) == (0, 1)


def test_failed_message_reappears_after_visibility_timeout_dequeued_once_more(
    settings: dict[str, str], recorder: ModuleType
) -> None:
    trigger = new_queue(settings, settings["FAIL_QUEUE"])
    trigger.send_message(b64(b"fail-until-2"))

    with FunctionHost(APP, settings) as host:
        assert host.wait_idle(10)
        stats = host.stats["fail_fn"]

    first, second = recorder.calls("fail_fn")
    assert (first.dequeue_count, second.dequeue_count) == (1, 2)
    assert first.id == second.id
    assert second.at - first.at >= 0.9  # visibilityTimeout 00:00:01 in app/host.json
    assert (stats.invocations, stats.failures, stats.poisoned) == (2, 1, 0)


def test_message_failing_max_dequeue_count_times_goes_to_poison_as_sent(
    settings: dict[str, str], recorder: ModuleType
) -> None:
    trigger = new_queue(settings, settings["FAIL_QUEUE"])
    trigger.send_message(b64(b"fail"))
    poison = poison_queue(settings, "FAIL_QUEUE")

    with FunctionHost(APP, settings) as host:
        assert host.wait_idle(15)
        stats = host.stats["fail_fn"]

    assert [call.dequeue_count for call in recorder.calls("fail_fn")] == [1, 2, 3]  # maxDequeueCount 3
    assert [m.content for m in poison.peek_messages(5)] == [b64(b"fail")]
    assert trigger.get_queue_properties().approximate_message_count == 0
    assert (stats.invocations, stats.failures, stats.poisoned) == (3, 3, 1)


def test_message_dequeued_beyond_max_dequeue_count_is_poisoned_without_invocation(
    settings: dict[str, str], recorder: ModuleType
) -> None:
    trigger = new_queue(settings, settings["RECORD_QUEUE"])
    trigger.send_message(b64(b"left behind by a crashed host"))
    for _ in range(3):  # three deliveries whose host died mid-run
        (message,) = list(next(trigger.receive_messages(messages_per_page=1).by_page()))
        trigger.update_message(message.id, message.pop_receipt, visibility_timeout=0)
    poison = poison_queue(settings, "RECORD_QUEUE")

    with FunctionHost(APP, settings) as host:
        assert host.wait_idle(10)
        stats = host.stats["record_fn"]

    assert recorder.calls("record_fn") == []
    assert [m.content for m in poison.peek_messages(5)] == [b64(b"left behind by a crashed host")]
    assert (stats.invocations, stats.poisoned) == (0, 1)


def test_batch_size_and_new_batch_threshold_bound_concurrency(
    settings: dict[str, str], recorder: ModuleType
) -> None:
    trigger = new_queue(settings, settings["RECORD_QUEUE"])
    for i in range(12):
        trigger.send_message(b64(f"slow {i}".encode()))

    with FunctionHost(APP, {**settings, **overrides(batchSize="3", newBatchThreshold="1")}) as host:
        assert host.queue_options.batch_size == 3
        assert host.wait_idle(15)
        stats = host.stats["record_fn"]

    assert len(recorder.calls("record_fn")) == 12
    assert 3 <= recorder.peak() <= 4  # batchSize + newBatchThreshold
    assert stats.peak_in_flight <= 4


def test_trigger_queue_is_created_on_start(settings: dict[str, str], recorder: ModuleType) -> None:
    trigger = QueueClient.from_connection_string(settings["DEVSTACK_STORAGE"], settings["RECORD_QUEUE"])

    def exists() -> bool:
        try:
            trigger.get_queue_properties()
            return True
        except ResourceNotFoundError:
            return False

    assert not exists()
    with FunctionHost(APP, settings):
        wait_for(exists)
        trigger.send_message(b64(b"after start"))
        wait_for(lambda: recorder.calls("record_fn"))


def test_stop_waits_for_the_running_invocation(settings: dict[str, str], recorder: ModuleType) -> None:
    trigger = new_queue(settings, settings["RECORD_QUEUE"])
    trigger.send_message(b64(b"slow and steady"))
    host = FunctionHost(APP, settings)
    host.start()
    wait_for(lambda: recorder.calls("record_fn"))

    assert host.stop(timeout=5)
    assert trigger.get_queue_properties().approximate_message_count == 0


def test_function_that_fails_to_import_fails_every_invocation(
    settings: dict[str, str], tmp_path: Path
) -> None:
    trigger_binding = {
        "name": "msg",
        "type": "queueTrigger",
        "queueName": "%RECORD_QUEUE%",
        "connection": "DEVSTACK_STORAGE",
    }
    (tmp_path / "host.json").write_text(
        json.dumps({"version": "2.0", "extensions": {"queues": {"maxDequeueCount": 1}}})
    )
    (tmp_path / "broken_fn").mkdir()
    (tmp_path / "broken_fn" / "function.json").write_text(json.dumps({"bindings": [trigger_binding]}))
    (tmp_path / "broken_fn" / "__init__.py").write_text("import a_module_nobody_installed\n")
    new_queue(settings, settings["RECORD_QUEUE"]).send_message(b64(b"to a broken function"))

    with FunctionHost(tmp_path, settings) as host:
        assert host.wait_idle(10)
        stats = host.stats["broken_fn"]

    assert (stats.invocations, stats.failures, stats.poisoned) == (1, 1, 1)
    assert [m.content for m in poison_queue(settings, "RECORD_QUEUE").peek_messages(5)] == [
        b64(b"to a broken function")
    ]


def test_unresolvable_binding_expression_names_the_setting(settings: dict[str, str]) -> None:
    del settings["RECORD_QUEUE"]

    with pytest.raises(HostConfigError, match=r"'%RECORD_QUEUE%' does not resolve.*RECORD_QUEUE is not set"):
        FunctionHost(APP, settings)


def test_missing_connection_names_the_setting(settings: dict[str, str]) -> None:
    del settings["DEVSTACK_STORAGE"]

    with pytest.raises(HostConfigError, match="DEVSTACK_STORAGE"):
        FunctionHost(APP, settings)


def test_disabled_functions_and_folders_without_function_json_are_skipped(settings: dict[str, str]) -> None:
    assert [f.name for f in FunctionHost(APP, settings).functions] == ["fail_fn", "record_fn"]

    disabled = FunctionHost(APP, {**settings, "AzureWebJobs.fail_fn.Disabled": "true"})

    assert [f.name for f in disabled.functions] == ["record_fn"]


def test_function_json_declarations_are_honoured(settings: dict[str, str]) -> None:
    functions = {f.name: f for f in FunctionHost(APP, {**settings, "RECORD_QUEUE": "Mixed-Case"}).functions}

    assert functions["record_fn"].queue_name == "mixed-case"  # the host lower-cases queue names
    assert functions["fail_fn"].script_file == APP / "fail_fn" / "handler.py"
    assert functions["fail_fn"].entry_point == "run"
    assert functions["fail_fn"].binding_name == "message"
    assert functions["fail_fn"].connection.connection_string == settings["DEVSTACK_STORAGE"]


def test_identity_based_connection_is_resolved_from_double_underscore_settings(
    settings: dict[str, str],
) -> None:
    del settings["DEVSTACK_STORAGE"]
    settings |= {
        "DEVSTACK_STORAGE__queueServiceUri": "https://account.queue.core.windows.net/",
        "DEVSTACK_STORAGE__credential": "managedidentity",
        "DEVSTACK_STORAGE__clientId": "00000000-0000-0000-0000-000000000001",
    }

    (function, *_) = FunctionHost(APP, settings).functions

    assert function.connection.queue_service_uri == "https://account.queue.core.windows.net"
    assert function.connection.credential == "managedidentity"
    assert function.connection.client_id == "00000000-0000-0000-0000-000000000001"


def test_jobhost_overrides_are_case_insensitive_and_keep_host_json_spelling(settings: dict[str, str]) -> None:
    env = {
        **settings,
        "azurefunctionsjobhost__EXTENSIONS__queues__VISIBILITYTIMEOUT": "00:00:05",
        "AzureFunctionsJobHost__extensions__queues__maxDequeueCount": "7",
        "AzureFunctionsJobHost__functionTimeout": "00:01:00",
    }

    config = effective_host_json(APP, env)
    host = FunctionHost(APP, env)

    assert config["extensions"]["queues"]["visibilityTimeout"] == "00:00:05"
    assert config["functionTimeout"] == "00:01:00"
    assert host.host_config == config
    assert (host.queue_options.visibility_timeout, host.queue_options.max_dequeue_count) == (5.0, 7)
    assert host.function_timeout == 60.0


def test_new_batch_threshold_defaults_to_half_the_batch_per_processor() -> None:
    host_json = {"extensions": {"queues": {"batchSize": 8}}}

    on_consumption = QueueOptions.from_host_json(host_json, {"website_sku": "Dynamic"})
    elsewhere = QueueOptions.from_host_json(host_json, {})

    assert on_consumption.new_batch_threshold == 4
    assert elsewhere.new_batch_threshold == 4 * (os.cpu_count() or 1)
    assert QueueOptions.from_host_json({}, {"website_sku": "dynamic"}) == QueueOptions()  # 16, 8, 1 min, 0, 5


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("00:00:01", 1.0),
        ("00:00:00.200", 0.2),
        ("01:30", 5400.0),
        ("1.02:03:04", 93784.0),
        (1500, 1.5),
        ("250", 0.25),
    ],
)
def test_timespans_parse_like_dotnet_and_numbers_as_milliseconds(raw: object, seconds: float) -> None:
    assert parse_timespan(raw, "x") == pytest.approx(seconds)


@pytest.mark.parametrize("raw", ["soon", "00:61:00", "", None, True])
def test_bad_timespans_are_config_errors(raw: object) -> None:
    with pytest.raises(HostConfigError, match="maxPollingInterval"):
        parse_timespan(raw, "maxPollingInterval")


def test_azurite_restart_on_the_same_ports_keeps_queued_messages() -> None:
    with Azurite() as storage:
        client = QueueClient.from_connection_string(storage.connection_string, "survives-restart")
        client.create_queue()
        client.send_message("still here")
        ports = (storage.blob_port, storage.queue_port, storage.table_port)

        storage.restart()

        assert (storage.blob_port, storage.queue_port, storage.table_port) == ports
        assert [m.content for m in client.peek_messages(5)] == ["still here"]


def test_missing_azurite_binary_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(AzuriteError, match="npm install --prefix devstack"):
        Azurite(binary=tmp_path / "azurite", location=tmp_path).start()
