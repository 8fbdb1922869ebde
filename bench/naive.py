"""The naive baseline every "ours/naive" ratio divides by: a per-alert playbook that POSTs
``/api/machines/{id}/isolate`` (a release ticket: ``/unisolate``) once per alert-device when it
arrives, with one token for the whole run; a 429 is retried at once up to a few times, then given
up. No de-duplication, no ``Retry-After``, no device lookup (it is handed the machine id even for
alerts that name the device by DNS name only)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

from devstack.identity_endpoint import DEFAULT_ROLES, DEV_TENANT_ID
from devstack.stack import CLIENT_ID
from devstack.tokens import mint_token
from shared.settings import CLOUDS

from .workload import Device, Message

# What the service's own token is for: the Commercial cloud's scope, as a resource (the identity
# endpoint mints tokens for the resource without "/.default").
MDE_RESOURCE = CLOUDS["Commercial"][1].removesuffix("/.default")


def playbook_token(signing_secret: str) -> str:
    """One token for the whole run, as a playbook holding a token would have."""
    token, _ = mint_token(
        audience=MDE_RESOURCE,
        roles=list(DEFAULT_ROLES),
        client_id=CLIENT_ID,
        tenant_id=DEV_TENANT_ID,
        lifetime_s=3600,
        secret=signing_secret,
    )
    return token


@dataclass(frozen=True)
class Job:
    """One playbook run: one alert-device (or release ticket) posted once."""

    message: Message
    device: Device
    key: str


def playbook_jobs(messages: Sequence[Message]) -> list[Job]:
    """One job per alert-device and per release ticket, in order of arrival."""
    return [
        Job(m, device, f"{m.kind}-{m.index}-{n}")
        for m in sorted(messages, key=lambda m: m.at)
        for n, device in enumerate(m.devices)
    ]


@dataclass
class Playbook:
    """The playbook runs against MDE at ``mde_url``, and what each job came to: its outcome
    (``Submitted``, ``AlreadyPending``, ``GaveUp`` after ``retries`` + 1 429s, ``Failed<status>``)
    and how many attempts it made."""

    mde_url: str
    token: str
    retries: int
    outcomes: dict[str, str] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def worker(self) -> Callable[[Job], None]:
        """A playbook run's handler, with its own HTTP session."""
        http = requests.Session()
        headers = {"Authorization": f"Bearer {self.token}"}
        return lambda job: self._post(http, headers, job)

    def _post(self, http: requests.Session, headers: dict[str, str], job: Job) -> None:
        message = job.message
        verb = "isolate" if message.kind == "alert" else "unisolate"
        body: dict[str, Any] = {"Comment": f"Playbook: {message.shape} {message.index}"}
        if verb == "isolate":
            body["IsolationType"] = "Full"
        outcome = "GaveUp"
        for attempt in range(1, 2 + self.retries):
            self.attempts[job.key] = attempt
            url = f"{self.mde_url}/api/machines/{job.device.id}/{verb}"
            response = http.post(url, json=body, headers=headers, timeout=30)
            if response.status_code != 429:
                outcome = _playbook_outcome(response)
                break
        with self.lock:
            self.outcomes[job.key] = outcome

    def results(self, at: float) -> list[tuple[float, dict[str, Any]]]:
        """The playbook "writes" its outcome itself: one per alert-device; a give-up is a lost request."""
        return [
            (at, {"requestId": key, "sequence": 1, "outcome": outcome, "action": "Isolate"})
            for key, outcome in self.outcomes.items()
        ]


def _playbook_outcome(response: requests.Response) -> str:
    if response.status_code == 201:
        return "Submitted"
    if response.status_code == 400 and "already in progress" in response.text:
        return "AlreadyPending"
    return f"Failed{response.status_code}"
