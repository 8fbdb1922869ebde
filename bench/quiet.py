"""The quiet-system phase: single alerts, one device each, far enough apart that the host has gone
back to polling at ``maxPollingInterval`` before each one, through the real local stack with the
host's HTTP trace on. Its figures: alert -> MDE POST and alert -> ``Submitted`` result in real
seconds, the time of every step between, what each request cost in storage transactions and MDE
calls (first result and tracking check), and the ``maxPollingInterval`` trade-off."""

from __future__ import annotations

import itertools
import json
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from azure.storage.queue import QueueClient

from devstack import httptrace

from .analysis import Sent, iso_to_epoch, percentile
from .tradeoff import slowest_ramp_s, tradeoff
from .trails import Endpoints, Trail, TrailIndex, costs, first, mde_total, steps, storage_total
from .workload import Device, EventFactory, Message

TRACKING_SCHEDULE = "1"  # the first check of each action a second after it was posted
RESULT_PUT = "queue: Put Message (result)"
FINAL_WAIT_S = 30.0  # real: longest wait for one alert's final result before the next is sent
_SCAN_S = 0.02  # real: how often the final result is looked for


def quiet_alerts(devices: Sequence[Device]) -> list[Message]:
    """One canonical alert per device, by machine id, severity High (the issue's 3-call case)."""
    factory = EventFactory()
    return [
        Message(n, 0.0, "alert", "canonical", (d,), factory.build("canonical", n, [d], "High"))
        for n, d in enumerate(devices, start=30_000)
    ]


def gap_after(cap_s: float, rng: random.Random) -> Callable[[], float]:
    """Real seconds to wait after an alert's final result: the host's slowest back-off ramp to the
    cap, then a uniform share of two cycles, so each alert lands at a random point of the polls."""
    ramp = slowest_ramp_s(cap_s)
    return lambda: ramp + rng.uniform(0.0, 2 * cap_s)


def send_spaced(
    queue: QueueClient,
    messages: Sequence[Message],
    final_seen: Callable[[str], bool],
    gap: Callable[[], float],
) -> list[Sent]:
    """Send each alert once the previous one's final result is in and ``gap()`` has passed. A
    message's time is the middle of its Put Message call (the queue stored it in between)."""
    sent = []
    for message in messages:
        before = time.time()
        receipt = queue.send_message(json.dumps(message.body))
        sent.append(Sent(message, receipt.id, (before + time.time()) / 2))
        deadline = time.monotonic() + FINAL_WAIT_S
        while not final_seen(message.body["requestId"]) and time.monotonic() < deadline:
            time.sleep(_SCAN_S)
        time.sleep(gap())
    return sent


@dataclass
class QuietObserved:
    """What the quiet phase saw, raw. Times are epoch seconds (real)."""

    sent: Sequence[Sent]
    results: Sequence[tuple[float, dict[str, Any]]]
    host_log: str
    recorded: Sequence[dict[str, Any]]  # the simulator's request log
    token_requests: int
    poison: int
    cap_s: float
    endpoints: Endpoints
    isolation_queue: str
    real_s: float


def analyse_quiet(seen: QuietObserved) -> dict[str, Any]:
    """The quiet phase's figures."""
    index = TrailIndex(httptrace.parse(seen.host_log))
    posts = _posts_received(seen.recorded)
    trails = [(s, index.trail(s.message_id)) for s in seen.sent]
    timed = [_timing(s, t, posts, seen.endpoints) for s, t in trails]
    complete = [t for t in timed if t is not None]
    idle_poll_s, cycle_s = _idle_polls(index, seen.isolation_queue, seen.cap_s)
    after_poll = [t["after_poll"] for t in complete]
    return {
        "alerts": len(seen.sent),
        "timed": len(complete),
        "cap_s": seen.cap_s,
        "real_s": seen.real_s,
        **{key: _spread([t[key] for t in complete]) for key in ("to_post", "to_submitted", "to_final")},
        "queue_wait": _spread([t["queue_wait"] for t in complete]),
        "after_poll": _spread(after_poll),
        "stages": _stages([t for _, t in trails], seen.endpoints),
        **_cost_figures([t for _, t in trails], seen.endpoints),
        **_result_counts(seen),
        "token_requests": seen.token_requests,
        "idle_poll_s": idle_poll_s,
        "idle_cycle_s": cycle_s,
        "tradeoff": [row.__dict__ for row in tradeoff(after_poll, idle_poll_s or 0.0, seen.cap_s)]
        if after_poll
        else [],
    }


