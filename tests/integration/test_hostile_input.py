"""Property-based (hypothesis): random and mutated payloads thrown at both functions, in process,
with the real adapters (Azurite, the identity endpoint, the simulator). No unhandled exception for
permanent errors, every message answered, and nothing reaches MDE with an invalid identifier.

Reproducible: the examples are derived from the test itself (``derandomize``), no example database
is replayed, and explicit examples that must reach MDE run first, so the check that the test is not
vacuous cannot depend on what was drawn."""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from azure.functions.queue import QueueMessage as TriggerMessage
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from devstack.stack import LocalStack
from shared import app
from shared.domain.model import Action
from shared.usecases.context import Context
from tests.integration.conftest import Sim
from tests.integration.test_sources import corpus, fleet

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
VALID_PATH = re.compile(
    r"/api/(machines/[0-9a-f]{40}(/isolate|/unisolate)?|machines|machineactions(/[0-9a-f-]{36}(/cancel)?)?"
    r"|machines/findbyip\(ip='[0-9a-fA-F.:]+',timestamp=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\))"
)
HOSTILE = [
    "../", "/", "?", "%2F", "' or 1 eq 1", "\u0000", "\n", "\u202e", "é", "x" * 10_000, "",
    "1e5bc9d7e413ddd7902c2932e418702b84d0cc07/../x", "C28460D93E441D30869EBB33920C06ACBB6FD75E",
]  # fmt: skip
SEEDS = [
    json.loads(p.read_text())
    for folder in ("events", "tickets", "producers")
    for p in sorted((FIXTURES / folder).glob("*.json"))
    if not p.name.endswith(".expected.json")
]
# Valid single-device alerts for three different devices of the fleet: each must be posted.
MUST_POST = ("mde-alert-full", "sentinel-alert-entities-list", "graph-alert-file-evidence-only")
Draw = Callable[[st.SearchStrategy[Any]], Any]
Case = tuple[str, bytes]  # (function: "isolate" | "release", queue message body)


def mutate(value: Any, draw: Draw, depth: int = 0) -> Any:
    """Replace, drop or retype parts of a realistic payload."""
    if isinstance(value, dict) and depth < 6:
        out = {}
        for key, item in value.items():
            choice = draw(st.integers(0, 9))
            if choice == 0:
                continue  # dropped
            if choice == 1:
                out[key] = draw(st.sampled_from([None, 0, True, [], {}, *HOSTILE]))
            else:
                out[key] = mutate(item, draw, depth + 1)
        return out
    if isinstance(value, list) and depth < 6:
        return [mutate(item, draw, depth + 1) for item in value]
    if isinstance(value, str) and draw(st.integers(0, 4)) == 0:
        return draw(st.sampled_from(HOSTILE))
    return value


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=50) | st.sampled_from(HOSTILE),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5)
    ),
    max_leaves=30,
)


@st.composite
def cases(draw: Draw) -> Case:
    kind = draw(st.sampled_from(["mutated", "random-json", "bytes", "base64"]))
    if kind == "mutated":
        body = json.dumps(mutate(draw(st.sampled_from(SEEDS)), draw)).encode()
    elif kind == "random-json":
        body = json.dumps(draw(json_values)).encode()
    elif kind == "bytes":
        body = draw(st.binary(max_size=300))
    else:
        body = base64.b64encode(json.dumps(draw(json_values)).encode())
    return draw(st.sampled_from(["isolate", "release"])), body


def must_post(stem: str) -> Case:
    return "isolate", (FIXTURES / "events" / f"{stem}.json").read_bytes()


@pytest.fixture
def fixture_fleet(sim: Sim, clean: LocalStack) -> Sim:
    """The devices the fixture payloads name exist in MDE, so mutated payloads can get through; the
    ledger starts empty (an earlier test's claim would make them storm duplicates, never posted)."""
    machines = fleet([r for _, _, expected in corpus("events") for r in expected.get("requests", [])])
    sim.machines(list(machines.values()))
    return sim


def deliver(ctx: Context, action: Action, body: bytes) -> None:
    message = TriggerMessage(  # what the Functions worker hands to main()
        id=str(uuid.uuid4()), body=body, dequeue_count=1, insertion_time=datetime.now(UTC), pop_receipt="r"
    )
    app.handle(message, action, ctx)  # a permanent error must come back as a result, not an exception


def check_requests(requests: list[dict[str, Any]]) -> None:
    """Every request MDE received has a valid path; every POST a valid body."""
    for request in requests:
        assert VALID_PATH.fullmatch(request["path"]), request["path"]
        if request["method"] == "POST":
            assert set(request["json"]) <= {"Comment", "IsolationType"}
            assert "\x00" not in request["json"]["Comment"] and len(request["json"]["Comment"]) <= 1000


def test_random_and_mutated_payloads_never_crash_and_never_reach_mde_unvalidated(
    runtime: Context, fixture_fleet: Sim
) -> None:
    sim = fixture_fleet
    actions: dict[str, Action] = {"isolate": "Isolate", "release": "Unisolate"}
    posted: list[Case] = []

    @settings(
        max_examples=120,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases())
    @example(case=must_post(MUST_POST[0]))
    @example(case=must_post(MUST_POST[1]))
    @example(case=must_post(MUST_POST[2]))
    def check(case: Case) -> None:
        seen = len(sim.requests())
        function, body = case
        deliver(runtime, actions[function], body)
        new = sim.requests()[seen:]
        check_requests(new)
        if any(r["method"] == "POST" and r["status"] == 201 for r in new):
            posted.append(case)

    check()
    assert {must_post(stem) for stem in MUST_POST} <= set(posted), "a valid alert was not posted"
