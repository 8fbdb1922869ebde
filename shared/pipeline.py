"""The story of a request, from queue message to result message.

arrival (decode) -> parse (validate; one request per device) -> resolve (which machine)
-> act (MDE, after settling any opposite pending action) -> report (results queue)
-> follow up (tracking messages until the action is final).

Every message ends in exactly one of:
* a result message, then the message is completed (success or a permanent error);
* a re-enqueued message, then the message is completed: one request per device for an event that
  names several, the same request after ``Retry-After`` on a 429 (or a few seconds later: a
  storm duplicate whose device is being posted right now, a release yielding to containment), the
  next tracking check;
* an exception, so the host redelivers it (a transient error). On the last allowed delivery a
  ``Failed`` result with ``error.retryable = true`` is written first, so the requester always hears
  back even though the message then goes to the poison queue.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func

from . import canonical, events
from .canonical import Action, ContainmentRequest, Source
from .errors import (
    ActionAlreadyPending,
    ContainmentError,
    InvalidRequest,
    MdeApiError,
    MdeThrottledLocally,
    PermanentError,
    TransientError,
)
from .identity import CredentialTokenProvider, managed_identity_credential
from .ledger import Claim, Ledger, TableLedger
from .mde import MachineAction, MdeClient, is_final
from .policy import decide_isolation, decide_release, needs_machine_lookup
from .queues import MessageSender, StorageQueueSender
from .resolve import DeviceResolver
from .results import Delivery, QueueResultPublisher, ResultPublisher, build_result
from .settings import Settings, get_settings
from .tracking import Tracking, delay_before_check, device_online, final_outcome, first_tracking

logger = logging.getLogger(__name__)

EventParser = Callable[[dict[str, Any], str], list[ContainmentRequest]]
OPPOSITE: dict[str, Action] = {"Isolate": "Unisolate", "Unisolate": "Isolate"}
CANONICAL_MARKER = "[mde-containment "  # our comments carry it: an action we created
# A storm duplicate waits (re-enqueued) this long for the request posting its device's isolation;
# a holder that has not recorded its action by then is stuck, and the duplicate fails over to the
# host's redelivery (and finally a ``Failed`` result) instead.
CLAIM_PENDING_WAIT = timedelta(minutes=2)


@dataclass(frozen=True)
class Runtime:
    """The adapters one process uses: built once, on first invocation."""

    settings: Settings
    mde: MdeClient
    sender: MessageSender
    publisher: ResultPublisher
    ledger: Ledger
    resolver: DeviceResolver
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


_RUNTIME_LOCK = threading.Lock()


def runtime() -> Runtime:
    """Settings, credential, MDE client, queues and ledger for this process (built once, even
    when the first messages arrive together on several worker threads)."""
    with _RUNTIME_LOCK:
        return _build_runtime()


@functools.cache
def _build_runtime() -> Runtime:
    settings = get_settings()
    credential = managed_identity_credential(settings.azure_client_id)
    tokens = CredentialTokenProvider(credential, settings.mde_token_scope)
    mde = MdeClient(
        settings.mde_api_base_url,
        tokens,
        timeout=(settings.http_connect_timeout, settings.http_read_timeout),
        retries=settings.http_retries,
    )
    storage_credential = None
    if not settings.storage.connection_string:
        storage_id = settings.storage.client_id
        same = storage_id == settings.azure_client_id
        storage_credential = credential if same else managed_identity_credential(storage_id)
    sender = StorageQueueSender(settings.storage, storage_credential)
    ledger = TableLedger.from_settings(
        settings.storage, settings.ledger_table, storage_credential, breaker=settings.isolation_policy.breaker
    )
    resolver = DeviceResolver(mde, settings.device_cache_seconds)
    publisher = QueueResultPublisher(sender, settings.results_queue)
    return Runtime(settings, mde, sender, publisher, ledger, resolver)


def handle_isolation(msg: func.QueueMessage) -> None:
    """Entry point of ``isolate_fn``."""
    rt = runtime()
    Handler(rt, "Isolate", rt.settings.isolation_queue, events.parse_alert_event).handle(msg)


def handle_release(msg: func.QueueMessage) -> None:
    """Entry point of ``release_fn``."""
    rt = runtime()
    mappings = rt.settings.ticket_mappings

    def parse(document: dict[str, Any], fallback_id: str) -> list[ContainmentRequest]:
        return [events.parse_release_event(document, fallback_id, mappings)]

    Handler(rt, "Unisolate", rt.settings.release_queue, parse).handle(msg)


@dataclass
class Handler:
    """Handles one queue message of one trigger queue."""

    rt: Runtime
    action: Action
    queue: str
    parse: EventParser

    def handle(self, msg: func.QueueMessage) -> None:
        delivery = Delivery(self.queue, msg.id or "", msg.dequeue_count or 1)
        fallback_id = f"msg-{delivery.message_id}"
        document: Any = None
        subject: Subject | None = None
        try:
            document = canonical.decode_body(msg.get_body())
            if "tracking" in document:
                tracking = Tracking.from_message(document)
                subject = Subject.from_tracking(tracking)
                self.follow_up(tracking, subject, delivery)
                return
            requests = self.parse(document, fallback_id)
            if len(requests) > 1:
                self.fan_out(requests)
                return
            subject = Subject.from_request(requests[0])
            self.contain(requests[0], subject, delivery)
        except PermanentError as e:
            subject = subject or Subject.unknown(self.action, document, fallback_id)
            outcome = "Rejected" if isinstance(e, InvalidRequest) else "Failed"
            logger.warning(
                "request refused outcome=%s code=%s request_id=%s", outcome, e.code, subject.request_id
            )
            self.report(subject, delivery, outcome, error=e)
        except Exception as e:
            # Transient (or a bug): the host redelivers. On the last delivery, report first.
            if delivery.dequeue_count >= self.rt.settings.max_dequeue_count:
                subject = subject or Subject.unknown(self.action, document, fallback_id)
                error = e if isinstance(e, ContainmentError) else TransientError("InternalError", repr(e))
                final = TransientError(
                    error.code, f"gave up after {delivery.dequeue_count} deliveries: {error.message}"[:1000]
                )
                self.report(subject, delivery, "Failed", error=final)
            raise

    def fan_out(self, requests: list[ContainmentRequest]) -> None:
        """One event naming several devices: one queue message per device, each with its own
        retries and result; all carry the event's source id."""
        for request in requests:
            self.rt.sender.send(self.queue, canonical.to_canonical(request))
        logger.info("event fanned out devices=%d source_id=%s", len(requests), requests[0].source.id)

    def contain(self, request: ContainmentRequest, subject: Subject, delivery: Delivery) -> None:
        """Resolve, settle opposite actions, submit; report and schedule the follow-up."""
        logger.info(
            "request action=%s request_id=%s source=%s attempt=%d dequeue_count=%d",
            request.action,
            request.request_id,
            request.source.system,
            request.attempt,
            delivery.dequeue_count,
        )
        try:
            machine, note = self.rt.resolver.resolve(request.device)
            if note:
                subject.details["resolution"] = note
            subject.machine = {"id": machine["id"], "computerDnsName": machine.get("computerDnsName")}
            if request.action == "Isolate":
                gated = self.gate_isolation(request, machine, subject, delivery)
                if gated is None:
                    return  # answered: Skipped, HeldForApproval or a storm duplicate
                request, machine = gated
            else:
                self.authorise_release(request, machine)
            if self.rt.settings.dry_run:
                self.report_dry_run(request, machine, subject, delivery)
                return
            if request.action == "Unisolate" and not self.rt.mde.budget.admit_release("machineactions"):
                self.yield_to_containment(request, subject)
                return
            try:
                outcome, action = self.post(request, machine, subject, delivery)
            except Exception:
                if request.action == "Isolate":  # do not block the device for the storm window
                    self.rt.ledger.abandon_claim(machine["id"], request.request_id)
                raise
        except MdeApiError as e:
            if e.status != 429:
                raise
            self.retry_later(request, subject, delivery, e)
            return
        now = self.rt.clock()
        if request.action == "Isolate":
            owned = outcome == "Submitted" or CANONICAL_MARKER in str(action.raw.get("requestorComment"))
            self.rt.ledger.record_isolation(machine["id"], request.request_id, action.id, now, owned=owned)
        else:
            self.rt.ledger.record_release(machine["id"], request.request_id, action.id, now)
        state = self.device_state(machine)
        if subject.machine is not None and not subject.machine.get("computerDnsName"):
            subject.machine["computerDnsName"] = action.raw.get("computerDnsName") or state.pop("name")
        state.pop("name", None)
        subject.details.update(state)
        self.report(subject, delivery, outcome, machine_action=action)
        if is_final(action.status):  # e.g. our own action found again after a crash
            subject.sequence = 2
            self.report_final(subject, delivery, action, str(final_outcome(action.status)))
        else:
            self.schedule_follow_up(subject, action)

    def post(
        self, request: ContainmentRequest, machine: dict[str, Any], subject: Subject, delivery: Delivery
    ) -> tuple[str, MachineAction]:
        """The one write to MDE, made idempotent: a redelivery first looks for its own action."""
        mde = self.rt.mde
        if delivery.dequeue_count > 1 or request.attempt > 1:
            # The first delivery may have posted before it died. MDE's "already in progress" only
            # covers a still-pending action, so look for our own by the marker in its comment.
            own = find_own_action(mde, machine["id"], request)
            if own is not None:
                return ("Submitted" if is_final(own.status) else "AlreadyPending"), own
        subject.details["cancelledActions"] = self.cancel_opposite(machine["id"], request)
        return submit(mde, request, machine["id"], canonical.mde_comment(request))

    def gate_isolation(
        self, request: ContainmentRequest, machine: dict[str, Any], subject: Subject, delivery: Delivery
    ) -> tuple[ContainmentRequest, dict[str, Any]] | None:
        """Storm de-duplication, policy, then the breaker. None when the request was answered
        here (AlreadyPending from the ledger, Skipped, HeldForApproval).

        The device claim comes first so that a storm's duplicates cost no MDE call at all (not even
        the machine look-up the policy may need); a device only holds a claim while it is being or
        has been isolated, so a duplicate is answered with a real isolation. Among the requests
        that decide, protected beats severity beats the breaker."""
        policy, ledger, now = self.rt.settings.isolation_policy, self.rt.ledger, self.rt.clock()
        claimed = not self.rt.settings.dry_run  # claims and slots are for real isolations only
        if claimed:
            claim = ledger.claim_device(machine["id"], request.request_id, now, policy.dedupe_window)
            if not claim.won:
                self.answer_duplicate(request, subject, delivery, claim)
                return None
        try:
            if needs_machine_lookup(policy) and "onboardingStatus" not in machine:
                machine = {**(self.rt.resolver.machine(machine["id"]) or {}), "id": machine["id"]}
                if subject.machine is not None and not subject.machine.get("computerDnsName"):
                    subject.machine["computerDnsName"] = machine.get("computerDnsName")
            decision = decide_isolation(request, machine, policy)
            subject.details.update(decision.to_details())
            if decision.kind != "Isolate" or decision.isolation_type is None:
                logger.info("isolation skipped request_id=%s rule=%s", request.request_id, decision.rule)
                self.report(subject, delivery, "Skipped")
                self.release_claim(machine, request, claimed)
                return None
            request = dataclasses.replace(request, isolation_type=decision.isolation_type)
            if claimed:
                slot = ledger.try_take_slot(request.request_id, machine["id"], now)
                if slot.held:
                    subject.details.update(slot.to_details())
                    logger.warning("breaker open: isolation held request_id=%s", request.request_id)
                    self.report(subject, delivery, "HeldForApproval")
                    self.release_claim(machine, request, claimed)
                    return None
        except Exception:
            self.release_claim(machine, request, claimed)
            raise
        return request, machine

    def release_claim(self, machine: dict[str, Any], request: ContainmentRequest, claimed: bool) -> None:
        """Not isolating after all: the device must not answer later alerts as a duplicate."""
        if claimed:
            self.rt.ledger.abandon_claim(machine["id"], request.request_id)

    def answer_duplicate(
        self,
        request: ContainmentRequest,
        subject: Subject,
        delivery: Delivery,
        claim: Claim,
    ) -> None:
        """A storm duplicate: answered from the ledger without calling MDE. Its final result comes
        from the holder's: recorded here, then checked, while the holder writes its final, then
        lists the duplicates (so one of the two always sees the other)."""
        holder, action_id = claim.request_id, claim.action_id
        if action_id is None:  # the holder is posting right now: ask again in a moment
            if self.rt.clock() - claim.at > CLAIM_PENDING_WAIT:  # the holder is stuck
                raise TransientError("DeviceClaimPending", f"request {holder} is isolating it now")
            delay = random.uniform(2.0, 4.0)  # noqa: S311 - jitter, not crypto
            self.requeue(request, subject, delay, request.attempt)  # waiting is not a throttled attempt
            logger.info(
                "storm duplicate waits for request_id=%s holder_request_id=%s delay_s=%.1f",
                request.request_id,
                holder,
                delay,
            )
            return
        ledger = self.rt.ledger
        subject.details["duplicateOf"] = holder
        pending = MachineAction({"id": action_id, "type": "Isolate", "status": "Unknown"})
        self.report(subject, delivery, "AlreadyPending", machine_action=pending)
        ledger.record_duplicate(action_id, request.request_id, subject.to_record())
        final = ledger.final_of(action_id, holder)
        if final is not None:
            self.report_duplicate_final(subject.to_record(), delivery, action_id, *final)

    def authorise_release(self, request: ContainmentRequest, machine: dict[str, Any]) -> None:
        """Approved ticket, allowed requester, and (if the policy says so) our own isolation."""
        policy = self.rt.settings.isolation_policy
        own = None
        if policy.release.only_release_own_isolations:
            own = self.rt.ledger.isolated_by_us(machine["id"])
        decision = decide_release(request, policy, isolated_by_us=own)
        if decision.kind != "Release":
            raise InvalidRequest(decision.reason or "ReleaseRefused", decision.rule)

    def report_dry_run(
        self, request: ContainmentRequest, machine: dict[str, Any], subject: Subject, delivery: Delivery
    ) -> None:
        """DRY_RUN: everything but the POST; the result shows the call that would have been made."""
        verb = "isolate" if request.action == "Isolate" else "unisolate"
        body: dict[str, Any] = {"Comment": canonical.mde_comment(request)}
        if request.action == "Isolate":
            body["IsolationType"] = request.isolation_type
        subject.details["dryRun"] = {
            "method": "POST",
            "path": f"/api/machines/{machine['id']}/{verb}",
            "body": body,
        }
        self.report(subject, delivery, "DryRun")

    def cancel_opposite(self, machine_id: str, request: ContainmentRequest) -> list[str]:
        """The newer request wins: cancel a pending opposite action on the same machine, so an
        isolate/unisolate pair cannot complete out of order."""
        cancelled = []
        for pending in mde_pending(self.rt.mde, machine_id, OPPOSITE[request.action]):
            comment = f"Superseded by {request.action} request {request.request_id} [mde-containment]"
            try:
                self.rt.mde.cancel_action(pending.id, comment)
            except PermanentError as e:
                # It went final between the list and the cancel: nothing left to settle.
                logger.info("opposite action not cancelled action_id=%s code=%s", pending.id, e.code)
                continue
            logger.info(
                "opposite action cancelled action_id=%s request_id=%s", pending.id, request.request_id
            )
            cancelled.append(pending.id)
        return cancelled

    def device_state(self, machine: dict[str, Any]) -> dict[str, Any]:
        """``deviceOnline`` and ``lastSeen``: an offline device's action stays Pending until it
        checks in, and the SOC needs to know now. Unknown (None) if the lookup fails, or is not
        made: the read is best effort, so it only spends spare ``machines`` budget and never takes
        a slot an isolation's look-up needs (containment first, during a storm)."""
        if "healthStatus" not in machine:
            spare = self.rt.mde.budget.has_spare("machines")
            try:
                record = self.rt.resolver.machine(machine["id"], fetch=spare)
            except ContainmentError as e:
                logger.info("device state unknown machine_id=%s code=%s", machine["id"], e.code)
                return {"deviceOnline": None, "lastSeen": None, "name": None}
            if record is None:
                logger.info("device state not read (machines budget kept for containment)")
                return {"deviceOnline": None, "lastSeen": None, "name": None}
            machine = record
        online, last_seen = device_online(machine, self.rt.clock(), self.rt.settings.device_offline_after)
        return {"deviceOnline": online, "lastSeen": last_seen, "name": machine.get("computerDnsName")}

    def retry_later(
        self, request: ContainmentRequest, subject: Subject, delivery: Delivery, error: MdeApiError
    ) -> None:
        """429: re-enqueue the same request for ``Retry-After`` instead of burning host
        deliveries; after too many attempts, report ``Failed`` (retryable).

        An attempt is a 429 from MDE. A call refused in this process (an earlier 429's
        ``Retry-After`` still running) reached nobody and costs no attempt: the request sleeps until
        that wait is over (plus up to a quarter, at least 1 s, so they do not all wake in the same
        second). Waking into a new wait only costs another re-enqueue, never an MDE call, and each
        wait was started by a real 429, so this stays bounded. A longer spread would leave the
        slots MDE frees meanwhile unused: with 250 devices in a minute (the limit binding), up to
        twice the wait gave 1.24 x the rate-limit bound, a quarter 1.04 x."""
        local = isinstance(error, MdeThrottledLocally)
        if not local and request.attempt >= self.rt.settings.max_throttled_attempts:
            message = f"still throttled after {request.attempt} attempts: {error.message}"
            self.report(subject, delivery, "Failed", error=TransientError(error.code, message))
            return
        retry_after = getattr(error, "retry_after", None) or 60.0
        # Never earlier than Retry-After; spread later so a throttled burst does not wake all at once
        # for the one slot that frees.
        spread = max(retry_after / 4, 1.0) if local else retry_after / 4
        delay = retry_after + random.uniform(0, spread)  # noqa: S311 - jitter, not crypto
        attempt = request.attempt if local else request.attempt + 1
        self.requeue(request, subject, delay, attempt)
        logger.info(
            "throttled, re-enqueued request_id=%s attempt=%d delay_s=%.1f local=%s",
            request.request_id,
            attempt,
            delay,
            local,
        )

    def yield_to_containment(self, request: ContainmentRequest, subject: Subject) -> None:
        """A release whose action check (``machineactions``, which every isolation needs too) would
        take a slot from containment during a storm: ask again in a few seconds. Not an attempt;
        releases keep a floor (``CallBudget.admit_release``), so they are delayed, never starved."""
        delay = random.uniform(5.0, 10.0)  # noqa: S311 - jitter, not crypto
        self.requeue(request, subject, delay, request.attempt)
        logger.info("release yields to containment request_id=%s delay_s=%.1f", request.request_id, delay)

    def requeue(self, request: ContainmentRequest, subject: Subject, delay_s: float, attempt: int) -> None:
        """The same request again after ``delay_s``, naming the machine it resolved to."""
        resolved = subject.machine.get("id") if subject.machine else None
        changes: dict[str, Any] = {"attempt": attempt}
        if resolved:  # do not spend another lookup on the same device
            changes.update(machineId=resolved)
        self.rt.sender.send(self.queue, canonical.to_canonical(request, **changes), delay_s=delay_s)

    def schedule_follow_up(self, subject: Subject, action: MachineAction) -> None:
        tracking = first_tracking(
            request_id=subject.request_id,
            action=subject.action,
            action_id=action.id,
            status=action.status,
            machine=subject.machine or {},
            source=subject.source_dict(),
            details=subject.details,
            now=self.rt.clock(),
            deadline=self.rt.settings.tracking_deadline,
        )
        self.send_tracking(tracking, delay_before_check(self.rt.settings.tracking_schedule, 1))

    def send_tracking(self, tracking: Tracking, delay_s: float) -> None:
        self.rt.sender.send(self.queue, tracking.to_message(), delay_s=max(1.0, delay_s))

    def follow_up(self, tracking: Tracking, subject: Subject, delivery: Delivery) -> None:
        """One check of a submitted action: final -> final result (once); else reschedule."""
        subject.sequence = 2
        if self.rt.ledger.final_reported(tracking.action_id, tracking.request_id):
            logger.info("final result already written action_id=%s", tracking.action_id)
            return  # without reading the action again: a redelivery costs no API call
        schedule = self.rt.settings.tracking_schedule
        try:
            action = self.rt.mde.get_action(tracking.action_id)
        except MdeApiError as e:
            if e.status != 429:
                raise
            retry_after = getattr(e, "retry_after", None) or 60.0
            # Never more often than the schedule, never earlier than MDE allows.
            self.send_tracking(tracking, max(retry_after, delay_before_check(schedule, tracking.check)))
            return
        now = self.rt.clock()
        outcome = final_outcome(action.status)
        if outcome is None and now >= tracking.deadline:
            outcome = "TrackingExpired"
            subject.details["lastStatus"] = action.status
        if outcome is not None:
            self.report_final(subject, delivery, action, outcome)
            return
        delay = delay_before_check(schedule, tracking.check + 1)
        remaining = (tracking.deadline - now).total_seconds()
        self.send_tracking(tracking.next_check(action.status), min(delay, max(1.0, remaining)))

    def report_final(
        self,
        subject: Subject,
        delivery: Delivery,
        action: MachineAction,
        outcome: str,
        *,
        duplicates: bool = True,
    ) -> None:
        """The one final result of a request's action, recorded so a redelivery does not repeat it."""
        ledger = self.rt.ledger
        if not ledger.claim_final(action.id, subject.request_id, self.rt.clock()):
            logger.info("final result already written or being written action_id=%s", action.id)
            return
        try:
            self.report(subject, delivery, outcome, machine_action=action)
        except Exception:
            ledger.release_final(action.id, subject.request_id)
            raise
        ledger.mark_final_reported(action.id, subject.request_id, outcome, action.raw)
        if duplicates and subject.action == "Isolate":
            for duplicate in ledger.duplicates(action.id):
                self.report_duplicate_final(duplicate, delivery, action.id, outcome, dict(action.raw))

    def report_duplicate_final(
        self, record: dict[str, Any], delivery: Delivery, action_id: str, outcome: str, action: dict[str, Any]
    ) -> None:
        """The final result of a storm duplicate, from the original request's (exactly once)."""
        duplicate = Subject.from_record(record)
        duplicate.sequence = 2
        final_action = MachineAction({**action, "id": action_id})
        self.report_final(duplicate, delivery, final_action, outcome, duplicates=False)

    def report(
        self,
        subject: Subject,
        delivery: Delivery,
        outcome: str,
        *,
        machine_action: MachineAction | None = None,
        error: ContainmentError | None = None,
    ) -> None:
        action_id = machine_action.id if machine_action else None
        machine_id = (subject.machine or {}).get("id")
        # Audit first: if the ledger is down the message is retried before any result goes out.
        self.rt.ledger.record_decision(
            subject.request_id, subject.action, machine_id, None, outcome, action_id,
            {**subject.details, "error": error.code if error else None}, self.rt.clock(),
        )  # fmt: skip
        self.rt.publisher.publish(
            build_result(
                action=subject.action,
                outcome=outcome,
                delivery=delivery,
                request_id=subject.request_id,
                source=subject.source,
                sequence=subject.sequence,
                machine=subject.machine,
                machine_action=machine_action,
                error=error,
                details=subject.details,
                now=self.rt.clock(),
            )
        )