def _posts_received(recorded: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Machine id -> when the simulator received its first admitted isolate POST (epoch s)."""
    posts: dict[str, float] = {}
    for entry in recorded:
        if entry["method"] == "POST" and entry["path"].endswith("/isolate") and entry.get("status") == 201:
            posts.setdefault(entry["path"].split("/")[3], iso_to_epoch(entry["time"]))
    return posts


def _timing(
    sent: Sent, trail: Trail, posts: dict[str, float], endpoints: Endpoints
) -> dict[str, float] | None:
    """One alert's times (s) from its enqueueing; None when part of its trail is missing."""
    post_at = posts.get(sent.message.devices[0].id)
    submitted = first(trail.records, endpoints, RESULT_PUT)
    final = next(
        (r for f in trail.follow_ups if (r := first(f.records, endpoints, RESULT_PUT)) is not None), None
    )
    if trail.poll is None or post_at is None or submitted is None or final is None:
        return None
    enqueued = sent.sent_at
    return {
        "to_post": post_at - enqueued,
        "to_submitted": submitted["t1"] - enqueued,
        "to_final": final["t1"] - enqueued,
        "queue_wait": max(0.0, trail.poll["t0"] - enqueued),
        "after_poll": post_at - max(enqueued, trail.poll["t0"]),
    }


def _spread(values: Sequence[float]) -> dict[str, float] | None:
    ordered = sorted(values)
    if not ordered:
        return None
    return {
        "p50": percentile(ordered, 50),
        "p95": percentile(ordered, 95),
        "p99": percentile(ordered, 99),
        "max": ordered[-1],
        "mean": sum(ordered) / len(ordered),
    }


def _stages(trails: Sequence[Trail], endpoints: Endpoints) -> dict[str, Any]:
    """Each step of the most common path (every request but the process's first takes the same
    one): its name, p50 and p99 in ms over the requests that took it, and how many did."""
    paths = [steps(t, endpoints) for t in trails if t.invoke is not None]
    if not paths:
        return {"steps": [], "requests": 0}
    signatures = Counter(tuple(name for name, _, _ in path) for path in paths)
    typical, count = signatures.most_common(1)[0]
    same = [path for path in paths if tuple(name for name, _, _ in path) == typical]
    rows = []
    for position, name in enumerate(typical):
        spans = sorted(1000 * (path[position][2] - path[position][1]) for path in same)
        rows.append({"name": name, "p50_ms": percentile(spans, 50), "p99_ms": percentile(spans, 99)})
    return {"steps": rows, "requests": count, "of": len(paths)}


def _cost_figures(trails: Sequence[Trail], endpoints: Endpoints) -> dict[str, Any]:
    """Per request: storage transactions and MDE calls by operation, for the first result (the
    alert's own message) and for the tracking check that wrote the final result."""
    firsts = [costs(t, endpoints) for t in trails if t.invoke is not None]
    checks = [costs(f, endpoints) for t in trails for f in t.follow_ups if f.invoke is not None]
    return {
        "cost_first": _mean_counts(firsts),
        "cost_check": _mean_counts(checks),
        "checks_per_request": len(checks) / max(1, len(firsts)),
        "storage_per_request": _spread([storage_total(c) for c in firsts]),
        "storage_per_check": _spread([storage_total(c) for c in checks]),
        "mde_per_request": _spread([mde_total(c) for c in firsts]),
        "mde_per_check": _spread([mde_total(c) for c in checks]),
    }


def _mean_counts(counted: Sequence[dict[str, int]]) -> dict[str, float]:
    total: Counter[str] = Counter()
    for c in counted:
        total.update(c)
    return {name: n / max(1, len(counted)) for name, n in sorted(total.items())}


def _result_counts(seen: QuietObserved) -> dict[str, Any]:
    """First and final results against the alerts sent: every alert gets one of each."""
    wanted = {s.message.body["requestId"] for s in seen.sent}
    by_sequence: dict[int, Counter[str]] = {1: Counter(), 2: Counter()}
    outcomes: Counter[str] = Counter()
    for _, result in seen.results:
        if result.get("requestId") in wanted and result.get("sequence") in by_sequence:
            by_sequence[result["sequence"]][result["requestId"]] += 1
            outcomes[f"{result['sequence']}:{result['outcome']}"] += 1
    return {
        "first_results": sum(by_sequence[1].values()),
        "final_results": sum(by_sequence[2].values()),
        "missing": len(wanted - set(by_sequence[1])) + len(wanted - set(by_sequence[2])),
        "duplicates": sum(n - 1 for c in by_sequence.values() for n in c.values() if n > 1),
        "outcomes": dict(outcomes),
        "poison": seen.poison,
    }


def _idle_polls(index: TrailIndex, queue: str, cap_s: float) -> tuple[float | None, float | None]:
    """An empty Get Messages' duration (median, s) on the isolation queue, and the measured cycle
    between empty polls once the back-off sits at the cap (median start-to-start, s; only a wait of
    the full cap is that long)."""
    polls = sorted((r for r in index.idle_polls if f"/{queue}/" in r["path"]), key=lambda r: r["t0"])
    if not polls:
        return None, None
    durations = sorted(r["t1"] - r["t0"] for r in polls)
    cycles = sorted(b["t0"] - a["t0"] for a, b in itertools.pairwise(polls) if b["t0"] - a["t0"] >= cap_s)
    return percentile(durations, 50), percentile(cycles, 50) if cycles else None
