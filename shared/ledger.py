"""The containment ledger: a table in the same storage account (Azure Table storage).

Shared state across function instances, and the SOC's audit trail. Every write that several
instances may race on is conditional on the entity's ETag (optimistic concurrency): a writer that
loses re-reads and decides again, so no two instances can act on the same stale state.

Entities (table ``LEDGER_TABLE``, default ``containmentledger``):

========================  =================  =============================================================
PartitionKey              RowKey             what
========================  =================  =============================================================
``action:<action id>``    ``final:<hash>``   a final result was written for (action, request): a
                                             redelivered tracking message writes no second one
``breaker``               ``isolations``     the blast-radius breaker: ``isolations`` (JSON
                                             ``[[epoch s, request hash, machine id], ...]`` pruned to
                                             the window), ``open``, ``openedAt``, ``resetBy``, ``resetAt``
``machine:<machine id>``  ``isolation``      the device's current isolation claim (storm de-duplication):
                                             ``requestId``, ``actionId``, ``state`` (``claimed`` |
                                             ``submitted`` | ``released``), ``at``
``machine:<machine id>``  ``ownership``      the last isolation or release this service submitted:
                                             ``isolatedByService`` (bool), ``requestId``, ``actionId``, ``at``
``audit:<YYYYMMDD>``      ``<time>-<hash>``  one entry per request decision / outcome (UTC day)
========================  =================  =============================================================

Breaker: at most N isolations per sliding window. Over the limit it opens; while open every new
isolation is held. It closes when an operator resets it (``reset_breaker``, which also clears the
count: the operator has judged the storm) or when a full window has passed since it opened (every
isolation it counted has then left the window). A request that already holds a slot (a
redelivery) is not counted twice. Reset from the CLI, without code::

    az storage entity merge --account-name <acct> --auth-mode login --table-name containmentledger \\
      --entity PartitionKey=breaker RowKey=isolations open=false open@odata.type=Edm.Boolean \\
      isolations='[]' resetBy=<you>

Storm de-duplication: ``claim_device`` is a compare-and-swap on ``machine:<id>/isolation``. The
first request creates it (``create_entity``: of racing creators exactly one succeeds, the others
get 409 and re-read); a claim that is expired or released is taken over with an ETag-conditional
replace (of racing writers exactly one succeeds, the others get 412 and re-read). Losers learn the
winner's request id and, once it is submitted, its action id; a ``claimed`` state means the winner
has not submitted yet, so the caller asks MDE for the pending action (or retries later). The winner
calls ``record_isolation`` after the POST (state ``submitted``, action id) or ``abandon_claim`` when
it does not submit (held by the breaker, refused by MDE), so the device is not blocked for a window.

Audit: how a SOC reads one day (UTC) of decisions, oldest first::

    az storage entity query --account-name <acct> --auth-mode login --table-name containmentledger \\
      --filter "PartitionKey eq 'audit:20261123'"
    # one request:  --filter "PartitionKey eq 'audit:20261123' and requestId eq 'sentinel-4711-1'"
    # one device, one month:  --filter "PartitionKey ge 'audit:20261101' and PartitionKey le
    #   'audit:20261130' and machineId eq '<40 hex>'"   (bound both ends: other rows carry machineId)

Table storage has no TTL: delete old ``audit:`` partitions by day if retention requires.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol, TypeVar

from azure.core import MatchConditions
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, TableEntity, UpdateMode

from .errors import ConfigError, TransientError
from .policy import BreakerPolicy, BreakerResult, BreakerSlot, BreakerState, Decision, take_breaker_slot
from .settings import StorageSettings

logger = logging.getLogger(__name__)

BREAKER_KEYS = ("breaker", "isolations")
CLAIM_ROW = "isolation"
OWNERSHIP_ROW = "ownership"
MAX_CONFLICT_RETRIES = 100  # each retry is one round trip; only a large storm of racers needs many
_DETAILS_MAX = 30_000  # a Table string property holds 32K UTF-16 characters
_SAFE_KEY = re.compile(r"[A-Za-z0-9._:@=+-]{1,200}")

ClaimState = Literal["claimed", "submitted"]
T = TypeVar("T")


@dataclass(frozen=True)
class Claim:
    """The answer of ``claim_device``.

    ``won``: this request holds the device's isolation claim and may go on (``state`` ``submitted``
    with ``action_id`` when it already submitted: a redelivery). Otherwise a storm duplicate:
    ``request_id``/``action_id``/``state`` are the holder's (``action_id`` ``None`` while
    ``claimed``).
    """

    won: bool
    request_id: str
    action_id: str | None
    state: ClaimState
    at: datetime


class Ledger(Protocol):
    """Shared state across function instances."""

    def final_reported(self, action_id: str, request_id: str) -> bool: ...

    def claim_final(self, action_id: str, request_id: str, now: datetime) -> bool: ...

    def release_final(self, action_id: str, request_id: str) -> None: ...

    def mark_final_reported(
        self, action_id: str, request_id: str, outcome: str, action: Mapping[str, Any] | None = None
    ) -> None: ...

    def final_of(self, action_id: str, request_id: str) -> tuple[str, dict[str, Any]] | None: ...

    def record_duplicate(self, action_id: str, request_id: str, subject: Mapping[str, Any]) -> None: ...

    def duplicates(self, action_id: str) -> list[dict[str, Any]]: ...

    def try_take_slot(self, request_id: str, machine_id: str, now: datetime) -> BreakerResult: ...

    def reset_breaker(self, operator: str, now: datetime) -> None: ...

    def claim_device(self, machine_id: str, request_id: str, now: datetime, window: timedelta) -> Claim: ...

    def abandon_claim(self, machine_id: str, request_id: str) -> None: ...

    def record_isolation(
        self, machine_id: str, request_id: str, action_id: str, now: datetime, *, owned: bool = True
    ) -> None: ...

    def record_release(self, machine_id: str, request_id: str, action_id: str, now: datetime) -> None: ...

    def recent_isolation(
        self, machine_id: str, window: timedelta, now: datetime
    ) -> dict[str, Any] | None: ...

    def isolated_by_us(self, machine_id: str) -> bool: ...

    def record_decision(
        self,
        request_id: str,
        action: str,
        machine_id: str | None,
        decision: Decision | None,
        outcome: str,
        action_id: str | None,
        details: Mapping[str, Any] | None,
        now: datetime,
    ) -> tuple[str, str]: ...


FINAL_CLAIM_TIMEOUT = timedelta(minutes=2)


class TableLedger:
    """The ledger on an azure-data-tables ``TableClient`` (one per process, shared by threads)."""

    def __init__(
        self,
        table: TableClient,
        *,
        breaker: BreakerPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._table = table
        self._breaker = breaker or BreakerPolicy()
        self._sleep = sleep

    @classmethod
    def from_settings(
        cls,
        storage: StorageSettings,
        table_name: str,
        credential: TokenCredential | None,
        *,
        breaker: BreakerPolicy | None = None,
    ) -> TableLedger:
        if storage.connection_string:
            table = TableClient.from_connection_string(storage.connection_string, table_name)
            return cls(table, breaker=breaker)
        if not storage.table_service_uri:
            raise ConfigError("CONTAINMENT_STORAGE__tableServiceUri must be set for the ledger")
        return cls(TableClient(storage.table_service_uri, table_name, credential=credential), breaker=breaker)

    # --- final-result markers ------------------------------------------------------------------

    def final_reported(self, action_id: str, request_id: str) -> bool:
        """Whether the final result of (action, request) was already written."""
        entity = self._get(f"action:{action_id}", _final_key(request_id))
        return entity is not None and entity.get("state", "published") == "published"

    def claim_final(self, action_id: str, request_id: str, now: datetime) -> bool:
        """Take the right to write the final result of (action, request): exactly one of several
        racing trackers gets True. A claim whose writer died unpublished is taken over after
        ``FINAL_CLAIM_TIMEOUT``, so a final result is never lost to a crash."""
        entity = {
            "PartitionKey": f"action:{action_id}",
            "RowKey": _final_key(request_id),
            "requestId": request_id,
            "state": "claimed",
            "claimedAt": now.isoformat(),
        }
        previous = self._get(entity["PartitionKey"], entity["RowKey"])
        if previous is not None:
            if previous.get("state", "published") == "published":
                return False
            claimed_at = datetime.fromisoformat(str(previous.get("claimedAt")))
            if now - claimed_at < FINAL_CLAIM_TIMEOUT:
                return False
        return self._write(previous, entity)

    def release_final(self, action_id: str, request_id: str) -> None:
        """Give a claim back (publishing failed), so the redelivery can write the result."""
        self._guard(
            "delete",
            lambda: self._table.delete_entity(
                partition_key=f"action:{action_id}", row_key=_final_key(request_id)
            ),
        )

    def mark_final_reported(
        self, action_id: str, request_id: str, outcome: str, action: Mapping[str, Any] | None = None
    ) -> None:
        """Remember that the final result of (action, request) was written, with the final action
        (storm duplicates of this request get their own final result from it, without an API call)."""
        entity = {
            "PartitionKey": f"action:{action_id}",
            "RowKey": _final_key(request_id),
            "requestId": request_id,
            "state": "published",
            "outcome": outcome,
            "action": json.dumps(dict(action or {}))[:30000],
            "reportedAt": datetime.now(UTC).isoformat(),
        }
        self._guard("write", lambda: self._table.upsert_entity(entity, mode=UpdateMode.REPLACE))

    def final_of(self, action_id: str, request_id: str) -> tuple[str, dict[str, Any]] | None:
        """(outcome, final action) once the final result of (action, request) was written."""
        entity = self._get(f"action:{action_id}", _final_key(request_id))
        if entity is None or entity.get("state", "published") != "published":
            return None
        return str(entity.get("outcome")), dict(json.loads(entity.get("action") or "{}"))

    def record_duplicate(self, action_id: str, request_id: str, subject: Mapping[str, Any]) -> None:
        """A storm duplicate answered with this action: it gets the action's final result too."""
        entity = {
            "PartitionKey": f"action:{action_id}",
            "RowKey": "dup:" + _hash(request_id, 32),
            "requestId": request_id,
            "subject": json.dumps(dict(subject))[:30000],
        }
        self._guard("write", lambda: self._table.upsert_entity(entity, mode=UpdateMode.REPLACE))

    def duplicates(self, action_id: str) -> list[dict[str, Any]]:
        """The subjects of the storm duplicates recorded for an action."""
        query = f"PartitionKey eq '{_odata(f'action:{action_id}')}' and RowKey ge 'dup:' and RowKey lt 'dup;'"
        entities = self._guard("read", lambda: list(self._table.query_entities(query)))
        return [dict(json.loads(e["subject"])) for e in entities]

    # --- breaker ------------------------------------------------------------------------------

    def try_take_slot(self, request_id: str, machine_id: str, now: datetime) -> BreakerResult:
        """One breaker slot for this isolation, or held (the breaker is or just became open)."""
        now = _utc(now)
        key = _hash(request_id, 16)
        result = self._update_breaker(
            lambda state: take_breaker_slot(state, key, machine_id, now, self._breaker)
        )
        if result.held and result.opened_at == now:
            # An operator alarm, not a failure: the SOC should alert on this line.
            logger.warning(
                "breaker opened count=%d limit=%d window_minutes=%g request_id=%s machine_id=%s",
                result.count,
                result.limit,
                result.window.total_seconds() / 60,
                request_id,
                machine_id,
            )
        return result

    def reset_breaker(self, operator: str, now: datetime) -> None:
        """Close the breaker and clear its count (a fresh budget of N); audited with the operator."""
        now = _utc(now)

        def reset(_: BreakerState) -> tuple[BreakerState, None]:
            return BreakerState(reset_by=operator, reset_at=now), None

        self._update_breaker(reset, tolerate_corrupt=True)
        self.record_decision(
            "breaker-reset", "BreakerReset", None, None, "BreakerReset", None, {"operator": operator}, now
        )
        logger.info("breaker reset operator=%s", operator)

    def breaker_state(self) -> BreakerState:
        """The breaker as stored (not pruned: ``take_breaker_slot`` prunes)."""
        entity = self._get(*BREAKER_KEYS)
        return _breaker_from_entity(entity) if entity is not None else BreakerState()

    def _update_breaker(
        self, transition: Callable[[BreakerState], tuple[BreakerState, T]], *, tolerate_corrupt: bool = False
    ) -> T:
        """Read, decide, write only if unchanged since the read; on a lost race decide again.
        ``tolerate_corrupt``: for a reset, which must work on unreadable state."""
        for attempt in range(MAX_CONFLICT_RETRIES):
            entity = self._get(*BREAKER_KEYS)
            try:
                state = _breaker_from_entity(entity) if entity is not None else BreakerState()
            except TransientError:
                if not tolerate_corrupt:
                    raise
                state = BreakerState(open=True)
            new_state, result = transition(state)
            if entity is not None and new_state == state:
                return result  # nothing to write (held while open, a redelivery)
            if self._write(entity, _breaker_entity(new_state)):
                return result
            self._backoff(attempt)
        raise TransientError("LedgerContention", "breaker: too many concurrent updates; retry later")

    # --- storm de-duplication and device claims -----------------------------------------------

    def claim_device(self, machine_id: str, request_id: str, now: datetime, window: timedelta) -> Claim:
        """Claim ``machine_id`` for isolating it by ``request_id``; of racing requests one wins.

        Won: no live claim existed (none, released, or older than ``window``), or this request
        already holds it (a redelivery). Lost: another request claimed or isolated the device
        within ``window``; the returned claim is that request's.
        """
        now = _utc(now)
        pk = _machine_partition(machine_id)
        for attempt in range(MAX_CONFLICT_RETRIES):
            entity = self._get(pk, CLAIM_ROW)
            if entity is not None:
                holder = _claim_from_entity(entity)
                if holder is not None and holder.request_id == request_id:
                    return Claim(True, holder.request_id, holder.action_id, holder.state, holder.at)
                if holder is not None and now - holder.at < window:
                    logger.info(
                        "storm duplicate machine_id=%s request_id=%s holder_request_id=%s action_id=%s",
                        machine_id,
                        request_id,
                        holder.request_id,
                        holder.action_id,
                    )
                    return Claim(False, holder.request_id, holder.action_id, holder.state, holder.at)
            fresh = {
                "PartitionKey": pk,
                "RowKey": CLAIM_ROW,
                "machineId": machine_id,
                "requestId": request_id,
                "state": "claimed",
                "at": now,
            }
            if self._write(entity, fresh):
                return Claim(True, request_id, None, "claimed", now)
            self._backoff(attempt)
        raise TransientError("LedgerContention", f"device claim {machine_id}: too many concurrent updates")

    def abandon_claim(self, machine_id: str, request_id: str) -> None:
        """Give up this request's claim before submitting (held, refused), so the next request for
        the device is not answered as a duplicate. A claim held by another request is left alone."""
        pk = _machine_partition(machine_id)
        entity = self._get(pk, CLAIM_ROW)
        if entity is None or entity.get("requestId") != request_id or entity.get("state") != "claimed":
            return
        try:
            self._table.delete_entity(
                pk, CLAIM_ROW, etag=entity.metadata["etag"], match_condition=MatchConditions.IfNotModified
            )
        except ResourceModifiedError:
            return  # someone else changed it meanwhile: it is no longer ours to delete
        except AzureError as e:
            raise TransientError("LedgerUnavailable", f"ledger delete failed: {e}") from e

    def record_isolation(
        self, machine_id: str, request_id: str, action_id: str, now: datetime, *, owned: bool = True
    ) -> None:
        """The isolation was submitted to MDE: storm duplicates now get ``action_id``, and the device
        counts as isolated by this service (both rows in one entity-group transaction).

        ``owned=False`` when MDE answered with an isolation this service did not create (already
        pending from an analyst): storms are still de-duplicated, ownership is not claimed.
        """
        now = _utc(now)
        pk = _machine_partition(machine_id)
        common = {"machineId": machine_id, "requestId": request_id, "actionId": action_id, "at": now}
        rows = [{"PartitionKey": pk, "RowKey": CLAIM_ROW, "state": "submitted", **common}]
        if owned:
            rows.append({"PartitionKey": pk, "RowKey": OWNERSHIP_ROW, "isolatedByService": True, **common})
        self._transaction(rows)

    def record_release(self, machine_id: str, request_id: str, action_id: str, now: datetime) -> None:
        """The device was released by this service: no longer ours, and the next alert for it is a
        new isolation rather than a storm duplicate."""
        now = _utc(now)
        pk = _machine_partition(machine_id)
        common = {"machineId": machine_id, "requestId": request_id, "actionId": action_id, "at": now}
        claim = {"PartitionKey": pk, "RowKey": CLAIM_ROW, "state": "released", **common}
        ownership = {"PartitionKey": pk, "RowKey": OWNERSHIP_ROW, "isolatedByService": False, **common}
        self._transaction([claim, ownership])

    def recent_isolation(self, machine_id: str, window: timedelta, now: datetime) -> dict[str, Any] | None:
        """The live isolation claim of a device within ``window``:
        ``{"requestId", "actionId", "state", "at"}``, or ``None``."""
        entity = self._get(_machine_partition(machine_id), CLAIM_ROW)
        holder = _claim_from_entity(entity) if entity is not None else None
        if holder is None or _utc(now) - holder.at >= window:
            return None
        return {
            "requestId": holder.request_id,
            "actionId": holder.action_id,
            "state": holder.state,
            "at": holder.at,
        }

    def isolated_by_us(self, machine_id: str) -> bool:
        """Whether this service's last submitted action on the device was an isolation.

        Knows only what this service recorded (since the ledger existed); an isolation and release
        made by hand in the portal in between are invisible here, so a caller may confirm with the
        machine's action history (the last Isolate's ``requestor`` is this app's client id).
        """
        entity = self._get(_machine_partition(machine_id), OWNERSHIP_ROW)
        return entity is not None and entity.get("isolatedByService") is True

    # --- audit trail --------------------------------------------------------------------------

    def record_decision(
        self,
        request_id: str,
        action: str,
        machine_id: str | None,
        decision: Decision | None,
        outcome: str,
        action_id: str | None,
        details: Mapping[str, Any] | None,
        now: datetime,
    ) -> tuple[str, str]:
        """One audit entry for (request, outcome) at ``now``; returns its (PartitionKey, RowKey).

        Partition ``audit:YYYYMMDD`` (UTC) so a day is one cheap query; the row key starts with the
        time so entries come back in order. The same call repeated (same ``now``) overwrites itself.
        """
        now = _utc(now)
        pk = f"audit:{now:%Y%m%d}"
        rk = f"{now:%Y%m%dT%H%M%S.%fZ}-{_hash(request_id, 16)}-{_hash(outcome, 6)}"
        entity: dict[str, Any] = {
            "PartitionKey": pk,
            "RowKey": rk,
            "requestId": request_id,
            "action": action,
            "outcome": outcome,
            "at": now,
        }
        optional = {"machineId": machine_id, "actionId": action_id}
        if decision is not None:
            optional.update(
                decision=decision.kind,
                rule=decision.rule,
                reason=decision.reason,
                isolationType=decision.isolation_type,
            )
        entity.update({k: v for k, v in optional.items() if v is not None})
        if details:
            text = json.dumps(details, default=str, sort_keys=True)
            entity["details"] = text if len(text) <= _DETAILS_MAX else text[: _DETAILS_MAX - 1] + "…"
        self._guard("write", lambda: self._table.upsert_entity(entity, mode=UpdateMode.REPLACE))
        return pk, rk

    def audit_entries(self, day: datetime) -> list[dict[str, Any]]:
        """The audit entries of ``day`` (UTC), oldest first."""
        pk = f"audit:{_utc(day):%Y%m%d}"
        return self._guard(
            "read",
            lambda: [
                dict(e) for e in self._table.query_entities("PartitionKey eq @pk", parameters={"pk": pk})
            ],
        )

    # --- plumbing -----------------------------------------------------------------------------

    def _get(self, partition_key: str, row_key: str) -> TableEntity | None:
        try:
            return self._table.get_entity(partition_key=partition_key, row_key=row_key)
        except ResourceNotFoundError:
            return None
        except AzureError as e:
            raise TransientError("LedgerUnavailable", f"ledger read failed: {e}") from e

    def _write(self, previous: TableEntity | None, entity: dict[str, Any]) -> bool:
        """Create ``entity`` if ``previous`` is ``None``, else replace it if unchanged since read.
        False when another writer got there first (409 on create, 412 on replace)."""
        try:
            if previous is None:
                self._table.create_entity(entity)
            else:
                self._table.update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=previous.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
        except (ResourceExistsError, ResourceModifiedError):
            return False
        except AzureError as e:
            raise TransientError("LedgerUnavailable", f"ledger write failed: {e}") from e
        return True

    def _transaction(self, entities: list[dict[str, Any]]) -> None:
        operations: list[Any] = [("upsert", e, {"mode": UpdateMode.REPLACE}) for e in entities]
        self._guard("write", lambda: self._table.submit_transaction(operations))

    def _guard(self, verb: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except AzureError as e:
            raise TransientError("LedgerUnavailable", f"ledger {verb} failed: {e}") from e

    def _backoff(self, attempt: int) -> None:
        # Jitter spreads racing writers apart; growing a little keeps a storm from spinning.
        self._sleep(random.uniform(0.002, 0.02) * min(attempt + 1, 5))  # noqa: S311 - jitter, not crypto


# --- entity <-> value ---------------------------------------------------------------------------


def _breaker_from_entity(entity: Mapping[str, Any]) -> BreakerState:
    try:
        raw = json.loads(entity.get("isolations") or "[]")
        slots = tuple(
            BreakerSlot(datetime.fromtimestamp(float(at), UTC), str(key), str(machine))
            for at, key, machine in raw
        )
    except (ValueError, TypeError) as e:
        # Corrupt state must not silently reopen the floodgates: refuse until an operator resets.
        raise TransientError(
            "LedgerCorrupt", f"breaker isolations unreadable ({e}); reset the breaker"
        ) from e
    return BreakerState(
        slots=slots,
        open=_bool(entity.get("open")),
        opened_at=_when(entity.get("openedAt")),
        reset_by=entity.get("resetBy") or None,
        reset_at=_when(entity.get("resetAt")),
    )


def _breaker_entity(state: BreakerState) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": BREAKER_KEYS[0],
        "RowKey": BREAKER_KEYS[1],
        "isolations": json.dumps(
            [[round(s.at.timestamp(), 3), s.request_key, s.machine_id] for s in state.slots],
            separators=(",", ":"),
        ),
        "count": len(state.slots),  # for a human reading the table
        "open": state.open,
    }
    if state.opened_at is not None:
        entity["openedAt"] = state.opened_at
    if state.reset_by is not None:
        entity["resetBy"] = state.reset_by
    if state.reset_at is not None:
        entity["resetAt"] = state.reset_at
    return entity


