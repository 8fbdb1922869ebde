"""The phases on the local stack: ``Bench`` owns the stack (Azurite, identity endpoint, MDE
simulator, local Functions host) and runs each phase on fresh queues and a fresh ledger table: a
pipeline phase (the workload sent at its scaled arrival times, the measured window, then the tail
collected with the simulator sped up) or the naive per-alert playbook (``naive.py``). Each phase
returns what ``analysis.analyse`` makes of its observations."""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueClient, QueueServiceClient

from devstack import httptrace
from devstack.control import IdentityControl, MdeControl
from devstack.funchost import POISON_SUFFIX, QueueOptions, effective_host_json
from devstack.stack import LocalStack
from shared.domain.results import Delivery

from . import quiet
from .analysis import Observed, Sent, analyse
from .config import RATE_PER_HOUR, RATE_PER_MINUTE, ROOT, TRACKING_SCHEDULE, Config
from .naive import Playbook, playbook_jobs, playbook_token
from .trails import Endpoints
from .workload import Device, Message, expected_requests, sim_machine

logger = logging.getLogger(__name__)
T = TypeVar("T")
START_DELAY_S = 0.3  # real: the first message of a workload is sent this long after t0 is fixed
APPROVER = "5b10a2844c20165700ede21b"  # the Jira simulator's Ana Approver
REQUESTER = "5b10a2844c20165700ede21d"  # Ben Requester, created for the releases' issues
POLLING_SETTING = "AzureFunctionsJobHost__extensions__queues__maxPollingInterval"


def _timespan(seconds: float) -> str:
    whole = int(seconds)
    fraction = round((seconds - whole) * 1000)
    return f"00:{whole // 60:02d}:{whole % 60:02d}.{fraction:03d}"


def queue_options() -> QueueOptions:
    """The project's host.json queue settings, as the host reads them."""
    return QueueOptions.from_host_json(effective_host_json(ROOT, {}), {})


def host_overrides(time_scale: float) -> dict[str, str]:
    """host.json's queue timings (polling interval, retry delay) scaled like the simulator's; the
    host's own processing time cannot be scaled and is what it is."""
    queues = queue_options()
    return {
        "maxPollingInterval": _timespan(max(0.1, queues.max_polling_interval / time_scale)),
        "visibilityTimeout": _timespan(max(1.0, round(queues.visibility_timeout / time_scale))),
    }


def paced(
    items: Sequence[T],
    arrival: Callable[[T], float],
    t0: float,
    time_scale: float,
    workers: int,
    worker: Callable[[], Callable[[T], None]],
) -> None:
    """Hand each item, in order of ``arrival`` (simulated s), to one of ``workers`` threads no
    earlier than ``t0 + arrival / time_scale`` (epoch s). ``worker()`` is called once per thread and
    returns that thread's handler, so each thread can keep clients of its own."""
    cursor = iter(sorted(items, key=arrival))
    lock = threading.Lock()

    def run() -> None:
        handle = worker()
        while True:
            with lock:
                item = next(cursor, None)
            if item is None:
                return
            delay = t0 + arrival(item) / time_scale - time.time()
            if delay > 0:
                time.sleep(delay)
            handle(item)

    with ThreadPoolExecutor(workers, thread_name_prefix="bench-worker") as pool:
        runs = [pool.submit(run) for _ in range(workers)]
    for finished in runs:
        finished.result()  # a worker that crashed would otherwise go unnoticed


def send_workload(
    connection: str,
    queues: dict[str, str],
    messages: Sequence[Message],
    t0: float,
    time_scale: float,
    workers: int = 6,
) -> list[Sent]:
    """Put each message on its queue at its (scaled) arrival time, from a few producer threads."""
    sent: list[Sent] = []
    lock = threading.Lock()

    def producer() -> Callable[[Message], None]:
        clients = {
            kind: QueueClient.from_connection_string(connection, name) for kind, name in queues.items()
        }

        def send(message: Message) -> None:
            receipt = clients[message.kind].send_message(json.dumps(message.body))
            with lock:
                sent.append(Sent(message, receipt.id, time.time()))

        return send

    paced(messages, lambda m: m.at, t0, time_scale, workers, producer)
    if len(sent) != len(messages):
        raise RuntimeError(f"only {len(sent)} of {len(messages)} messages could be sent")
    return sent


