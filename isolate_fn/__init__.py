"""Queue trigger: alert events -> MDE isolate -> result message."""

import azure.functions as func

from shared import pipeline


def main(msg: func.QueueMessage) -> None:
    pipeline.handle_isolation(msg)
