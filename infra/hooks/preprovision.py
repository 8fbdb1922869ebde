"""preprovision hook: fail early and clearly, and work out what azd cannot pass to Bicep.

azd runs it before every provision (azure.yaml) as ``preprovision.py --azd``: values go to the azd
environment with ``azd env set``. Without ``--azd`` (GitHub Actions, the az CLI path) it prints
``NAME=VALUE`` lines for the caller to export. In order:

1. azd is 1.18 or newer (azd mode): older ones miss .funcignore and the Bicep the Graph extension needs.
2. No ticket-system secret sits in the environment: it belongs in Key Vault, never in .env.
3. Ticket-system URLs are https.
4. The subscription's resource providers are registered (registered here when allowed).
5. The operator's principal type (azd passes none to a .bicepparam file) -> OPERATOR_PRINCIPAL_TYPE.
6. A vault `azd down` soft-deleted is recovered, not re-created -> *_VAULT_CREATE_MODE.
7. A configured ticket system has its secret in the vault (a role assignment needs it to exist).
8. The Graph Bicep grant runs only while the MDE roles are missing -> MDE_GRANT_VIA_BICEP.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

from common import (
    AZD_MINIMUM,
    GRANT_SCRIPT,
    GRANT_VIA_BICEP,
    OPERATOR_PRINCIPAL_TYPE,
    TICKET_SECRETS,
    VAULT_CREATE_MODES,
    HookError,
    az,
    azd,
    enabled,
    env,
    hook_main,
    note,
    publish,
    required,
    token_claims,
)

PRINCIPAL_TYPES = ("User", "Group", "ServicePrincipal")
# What infra/ deploys, by resource provider. Flex Consumption also needs Microsoft.App
# (https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan, Considerations).
ALWAYS = (
    "Microsoft.Web",
    "Microsoft.App",
    "Microsoft.Storage",
    "Microsoft.ManagedIdentity",
    "Microsoft.OperationalInsights",
    "Microsoft.Insights",
    "Microsoft.KeyVault",
)


def check_azd_version() -> None:
    reported = json.loads(azd("version", "--output", "json"))["azd"]["version"]
    match = re.match(r"(\d+)\.(\d+)\.(\d+)", reported)
    if not match or tuple(int(part) for part in match.groups()) < AZD_MINIMUM:
        wanted = ".".join(map(str, AZD_MINIMUM))
        raise HookError(
            f"azd {reported} is too old: this project needs azd {wanted} or newer (Microsoft Graph "
            "Bicep extension, .funcignore). Update: https://aka.ms/azure-dev/install"
        )


def check_no_secret_in_environment() -> None:
    for _, secret_setting, what in TICKET_SECRETS.values():
        if env(secret_setting):
            raise HookError(
                f'{secret_setting} is set in the environment: remove it (azd env set {secret_setting} "" '
                f"and delete the line from .azure/<env>/.env). {what.capitalize()} belongs in the "
                'ticket-credentials Key Vault only (docs/deploy.md, "Ticket systems")'
            )


def check_ticket_urls() -> None:
    for url_setting in TICKET_SECRETS:
        url = env(url_setting)
        if url and not re.fullmatch(r"https://[^\s/]+(/\S*)?", url):
            raise HookError(f"{url_setting} must be an https:// URL (got {url!r})")


def providers_needed() -> list[str]:
    needed = list(ALWAYS)
    if any(
        enabled(flag)
        for flag in ("DEPLOY_SENTINEL_PLAYBOOKS", "DEPLOY_TICKET_INTAKE", "DEPLOY_RESULTS_CONSUMER")
    ):
        needed.append("Microsoft.Logic")
    return needed


def register_providers() -> None:
    """Registers what is missing. Registering needs */register/action on the subscription;
    without it, the error names the commands for someone who has it."""
    missing = []
    for namespace in providers_needed():
        try:
            state = az("provider", "show", "--namespace", namespace)["registrationState"]
        except HookError as error:
            note(f"warning: cannot read the registration of {namespace} ({error}); continuing")
            continue
        if state != "Registered":
            missing.append(namespace)
    failed = []
    for namespace in missing:
        note(f"registering resource provider {namespace} (a fresh subscription lacks it)")
        try:
            az("provider", "register", "--namespace", namespace, "--wait")
        except HookError:
            failed.append(namespace)
    if failed:
        commands = "\n".join(f"  az provider register --namespace {n} --wait" for n in failed)
        raise HookError(
            "these resource providers are not registered and you may not register them; a subscription "
            f"Owner or Contributor runs:\n{commands}"
        )


def _signed_in_principal(in_azd: bool) -> tuple[str, str]:
    """Object id and type (User / ServicePrincipal) of whoever is signed in, from the token's
    claims: an app-only token has idtyp "app" and no scp claim
    (https://learn.microsoft.com/entra/identity-platform/access-token-claims-reference)."""
    if in_azd:
        token = json.loads(azd("auth", "token", "--output", "json"))["token"]
    else:
        token = az("account", "get-access-token", subscription=False)["accessToken"]
    claims = token_claims(token)
    kind = claims.get("idtyp")
    user = kind == "user" if kind in ("user", "app") else "scp" in claims
    return str(claims.get("oid", "")), "User" if user else "ServicePrincipal"


def _directory_object_type(object_id: str) -> str:
    graph = az("cloud", "show", subscription=False)["endpoints"]["microsoftGraphResourceId"].rstrip("/")
    found = az(
        "rest", "--method", "get", "--url", f"{graph}/v1.0/directoryObjects/{object_id}", subscription=False
    )
    kinds = {
        "#microsoft.graph.user": "User",
        "#microsoft.graph.group": "Group",
        "#microsoft.graph.servicePrincipal": "ServicePrincipal",
    }
    kind = kinds.get(found.get("@odata.type", ""))
    if kind is None:
        raise HookError(f"{object_id} is no user, group or service principal")
    return kind


def operator_principal_type(in_azd: bool) -> str | None:
    """The type the operator's role assignments need: User for a user login, ServicePrincipal for
    a service principal login (the mismatch fails with UnmatchedPrincipalType). None: no operator."""
    chosen = env("AZURE_PRINCIPAL_TYPE")
    if chosen:
        if chosen not in PRINCIPAL_TYPES:
            raise HookError(
                f"AZURE_PRINCIPAL_TYPE must be one of {', '.join(PRINCIPAL_TYPES)} (got {chosen!r})"
            )
        return chosen
    principal = env("AZURE_PRINCIPAL_ID")
    if not principal and not in_azd:
        return None  # the az CLI path names no operator unless told to
    signed_in, kind = _signed_in_principal(in_azd)
    # azd fills AZURE_PRINCIPAL_ID with the signed-in principal when .env has none.
    if not principal or principal.lower() == signed_in.lower():
        return kind
    try:
        return _directory_object_type(principal)
    except HookError as error:
        raise HookError(
            f"cannot tell what kind of principal AZURE_PRINCIPAL_ID {principal} is ({error}): "
            "set AZURE_PRINCIPAL_TYPE to User, Group or ServicePrincipal"
        ) from None


def _ours(tags: dict[str, Any] | None, role: str) -> bool:
    """Tagged as this azd environment's vault of that role (the tags infra/ puts on its vaults)."""
    tags = tags or {}
    return (
        tags.get("azd-env-name") == env("AZURE_ENV_NAME", "mde-containment")
        and tags.get("mde-vault-role") == role
    )


def vault_create_modes() -> dict[str, str]:
    """recover for each of our vaults that is soft-deleted: purge protection keeps its name taken,
    so creating it again fails until the retention period ends."""
    resource_group = required("AZURE_RESOURCE_GROUP").lower()
    modes = {setting: "default" for setting in VAULT_CREATE_MODES.values()}
    try:
        deleted = az("keyvault", "list-deleted", "--resource-type", "vault") or []
    except HookError as error:
        note(f"warning: cannot list soft-deleted vaults ({error}); assuming none")
        return modes
    for vault in deleted:
        props = vault.get("properties") or {}
        in_group = f"/resourcegroups/{resource_group}/" in str(props.get("vaultId", "")).lower()
        for role, setting in VAULT_CREATE_MODES.items():
            if in_group and _ours(props.get("tags"), role):
                note(f"vault {vault['name']} was soft-deleted: it is recovered, secrets included")
                modes[setting] = "recover"
    return modes


def check_ticket_secrets(modes: dict[str, str]) -> None:
    configured = {url: spec for url, spec in TICKET_SECRETS.items() if env(url)}
    if not configured:
        return
    if modes[VAULT_CREATE_MODES["ticket-credentials"]] == "recover":
        return  # the recovered vault brings its secrets back
    resource_group = required("AZURE_RESOURCE_GROUP")
    vaults = [
        v
        for v in az("keyvault", "list", "--resource-group", resource_group) or []
        if _ours(v.get("tags"), "ticket-credentials")
    ]
    if not vaults:
        names = ", ".join(configured)
        raise HookError(
            f"{names} is set, but the ticket-credentials vault does not exist yet: provision once without "
            f'it (azd env set {next(iter(configured))} ""), put the secret in the vault, then set it '
            'again (docs/deploy.md, "Ticket systems")'
        )
    vault = vaults[0]
    for url_setting, (secret, _, what) in configured.items():
        try:
            az("resource", "show", "--ids", f"{vault['id']}/secrets/{secret}")
        except HookError:
            raise HookError(
                f"{url_setting} is set but the vault {vault['name']} has no secret {secret}: put {what} "
                f"there first (az keyvault secret set --vault-name {vault['name']} --name {secret} "
                '--file <file holding it>; docs/deploy.md, "Ticket systems")'
            ) from None


def graph_grant_effective() -> str:
    """ "true" only when asked for, once the identity exists, and while a role is missing:
    Microsoft.Graph/appRoleAssignedTo cannot be deployed over an existing grant."""
    if not enabled("GRANT_MDE_PERMISSIONS_WITH_BICEP"):
        return "false"
    principal = env("AZURE_MANAGED_IDENTITY_PRINCIPAL_ID")
    if not principal:
        note(
            "GRANT_MDE_PERMISSIONS_WITH_BICEP: the MDE identity does not exist yet (first provision); "
            "the Graph grant runs on the next `azd provision`"
        )
        return "false"
    check = subprocess.run(
        ["bash", str(GRANT_SCRIPT), "--principal-id", principal, "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    if check.returncode == 0:
        note(
            "GRANT_MDE_PERMISSIONS_WITH_BICEP: the MDE roles are already granted; the Graph module is skipped"
        )
        return "false"
    if check.returncode == 3:
        return "true"
    raise HookError(f"cannot read the MDE identity's app roles: {check.stderr.strip()[-600:]}")


def run(in_azd: bool) -> None:
    if in_azd:
        check_azd_version()
    check_no_secret_in_environment()
    check_ticket_urls()
    register_providers()
    values: dict[str, str] = {}
    kind = operator_principal_type(in_azd)
    if kind:
        values[OPERATOR_PRINCIPAL_TYPE] = kind
    modes = vault_create_modes()
    values.update(modes)
    check_ticket_secrets(modes)
    values[GRANT_VIA_BICEP] = graph_grant_effective()
    publish(values, in_azd=in_azd)


def main(argv: list[str] | None = None) -> int:
    return hook_main(__doc__ or "", run, argv)


if __name__ == "__main__":
    sys.exit(main())
