"""From what a phase observed to its figures: the rate-limit lower bound, the first results against
the expected requests, the API calls from the simulator's request log, the measured-window timing,
and the stack lag and retries from the host's log. Pure functions of the observations."""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from devstack import httptrace
from devstack.azurite import ACCOUNT
from shared.adapters.ledger.throttle import PARTITION as THROTTLE_PARTITION

from .config import HOUR, MINUTE, RATE_PER_HOUR, RATE_PER_MINUTE, Config
from .trails import entity_keys
from .workload import Device, Message

logger = logging.getLogger(__name__)

_EXECUTED = re.compile(  # the local host's line for every function run
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO devstack\.funchost: Executed function=\S+ "
    r"message_id=(\S+) dequeue_count=(\d+) outcome=.*? duration_ms=(\d+)",
    re.MULTILINE,
)
_REDELIVERED = re.compile(r"Executed function=\S+ message_id=\S+ dequeue_count=(?:[2-9]|\d\d)")
_REENQUEUED = "throttled, re-enqueued"
_ATTEMPT = re.compile(_REENQUEUED + r" \S+ attempt=(\d+)")
_AZURITE = f"/{ACCOUNT}/"  # the path every request to the local storage account starts with
_SUBMITS = ("/isolate", "/unisolate")


@dataclass
class Sent:
    """A workload message as it was put on its queue."""

    message: Message
    message_id: str
    sent_at: float  # epoch seconds (real)


@dataclass
class Observed:
    """What one phase saw, raw: the input of ``analyse``. Times are epoch seconds (real)."""

    label: str
    t0: float  # when the workload started
    sent: Sequence[Sent]
    expected: dict[str, tuple[Message, Device]]  # request id -> its message and device
    results: Sequence[tuple[float, dict[str, Any]]]  # (when read, result message)
    recorded: Sequence[dict[str, Any]]  # the simulator's request log
    stats: dict[str, Any]  # the simulator's /_control/stats at the end
    token_requests: int
    poison: int
    host_log: str
    real_s: float
    processes: int = 1
    window_end: float = math.inf
    window_stats: dict[str, Any] | None = None  # /_control/stats when the measured window ended
    tail: bool = False  # results were still due after the window


# --- the rate-limit lower bound ------------------------------------------------------------------


def rate_limit_bound(
    first_arrivals: Iterable[float], per_minute: int = RATE_PER_MINUTE, per_hour: int = RATE_PER_HOUR
) -> float:
    """The earliest time (simulated s) by which every device can have its isolate admitted: one call
    per device, each no earlier than the device's first alert, admitted by sliding windows of
    ``per_minute`` per 60 s and ``per_hour`` per 3,600 s (greedy in arrival order is optimal)."""
    admitted: list[float] = []
    for arrival in sorted(first_arrivals):
        at = arrival
        if len(admitted) >= per_minute:
            at = max(at, admitted[-per_minute] + MINUTE)
        if len(admitted) >= per_hour:
            at = max(at, admitted[-per_hour] + HOUR)
        admitted.append(at)
    return admitted[-1] if admitted else 0.0


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """The nearest-rank percentile of already sorted values (NaN for none)."""
    if not sorted_values:
        return math.nan
    rank = max(0, min(len(sorted_values) - 1, math.ceil(pct / 100 * len(sorted_values)) - 1))
    return float(sorted_values[rank])


# --- one phase -----------------------------------------------------------------------------------


def analyse(seen: Observed, cfg: Config, storm_devices: Sequence[Device]) -> dict[str, Any]:
    """The figures of one phase. Times are simulated seconds since the workload started; only
    simulator requests made within the measured window count for timing."""
    api = ApiLog.read(seen, cfg.time_scale)
    storm_ids = {d.id for d in storm_devices}
    release_ids = {s.message.devices[0].id for s in seen.sent if s.message.kind == "release"}
    return {
        "label": seen.label,
        "real_s": seen.real_s,
        "messages": len(seen.sent),
        "alert_messages": sum(1 for s in seen.sent if s.message.kind == "alert"),
        "alert_devices": sum(1 for m, _ in seen.expected.values() if m.kind == "alert"),
        "storm_devices": len(storm_ids),
        "release_devices": len(release_ids),
        **_result_figures(seen),
        **_call_figures(seen, api, storm_ids, release_ids),
        **_timing_figures(seen, cfg, api, storm_ids, release_ids),
        "token_requests": seen.token_requests,
        "tokens_per_process": seen.token_requests / seen.processes,
        **_host_figures(seen, cfg.time_scale),
        **_storage_figures(seen, len(storm_ids)),
    }


