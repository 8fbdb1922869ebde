"""``make demo``: the local stack, seven sample messages, and a table of every result they produce.

The samples are pushed in a fixed order and the duplicate alert only after the first alert's result,
so every run shows the same outcomes. Rendering is pure (``render_table``, ``device_label``) so it
can be tested without the stack.
"""

from __future__ import annotations

import base64
import json
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import requests

from .stack import LocalStack

FINANCE_PC = "c28460d93e441d30869ebb33920c06acbb6fd75e"  # ws-fin-0142, online
HR_PC = "9c4f08247909332d14a6ae9170a78b792337ff0b"  # ws-hr-0031, offline for days
ENG_PC = "142b3441161eb63d57b41d1338407a04c781740d"  # ws-eng-0007, online

MAX_WIDTH = 120
SHORT_ID = 8  # characters of a machine or action id shown in the table
TIMEOUT_S = 60.0
NEXT = "next: deploy it to Azure in dry run (nothing is isolated until you say so): docs/deploy.md"


@dataclass(frozen=True)
class Sample:
    """One message the demo pushes, and what it shows."""

    queue: str
    body: dict[str, Any] | str
    description: str
    request_id: str | None  # None: the message carries none (``msg-<queue message id>`` is used)
    after: str | None = None  # push only once this request's first result has arrived


SAMPLES: tuple[Sample, ...] = (
    Sample(
        "isolation-requests",
        {
            "machineId": FINANCE_PC,
            "comment": "[High] Ransomware behavior detected (Sentinel incident 4711)",
            "requestId": "demo-isolate-1",
            "severity": "High",
            "source": {"system": "sentinel", "id": "4711"},
        },
        "High-severity alert: isolate an online device",
        "demo-isolate-1",
    ),
    Sample(
        "isolation-requests",
        {"machineId": FINANCE_PC, "requestId": "demo-isolate-dup", "comment": "[High] 2nd alert"},
        "A second alert for the same device, sent after the first one's result",
        "demo-isolate-dup",
        after="demo-isolate-1",
    ),
    Sample(
        "isolation-requests",
        base64.b64encode(
            json.dumps({"machineId": HR_PC, "requestId": "demo-isolate-offline"}).encode()
        ).decode(),
        "Alert in a base64 body for a device that has been offline for days",
        "demo-isolate-offline",
    ),
    Sample("isolation-requests", "this is not JSON", "A message that is not JSON", None),
    Sample(
        "release-requests",
        {"machineId": ENG_PC, "ticketId": "FAKE-0001", "requestedBy": "ciso@contoso.com", "approved": True,
         "requestId": "demo-release-forged"},
        "Forged release: claims an approval but names no ticket system that could confirm it",
        "demo-release-forged",
    ),
    Sample(
        "release-requests",
        {"ticketSystem": "jira", "ticketId": "SEC-1001", "comment": "Reimaged and verified clean",
         "requestId": "demo-release-1"},
        "Release ticket SEC-1001, approved in Jira: read from Jira, then released",
        "demo-release-1",
    ),
    Sample(
        "release-requests",
        {"ticketSystem": "jira", "ticketId": "SEC-1002", "requestId": "demo-release-unapproved"},
        "Release ticket SEC-1002, still waiting for approval in Jira",
        "demo-release-unapproved",
    ),
)  # fmt: skip
# The Jira issues the release samples name: (key, status, device); Ana approves, Ben requests.
JIRA_ISSUES = (("SEC-1001", "Approved for release", ENG_PC), ("SEC-1002", "Waiting for approval", ENG_PC))
ANA, BEN = "5b10a2844c20165700ede21b", "5b10a2844c20165700ede21d"

# 7 first results + a final status for each of the 4 submitted actions (the duplicate alert's final
# status is the first alert's action's, written to its own stream too) + the first alert's first
# lease reminder (its device stays isolated; the demo's lease is seconds, the default 24 h).
EXPECTED_RESULTS = 12
LEASE_HOURS = 0.003  # 10.8 s

