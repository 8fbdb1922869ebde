"""The whole local stack in one object: Azurite, the managed-identity endpoint, the MDE, Jira and
ServiceNow simulators, and the local Functions host running isolate_fn and release_fn in their own
process.

Used by the demo (``python -m devstack demo``), ``python -m devstack up`` and the integration tests.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueClient, QueueServiceClient

from .azurite import Azurite
from .control import JiraControl, ServiceNowControl
from .identity_endpoint import IdentityEndpoint
from .jira_simulator import BOT_ACCOUNT_ID, JiraSimulator
from .jira_store import Account
from .mde_simulator import MdeSimulator
from .servicenow_simulator import INTEGRATION_USER, ServiceNowSimulator

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
QUEUES = ("isolation-requests", "release-requests", "machine-action-results")
RESULTS_QUEUE = "machine-action-results"
LEDGER_TABLE = "containmentledger"
# The dev identity's client id (user-assigned); the simulator sees it as the action requestor.
CLIENT_ID = "7d1c2b3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
JIRA_USER_EMAIL = "containment-bot@contoso.com"


class LocalStack:
    """Start with ``start()`` (or ``with LocalStack() as stack``); then ``start_host()``."""

    def __init__(
        self,
        *,
        time_scale: float = 1.0,
        host_overrides: Mapping[str, str] | None = None,
        settings: Mapping[str, str] | None = None,
        simulator_options: Mapping[str, Any] | None = None,
    ) -> None:
        signing_secret = secrets.token_urlsafe(32)
        self.azurite = Azurite()
        self.identity = IdentityEndpoint(signing_secret=signing_secret, client_ids=[CLIENT_ID])
        self.mde = MdeSimulator(
            signing_secret=signing_secret, time_scale=time_scale, **dict(simulator_options or {})
        )
        # Dev-only ticket system credentials, new for every stack.
        self.jira_api_token = secrets.token_urlsafe(24)
        self.servicenow_password = secrets.token_urlsafe(24)
        self.jira = JiraSimulator(accounts=[Account(JIRA_USER_EMAIL, self.jira_api_token, BOT_ACCOUNT_ID)])
        self.servicenow = ServiceNowSimulator(accounts={INTEGRATION_USER: self.servicenow_password})
        self.host_overrides = dict(host_overrides or {})
        self.extra_settings = dict(settings or {})
        self._hosts: list[subprocess.Popen[bytes]] = []
        self._started = 0  # hosts started so far: names each host's log file
        self.other_results: list[dict[str, Any]] = []
        self.log_dir = self.azurite.location

    def start(self) -> LocalStack:
        self.azurite.start()
        self.identity_url = self.identity.start()
        self.mde_url = self.mde.start()
        self.jira_url = self.jira.start()
        self.servicenow_url = self.servicenow.start()
        self.jira_control = JiraControl(self.jira_url)
        self.servicenow_control = ServiceNowControl(self.servicenow_url)
        self.create_queues()
        return self

    def create_queues(self) -> None:
        service = QueueServiceClient.from_connection_string(self.azurite.connection_string)
        for name in QUEUES:
            try:
                service.create_queue(name)
            except ResourceExistsError:
                pass
        tables = TableServiceClient.from_connection_string(self.azurite.connection_string)
        tables.create_table_if_not_exists(LEDGER_TABLE)

    def app_settings(self) -> dict[str, str]:
        """The app settings a Function App would have, pointing at the local stand-ins."""
        settings = {
            "FUNCTIONS_WORKER_RUNTIME": "python",
            "CONTAINMENT_STORAGE": self.azurite.connection_string,
            "ISOLATION_QUEUE": QUEUES[0],
            "RELEASE_QUEUE": QUEUES[1],
            "RESULTS_QUEUE": RESULTS_QUEUE,
            "LEDGER_TABLE": LEDGER_TABLE,
            "MDE_API_BASE_URL": self.mde_url,
            "AZURE_CLIENT_ID": CLIENT_ID,
            "IDENTITY_ENDPOINT": self.identity_url,
            "IDENTITY_HEADER": self.identity.header_secret,
            "JIRA_BASE_URL": self.jira_url,
            "JIRA_USER_EMAIL": JIRA_USER_EMAIL,
            "JIRA_API_TOKEN": self.jira_api_token,
            "JIRA_API_VERSION": "3",
            "SERVICENOW_BASE_URL": self.servicenow_url,
            "SERVICENOW_USERNAME": INTEGRATION_USER,
            "SERVICENOW_PASSWORD": self.servicenow_password,
        }
        settings.update(
            {f"AzureFunctionsJobHost__extensions__queues__{k}": v for k, v in self.host_overrides.items()}
        )
        settings.update(self.extra_settings)
        return settings

    def start_host(self, **settings: str) -> subprocess.Popen[bytes]:
        """Run the local Functions host over the project in its own process (like the real worker)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("IDENTITY_", "MSI_"))}
        env.update(self.app_settings())
        env.update(settings)
        log = self.next_host_log().open("ab")  # a new file per host, never an earlier host's
        self._started += 1
        process = subprocess.Popen(
            [sys.executable, "-m", "devstack.funchost", "--script-root", str(ROOT), "--no-create-queues"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self._hosts.append(process)
        return process

    def stop_hosts(self, timeout: float = 15.0) -> None:
        for process in self._hosts:
            if process.poll() is None:
                process.terminate()
        for process in self._hosts:
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._hosts.clear()

    def kill_hosts(self) -> None:
        """A crash: SIGKILL every host, so in-flight messages stay leased and nothing is cleaned up."""
        for process in self._hosts:
            process.kill()
            process.wait()
        self._hosts.clear()

    def host_logs(self, since: Mapping[Path, int] | None = None) -> str:
        """Every host's log, in the order the hosts started; only what was written after ``since``
        (a ``log_mark()``) when given: hosts write at once, so one offset into the whole would not do."""
        since = since or {}
        return "\n".join(
            p.read_bytes()[since.get(p, 0) :].decode(errors="replace")
            for p in sorted(self.log_dir.glob("funchost-*.log"))
        )

    def next_host_log(self) -> Path:
        """The log file the next host started will write."""
        return self.log_dir / f"funchost-{self._started + 1:04d}.log"

    def log_mark(self) -> dict[Path, int]:
        """How far each host's log has been written, for ``host_logs(since=...)``."""
        return {p: p.stat().st_size for p in self.log_dir.glob("funchost-*.log")}

    def stop(self) -> None:
        self.stop_hosts()
        self.servicenow.stop()
        self.jira.stop()
        self.mde.stop()
        self.identity.stop()
        self.azurite.close()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- queues -----------------------------------------------------------------------------------

    def queue(self, name: str) -> QueueClient:
        return QueueClient.from_connection_string(self.azurite.connection_string, name)

    def send(self, queue: str, body: dict[str, Any] | str) -> str:
        """Put a message on a queue as a producer would (plain JSON text unless given a string);
        returns the queue message id."""
        sent = self.queue(queue).send_message(body if isinstance(body, str) else json.dumps(body))
        return str(sent.id)

    def take_results(
        self,
        count: int,
        *,
        timeout: float = 30.0,
        where: Callable[[dict[str, Any]], bool] = lambda _: True,
    ) -> list[dict[str, Any]]:
        """Wait for ``count`` result messages matching ``where``, consume them, return them in order
        of arrival. Results that do not match are consumed too and kept in ``self.other_results``,
        where the next call looks first."""
        found = [r for r in self.other_results if where(r)][:count]
        self.other_results = [r for r in self.other_results if not any(r is f for f in found)]
        queue = self.queue(RESULTS_QUEUE)
        deadline = time.monotonic() + timeout
        while len(found) < count and time.monotonic() < deadline:
            batch = list(queue.receive_messages(max_messages=32, visibility_timeout=30))
            for message in batch:
                result = json.loads(message.content)
                queue.delete_message(message)
                (found if where(result) and len(found) < count else self.other_results).append(result)
            if not batch:
                time.sleep(0.1)
        return found

    def peek_count(self, queue: str) -> int:
        """Messages in a queue, visible or not (0 for a queue that does not exist yet)."""
        try:
            return self.queue(queue).get_queue_properties().approximate_message_count or 0
        except ResourceNotFoundError:
            return 0


@contextmanager
def running_stack(**options: Any) -> Iterator[LocalStack]:
    stack = LocalStack(**options)
    try:
        yield stack.start()
    finally:
        stack.stop()
