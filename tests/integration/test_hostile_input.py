"""Property-based (hypothesis): random and mutated payloads thrown at both functions, in process,
with the real adapters (Azurite, the identity endpoint, the simulator): alert events, tickets,
tracking and lease messages (naming real submissions, forged ones, or hostile values), on any
delivery up to the last, some delivered twice. No unhandled exception for permanent errors, none
at all on the last delivery, and nothing reaches MDE with an invalid identifier in its path or in
an OData ``$filter``.

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
from shared.errors import TransientError
from shared.usecases.context import Context
from tests.integration.conftest import Sim
from tests.integration.test_sources import corpus, fleet

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
VALID_PATH = re.compile(
    r"/api/(machines/[0-9a-f]{40}(/isolate|/unisolate)?|machines|machineactions(/[0-9a-f-]{36}(/cancel)?)?"
    r"|machines/findbyip\(ip='[0-9a-fA-F.:]+',timestamp=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\))"
)
# Every $filter the client may send, with the values the schemas allow (quotes are never needed).
VALID_FILTER = re.compile(
    r"machineId eq '[0-9a-f]{40}'( and type eq '(Isolate|Unisolate)')?"
    r"|computerDnsName eq '[A-Za-z0-9_.-]{1,255}'|startswith\(computerDnsName,'[A-Za-z0-9_.-]{1,255}'\)"
)
HOSTILE = [
    "../", "/", "?", "%2F", "' or 1 eq 1", "\u0000", "\n", "\u202e", "é", "x" * 10_000, "",
    "1e5bc9d7e413ddd7902c2932e418702b84d0cc07/../x", "C28460D93E441D30869EBB33920C06ACBB6FD75E",
    "ws-eng-0007\n", "nl-req\n", "fe80::1%eth0",
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
# (function: "isolate" | "release", queue message body, dequeue count, delivered twice). In a
# tracking or lease body, "@action" and "@request" stand for a real submission's action id and
# request id, filled in at delivery (the submissions exist only once the examples have posted).
Case = tuple[str, bytes, int, bool]
REAL_ACTION, REAL_REQUEST = "@action", "@request"
HOST = json.loads((Path(__file__).resolve().parents[2] / "host.json").read_text())
MAX_DEQUEUE_COUNT = HOST["extensions"]["queues"]["maxDequeueCount"]


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


def follow_up_message(draw: Draw) -> dict[str, Any]:
    """A tracking or lease message: a real submission's key, a forged one, or a mutated one."""
    forged = str(uuid.UUID(int=draw(st.integers(0, 2**128 - 1))))
    real = draw(st.booleans())
    action_id = REAL_ACTION if real else draw(st.sampled_from([forged, *HOSTILE]))
    coherent = real and draw(st.integers(0, 3)) > 0  # mostly a real key, sometimes a real action id
    request_id = REAL_REQUEST if coherent else draw(st.sampled_from(["req-1", *HOSTILE]))
    key: dict[str, Any] = {"actionId": action_id, "requestId": request_id}
    if draw(st.booleans()):
        key["period"] = draw(st.sampled_from([1, 2, 0, -1, 10**9, "1", None, 1.5]))
        document = {"lease": key}
    else:
        document = {"tracking": key}
    if draw(st.integers(0, 2)) == 0:  # the fields a forger would add, or the key's own parts retyped
        document = mutate(
            {**document, "source": {"system": "sentinel", "id": "/subscriptions/x?evil#y"},
             "details": {"requestedBy": "eve"}, "deadline": "2026-11-23T10:00:00"}, draw
        )  # fmt: skip
    return document


@st.composite
def cases(draw: Draw) -> Case:
    kind = draw(st.sampled_from(["mutated", "random-json", "bytes", "base64", "follow-up"]))
    if kind == "mutated":
        body = json.dumps(mutate(draw(st.sampled_from(SEEDS)), draw)).encode()
    elif kind == "random-json":
        body = json.dumps(draw(json_values)).encode()
    elif kind == "bytes":
        body = draw(st.binary(max_size=300))
    elif kind == "base64":
        body = base64.b64encode(json.dumps(draw(json_values)).encode())
    else:
        body = json.dumps(follow_up_message(draw)).encode()
    function = draw(st.sampled_from(["isolate", "release"]))
    return function, body, draw(st.sampled_from([1, 2, MAX_DEQUEUE_COUNT])), draw(st.booleans())


