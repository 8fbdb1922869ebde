"""Queue trigger: approved release tickets -> MDE unisolate -> result message."""

import azure.functions as func

from shared import pipeline


def main(msg: func.QueueMessage) -> None:
    pipeline.handle_release(msg)
