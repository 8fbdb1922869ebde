"""``python -m devstack demo``: run the local stack, push sample requests, print the outcomes.
``python -m devstack up``: run the local stack until Ctrl-C and print how to talk to it."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time

from . import demo
from .stack import LocalStack


def up() -> int:
    """Run the stack until Ctrl-C (or SIGTERM); stopping it deletes its temporary data."""
    stack = LocalStack().start()
    host = stack.start_host()
    print("Local stack running. App settings of the local Function App:")
    for key, value in stack.app_settings().items():
        print(f"  {key}={value}")
    print(f"MDE simulator control API: {stack.mde_url}/_control/requests")
    print("Ctrl-C stops every part and deletes the stack's temporary data (queues, ledger, logs).")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while host.poll() is None:
            time.sleep(1)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        stack.stop()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    parser.add_argument("command", choices=("demo", "up"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    return demo.run() if args.command == "demo" else up()


if __name__ == "__main__":
    sys.exit(main())