def _result_figures(seen: Observed) -> dict[str, Any]:
    """First results (``sequence: 1``) against the expected requests: missing, extra, outcomes, lost."""
    firsts = [r for _, r in seen.results if r.get("sequence") == 1]
    first = Counter(r["requestId"] for r in firsts)
    expected = seen.expected
    alert_ids = {rid for rid, (m, _) in expected.items() if m.kind == "alert"}
    release_ids = {rid for rid, (m, _) in expected.items() if m.kind == "release"}
    missing = [rid for rid in expected if first[rid] == 0]
    gave_up = [r for r in firsts if _gave_up(r)]
    return {
        "expected_results": len(expected),
        "written_results": sum(first[rid] for rid in expected),
        "missing": len(missing),
        "missing_ids": missing[:5],
        "duplicates": sum(n - 1 for rid, n in first.items() if rid in expected and n > 1),
        "unexpected": sum(n for rid, n in first.items() if rid not in expected),
        "outcomes": dict(Counter(r["outcome"] for r in firsts)),
        "outcomes_alert": dict(Counter(r["outcome"] for r in firsts if r["requestId"] in alert_ids)),
        "lost_alerts": sum(1 for rid in missing if rid in alert_ids)
        + sum(1 for r in gave_up if r["requestId"] in alert_ids),
        "gave_up": len(gave_up),
        "poison": seen.poison,
        "lost": len(missing) + len(gave_up) + seen.poison,
        "release_state_unknown": sum(
            1
            for r in firsts
            if r["requestId"] in release_ids
            and r.get("outcome") == "Submitted"
            and "deviceOnline" in r
            and r["deviceOnline"] is None
        ),
    }


def _gave_up(result: dict[str, Any]) -> bool:
    """A request that will never be retried: the playbook's give-up, or a retryable failure."""
    retryable = (result.get("error") or {}).get("retryable")
    return bool(result["outcome"] == "GaveUp" or (result["outcome"] == "Failed" and retryable))


@dataclass
class ApiLog:
    """The simulator's request log of a phase, counted (authorized requests only)."""

    calls: Counter[str] = field(default_factory=Counter)  # admitted, per API group
    throttled: Counter[str] = field(default_factory=Counter)  # answered 429, per API group
    first_submit: dict[str, float] = field(default_factory=dict)  # "isolate:<id>" -> simulated s
    submitted_any: set[str] = field(default_factory=set)  # over the whole phase, tail included
    tracking_reads: int = 0

    @classmethod
    def read(cls, seen: Observed, time_scale: float) -> ApiLog:
        """Counts from ``seen.recorded``; ``first_submit`` holds the submits within the window."""
        log = cls()
        for entry in seen.recorded:
            if entry.get("authorized"):
                log._count(entry, seen, time_scale)
        log._check_against(seen.stats)
        return log

    def _count(self, entry: dict[str, Any], seen: Observed, time_scale: float) -> None:
        api, status = entry.get("api") or "?", int(entry.get("status") or 0)
        (self.throttled if status == 429 else self.calls)[api] += 1
        method, path = entry["method"], entry["path"]
        if method == "GET" and path.startswith("/api/machineactions/"):
            self.tracking_reads += 1
        if method == "POST" and status == 201 and path.endswith(_SUBMITS):
            key = f"{path.rsplit('/', 1)[1]}:{path.split('/')[3]}"
            self.submitted_any.add(key)
            at = iso_to_epoch(entry["time"])
            if at <= seen.window_end:
                self.first_submit.setdefault(key, (at - seen.t0) * time_scale)

    def _check_against(self, stats: dict[str, Any]) -> None:
        """The simulator's own counters must agree with its request log."""
        calls, throttled = dict(self.calls), dict(self.throttled)
        if dict(stats.get("calls", {})) != calls or dict(stats.get("throttled", {})) != throttled:
            logger.warning("request log and /_control/stats disagree: %s %s vs %s", calls, throttled, stats)


def _call_figures(seen: Observed, api: ApiLog, storm_ids: set[str], release_ids: set[str]) -> dict[str, Any]:
    """MDE calls by group, the 429s of the measured window, and write calls per device."""
    writes = Counter[str]()
    for group in ("isolate", "unisolate", "cancel"):
        writes[group] = api.calls[group] + api.throttled[group]
    calls, throttled = sum(api.calls.values()), sum(api.throttled.values())
    return {
        "calls": dict(api.calls),
        "throttled": dict(api.throttled),
        "throttled_share": throttled / (calls + throttled) if calls + throttled else 0.0,
        "window_throttled": dict((seen.window_stats or seen.stats).get("throttled", {})),
        "tail": seen.tail,
        "writes": dict(writes),
        "isolate_writes_per_device": writes["isolate"] / max(1, len(storm_ids)),
        "unisolate_writes_per_device": writes["unisolate"] / max(1, len(release_ids))
        if release_ids
        else None,
        "tracking_reads": api.tracking_reads,
        "devices_isolated_total": sum(1 for mid in storm_ids if f"isolate:{mid}" in api.submitted_any),
        "releases_submitted_total": sum(1 for mid in release_ids if f"unisolate:{mid}" in api.submitted_any),
    }


