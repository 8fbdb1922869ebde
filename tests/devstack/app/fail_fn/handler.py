"""Fixture function (scriptFile + entryPoint): ``fail`` always raises; ``fail-until-N`` before delivery N."""

import azure.functions as func
from recorder import record


def run(message: func.QueueMessage) -> None:
    record("fail_fn", message)
    body = message.get_body().decode()
    if body == "fail" or (
        body.startswith("fail-until-") and message.dequeue_count < int(body.rsplit("-", 1)[1])
    ):
        raise RuntimeError(f"fixture failure on delivery {message.dequeue_count}")