OUTCOMES = {
    "Submitted": "MDE accepted a new action; it is followed until its final status",
    "AlreadyPending": "nothing new sent to MDE: the device already has this action pending (or, for a storm "
    "duplicate, another request holds it)",
    "Succeeded": "final status: the device checked in and the action completed",
    "TrackingExpired": "still not final at the tracking deadline (the demo's is seconds, the default 48 h)",
    "Rejected": "refused before any MDE write (a refused release costs no MDE call); error.code says why",
    "Skipped": "the isolation policy decided not to isolate (rule and reason in the result)",
    "HeldForApproval": "the blast-radius breaker is open",
    "DryRun": "DRY_RUN=true: the call that would have been made",
    "Failed": "MDE refused the action, or could not be reached after every retry",
    "TimedOut": "final status: MDE gave up waiting for the device",
    "Cancelled": "final status: the action was cancelled",
    "LeaseExpired": "a reminder: the device is still isolated by this service a lease period (leaseHours) "
    "after its isolation succeeded; it repeats every period until a release, never releasing by itself",
}


def _settings() -> dict[str, str]:
    # Follow-ups every 2 s so the demo shows final statuses within seconds; the offline device's
    # tracking deadline is short so its TrackingExpired shows too.
    # The lease is short too, so a reminder shows.
    return {
        "TRACKING_SCHEDULE": "2",
        "TRACKING_DEADLINE_HOURS": "0.003",
        "ISOLATION_POLICY": json.dumps({"leaseHours": LEASE_HOURS}),
    }


def run(out: TextIO = sys.stdout) -> int:
    """Start the stack, push the samples, wait for every result, print the table and the key."""
    out.write(
        f"Starting the local stack (Azurite, managed-identity endpoint, MDE simulator, Functions host),\n"
        f"then pushing {len(SAMPLES)} sample messages: "
        f"{sum(s.queue == 'isolation-requests' for s in SAMPLES)} to isolation-requests, "
        f"{sum(s.queue == 'release-requests' for s in SAMPLES)} to release-requests.\n"
    )
    out.flush()
    with LocalStack(
        time_scale=60,
        settings=_settings(),
        host_overrides={"maxPollingInterval": "00:00:00.500"},
        simulator_options={"pending_s": 120},
    ) as stack:
        stack.start_host()
        open_tickets(stack)
        machines = requests.get(f"{stack.mde_url}/_control/machines", timeout=10).json()
        results, request_ids = _push_and_collect(stack, out)
        comments = {key: stack.jira_control.comments(key) for key, _, _ in JIRA_ISSUES}
        if len(results) < EXPECTED_RESULTS:
            out.write(
                f"Only {len(results)} of {EXPECTED_RESULTS} results arrived within {TIMEOUT_S:.0f} s; "
                f"host log:\n{stack.host_logs()[-4000:]}\n"
            )
    samples = [(sample.description, request_ids[i]) for i, sample in enumerate(SAMPLES)]
    out.write("\n" + render_results(samples, results, machines) + "\n\n")
    out.write(render_comments(comments) + "\n\n")
    out.write(render_key(results) + "\n" + NEXT + "\n")
    return 0 if len(results) >= EXPECTED_RESULTS else 1


def open_tickets(stack: LocalStack) -> None:
    """The Jira issues the release samples name, as a ticket flow would have left them."""
    jira = stack.jira_control
    jira.user(BEN, "Ben Requester", "ben.requester@contoso.com")
    for key, status, device in JIRA_ISSUES:
        fields = {"summary": "Release the device", "status": "Waiting for approval", "reporter": BEN}
        jira.upsert_issue(key, {**fields, "customfield_10050": device})
        if status != "Waiting for approval":
            jira.transition(key, status, ANA)