def expected_of(sent: Iterable[Sent], queues: dict[str, str]) -> dict[str, tuple[Message, Device]]:
    """Request id -> (message, device) of every first result the sent messages are due."""
    expected: dict[str, tuple[Message, Device]] = {}
    for s in sent:
        delivery = Delivery(queues[s.message.kind], s.message_id, 1)
        for request_id, device in expected_requests(s.message, delivery):
            expected[request_id] = (s.message, device)
    return expected


class Collector(threading.Thread):
    """Reads the results queue while a phase runs (leaving the messages invisible, not deleted)."""

    def __init__(self, queue: QueueClient) -> None:
        super().__init__(name="bench-results", daemon=True)
        self.queue = queue
        self.results: list[tuple[float, dict[str, Any]]] = []
        self.stop_event = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                batch = list(
                    self.queue.receive_messages(
                        messages_per_page=32, max_messages=32, visibility_timeout=3600
                    )
                )
            except AzureError as e:  # a hiccup of the emulator must not end the collection
                logger.warning("reading the results queue failed, retrying: %s", e)
                batch = []
            now = time.time()
            with self.lock:
                for message in batch:
                    self.results.append((now, json.loads(message.content)))
            if not batch:
                self.stop_event.wait(0.2)

    def snapshot(self) -> list[tuple[float, dict[str, Any]]]:
        with self.lock:
            return list(self.results)

    def has(self, request_id: str, sequence: int) -> bool:
        """Whether result ``sequence`` (1 first, 2 final) of ``request_id`` has been read."""
        with self.lock:
            return any(
                r.get("requestId") == request_id and r.get("sequence") == sequence for _, r in self.results
            )

    def first_result_ids(self) -> set[str]:
        """Request ids of the first results (``sequence: 1``) read so far."""
        return {r["requestId"] for _, r in self.snapshot() if r.get("sequence") == 1}

    def finish(self) -> None:
        self.stop_event.set()
        self.join(5)


@dataclass(frozen=True)
class HostLog:
    """The part of the host's log file written since ``offset``: one phase's host process."""

    path: Path
    offset: int

    @classmethod
    def from_end(cls, path: Path) -> HostLog:
        return cls(path, len(path.read_text(errors="replace")) if path.exists() else 0)

    def text(self) -> str:
        return self.path.read_text(errors="replace")[self.offset :] if self.path.exists() else ""


