"""From the host's HTTP trace (``devstack.httptrace``) to each request's trail: the poll that picked its
message up, the invocation, every storage transaction and API call made for it, and those of the
messages it sent on (its tracking check), each named by what it is (``Get Messages``, ``read
machine/isolation``, ``Isolate machine``). Pure functions of the trace records."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

Record = dict[str, Any]  # one trace line, as ``devstack.httptrace.parse`` returns it
STORAGE_PREFIXES = ("queue: ", "table: ")
POLL = "queue: Get Messages"
_KEYS = re.compile(r"\(PartitionKey='([^']*)',\s*RowKey='([^']*)'\)$")
_FILTER_PK = re.compile(r"PartitionKey eq '([^']*)'")
_FILTER_ROWS = re.compile(r"RowKey (?:eq|ge) '([a-z]+):")
_MDE_OPS = (  # (method, path pattern, the operation's name in the MDE API reference)
    ("GET", re.compile(r"/api/machines/[^/]+$"), "Get machine"),
    ("GET", re.compile(r"/api/machines$"), "List machines (by name)"),
    ("GET", re.compile(r"/api/machines/findbyip"), "Find devices by IP"),
    ("GET", re.compile(r"/api/machineactions$"), "List machine actions"),
    ("GET", re.compile(r"/api/machineactions/[^/]+$"), "Get machine action"),
    ("POST", re.compile(r"/isolate$"), "Isolate machine"),
    ("POST", re.compile(r"/unisolate$"), "Release machine from isolation"),
    ("POST", re.compile(r"/cancel$"), "Cancel machine action"),
)


@dataclass(frozen=True)
class Endpoints:
    """Which service each ``host:port`` is, and the phase's results queue."""

    services: Mapping[str, str]  # netloc -> "queue" | "table" | "mde" | "identity"
    results_queue: str

    @classmethod
    def of(cls, urls: Mapping[str, str], results_queue: str) -> Endpoints:
        """From service -> base URL."""
        return cls({urlsplit(url).netloc: service for service, url in urls.items()}, results_queue)


def service(record: Record, endpoints: Endpoints) -> str:
    return endpoints.services.get(record.get("host", ""), "other")


def op_name(record: Record, endpoints: Endpoints) -> str:
    """What a traced request was, in the service's own words."""
    kind = service(record, endpoints)
    if kind == "queue":
        return "queue: " + _queue_op(record, endpoints.results_queue)
    if kind == "table":
        return "table: " + _table_op(record)
    if kind == "mde":
        path = record["path"]
        return "MDE: " + next((name for m, p, name in _MDE_OPS if m == record["m"] and p.search(path)), path)
    if kind == "identity":
        return "token: identity endpoint"
    return f"other: {record['m']} {record.get('host')}"


def _queue_op(record: Record, results_queue: str) -> str:
    parts = record["path"].strip("/").split("/")  # account, queue, "messages", [message id]
    method = record["m"]
    if method == "GET":
        return "Get Messages"
    if method == "DELETE":
        return "Delete Message"
    if method == "PUT":
        return "Update Message"
    if len(parts) > 1 and parts[1] == results_queue:
        return "Put Message (result)"
    delay = record.get("q", {}).get("visibilitytimeout")
    return f"Put Message (own queue, hidden {delay} s)" if delay else "Put Message (own queue)"


def _table_op(record: Record) -> str:
    path, method = unquote(record["path"]), record["m"]
    if path.endswith("$batch"):
        return "batch (entity group)"
    if _KEYS.search(path) is None and method == "GET":
        where = record.get("q", {}).get("$filter", "")
        match = _FILTER_PK.search(where)
        rows = "+".join(sorted(set(_FILTER_ROWS.findall(where))))
        return f"query {entity_kind(match.group(1), '') if match else 'table'}" + (f"/{rows}" if rows else "")
    pk, rk = entity_keys(record)
    verb = {"GET": "read", "POST": "insert", "PUT": "write", "DELETE": "delete"}.get(method, method.lower())
    return f"{verb} {entity_kind(pk, rk)}"


def entity_keys(record: Record) -> tuple[str, str]:
    """The (PartitionKey, RowKey) a table request names: in its path (a read, an update, an
    upsert, a delete) or, for an insert, in its body; empty for a query or a batch."""
    keys = _KEYS.search(unquote(record["path"]))
    if keys is not None:
        return keys.group(1), keys.group(2)
    pk, rk = record.get("keys") or ("", "")
    return str(pk), str(rk)