def _push_and_collect(stack: LocalStack, out: TextIO) -> tuple[list[dict[str, Any]], list[str]]:
    """Push the samples (a held-back one once the request it waits for has a result), collecting
    results and showing progress until all are in or the timeout passes."""
    request_ids: list[str] = []
    waiting: dict[int, str] = {}
    for i, sample in enumerate(SAMPLES):
        request_ids.append(sample.request_id or "")
        if sample.after:
            waiting[i] = sample.after
        else:
            message_id = stack.send(sample.queue, sample.body)
            request_ids[i] = sample.request_id or f"msg-{message_id}"
    results: list[dict[str, Any]] = []
    progress = Progress(out)
    start = time.monotonic()
    while len(results) < EXPECTED_RESULTS and time.monotonic() - start < TIMEOUT_S:
        results += stack.take_results(EXPECTED_RESULTS - len(results), timeout=0.5)
        answered = {r["requestId"] for r in results}
        for i, after in list(waiting.items()):
            if after in answered:
                stack.send(SAMPLES[i].queue, SAMPLES[i].body)
                del waiting[i]
        progress.show(results, time.monotonic() - start, EXPECTED_RESULTS)
    progress.done()
    return results, request_ids


class Progress:
    """One line of progress: rewritten in place on a terminal, a new line per change otherwise."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._tty = out.isatty()
        self._last = ""

    def show(self, results: Sequence[Mapping[str, Any]], elapsed_s: float, expected: int) -> None:
        counts = Counter(str(r["outcome"]) for r in results)
        so_far = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())) or "none yet"
        line = f"waiting for results: {len(results)}/{expected} ({so_far})"
        if self._tty:
            self._out.write(f"\r{line}, {elapsed_s:.0f} s ")
        elif line != self._last:
            self._out.write(f"{line}, {elapsed_s:.1f} s\n")
        self._last = line
        self._out.flush()

    def done(self) -> None:
        if self._tty:
            self._out.write("\n")


def device_label(machine: Mapping[str, Any] | None, known: Iterable[Mapping[str, Any]]) -> str:
    """A device shown the same way on every row: host name and the first characters of its machine
    id, taken from the known machine records when the result names it either way."""
    machine = machine or {}
    machine_id, name = machine.get("id"), machine.get("computerDnsName")
    for record in known:
        same_id = machine_id and record.get("id") == machine_id
        same_name = not machine_id and name and str(record.get("computerDnsName", "")).lower() == name.lower()
        if same_id or same_name:
            machine_id, name = record.get("id"), record.get("computerDnsName")
            break
    if not machine_id and not name:
        return "-"
    host = str(name).split(".")[0] if name else "?"
    return f"{host} {str(machine_id)[:SHORT_ID] if machine_id else '?'}"


def _detail(result: Mapping[str, Any]) -> str:
    error = result.get("error")
    if error:
        return f"{error['code']}: {error['message']}"
    if result.get("approvedBy") and result["sequence"] == 1:
        return f"read from {result['ticketSystem']}: approved by {result['approvedBy']}"
    if result.get("duplicateOf"):
        if result["sequence"] == 1:
            return f"answered from the ledger: {result['duplicateOf']} holds this device, no MDE call"
        return f"the final status of {result['duplicateOf']}'s action"
    if result["outcome"] == "LeaseExpired":
        return f"reminder {result['leasePeriod']}: still isolated by us after {result['isolatedHours']} h"
    if result.get("lastStatus"):
        return f"still {result['lastStatus']} at the tracking deadline"
    if result.get("deviceOnline") is False:
        last_seen = str(result.get("lastSeen") or "unknown")[:16].replace("T", " ")
        return f"device offline (last seen {last_seen} UTC): the action waits for it"
    return ""


HEADERS = ("sample (request id)", "seq", "outcome", "device", "MDE action", "detail")
# Widths of every column but the last, which takes what is left of MAX_WIDTH.
WIDTHS = (26, 3, 15, 20, 18)


def render_results(
    samples: Sequence[tuple[str, str]],
    results: Iterable[Mapping[str, Any]],
    machines: Sequence[Mapping[str, Any]],
) -> str:
    """The results table: one group of rows per sample (its description and request id in the first
    column), in the order the samples were pushed, each request's results in sequence order."""
    by_request: dict[str, list[Mapping[str, Any]]] = {}
    for result in results:
        by_request.setdefault(str(result["requestId"]), []).append(result)
    groups = []
    for description, request_id in samples:
        rows = [
            (
                str(r["sequence"]),
                str(r["outcome"]),
                device_label(r.get("machine"), machines),
                _action_cell(r.get("machineAction")),
                _detail(r),
            )
            for r in sorted(by_request.get(request_id, []), key=lambda r: int(r["sequence"]))
        ] or [("-", "(no result)", "-", "-", "")]
        groups.append((f"{description} ({request_id})", rows))
    return render_table(HEADERS, WIDTHS, groups, MAX_WIDTH)


