"""The blast-radius breaker's state: the ``Breaker`` port on the ledger table.

One entity, ``breaker``/``isolations``: the recent isolations (JSON ``[[epoch s, request hash,
machine id], ...]`` pruned to the window), ``open``, ``openedAt``, and what an operator's reset from
the az CLI leaves (``resetBy``, ``resetAt``). Each isolation reads it, applies the pure transition
(shared/domain/breaker.py) and writes only if nobody changed it meanwhile; a loser decides again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ...domain.breaker import BreakerResult, BreakerSlot, BreakerState, take_breaker_slot
from ...domain.policy_config import BreakerPolicy
from ...errors import TransientError
from .store import MAX_CONFLICT_RETRIES, TableStore, digest, utc, when

logger = logging.getLogger(__name__)

BREAKER_KEYS = ("breaker", "isolations")


class TableBreaker:
    """The breaker shared by every instance, on the ledger table."""

    def __init__(self, store: TableStore, policy: BreakerPolicy) -> None:
        self._store = store
        self._policy = policy

    def take_slot(self, request_id: str, machine_id: str, now: datetime) -> BreakerResult:
        """One breaker slot for this isolation, or held (the breaker is or just became open)."""
        now = utc(now)
        key = digest(request_id, 16)
        for attempt in range(MAX_CONFLICT_RETRIES):
            entity = self._store.get(*BREAKER_KEYS)
            state = _state_from_entity(entity) if entity is not None else BreakerState()
            new_state, result = take_breaker_slot(state, key, machine_id, now, self._policy)
            if entity is not None and new_state == state:
                return result  # nothing to write (held while open, a redelivery)
            if self._store.write(entity, _entity(new_state)):
                if result.held and result.opened_at == now:
                    _alarm(result, request_id, machine_id)
                return result
            self._store.backoff(attempt)
        raise TransientError("LedgerContention", "breaker: too many concurrent updates; retry later")


def _alarm(result: BreakerResult, request_id: str, machine_id: str) -> None:
    # An operator alarm, not a failure: the SOC should alert on this line.
    logger.warning(
        "breaker opened count=%d limit=%d window_minutes=%g request_id=%s machine_id=%s",
        result.count,
        result.limit,
        result.window.total_seconds() / 60,
        request_id,
        machine_id,
    )


def _state_from_entity(entity: Mapping[str, Any]) -> BreakerState:
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
        opened_at=when(entity.get("openedAt")),
        reset_by=entity.get("resetBy") or None,
        reset_at=when(entity.get("resetAt")),
    )


def _entity(state: BreakerState) -> dict[str, Any]:
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


def _bool(value: object) -> bool:
    # An operator editing the entity with the az CLI may store "false" as a string.
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")