@dataclass
class Subject:
    """What a result message is about: the request's correlation and the machine."""

    action: Action
    request_id: str
    source: Source
    machine: dict[str, Any] | None
    details: dict[str, Any]
    sequence: int = 1

    @classmethod
    def from_request(cls, request: ContainmentRequest) -> Subject:
        device = request.device
        machine = None
        if device.machine_id or device.device_name:
            machine = {"id": device.machine_id, "computerDnsName": device.device_name}
        details: dict[str, Any] = {}
        if request.action == "Isolate":
            details["isolationType"] = request.isolation_type
        else:
            details.update(requestedBy=request.requested_by, ticketId=request.ticket_id)
        return cls(request.action, request.request_id, request.source, machine, details)

    @classmethod
    def from_tracking(cls, tracking: Tracking) -> Subject:
        source = Source(
            system=str(tracking.source.get("system", "unknown")),
            id=tracking.source.get("id"),
            url=tracking.source.get("url"),
        )
        action: Action = "Isolate" if tracking.action == "Isolate" else "Unisolate"
        return cls(action, tracking.request_id, source, tracking.machine, dict(tracking.details), 2)

    @classmethod
    def unknown(cls, action: Action, document: Any, fallback_id: str) -> Subject:
        """For a message that could not be parsed: whatever correlation it offers."""
        request_id = canonical.best_effort_request_id(document) or fallback_id
        return cls(action, request_id, Source(system="unknown"), None, {})

    def to_record(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "requestId": self.request_id,
            "source": self.source_dict(),
            "machine": self.machine,
            "details": self.details,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Subject:
        source = record.get("source") or {}
        action: Action = "Isolate" if record.get("action") == "Isolate" else "Unisolate"
        return cls(
            action,
            str(record["requestId"]),
            Source(system=str(source.get("system", "unknown")), id=source.get("id"), url=source.get("url")),
            record.get("machine"),
            dict(record.get("details") or {}),
        )

    def source_dict(self) -> dict[str, Any]:
        return {"system": self.source.system, "id": self.source.id, "url": self.source.url}


def submit(
    mde: MdeClient, request: ContainmentRequest, machine_id: str, comment: str
) -> tuple[str, MachineAction]:
    """POST the action: ("Submitted", new action) or ("AlreadyPending", the existing one)."""
    try:
        if request.action == "Isolate":
            action = mde.isolate(machine_id, comment, request.isolation_type)
        else:
            action = mde.unisolate(machine_id, comment)
    except ActionAlreadyPending as e:
        existing = next(iter(mde_pending(mde, machine_id, request.action)), None)
        if existing is None:
            # MDE said pending but lists none: it went final meanwhile. A redelivery submits anew.
            raise TransientError("PendingActionNotFound", f"{e.message}; no pending action listed") from e
        return "AlreadyPending", existing
    # MDE sometimes answers 201 with the existing pending action instead of a 400.
    if action.raw.get("requestorComment") not in (None, comment) and not is_final(action.status):
        return "AlreadyPending", action
    return "Submitted", action


def find_own_action(mde: MdeClient, machine_id: str, request: ContainmentRequest) -> MachineAction | None:
    """The action an earlier delivery of this request created: its comment carries the request id."""
    marker = canonical.request_marker(request)
    for action in mde.list_actions(machine_id, request.action):
        if marker in str(action.raw.get("requestorComment") or ""):
            return action
    return None


def mde_pending(mde: MdeClient, machine_id: str, action_type: str) -> list[MachineAction]:
    """Not-final actions of one type on a machine, newest first."""
    return [a for a in mde.list_actions(machine_id, action_type) if not is_final(a.status)]