def _action_cell(action: Mapping[str, Any] | None) -> str:
    if not action:
        return "-"
    return f"{str(action.get('id'))[:SHORT_ID]} {action.get('status') or '?'}"


def render_table(
    headers: Sequence[str],
    widths: Sequence[int],
    groups: Sequence[tuple[str, Sequence[Sequence[str]]]],
    max_width: int,
) -> str:
    """A plain-text table no wider than ``max_width``: cells wrap (long words too), nothing is cut.
    Each group's first-column text spans the group's rows; the last column takes the rest."""
    gap = "  "
    last = max_width - sum(widths) - len(gap) * len(widths)
    if last < 10:
        raise ValueError("columns do not fit the width")
    all_widths = (*widths, last)

    def wrap(text: str, width: int) -> list[str]:
        return textwrap.wrap(text, width, break_long_words=True, break_on_hyphens=False) or [""]

    def line(cells: Sequence[str]) -> str:
        return gap.join(c.ljust(w) for c, w in zip(cells, all_widths, strict=True)).rstrip()

    lines = [line(headers), line(["-" * w for w in all_widths])]
    for first, rows in groups:
        body: list[list[str]] = []
        for row in rows:
            wrapped = [wrap(cell, w) for cell, w in zip(row, all_widths[1:], strict=True)]
            height = max(len(w) for w in wrapped)
            body += [[w[k] if k < len(w) else "" for w in wrapped] for k in range(height)]
        label = wrap(first, all_widths[0])
        body += [[""] * (len(all_widths) - 1) for _ in range(len(label) - len(body))]
        lines += [line([label[k] if k < len(label) else "", *cells]) for k, cells in enumerate(body)]
    return "\n".join(lines)


def render_comments(comments: Mapping[str, Sequence[Mapping[str, Any]]], wrap_at: int = MAX_WIDTH) -> str:
    """What the release tickets show in Jira now: one comment per result of the release they asked for."""
    lines = ["What the Jira release tickets show now (the service comments once per result):"]
    for key, found in comments.items():
        for comment in found:
            for k, text in enumerate(str(comment.get("text", "")).splitlines()):
                first = f"  {key:<10}" if k == 0 else " " * 12
                lines += textwrap.wrap(first + text, wrap_at, subsequent_indent=" " * 14) or [first]
    return "\n".join(lines)


def render_key(results: Iterable[Mapping[str, Any]], wrap_at: int = MAX_WIDTH) -> str:
    """What the columns and the outcomes that appear mean."""
    seen = sorted(
        {str(r["outcome"]) for r in results}, key=lambda o: list(OUTCOMES).index(o) if o in OUTCOMES else 99
    )
    indent = " " * 19
    lines = [
        "key: seq 1 = the request's first result, seq 2 = the final status of the action it submitted,",
        "     seq 3 and up = lease reminders;",
        f"     device = host name and the first {SHORT_ID} characters of the MDE machine id (- names none);",
        f"     MDE action = the first {SHORT_ID} characters of the MachineAction id and its status.",
    ]
    for outcome in seen:
        text = f"  {outcome:<16} {OUTCOMES.get(outcome, '')}"
        lines += textwrap.wrap(text, wrap_at, subsequent_indent=indent)
    return "\n".join(lines)
