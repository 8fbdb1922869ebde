"""``python -m devstack demo``: run the local stack, push sample requests, print the outcomes.
``python -m devstack up [--no-host]``: run the local stack until Ctrl-C and print how to talk to it
(``--no-host``: everything but the local Functions host, for running the app under Core Tools)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time

from . import demo
from .stack import LocalStack


def up(*, host: bool = True) -> int:
    """Run the stack until Ctrl-C (or SIGTERM); stopping it deletes its temporary data."""
    stack = LocalStack().start()
    process = stack.start_host() if host else None
    print(
        "Local stack running." + ("" if host else " No Functions host: start your own with these settings.")
    )
    print("App settings of the local Function App:")
    for key, value in stack.app_settings().items():
        print(f"  {key}={value}")
    print(f"MDE simulator control API: {stack.mde_url}/_control/requests")
    print(f"Jira simulator control API: {stack.jira_url}/_control/requests")
    print(f"ServiceNow simulator control API: {stack.servicenow_url}/_control/requests")
    print("Ctrl-C stops every part and deletes the stack's temporary data (queues, ledger, logs).")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while process is None or process.poll() is None:
            time.sleep(1)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        stack.stop()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    parser.add_argument("command", choices=("demo", "up"))
    parser.add_argument("--no-host", action="store_true", help="up: do not start the local Functions host")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    return demo.run() if args.command == "demo" else up(host=not args.no_host)


if __name__ == "__main__":
    sys.exit(main())
