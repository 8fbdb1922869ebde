"""postprovision hook: finish what a deployment cannot do by itself.

azd runs it after every provision (azure.yaml) as ``postprovision.py --azd``. In order:

1. The Graph Bicep grant ran (MDE_GRANT_VIA_BICEP=true): switch the opt-in off again, so the next
   provision does not deploy the grant a second time (it cannot be updated).
2. GRANT_MDE_PERMISSIONS=true: grant the MDE roles with infra/scripts/grant-mde-permissions.sh
   (idempotent, every cloud). Otherwise say who has to, and how.
3. A configured ticket system: make sure the app's Key Vault references resolved. A reference
   resolved before its role assignment took effect stays failed until the app's configuration
   changes or the platform refetches (every 24 hours), so ask for a refresh and wait for it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from typing import Any

from common import (
    GRANT_SCRIPT,
    GRANT_VIA_BICEP,
    TICKET_SECRETS,
    HookError,
    az,
    enabled,
    env,
    hook_main,
    note,
    publish,
    required,
)

# Microsoft: to force resolution of the app's Key Vault references, POST (authenticated) to the
# site's ``config/configreferences/appsettings/refresh`` with api-version 2022-03-01
# (https://learn.microsoft.com/azure/app-service/app-service-key-vault-references#understand-rotation).
REFERENCES_API = "2022-03-01"


def finish_graph_grant(in_azd: bool) -> None:
    if enabled(GRANT_VIA_BICEP):
        note("the Graph Bicep module granted the MDE roles; the opt-in is switched off for later provisions")
        publish({"GRANT_MDE_PERMISSIONS_WITH_BICEP": "false", GRANT_VIA_BICEP: "false"}, in_azd=in_azd)


def grant_mde_roles() -> None:
    principal = required("AZURE_MANAGED_IDENTITY_PRINCIPAL_ID")
    command = f"infra/scripts/grant-mde-permissions.sh --principal-id {principal}"
    if not enabled("GRANT_MDE_PERMISSIONS"):
        note(
            "The MDE identity needs the app roles Machine.Isolate and Machine.Read.All. An admin "
            f"(AppRoleAssignment.ReadWrite.All) runs:\n  {command}\nor sets GRANT_MDE_PERMISSIONS=true "
            "and provisions again (docs/deploy.md, step 2)"
        )
        return
    bash = shutil.which("bash")
    if bash is None:
        raise HookError(
            f"GRANT_MDE_PERMISSIONS=true needs bash (Git Bash or WSL on Windows) to run {command}"
        )
    run = subprocess.run([bash, str(GRANT_SCRIPT), "--principal-id", principal], check=False)
    if run.returncode != 0:
        raise HookError(
            f"granting the MDE roles failed (exit {run.returncode}); see above, or an admin runs {command}"
        )


def _references(site: str, arm: str) -> dict[str, Any]:
    listed = az(
        "rest",
        "--method",
        "get",
        "--url",
        f"{arm}{site}/config/configreferences/appsettings?api-version={REFERENCES_API}",
    )
    return {item["name"]: item.get("properties") or {} for item in (listed or {}).get("value", [])}


def resolve_ticket_references(deadline_seconds: float, poll_seconds: float) -> None:
    """Wait, with a deadline, until every configured ticket secret's reference resolved; ask
    for a refresh before each look after the first. A warning, not a failure, when it does not:
    the deployment itself is done, and the release path refuses releases until it resolves."""
    wanted = [
        secret_setting for url_setting, (_, secret_setting, _) in TICKET_SECRETS.items() if env(url_setting)
    ]
    if not wanted:
        return
    arm = az("cloud", "show", subscription=False)["endpoints"]["resourceManager"].rstrip("/")
    site = (
        f"/subscriptions/{required('AZURE_SUBSCRIPTION_ID')}/resourceGroups/{required('AZURE_RESOURCE_GROUP')}"
        f"/providers/Microsoft.Web/sites/{required('AZURE_FUNCTION_APP_NAME')}"
    )
    refresh = f"{arm}{site}/config/configreferences/appsettings/refresh?api-version={REFERENCES_API}"
    deadline = time.monotonic() + deadline_seconds
    while True:
        statuses = {name: _references(site, arm).get(name, {}).get("status", "missing") for name in wanted}
        pending = {name: status for name, status in statuses.items() if status != "Resolved"}
        if not pending:
            note(f"Key Vault references resolved: {', '.join(wanted)}")
            return
        if time.monotonic() >= deadline:
            listed = ", ".join(f"{name} ({status})" for name, status in pending.items())
            note(
                f"warning: Key Vault references not resolved: {listed}. A new role assignment can take "
                f"minutes to apply; refresh later with: az rest --method post --url {refresh} "
                '(docs/deploy.md, "Ticket systems")'
            )
            return
        az("rest", "--method", "post", "--url", refresh)
        time.sleep(poll_seconds)


def run(in_azd: bool) -> None:
    finish_graph_grant(in_azd)
    grant_mde_roles()
    resolve_ticket_references(
        float(os.environ.get("REFERENCE_WAIT_SECONDS", "600")),
        float(os.environ.get("REFERENCE_POLL_SECONDS", "20")),
    )


def main(argv: list[str] | None = None) -> int:
    return hook_main(__doc__ or "", run, argv)


if __name__ == "__main__":
    sys.exit(main())
