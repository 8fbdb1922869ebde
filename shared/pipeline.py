"""The story of a request, from queue message to result message.

arrival (decode) -> parse (validate) -> resolve (which machine) -> act (MDE) -> report (results).

Every message ends in exactly one of:
* a result message, then the message is completed (success or a permanent error);
* an exception, so the host redelivers it (a transient error). On the last allowed delivery a
  ``Failed`` result with ``error.retryable = true`` is written first, so the requester always hears
  back even though the message then goes to the poison queue.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import azure.functions as func

from . import canonical
from .canonical import Action, ContainmentRequest, Source
from .errors import ActionAlreadyPending, ContainmentError, InvalidRequest, PermanentError, TransientError
from .identity import CredentialTokenProvider, managed_identity_credential
from .mde import MachineAction, MdeClient, is_final, validate_machine_id
from .results import Delivery, QueueResultPublisher, ResultPublisher, build_result
from .settings import Settings, get_settings

logger = logging.getLogger(__name__)

Parser = Callable[[dict[str, Any], str], ContainmentRequest]


@dataclass(frozen=True)
class Runtime:
    """The adapters one process uses: built once, on first invocation."""

    settings: Settings
    mde: MdeClient
    publisher: ResultPublisher


@functools.cache
def runtime() -> Runtime:
    """Settings, credential, MDE client and results publisher for this process."""
    settings = get_settings()
    credential = managed_identity_credential(settings.azure_client_id)
    tokens = CredentialTokenProvider(credential, settings.mde_token_scope)
    mde = MdeClient(
        settings.mde_api_base_url,
        tokens,
        timeout=(settings.http_connect_timeout, settings.http_read_timeout),
    )
    storage_credential = None
    if settings.storage.queue_service_uri:
        storage_id = settings.storage.client_id
        same = storage_id == settings.azure_client_id
        storage_credential = credential if same else managed_identity_credential(storage_id)
    publisher = QueueResultPublisher.from_settings(
        settings.storage, settings.results_queue, storage_credential
    )
    return Runtime(settings, mde, publisher)


def handle_isolation(msg: func.QueueMessage) -> None:
    """Entry point of ``isolate_fn``."""
    rt = runtime()
    _handle(msg, "Isolate", canonical.parse_isolation, rt.settings.isolation_queue, rt)


def handle_release(msg: func.QueueMessage) -> None:
    """Entry point of ``release_fn``."""
    rt = runtime()
    _handle(msg, "Unisolate", canonical.parse_release, rt.settings.release_queue, rt)


def _handle(msg: func.QueueMessage, action: Action, parse: Parser, queue: str, rt: Runtime) -> None:
    delivery = Delivery(queue=queue, message_id=msg.id or "", dequeue_count=msg.dequeue_count or 1)
    fallback_id = f"msg-{delivery.message_id}"
    document: Any = None
    request: ContainmentRequest | None = None
    report: Callable[..., None] = functools.partial(_report, rt.publisher, action=action, delivery=delivery)
    try:
        document = canonical.decode_body(msg.get_body())
        request = parse(document, fallback_id)
        logger.info(
            "request action=%s request_id=%s source=%s dequeue_count=%d",
            action,
            request.request_id,
            request.source.system,
            delivery.dequeue_count,
        )
        outcome, machine, machine_action = process(request, rt.mde)
        report(outcome=outcome, request=request, machine=machine, machine_action=machine_action)
    except PermanentError as e:
        outcome = "Rejected" if isinstance(e, InvalidRequest) or request is None else "Failed"
        logger.warning(
            "request refused outcome=%s code=%s request_id=%s",
            outcome,
            e.code,
            request.request_id if request else fallback_id,
        )
        report(outcome=outcome, request=request, document=document, fallback_id=fallback_id, error=e)
    except Exception as e:
        # Transient (or unexpected): the host redelivers. On the last delivery, report first.
        if delivery.dequeue_count >= rt.settings.max_dequeue_count:
            error = e if isinstance(e, TransientError) else TransientError("InternalError", repr(e)[:500])
            error_message = f"gave up after {delivery.dequeue_count} deliveries: {error.message}"
            final = TransientError(error.code, error_message)
            report(outcome="Failed", request=request, document=document, fallback_id=fallback_id, error=final)
        raise


def _report(
    publisher: ResultPublisher,
    *,
    action: Action,
    delivery: Delivery,
    outcome: str,
    request: ContainmentRequest | None,
    machine: dict[str, Any] | None = None,
    machine_action: MachineAction | None = None,
    document: Any = None,
    fallback_id: str = "",
    error: ContainmentError | None = None,
) -> None:
    if request is not None:
        request_id, source = request.request_id, request.source
    else:
        request_id = canonical.best_effort_request_id(document) or fallback_id
        source = Source(system="unknown")
    publisher.publish(
        build_result(
            action=action,
            outcome=outcome,
            delivery=delivery,
            request_id=request_id,
            source=source,
            request=request,
            machine=machine,
            machine_action=machine_action,
            error=error,
        )
    )


def process(request: ContainmentRequest, mde: MdeClient) -> tuple[str, dict[str, Any], MachineAction]:
    """Resolve the machine and submit the action: (outcome, machine, machine action)."""
    if request.action == "Unisolate" and not request.approved:
        raise InvalidRequest("NotApproved", f"ticket {request.ticket_id} is not approved for release")
    machine = resolve_machine(request, mde)
    comment = canonical.mde_comment(request)
    try:
        if request.action == "Isolate":
            action = mde.isolate(machine["id"], comment, request.isolation_type)
        else:
            action = mde.unisolate(machine["id"], comment)
    except ActionAlreadyPending as e:
        return "AlreadyPending", machine, _pending_action(mde, machine["id"], request.action, e)
    return "Submitted", machine, action


def _pending_action(
    mde: MdeClient, machine_id: str, action_type: str, refusal: ActionAlreadyPending
) -> MachineAction:
    """The action MDE says is already pending: newest not-final one of the same type."""
    for action in mde.list_actions(machine_id, action_type):
        if not is_final(action.status):
            return action
    # MDE said pending but lists none: it finished meanwhile. Retrying will submit anew.
    raise TransientError("PendingActionNotFound", f"{refusal.message}; no pending {action_type} action found")


def resolve_machine(request: ContainmentRequest, mde: MdeClient) -> dict[str, Any]:
    """``{"id", "computerDnsName"}`` of the one machine the request names."""
    device = request.device
    if device.machine_id:
        return {"id": device.machine_id, "computerDnsName": None}
    if device.device_name:
        candidates = mde.find_machines_by_dns_name(device.device_name)
        described = f"computerDnsName {device.device_name!r}"
    elif device.ip_address and device.timestamp:
        candidates = mde.find_machines_by_ip(device.ip_address, device.timestamp)
        described = f"IP {device.ip_address} at {device.timestamp.isoformat()}"
    else:
        raise InvalidRequest("NoDevice", "the request names no device")
    if not candidates:
        raise InvalidRequest("DeviceNotFound", f"no MDE machine has {described}")
    if len(candidates) > 1:
        listed = ", ".join(
            f"{c.get('id')} ({c.get('computerDnsName')}, lastSeen {c.get('lastSeen')}, "
            f"{c.get('healthStatus')})"
            for c in candidates[:10]
        )
        raise InvalidRequest("AmbiguousDevice", f"{len(candidates)} machines have {described}: {listed}")
    machine = candidates[0]
    return {"id": validate_machine_id(machine.get("id")), "computerDnsName": machine.get("computerDnsName")}
