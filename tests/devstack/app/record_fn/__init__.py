"""Fixture function: records each message; a body starting with ``slow`` takes 0.3 s."""

import time

import azure.functions as func
from recorder import record, running


def main(msg: func.QueueMessage) -> None:
    with running():
        record("record_fn", msg)
        if msg.get_body().startswith(b"slow"):
            time.sleep(0.3)
