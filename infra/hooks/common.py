"""What the azd hooks share: running az and azd, reading the environment, reporting.

The hooks are deployment tooling, never deployed (.funcignore keeps infra/ out of the package).
They need Python 3.9+ and the Azure CLI, signed in to the subscription being deployed to; az is
always called with that subscription and JSON output. Tokens are never printed: only claims the
hooks need (object id, token type) are read from them.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

AZD_MINIMUM = (1, 18, 0)
GRANT_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "grant-mde-permissions.sh"
# Hook-owned names: written by the hooks, read by infra/main.bicepparam.
OPERATOR_PRINCIPAL_TYPE = "OPERATOR_PRINCIPAL_TYPE"
VAULT_CREATE_MODES = {
    "ticket-credentials": "TICKET_CREDENTIALS_VAULT_CREATE_MODE",
    "ticket-intake": "TICKET_INTAKE_VAULT_CREATE_MODE",
}
GRANT_VIA_BICEP = "MDE_GRANT_VIA_BICEP"
# Where an operator keeps the ticket-system secrets (names fixed by infra/main.bicep).
TICKET_SECRETS = {
    "JIRA_BASE_URL": (
        "jira-api-token",
        "JIRA_API_TOKEN",
        "the Jira API token (or Data Center personal access token)",
    ),
    "SERVICENOW_BASE_URL": ("servicenow-password", "SERVICENOW_PASSWORD", "the ServiceNow password"),
}


class HookError(Exception):
    """A check failed: the message says what is wrong and what to do."""


def note(message: str) -> None:
    print(message, file=sys.stderr)


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def required(name: str) -> str:
    value = env(name)
    if not value:
        raise HookError(f"{name} is not set (azd env set {name} <value>, or export it)")
    return value


def enabled(name: str) -> bool:
    return env(name).lower() == "true"


def _run(command: Sequence[str]) -> subprocess.CompletedProcess[str]:
    executable = shutil.which(command[0])
    if executable is None:
        raise HookError(f"{command[0]} is not on PATH")
    return subprocess.run([executable, *command[1:]], capture_output=True, text=True, check=False)


def az(*args: str, subscription: bool = True) -> Any:
    """``az <args> --output json`` (in the deployment's subscription), parsed; HookError on failure."""
    command = ["az", *args, "--output", "json"]
    if subscription:
        command += ["--subscription", required("AZURE_SUBSCRIPTION_ID")]
    run = _run(command)
    if run.returncode != 0:
        raise HookError(f"az {' '.join(args[:3])} failed: {run.stderr.strip()[-600:]}")
    return json.loads(run.stdout) if run.stdout.strip() else None


def azd(*args: str) -> str:
    run = _run(["azd", *args])
    if run.returncode != 0:
        raise HookError(f"azd {' '.join(args[:2])} failed: {run.stderr.strip()[-600:]}")
    return run.stdout


def token_claims(token: str) -> Mapping[str, Any]:
    """The payload of a JWT, unverified: only our own token's claims are read, nothing trusted."""
    parts = token.split(".")
    if len(parts) != 3:
        raise HookError("the sign-in token is not a JWT")
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    claims: Mapping[str, Any] = json.loads(base64.urlsafe_b64decode(payload))
    return claims


def publish(values: Mapping[str, str], *, in_azd: bool) -> None:
    """Hand values to the deployment: ``azd env set`` under azd (azd reloads the environment
    after a hook), else ``NAME=VALUE`` lines on stdout (for $GITHUB_ENV or ``export``)."""
    for name, value in values.items():
        if in_azd:
            azd("env", "set", name, value)
        else:
            print(f"{name}={value}")


def hook_main(doc: str, run: Callable[[bool], None], argv: list[str] | None) -> int:
    """A hook's command line (``--azd``: run as the azd hook) and its one top-level guard: a
    failed check ends the hook with its message and exit code 1."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--azd", action="store_true", help="run as the azd hook (azd env set)")
    args = parser.parse_args(argv)
    try:
        run(args.azd)
    except HookError as error:
        note(f"error: {error}")
        return 1
    return 0
