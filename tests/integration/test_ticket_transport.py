"""The ticket clients' transport against real sockets and the dev stack: timeouts and refused
connections (reads retried, writes only when they never left), and no credential in any error or
log record."""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading

import pytest

from devstack.stack import LocalStack
from shared.adapters.jira import JiraClient
from shared.adapters.servicenow import ServiceNowClient
from tests.integration.test_ticket_clients import raised, stack_jira, stack_servicenow

pytestmark = pytest.mark.integration


@pytest.fixture
def naps() -> list[float]:
    """What the clients would have slept between retries (they never really sleep here)."""
    return []


def secrets_of(stack: LocalStack) -> list[str]:
    settings = stack.app_settings()
    basic = [(settings["JIRA_USER_EMAIL"], settings["JIRA_API_TOKEN"]),
             (settings["SERVICENOW_USERNAME"], settings["SERVICENOW_PASSWORD"])]  # fmt: skip
    encoded = [base64.b64encode(f"{u}:{p}".encode()).decode() for u, p in basic]
    return [settings["JIRA_API_TOKEN"], settings["SERVICENOW_PASSWORD"], *encoded]


class SilentServer:
    """Accepts connections and never answers, so every call to it times out; counts connections."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self.connections = 0
        self._held: list[socket.socket] = []
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            with self._changed:
                self._held.append(conn)
                self.connections += 1
                self._changed.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> int:
        with self._changed:
            self._changed.wait_for(lambda: self.connections >= count, timeout)
            return self.connections

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for conn in self._held:
            conn.close()
        self._sock.close()


def test_a_read_that_times_out_is_retried_and_a_write_is_not(naps: list[float]) -> None:
    server = SilentServer()
    try:
        client = JiraClient(
            server.url, user_email="bot@contoso.com", api_token="t", timeout=(2, 0.2), sleep=naps.append
        )
        error = raised(lambda: client.issue("SEC-1", ["status"]))
        assert (error.code, error.message) == (
            "JiraUnavailable",
            "no answer within the timeout (ReadTimeout)",
        )
        assert server.wait_for(3) == 3 and len(naps) == 2
        error = raised(lambda: client.add_comment("SEC-1", "x"))
        assert (error.code, error.maybe_applied) == ("JiraUnavailable", True)
        assert server.wait_for(4) == 4 and len(naps) == 2
    finally:
        server.close()


def test_a_write_that_never_connected_is_retried(naps: list[float]) -> None:
    # Bound but not listening: connecting is refused, and no other process can take the port meanwhile.
    with socket.socket() as refusing:
        refusing.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{refusing.getsockname()[1]}"
        client = ServiceNowClient(url, username="svc", password="p", sleep=naps.append)
        error = raised(lambda: client.add_work_note("incident", "0" * 32, "x"))
    assert (error.code, error.maybe_applied, len(naps)) == ("ServiceNowUnavailable", False, 2)
    assert error.message == "no connection (ConnectionError)"


def test_no_credential_in_any_error_or_log_record(
    stack: LocalStack, caplog: pytest.LogCaptureFixture
) -> None:
    stack.jira_control.reset()
    stack.servicenow_control.reset()
    jira, snow = stack_jira(stack, lambda _: None), stack_servicenow(stack, lambda _: None)
    caplog.set_level(logging.DEBUG)
    stack.jira_control.fault(503, count=3, retry_after=2)
    stack.servicenow_control.fault(429, retry_after=3)
    errors = [
        raised(lambda: jira.issue("SEC-1", ["status"])),
        raised(lambda: jira.add_comment("SEC-404", "x")),
        raised(lambda: snow.record("sc_req_item", "RITM0010001", ["cmdb_ci"])),
        raised(lambda: snow.add_work_note("sc_req_item", "0" * 32, "x")),
    ]
    settings = stack.app_settings()
    wrong = JiraClient(
        settings["JIRA_BASE_URL"], user_email=settings["JIRA_USER_EMAIL"], api_token="wrong-token-xyz"
    )
    errors.append(raised(lambda: wrong.issue("SEC-1", ["status"])))
    assert [e.code for e in errors] == ["JiraUnavailable", "JiraTicketNotFound", "ServiceNowThrottled",
                                        "ServiceNowTicketNotFound", "JiraUnauthorized"]  # fmt: skip
    texts = [str(e) + repr(e) + json.dumps(e.to_result_error()) for e in errors]
    texts += [r.getMessage() for r in caplog.records] + [repr(jira.__dict__), repr(snow.__dict__)]
    assert any("ticket call failed" in t for t in texts)
    for secret in [*secrets_of(stack), "wrong-token-xyz"]:
        assert not [t for t in texts if secret in t], secret