# A trailing newline passes a JSON Schema pattern's "$": every layer must still refuse it.
NEWLINE_NAME: Case = ("isolate", b'{"deviceName": "ws-eng-0007\\n", "requestId": "nl-1"}', 1, True)
NEWLINE_TICKET: Case = (
    "release",
    b'{"ticketSystem": "jira", "ticketId": "SEC-1\\n", "requestId": "nl-2"}',
    5,
    False,
)


def must_post(stem: str) -> Case:
    return "isolate", (FIXTURES / "events" / f"{stem}.json").read_bytes(), 1, False


@pytest.fixture
def fixture_fleet(sim: Sim, clean: LocalStack) -> Sim:
    """The devices the fixture payloads name exist in MDE, so mutated payloads can get through; the
    ledger starts empty (an earlier test's claim would make them storm duplicates, never posted)."""
    machines = fleet([r for _, _, expected in corpus("events") for r in expected.get("requests", [])])
    sim.machines(list(machines.values()))
    return sim


def deliver(ctx: Context, action: Action, body: bytes, dequeue_count: int) -> None:
    message = TriggerMessage(  # what the Functions worker hands to main()
        id=str(uuid.uuid4()), body=body, dequeue_count=dequeue_count, insertion_time=datetime.now(UTC),
        pop_receipt="r",
    )  # fmt: skip
    try:
        app.handle(message, action, ctx)  # a permanent error must come back as a result
    except TransientError:
        if dequeue_count >= MAX_DEQUEUE_COUNT:
            raise  # the last delivery must be answered, not thrown back to the host
        # before the last delivery the host redelivers: that is the retry, not a crash


def with_submission(body: bytes, sim: Sim, pick: int) -> bytes:
    """The body with "@action" / "@request" replaced by one of MDE's actions made by this service
    and the request id in its comment marker (left as they are while there is none)."""
    ours = [
        (a["id"], marker[1])
        for a in sim.actions()
        if (marker := re.search(r"request=([^\]\s]+)\]", a.get("requestorComment") or ""))
    ]
    if not ours:
        return body
    action_id, request_id = ours[pick % len(ours)]
    return body.replace(b'"@action"', json.dumps(action_id).encode()).replace(
        b'"@request"', json.dumps(request_id).encode()
    )


def check_requests(requests: list[dict[str, Any]]) -> None:
    """Every request MDE received has a valid path and $filter; every POST a valid body."""
    for request in requests:
        assert VALID_PATH.fullmatch(request["path"]), request["path"]
        assert set(request["query"]) <= {"$filter"}, request["query"]
        if "$filter" in request["query"]:
            assert VALID_FILTER.fullmatch(request["query"]["$filter"]), request["query"]
        if request["method"] == "POST":
            assert set(request["json"]) <= {"Comment", "IsolationType"}
            assert "\x00" not in request["json"]["Comment"] and len(request["json"]["Comment"]) <= 1000


def test_random_and_mutated_payloads_never_crash_and_never_reach_mde_unvalidated(
    runtime: Context, fixture_fleet: Sim
) -> None:
    sim = fixture_fleet
    actions: dict[str, Action] = {"isolate": "Isolate", "release": "Unisolate"}
    posted: list[Case] = []
    followed = 0  # follow-up messages that named a real submission

    @settings(
        max_examples=200,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases())
    @example(case=must_post(MUST_POST[0]))
    @example(case=must_post(MUST_POST[1]))
    @example(case=must_post(MUST_POST[2]))
    @example(
        case=("isolate", json.dumps({"deviceName": "ws-eng-0007\n", "requestId": "nl-1"}).encode(), 1, True)
    )
    @example(
        case=(
            "release",
            json.dumps({"ticketSystem": "jira", "ticketId": "SEC-1\n", "requestId": "nl-2"}).encode(),
            5,
            False,
        )
    )
    def check(case: Case) -> None:
        nonlocal followed
        seen = len(sim.requests())
        function, body, dequeue_count, twice = case
        real = with_submission(body, sim, len(body))
        followed += real != body
        deliver(runtime, actions[function], real, dequeue_count)
        if twice:  # redelivered, as after a crash between the work and the message's deletion
            deliver(runtime, actions[function], real, min(dequeue_count + 1, MAX_DEQUEUE_COUNT))
        new = sim.requests()[seen:]
        check_requests(new)
        if any(r["method"] == "POST" and r["status"] == 201 for r in new):
            posted.append(case)

    check()
    print(
        "followed",
        followed,
        "tracking reads",
        sum(1 for r in sim.requests() if r["path"].startswith("/api/machineactions/")),
    )
    assert {must_post(stem) for stem in MUST_POST} <= set(posted), "a valid alert was not posted"
    assert followed >= 5, "too few follow-up messages named a real submission"