def entity_kind(partition_key: str, row_key: str) -> str:
    """``machine:<id>`` + ``isolation`` -> ``machine/isolation``: the ledger row's kind, ids left out."""
    pk = partition_key.split(":", 1)[0]
    rk = row_key.split(":", 1)[0] if ":" in row_key or row_key.isalpha() else ("" if not row_key else "*")
    return f"{pk}/{rk}" if rk else pk


@dataclass
class Trail:
    """Everything one request's queue messages cost, in time order."""

    message_id: str
    poll: Record | None = None  # the Get Messages that picked the first message up
    invoke: Record | None = None  # the first message's invocation
    records: list[Record] = field(default_factory=list)  # every request made for the first message
    follow_ups: list[Trail] = field(default_factory=list)  # the messages it sent on, received since


class TrailIndex:
    """The trace records of a phase, indexed by the queue message they were made for."""

    def __init__(self, records: Iterable[Record]) -> None:
        self.by_message: dict[str, list[Record]] = defaultdict(list)
        self.invocations: dict[str, Record] = {}
        self.polls: dict[str, Record] = {}  # message id -> the Get Messages that returned it
        self.sent_by: dict[str, list[str]] = defaultdict(list)  # message id -> ids it put on queues
        self.idle_polls: list[Record] = []
        for record in records:
            self._add(record)

    def _add(self, record: Record) -> None:
        message = record.get("msg")
        if record["kind"] == "invoke":
            if message is not None:
                self.invocations.setdefault(message, record)
            return
        is_messages = record.get("path", "").endswith("/messages")
        if record["m"] == "GET" and is_messages and message is None:
            for got in record.get("ids", []):
                self.polls.setdefault(got, record)
            if not record.get("ids"):
                self.idle_polls.append(record)
        if message is not None:
            self.by_message[message].append(record)
            if record["m"] == "POST" and is_messages:
                self.sent_by[message].extend(record.get("ids", []))

    def trail(self, message_id: str, depth: int = 0) -> Trail:
        """The trail of ``message_id`` and of the messages it sent that were picked up since."""
        follow = [
            self.trail(child, depth + 1)
            for child in self.sent_by.get(message_id, [])
            if depth < 4 and (child in self.polls or child in self.invocations)
        ]
        return Trail(
            message_id,
            self.polls.get(message_id),
            self.invocations.get(message_id),
            sorted(self.by_message.get(message_id, []), key=lambda r: r["t0"]),
            follow,
        )


def costs(trail: Trail, endpoints: Endpoints) -> dict[str, int]:
    """Operation name -> how many: the poll that returned the message, and every request made for
    it (a Get Messages that returned n messages counts 1/n of a transaction to each; here n = 1)."""
    counted: dict[str, int] = defaultdict(int)
    if trail.poll is not None and len(trail.poll.get("ids", [])) == 1:
        counted[POLL] += 1
    for record in trail.records:
        counted[op_name(record, endpoints)] += 1
    return dict(counted)


def storage_total(counted: Mapping[str, float]) -> float:
    """Storage transactions among ``costs``: every queue and table operation."""
    return sum(n for name, n in counted.items() if name.startswith(STORAGE_PREFIXES))


def mde_total(counted: Mapping[str, float]) -> float:
    return sum(n for name, n in counted.items() if name.startswith("MDE: "))


def steps(trail: Trail, endpoints: Endpoints) -> list[tuple[str, float, float]]:
    """(name, start, end) of the first message's path: the poll, the hand-over to the worker, the
    time in process before the first call, each call in the invocation and the time in process
    between them (our code, and the SDKs building requests and reading answers), then what the host
    does after the invocation (delete)."""
    out: list[tuple[str, float, float]] = []
    if trail.poll is not None:
        out.append((POLL + " (the poll that got it)", trail.poll["t0"], trail.poll["t1"]))
    if trail.invoke is None:
        return out
    start, end = trail.invoke["t0"], trail.invoke["t1"]
    if trail.poll is not None:
        out.append(("host: hand-over to the worker", trail.poll["t1"], start))
    cursor = start
    for record in trail.records:
        if record["t0"] >= start and record["t1"] <= end:
            gap = "in process: decode, parse, route" if cursor == start else "in process: between calls"
            out.append((gap, cursor, record["t0"]))
            out.append((op_name(record, endpoints), record["t0"], record["t1"]))
            cursor = record["t1"]
    out.append(("in process: after the last call", cursor, end))
    out += [("host: " + op_name(r, endpoints), r["t0"], r["t1"]) for r in trail.records if r["t0"] >= end]
    return out


def first(records: Sequence[Record], endpoints: Endpoints, name: str) -> Record | None:
    """The first record of operation ``name``."""
    return next((r for r in records if op_name(r, endpoints) == name), None)
