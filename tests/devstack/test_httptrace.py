"""The host's opt-in HTTP trace, against a tiny local HTTP server."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import requests

from devstack import httptrace

pytestmark = pytest.mark.integration


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<QueueMessagesList><QueueMessage><MessageId>m-1</MessageId></QueueMessage>"
        body += b"</QueueMessagesList>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        return


@pytest.fixture
def server() -> Iterator[str]:
    httpd = HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_trace_names_the_message_a_request_was_made_for_and_never_a_secret(
    server: str, caplog: pytest.LogCaptureFixture
) -> None:
    httptrace.install()
    caplog.set_level(logging.INFO, logger="devstack.httptrace")
    with httptrace.message_scope("msg-7"):
        response = requests.get(
            f"http://{server}/q1/messages?numofmessages=4&sig=SECRET",
            headers={"Authorization": "Bearer TOKEN"},
            timeout=5,
        )
    assert response.content.startswith(b"<QueueMessagesList>")  # the body still reaches the caller
    requests.get(f"http://{server}/other", timeout=5)
    text = "\n".join(f"{r.name}: {r.getMessage()}" for r in caplog.records)
    records = [r for r in httptrace.parse(text) if r["host"] == server]
    assert [(r["msg"], r["path"], r["status"]) for r in records] == [
        ("msg-7", "/q1/messages", 200),
        (None, "/other", 200),
    ]
    assert records[0]["ids"] == ["m-1"] and records[0]["q"] == {"numofmessages": "4"}
    assert records[0]["t0"] <= records[0]["t1"]
    assert "SECRET" not in text and "TOKEN" not in text