def _timing_figures(
    seen: Observed, cfg: Config, api: ApiLog, storm_ids: set[str], release_ids: set[str]
) -> dict[str, Any]:
    """Within the measured window: when the last device was isolated against the bound, and how long
    each release waited after its ticket."""
    submitted = api.first_submit
    isolated = [submitted[f"isolate:{mid}"] for mid in storm_ids if f"isolate:{mid}" in submitted]
    drain = max(isolated) if len(isolated) == len(storm_ids) else None
    bound = rate_limit_bound(s.message.at for s in onset_messages(seen.sent).values())
    releases = [s.message for s in seen.sent if s.message.kind == "release"]
    waits = sorted(
        submitted[f"unisolate:{m.devices[0].id}"] - m.at
        for m in releases
        if f"unisolate:{m.devices[0].id}" in submitted
    )
    done = [submitted[f"unisolate:{mid}"] for mid in release_ids if f"unisolate:{mid}" in submitted]
    window_s = (seen.window_end - seen.t0) * cfg.time_scale
    return {
        "devices_isolated": len(isolated),
        "cutoff_s": min(cfg.cutoff_s, window_s) if seen.window_end < math.inf else None,
        "drain_s": drain,
        "bound_s": bound,
        "drain_ratio": drain / bound if drain is not None and bound > 0 else None,
        "releases_submitted": len(done),
        "release_wait_p50_s": percentile(waits, 50) if waits else None,
        "release_wait_max_s": waits[-1] if waits else None,
        "release_drain_s": max(done) if len(done) == len(release_ids) and release_ids else None,
        "release_bound_s": rate_limit_bound(m.at for m in releases) if releases else None,
    }


def onset_messages(sent: Sequence[Sent]) -> dict[str, Sent]:
    """Device id -> the message of its first alert (its onset)."""
    onsets: dict[str, Sent] = {}
    for s in sorted(sent, key=lambda s: s.message.at):
        if s.message.kind == "alert":
            for d in s.message.devices:
                onsets.setdefault(d.id, s)
    return onsets


def _host_figures(seen: Observed, time_scale: float) -> dict[str, Any]:
    """From the host's log: runs, redeliveries, 429 re-enqueues, and the stack lag: how long a message
    waited before the host started on it (real seconds, x time_scale in the simulated figures).
    Large values mean the local stack, not MDE, was the bottleneck."""
    log = seen.host_log
    starts = host_starts(log)
    lags = sorted(starts[s.message_id] - s.sent_at for s in seen.sent if s.message_id in starts)
    onset_lags = sorted(
        starts[s.message_id] - s.sent_at for s in onset_messages(seen.sent).values() if s.message_id in starts
    )
    return {
        "invocations": log.count("Executed function="),
        "redeliveries": len(_REDELIVERED.findall(log)),
        "throttled_reenqueues": log.count(_REENQUEUED),
        "max_attempt": max((int(n) for n in _ATTEMPT.findall(log)), default=1),
        "lag_p50_s": percentile(lags, 50) * time_scale if lags else None,
        "lag_max_s": lags[-1] * time_scale if lags else None,
        "onset_lag_max_s": onset_lags[-1] * time_scale if onset_lags else None,
    }


def _storage_figures(seen: Observed, devices: int) -> dict[str, Any]:
    """From the hosts' HTTP trace, when the phase ran with it: every storage transaction (queue and
    table, idle polls included) per device, and the throttle notices among them (reads, writes)."""
    storage = [r for r in httptrace.parse(seen.host_log) if str(r.get("path", "")).startswith(_AZURITE)]
    if not storage or not devices:
        return {"storage_per_device": None, "notice_reads": None, "notice_writes": None}
    notices = Counter(r["m"] for r in storage if entity_keys(r)[0] == THROTTLE_PARTITION)
    return {
        "storage_per_device": len(storage) / devices,
        "notice_reads": notices["GET"],
        "notice_writes": sum(notices.values()) - notices["GET"],
    }


def host_starts(host_log: str) -> dict[str, float]:
    """message id -> epoch seconds when the host first started an invocation for it (from the
    host's "Executed ... duration_ms" lines, local time, millisecond resolution)."""
    starts: dict[str, float] = {}
    for stamp, message_id, _, duration_ms in _EXECUTED.findall(host_log):
        ended = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()  # local time, like the log
        start = ended - int(duration_ms) / 1000
        starts[message_id] = min(starts.get(message_id, math.inf), start)
    return starts


def iso_to_epoch(text: str) -> float:
    """The simulator's ``2026-11-23T10:00:00.1234560Z`` -> epoch seconds."""
    return datetime.fromisoformat(text.rstrip("Z")[:26]).replace(tzinfo=UTC).timestamp()