def _claim_from_entity(entity: Mapping[str, Any]) -> Claim | None:
    """The live claim an entity holds; ``None`` when released (or unreadable: claimable again)."""
    state = entity.get("state")
    at = _when(entity.get("at"))
    request_id = entity.get("requestId")
    if state not in ("claimed", "submitted") or at is None or not isinstance(request_id, str):
        return None
    return Claim(False, request_id, entity.get("actionId") or None, state, at)


def _bool(value: object) -> bool:
    # An operator editing the entity with the az CLI may store "false" as a string.
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _when(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return _utc(value)
    if isinstance(value, str) and value:
        try:
            return _utc(datetime.fromisoformat(value))
        except ValueError:
            return None
    return None


def _utc(value: datetime) -> datetime:
    # Naive datetimes are taken as UTC: every clock in this service is UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _hash(value: str, length: int) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:length]


def _machine_partition(machine_id: str) -> str:
    # Keys may not hold '/', '\\', '#', '?' or control characters: a machine id is 40 hex (kept
    # readable for the SOC); anything else is hashed.
    key = machine_id.lower()
    return f"machine:{key if _SAFE_KEY.fullmatch(key) else 'h-' + _hash(machine_id, 40)}"


def _final_key(request_id: str) -> str:
    # Several requests can share one action (AlreadyPending): each gets its own final result.
    # Row keys may not hold '/', '\\', '#', '?': hash the request id.
    return "final:" + hashlib.sha256(request_id.encode()).hexdigest()[:32]


def _odata(value: str) -> str:
    return value.replace("'", "''")
