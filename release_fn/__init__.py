"""Queue trigger: approved release tickets -> MDE unisolate -> result message."""

import azure.functions as func

from shared import app


def main(msg: func.QueueMessage) -> None:
    app.handle_release(msg)
