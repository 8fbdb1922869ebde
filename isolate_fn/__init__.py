"""Queue trigger: alert events -> MDE isolate -> result message."""

import azure.functions as func

from shared import app


def main(msg: func.QueueMessage) -> None:
    app.handle_isolation(msg)
