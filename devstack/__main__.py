"""``python -m devstack demo``: run the local stack, push sample requests, print the outcomes.
``python -m devstack up``: run the local stack until Ctrl-C and print how to talk to it."""

from __future__ import annotations

import argparse
import base64
import json
import logging
import signal
import sys
import time
from typing import Any

from .stack import LocalStack

FINANCE_PC = "c28460d93e441d30869ebb33920c06acbb6fd75e"  # ws-fin-0142, online
HR_PC = "9c4f08247909332d14a6ae9170a78b792337ff0b"  # ws-hr-0031, offline for days
ENG_PC = "142b3441161eb63d57b41d1338407a04c781740d"  # ws-eng-0007, online

# (queue, body, what it shows)
SAMPLES: list[tuple[str, Any, str]] = [
    (
        "isolation-requests",
        {
            "machineId": FINANCE_PC,
            "comment": "[High] Ransomware behavior detected (Sentinel incident 4711)",
            "requestId": "demo-isolate-1",
            "severity": "High",
            "source": {"system": "sentinel", "id": "4711"},
        },
        "alert: isolate an online device",
    ),
    (
        "isolation-requests",
        {"machineId": FINANCE_PC, "requestId": "demo-isolate-dup", "comment": "[High] 2nd alert"},
        "duplicate alert while the first is pending",
    ),
    (
        "isolation-requests",
        base64.b64encode(
            json.dumps({"machineId": HR_PC, "requestId": "demo-isolate-offline"}).encode()
        ).decode(),
        "base64 body; device offline",
    ),
    ("isolation-requests", "this is not JSON", "malformed message"),
    (
        "release-requests",
        {
            "machineId": ENG_PC,
            "ticketId": "INC0012345",
            "requestedBy": "ana@contoso.com",
            "approved": True,
            "comment": "Reimaged and verified clean",
            "requestId": "demo-release-1",
        },
        "approved release ticket",
    ),
    (
        "release-requests",
        {"deviceName": "ws-eng-0007.contoso.local", "ticketId": "INC0012399",
         "requestedBy": "bob@contoso.com", "approved": False, "requestId": "demo-release-unapproved"},
        "release ticket not approved",
    ),
]  # fmt: skip


def _settings() -> dict[str, str]:
    # Follow-ups every 2 s so the demo shows final statuses within seconds; the offline device's
    # tracking deadline is short so its TrackingExpired shows too.
    return {"TRACKING_SCHEDULE": "2", "TRACKING_DEADLINE_HOURS": "0.003"}


def demo() -> int:
    print("Starting Azurite, the managed-identity endpoint, the MDE simulator and the Functions host ...")
    with LocalStack(
        time_scale=60,
        settings=_settings(),
        host_overrides={"maxPollingInterval": "00:00:00.500"},
        simulator_options={"pending_s": 120},
    ) as stack:
        stack.start_host()
        for queue, body, _ in SAMPLES:
            stack.send(queue, body)
        print(f"Sent {len(SAMPLES)} messages; waiting for their outcomes ...\n")
        expected = 10  # 6 first results + 4 final statuses (the duplicate alert, answered from the
        # ledger, gets its final result from the first request's)
        results = stack.take_results(expected, timeout=60)
        if len(results) < expected:
            print(
                f"Only {len(results)} of {expected} results arrived; host log:\n{stack.host_logs()[-4000:]}"
            )
        print(_table(results))
        return 0 if len(results) >= expected else 1


def _table(results: list[dict[str, Any]]) -> str:
    rows = [("request", "action", "seq", "outcome", "device", "MDE action", "status", "detail")]
    for r in sorted(results, key=lambda r: (r["requestId"], r["sequence"])):
        action = r.get("machineAction") or {}
        machine = r.get("machine") or {}
        detail = ""
        if r.get("error"):
            detail = f"{r['error']['code']}: {r['error']['message']}"[:60]
        elif r.get("duplicateOf"):
            detail = f"storm duplicate of {r['duplicateOf']}: answered from the ledger"
        elif r.get("lastStatus"):
            detail = f"still {r['lastStatus']} at the tracking deadline"
        elif r.get("deviceOnline") is False:
            detail = f"device offline, last seen {r.get('lastSeen')}"
        rows.append(
            (
                r["requestId"],
                r["action"],
                str(r["sequence"]),
                r["outcome"],
                (machine.get("computerDnsName") or machine.get("id") or "-")[:28],
                (action.get("id") or "-")[:8],
                action.get("status") or "-",
                detail,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def up() -> int:
    stack = LocalStack().start()
    host = stack.start_host()
    print("Local stack running. App settings of the local Function App:")
    for key, value in stack.app_settings().items():
        print(f"  {key}={value}")
    print(f"MDE simulator control API: {stack.mde_url}/_control/requests")
    print(f"Jira simulator control API: {stack.jira_url}/_control/requests")
    print(f"ServiceNow simulator control API: {stack.servicenow_url}/_control/requests\nCtrl-C to stop.")
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
    return demo() if args.command == "demo" else up()


if __name__ == "__main__":
    sys.exit(main())
