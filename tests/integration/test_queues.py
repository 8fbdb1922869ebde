"""The queue adapter against Azurite: what it puts on a queue, and for how long."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from devstack.stack import LocalStack
from shared.adapters.queues import StorageQueueSender
from shared.domain.backoff import MAX_DELAY_S
from shared.settings import StorageSettings

pytestmark = pytest.mark.integration


def sender(stack: LocalStack) -> StorageQueueSender:
    return StorageQueueSender(StorageSettings(connection_string=stack.azurite.connection_string), None)


def test_a_message_never_expires_so_the_longest_delay_outlives_it(clean: LocalStack) -> None:
    sender(clean).send("release-requests", {"lease": {"n": 1}}, delay_s=MAX_DELAY_S + 3600)
    sender(clean).send("release-requests", {"now": True})
    (visible,) = clean.queue("release-requests").peek_messages(max_messages=32)
    assert visible.content == '{"now":true}'
    assert visible.expires_on is not None and visible.expires_on > datetime.now(UTC) + timedelta(days=3650)
    assert clean.peek_count("release-requests") == 2  # the delayed one is there, hidden
