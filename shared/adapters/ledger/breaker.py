"""The blast-radius breaker's state: the ``Breaker`` port on the ledger table.

One entity, ``breaker``/``isolations``: the recent isolations pruned to the window, ``open``,
``openedAt``, and what an operator's reset from the az CLI leaves (``resetBy``, ``resetAt``). Each
isolation reads it, applies the pure transition (shared/domain/breaker.py) and writes only if nobody
changed it meanwhile (ETag); a loser decides again.

``isolations`` is compact text, one ``<epoch ms>:<request hash>`` per isolation, separated by
spaces, so the most isolations the policy allows fit one Table string property with room to spare.
A JSON list (``[]`` from an operator's reset, or ``[[epoch s, hash, machine id], ...]`` as earlier
versions wrote it) is read too, and replaced by the compact text on the next write.

A breaker whose state cannot be read or written counts as open: the isolation is held, with the
reason, rather than sent uncounted or failed.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.data.tables import TableEntity

from ...domain.breaker import BreakerResult, BreakerSlot, BreakerState, check_breaker, take_breaker_slot
from ...domain.policy_config import BreakerPolicy
from ...errors import TransientError
from .store import MAX_CONFLICT_RETRIES, TableStore, digest, storage_error_code, utc, when

logger = logging.getLogger(__name__)

BREAKER_KEYS = ("breaker", "isolations")
SEEN_MAX = 256  # checks kept for their take_slot; the oldest beyond this are simply read again
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_SLOT = re.compile(r"(\d{1,15}):([0-9a-f]{16})")  # epoch ms : the request's hash


class TableBreaker:
    """The breaker shared by every instance, on the ledger table.

    What a request's ``check`` read is kept for its ``take_slot``, which writes from it without
    reading again: the write is conditional on that read's ETag, so a change made since (another
    instance's slot, an operator's reset) fails it, and the slot is decided again from a fresh read
    as after any lost race. An answer that writes nothing is never given from it.
    """

    def __init__(self, store: TableStore, policy: BreakerPolicy) -> None:
        self._store = store
        self._policy = policy
        self._seen: OrderedDict[str, TableEntity | None] = OrderedDict()
        self._seen_lock = threading.Lock()

    def check(self, request_id: str, now: datetime) -> BreakerResult | None:
        """Held when the breaker is open now: one read, no write."""
        try:
            entity = self._store.get(*BREAKER_KEYS)
            held = None
            if entity is not None:
                state = state_from_entity(entity)
                held = check_breaker(state, digest(request_id, 16), utc(now), self._policy)
            if held is None:
                self._remember(request_id, entity)
            return held
        except TransientError as e:
            logger.info("breaker check skipped request_id=%s code=%s", request_id, _cause(e))
            return None  # take_slot reads it again and holds the isolation if it still cannot

    def take_slot(self, request_id: str, machine_id: str, now: datetime) -> BreakerResult:
        """One breaker slot for this isolation, or held (the breaker is or just became open, or its
        state could not be read or written)."""
        try:
            return self._take_slot(request_id, machine_id, utc(now))
        except TransientError as e:
            cause = _cause(e)
            logger.warning(
                "breaker unavailable, counted as open request_id=%s machine_id=%s code=%s error=%s",
                request_id,
                machine_id,
                cause,
                e.message.splitlines()[0][:300] if e.message else "",
            )
            return BreakerResult.unavailable(
                self._policy, f"breaker state unavailable ({cause}); counted as open"
            )

    def _take_slot(self, request_id: str, machine_id: str, now: datetime) -> BreakerResult:
        key = digest(request_id, 16)
        recalled, entity = self._recall(request_id)
        for attempt in range(MAX_CONFLICT_RETRIES):
            if not recalled:
                entity = self._store.get(*BREAKER_KEYS)
            state = state_from_entity(entity) if entity is not None else BreakerState()
            new_state, result = take_breaker_slot(state, key, now, self._policy)
            if entity is not None and new_state == state:
                if recalled:  # an answer without a write comes from a fresh read only
                    recalled = False
                    continue
                return result  # nothing to write (held while open, a redelivery)
            if self._store.write(entity, breaker_entity(new_state)):
                if result.held and result.opened_at == now:
                    _alarm(result, request_id, machine_id)
                return result
            recalled = False
            self._store.backoff(attempt)
        raise TransientError("LedgerContention", "breaker: too many concurrent updates")

    def _remember(self, request_id: str, entity: TableEntity | None) -> None:
        with self._seen_lock:
            self._seen[request_id] = entity
            self._seen.move_to_end(request_id)
            while len(self._seen) > SEEN_MAX:
                self._seen.popitem(last=False)  # a check never followed by a slot (skipped by policy)

    def _recall(self, request_id: str) -> tuple[bool, TableEntity | None]:
        with self._seen_lock:
            if request_id in self._seen:
                return True, self._seen.pop(request_id)
        return False, None


def _alarm(result: BreakerResult, request_id: str, machine_id: str) -> None:
    # An operator alarm, not a failure: the SOC should alert on this line.
    logger.warning(
        "breaker opened count=%s limit=%d window_minutes=%g request_id=%s machine_id=%s",
        result.count,
        result.limit,
        result.window.total_seconds() / 60,
        request_id,
        machine_id,
    )


def _cause(error: TransientError) -> str:
    """The error code that says why: the storage service's (e.g. ``PropertyValueTooLarge``,
    ``TableNotFound``) when it gave one, else ours."""
    service_code = storage_error_code(error.__cause__)
    return f"{error.code}: {service_code}" if service_code else error.code


def state_from_entity(entity: Mapping[str, Any]) -> BreakerState:
    """The breaker state an entity holds, in the compact or the JSON form."""
    text = entity.get("isolations") or ""
    try:
        if not isinstance(text, str):
            raise TypeError(f"isolations is a {type(text).__name__}")
        slots = _json_slots(text) if text.lstrip().startswith("[") else _compact_slots(text)
    except (ValueError, TypeError) as e:
        # Corrupt state must not silently reopen the floodgates: held until an operator resets it.
        unreadable = f"breaker isolations unreadable ({e}); reset the breaker"
        raise TransientError("LedgerCorrupt", unreadable) from e
    return BreakerState(
        slots=slots,
        open=_bool(entity.get("open")),
        opened_at=when(entity.get("openedAt")),
        reset_by=entity.get("resetBy") or None,
        reset_at=when(entity.get("resetAt")),
    )


def _compact_slots(text: str) -> tuple[BreakerSlot, ...]:
    slots = []
    for token in text.split():
        match = _SLOT.fullmatch(token)
        if match is None:
            raise ValueError(f"unreadable slot {token[:40]!r}")
        slots.append(BreakerSlot(_EPOCH + timedelta(milliseconds=int(match[1])), match[2]))
    return tuple(slots)


def _json_slots(text: str) -> tuple[BreakerSlot, ...]:
    # The form earlier versions wrote (the machine id is no longer kept), or an operator's "[]".
    return tuple(
        BreakerSlot(datetime.fromtimestamp(float(at), UTC), str(key)) for at, key, *_ in json.loads(text)
    )


def breaker_entity(state: BreakerState) -> dict[str, Any]:
    """The entity that stores ``state``."""
    entity: dict[str, Any] = {
        "PartitionKey": BREAKER_KEYS[0],
        "RowKey": BREAKER_KEYS[1],
        "isolations": " ".join(f"{(s.at - _EPOCH) // _MS}:{s.request_key}" for s in state.slots),
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


def _bool(value: object) -> bool:
    # An operator editing the entity with the az CLI may store "false" as a string.
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")