class Bench:
    """The local stack for all phases, and one method per phase."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.stack = LocalStack(
            time_scale=cfg.time_scale,
            host_overrides=host_overrides(cfg.time_scale),
            simulator_options={"rate_per_minute": RATE_PER_MINUTE, "rate_per_hour": RATE_PER_HOUR},
        )
        self.phase_no = 0
        self.keep_logs: Path | None = None

    def __enter__(self) -> Bench:
        self.stack.start()
        self.sim = MdeControl(self.stack.mde_url)
        self.identity = IdentityControl(self.stack.identity_url)
        return self

    def __exit__(self, *_: object) -> None:
        self.stack.stop()

    # --- a pipeline phase --------------------------------------------------------------------------

    def run_pipeline(
        self,
        label: str,
        messages: Sequence[Message],
        machines: list[dict[str, Any]],
        storm_devices: Sequence[Device],
        policy: dict[str, Any],
        processes: int = 1,
        *,
        trace: bool = False,
    ) -> dict[str, Any]:
        """One phase through ``processes`` local Functions hosts on the same queues (a scaled-out
        app), with their HTTP trace on if ``trace`` (its storage transactions counted); returns the
        raw observations, analysed."""
        queues, table = self._fresh(machines)
        self._open_tickets(messages)
        settings = {httptrace.TRACE_ENV: "1"} if trace else None
        logs = self._start_hosts(queues, table, policy, processes, settings)
        collector = Collector(self.stack.queue(queues["results"]))
        collector.start()
        started = time.monotonic()
        t0 = time.time() + START_DELAY_S
        connection = self.stack.azurite.connection_string
        sent = send_workload(connection, queues, messages, t0, self.cfg.time_scale)
        expected = expected_of(sent, queues)
        window_end = self._measured_window(t0, _wanted(messages, storm_devices))
        window_stats = self.sim.stats()
        tail = self._collect_tail(collector, expected.keys())
        real_s = time.monotonic() - started
        collector.finish()
        seen = Observed(
            label=label,
            t0=t0,
            sent=sent,
            expected=expected,
            results=collector.snapshot(),
            real_s=real_s,
            window_end=window_end,
            window_stats=window_stats,
            tail=tail,
            processes=processes,
            **self._wind_up(label, logs, queues, table),
        )
        return analyse(seen, self.cfg, storm_devices)

    @contextlib.contextmanager
    def time_scale(self, scale: float) -> Iterator[None]:
        """Phases started inside run the simulator and the host's queue timings at ``scale``."""
        saved = self.cfg, self.stack.host_overrides
        self.cfg = replace(self.cfg, time_scale=scale)
        self.stack.host_overrides = host_overrides(scale)
        try:
            yield
        finally:
            self.cfg, self.stack.host_overrides = saved

    def _wind_up(
        self, label: str, logs: Sequence[HostLog], queues: dict[str, str], table: str
    ) -> dict[str, Any]:
        """The end of a pipeline phase: the simulator's and identity endpoint's counts, the hosts
        stopped and their logs read, the poison queues counted, the queues and table dropped."""
        stats, recorded = self.sim.stats(), self.sim.requests()
        tokens = self.identity.stats()["tokenRequests"]
        self.stack.stop_hosts()
        host_log = "\n".join(log.text() for log in logs)
        self._keep(label, host_log, recorded)
        poison = sum(self.stack.peek_count(queues[kind] + POISON_SUFFIX) for kind in ("alert", "release"))
        self._drop(queues, table)
        return {
            "stats": stats,
            "recorded": recorded,
            "token_requests": tokens,
            "host_log": host_log,
            "poison": poison,
        }

    def _start_hosts(
        self,
        queues: dict[str, str],
        table: str,
        policy: dict[str, Any],
        processes: int = 1,
        settings: dict[str, str] | None = None,
    ) -> list[HostLog]:
        """``processes`` new host processes on the phase's queues and table, once each listens on both
        queues; ``settings`` override the phase's defaults."""
        defaults = {
            "ISOLATION_QUEUE": queues["alert"],
            "RELEASE_QUEUE": queues["release"],
            "RESULTS_QUEUE": queues["results"],
            "LEDGER_TABLE": table,
            "ISOLATION_POLICY": json.dumps(policy),
            "TRACKING_SCHEDULE": TRACKING_SCHEDULE,
            # Each host runs both functions: n hosts are n processes calling MDE, as the Bicep's
            # 2 x maximumInstanceCount counts the two function groups.
            "MDE_BUDGET_SHARES": str(processes),
        }
        logs = []
        for _ in range(processes):
            logs.append(HostLog.from_end(self.stack.next_host_log()))
            self.stack.start_host(**(defaults | (settings or {})))
        for log in logs:
            self._wait_host_ready(log, (queues["alert"], queues["release"]))
        return logs

    def _wait_host_ready(self, log: HostLog, queues: Iterable[str], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        wanted = [f"listening on queue {q} " for q in queues]
        while time.monotonic() < deadline:
            text = log.text()
            if all(w in text for w in wanted):
                return
            if "Traceback" in text or "\nfunchost: " in text:
                raise RuntimeError(f"the host did not start:\n{text[-3000:]}")
            time.sleep(0.05)
        raise TimeoutError("the host did not start listening in time")

    def _measured_window(self, t0: float, wanted: set[tuple[str, str]]) -> float:
        """Wait until the simulator holds every ``wanted`` (action type, machine id), or the cutoff;
        returns when the window ended (epoch s). Timing figures come from this window only."""
        cutoff = t0 + self.cfg.cutoff_s / self.cfg.time_scale
        while time.time() < cutoff:
            done = {(a["type"], a["machineId"]) for a in self.sim.actions()}
            if wanted <= done:
                break
            time.sleep(0.1)
        return time.time()

    def _collect_tail(self, collector: Collector, expected: Collection[str]) -> bool:
        """Wait for every remaining first result: each must still arrive exactly once (nothing lost),
        but its timing is not measured, so the simulator's clock is sped up to get there quickly.
        Returns whether any result was still due when the window ended."""
        cfg = self.cfg
        tail = not set(expected) <= collector.first_result_ids()
        if tail and cfg.tail_time_scale > cfg.time_scale:
            self.sim.config(time_scale=cfg.tail_time_scale)
        deadline = time.monotonic() + cfg.drain_timeout_s
        while time.monotonic() < deadline and not set(expected) <= collector.first_result_ids():
            time.sleep(0.1)
        time.sleep(max(0.5, 5.0 / cfg.time_scale))  # a late duplicate would show up now
        return tail

    # --- the quiet system ----------------------------------------------------------------------

    def run_quiet(self, devices: Sequence[Device], policy: dict[str, Any]) -> dict[str, Any]:
        """Single alerts on an idle system, one device each, through the host with its HTTP trace on
        and the unscaled ``maxPollingInterval`` (this phase's times are real seconds)."""
        cap = self.cfg.quiet_cap_s or queue_options().max_polling_interval
        queues, table = self._fresh([sim_machine(d, "Workstations") for d in devices])
        self.sim.config(pending_s=0, in_progress_s=0)  # each action final at its first check
        settings = {
            "TRACKING_SCHEDULE": quiet.TRACKING_SCHEDULE,
            httptrace.TRACE_ENV: "1",
            POLLING_SETTING: _timespan(cap),
        }
        logs = self._start_hosts(queues, table, policy, settings=settings)
        collector = Collector(self.stack.queue(queues["results"]))
        collector.start()
        started = time.monotonic()
        sent = quiet.send_spaced(
            self.stack.queue(queues["alert"]),
            quiet.quiet_alerts(devices),
            lambda request_id: collector.has(request_id, 2),
            quiet.gap_after(cap, random.Random(self.cfg.seed)),  # noqa: S311 - spacing, not a secret
        )
        real_s = time.monotonic() - started
        collector.finish()
        wound = self._wind_up("quiet", logs, queues, table)
        urls = {
            "queue": self.stack.azurite.queue_url,
            "table": self.stack.azurite.table_url,
            "mde": self.stack.mde_url,
            "identity": self.stack.identity_url,
        }
        seen = quiet.QuietObserved(
            sent=sent,
            results=collector.snapshot(),
            host_log=wound["host_log"],
            recorded=wound["recorded"],
            token_requests=wound["token_requests"],
            poison=wound["poison"],
            cap_s=cap,
            endpoints=Endpoints.of(urls, queues["results"]),
            isolation_queue=queues["alert"],
            real_s=real_s,
        )
        return quiet.analyse_quiet(seen)

    # --- the naive playbook ------------------------------------------------------------------------

    def run_naive(
        self,
        label: str,
        messages: Sequence[Message],
        machines: list[dict[str, Any]],
        storm_devices: Sequence[Device],
    ) -> dict[str, Any]:
        """The per-alert playbook: one POST per alert-device on arrival, 429 retried at once."""
        cfg, ts = self.cfg, self.cfg.time_scale
        self._fresh(machines)
        token = playbook_token(self.stack.mde.signing_secret)
        playbook = Playbook(self.stack.mde_url, token, cfg.naive_retries)
        jobs = playbook_jobs(messages)
        t0 = time.time() + START_DELAY_S
        started = time.monotonic()
        paced(jobs, lambda job: job.message.at, t0, ts, cfg.naive_workers, playbook.worker)
        real_s = time.monotonic() - started
        stats = self.sim.stats()
        seen = Observed(
            label=label,
            t0=t0,
            sent=[Sent(m, f"naive-{m.index}", t0 + m.at / ts) for m in messages],
            expected={job.key: (job.message, job.device) for job in jobs},
            results=playbook.results(t0),
            recorded=self.sim.requests(),
            stats=stats,
            token_requests=1,  # one token for the whole run, by construction
            poison=0,
            host_log="",
            real_s=real_s,
        )
        figures = analyse(seen, cfg, storm_devices)
        figures["max_attempt"] = max(playbook.attempts.values(), default=1)
        return figures

    # --- between phases ----------------------------------------------------------------------------

    def _fresh(self, machines: list[dict[str, Any]]) -> tuple[dict[str, str], str]:
        """New queues and ledger table for a phase; simulator and identity endpoint reset."""
        self.phase_no += 1
        n = self.phase_no
        queues = {
            "alert": f"bench{n}-isolation",
            "release": f"bench{n}-release",
            "results": f"bench{n}-results",
        }
        service = QueueServiceClient.from_connection_string(self.stack.azurite.connection_string)
        for name in queues.values():
            service.create_queue(name)
        table = f"bench{n}ledger"
        TableServiceClient.from_connection_string(self.stack.azurite.connection_string).create_table(table)
        self.sim.reset()
        self.sim.config(time_scale=self.cfg.time_scale)  # the phase's, if it runs at its own
        self.sim.machines(machines, replace=True)
        self.identity.reset()
        return queues, table

    def _open_tickets(self, messages: Sequence[Message]) -> None:
        """The Jira issues the releases name, approved by Ana (the simulator seeds her)."""
        jira = self.stack.jira_control
        jira.reset()
        jira.user(REQUESTER, "Ben Requester", "ben.requester@contoso.com")
        for message in messages:
            if message.kind == "release":
                key, device = message.body["ticketId"], message.devices[0]
                fields = {"summary": "Release", "status": "Waiting for approval", "reporter": REQUESTER}
                jira.upsert_issue(key, {**fields, "customfield_10050": device.id})
                jira.transition(key, "Approved for release", APPROVER)

    def _keep(self, label: str, host_log: str, recorded: list[dict[str, Any]]) -> None:
        """With ``--keep-logs``: the phase's host log and the simulator's request log."""
        if self.keep_logs:
            self.keep_logs.mkdir(parents=True, exist_ok=True)
            (self.keep_logs / f"{label}-funchost.log").write_text(host_log)
            (self.keep_logs / f"{label}-mde-requests.json").write_text(json.dumps(recorded))

    def _drop(self, queues: dict[str, str], table: str) -> None:
        """Delete a finished phase's queues and table: Azurite keeps its whole database in memory
        and writes it out every few seconds, so a phase run after another one's 2,000 results and
        ledger rows would be slower for that alone."""
        connection = self.stack.azurite.connection_string
        service = QueueServiceClient.from_connection_string(connection)
        for name in queues.values():
            for queue in (name, name + POISON_SUFFIX):
                with contextlib.suppress(ResourceNotFoundError):  # a poison queue that never appeared
                    service.delete_queue(queue)
        TableServiceClient.from_connection_string(connection).delete_table(table)


def _wanted(messages: Sequence[Message], storm_devices: Sequence[Device]) -> set[tuple[str, str]]:
    """What ends the measured window: every storm device isolated and every release unisolated."""
    return {("Isolate", d.id) for d in storm_devices} | {
        ("Unisolate", m.devices[0].id) for m in messages if m.kind == "release"
    }
