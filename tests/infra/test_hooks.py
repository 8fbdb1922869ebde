"""The azd hooks (infra/hooks/) against the stand-in az and azd (fake_azure_cli.py)."""

from __future__ import annotations

import base64
import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import ROOT, SUBSCRIPTION, FakeAzure

HOOKS = ROOT / "infra" / "hooks"
GROUP = "rg-mde"
VAULT_ID = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}/providers/Microsoft.KeyVault/vaults/kv-tkt-abc"
)


def _hook_module(name: str) -> Any:
    """A hook script as a module (its directory on sys.path, as when it runs)."""
    sys.path.insert(0, str(HOOKS))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(HOOKS))


# The subscription of the tests has every provider the hook asks for, Logic Apps included.
REGISTERED = {
    namespace: "Registered" for namespace in (*_hook_module("preprovision").ALWAYS, "Microsoft.Logic")
}
VAULTS = "Microsoft.KeyVault/vaults"
OPERATOR = "0b7a6c2e-1d4f-4a3b-9c8d-7e6f5a4b3c2d"


def jwt(**claims: Any) -> str:
    """An (unsigned) access token with these claims: the hooks read claims, never verify."""

    def part(document: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


USER_TOKEN = jwt(oid=OPERATOR, scp="user_impersonation", upn="ana@contoso.com")
APP_TOKEN = jwt(oid=OPERATOR, idtyp="app", roles=[])


@pytest.fixture
def azure(fake_azure: FakeAzure) -> FakeAzure:
    """A subscription with every provider registered, a user signed in, nothing deleted."""
    fake_azure.update(providers=REGISTERED, token=USER_TOKEN)
    fake_azure.env.update(
        AZURE_SUBSCRIPTION_ID=SUBSCRIPTION, AZURE_RESOURCE_GROUP=GROUP, AZURE_ENV_NAME="prod"
    )
    return fake_azure


def preprovision(azure: FakeAzure, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return azure.run([sys.executable, str(HOOKS / "preprovision.py"), *args], env=env)


def postprovision(azure: FakeAzure, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return azure.run([sys.executable, str(HOOKS / "postprovision.py"), *args], env=env)


def printed(run: subprocess.CompletedProcess[str]) -> dict[str, str]:
    return dict(line.split("=", 1) for line in run.stdout.splitlines())


# --- preprovision: checks ------------------------------------------------------------------------


def test_azd_older_than_1_18_is_refused_before_anything_else(azure: FakeAzure) -> None:
    azure.update(azd_version="1.17.2")
    run = preprovision(azure, "--azd")
    assert run.returncode == 1
    assert "azd 1.17.2 is too old" in run.stderr and "1.18.0 or newer" in run.stderr
    assert azure.calls("az") == [] and azure.state()["azd_env"] == {}


def test_under_azd_every_value_goes_to_the_azd_environment(azure: FakeAzure) -> None:
    run = preprovision(azure, "--azd")
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""
    assert azure.state()["azd_env"] == {
        "OPERATOR_PRINCIPAL_TYPE": "User",
        "TICKET_CREDENTIALS_VAULT_CREATE_MODE": "default",
        "TICKET_INTAKE_VAULT_CREATE_MODE": "default",
        "MDE_GRANT_VIA_BICEP": "false",
    }
    for call in azure.calls("az"):
        if call[0] not in ("cloud", "account"):
            assert call[-2:] == ["--subscription", SUBSCRIPTION], call


def test_without_azd_it_prints_the_values_and_names_no_operator(azure: FakeAzure) -> None:
    run = preprovision(azure)
    assert run.returncode == 0, run.stderr
    assert printed(run) == {
        "TICKET_CREDENTIALS_VAULT_CREATE_MODE": "default",
        "TICKET_INTAKE_VAULT_CREATE_MODE": "default",
        "MDE_GRANT_VIA_BICEP": "false",
    }
    assert azure.calls("azd") == []


@pytest.mark.parametrize(
    ("token", "env", "expected"),
    [
        (USER_TOKEN, {}, "User"),
        (APP_TOKEN, {}, "ServicePrincipal"),
        (jwt(oid=OPERATOR, roles=["x"]), {}, "ServicePrincipal"),  # no idtyp, no scp: app-only
        (jwt(oid=OPERATOR, idtyp="user", scp="x"), {"AZURE_PRINCIPAL_ID": OPERATOR.upper()}, "User"),
        (APP_TOKEN, {"AZURE_PRINCIPAL_TYPE": "Group"}, "Group"),
    ],
    ids=["user login", "service principal login", "app token without idtyp", "same id", "set by hand"],
)
def test_the_operator_type_follows_the_login(
    azure: FakeAzure, token: str, env: dict[str, str], expected: str
) -> None:
    """azd passes no principal type to a .bicepparam file: a service principal login used to get
    its operator roles typed User and fail with UnmatchedPrincipalType."""
    azure.update(token=token)
    run = preprovision(azure, "--azd", **env)
    assert run.returncode == 0, run.stderr
    assert azure.state()["azd_env"]["OPERATOR_PRINCIPAL_TYPE"] == expected
    assert token not in run.stdout + run.stderr, "a token is never printed"


def test_another_principal_is_looked_up_in_the_directory(azure: FakeAzure) -> None:
    group = "5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a"
    azure.update(directory={group: "#microsoft.graph.group"})
    run = preprovision(azure, "--azd", AZURE_PRINCIPAL_ID=group)
    assert run.returncode == 0, run.stderr
    assert azure.state()["azd_env"]["OPERATOR_PRINCIPAL_TYPE"] == "Group"


def test_a_principal_of_unknown_kind_asks_for_its_type(azure: FakeAzure) -> None:
    run = preprovision(azure, "--azd", AZURE_PRINCIPAL_ID="5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a")
    assert run.returncode == 1
    assert "set AZURE_PRINCIPAL_TYPE to User, Group or ServicePrincipal" in run.stderr


def test_a_wrong_principal_type_is_refused(azure: FakeAzure) -> None:
    run = preprovision(azure, "--azd", AZURE_PRINCIPAL_TYPE="user")
    assert run.returncode == 1 and "AZURE_PRINCIPAL_TYPE must be one of" in run.stderr


def test_missing_providers_are_registered(azure: FakeAzure) -> None:
    azure.update(
        providers={**REGISTERED, "Microsoft.App": "NotRegistered"},
        may_register=["Microsoft.App", "Microsoft.Logic"],
    )
    run = preprovision(azure)
    assert run.returncode == 0, run.stderr
    registered = [c for c in azure.calls("az") if c[:2] == ["provider", "register"]]
    assert [c[3] for c in registered] == ["Microsoft.App"] and "--wait" in registered[0]
    assert azure.state()["providers"]["Microsoft.App"] == "Registered"


def test_providers_nobody_here_may_register_are_named_for_an_admin(azure: FakeAzure) -> None:
    azure.update(providers={"Microsoft.Web": "Registered"}, may_register=[])
    run = preprovision(azure, DEPLOY_TICKET_INTAKE="true")
    assert run.returncode == 1
    for namespace in ("Microsoft.App", "Microsoft.KeyVault", "Microsoft.Logic"):
        assert f"az provider register --namespace {namespace} --wait" in run.stderr
    assert "az provider register --namespace Microsoft.Web " not in run.stderr


def test_logic_apps_are_only_needed_with_a_producer(azure: FakeAzure) -> None:
    azure.update(providers={**REGISTERED, "Microsoft.Logic": "NotRegistered"})
    assert preprovision(azure).returncode == 0, "no producer: Microsoft.Logic is not needed"
    run = preprovision(azure, DEPLOY_SENTINEL_PLAYBOOKS="true")
    assert run.returncode == 1 and "Microsoft.Logic" in run.stderr


def test_unreadable_provider_state_is_a_warning(azure: FakeAzure) -> None:
    azure.update(unreadable_providers=list(REGISTERED))
    run = preprovision(azure)
    assert run.returncode == 0, run.stderr
    assert "warning: cannot read the registration of Microsoft.Web" in run.stderr


def _deleted(name: str, group: str, env: str, role: str) -> dict[str, Any]:
    return {
        "name": name,
        "properties": {
            "vaultId": f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{group}/providers/{VAULTS}/{name}",
            "tags": {"azd-env-name": env, "mde-vault-role": role, "workload": "soc-automation"},
            "purgeProtectionEnabled": True,
        },
    }


def test_a_vault_azd_down_deleted_is_recovered(azure: FakeAzure) -> None:
    azure.update(
        deleted_vaults=[
            _deleted("kv-tkt-abc", GROUP.upper(), "prod", "ticket-credentials"),
            _deleted("kv-mde-old", GROUP, "staging", "ticket-intake"),  # another environment's
            _deleted("kv-mde-xyz", "rg-other", "prod", "ticket-intake"),  # another group's
        ]
    )
    run = preprovision(azure)
    assert run.returncode == 0, run.stderr
    values = printed(run)
    assert values["TICKET_CREDENTIALS_VAULT_CREATE_MODE"] == "recover"
    assert values["TICKET_INTAKE_VAULT_CREATE_MODE"] == "default"
    assert "kv-tkt-abc was soft-deleted" in run.stderr


# --- preprovision: ticket systems ----------------------------------------------------------------


def _credentials_vault(azure: FakeAzure, *secrets: str) -> None:
    vault = {
        "id": VAULT_ID,
        "name": "kv-tkt-abc",
        "tags": {"azd-env-name": "prod", "mde-vault-role": "ticket-credentials"},
    }
    azure.update(vaults=[vault], secrets=[f"{VAULT_ID}/secrets/{s}" for s in secrets])


@pytest.mark.parametrize("setting", ["JIRA_API_TOKEN", "SERVICENOW_PASSWORD"])
def test_a_secret_in_the_environment_is_refused(azure: FakeAzure, setting: str) -> None:
    run = preprovision(azure, **{setting: "do-not-put-me-here"})
    assert run.returncode == 1 and f"{setting} is set in the environment" in run.stderr
    assert "do-not-put-me-here" not in run.stderr
    assert azure.calls("az") == []


def test_a_ticket_url_must_be_https(azure: FakeAzure) -> None:
    run = preprovision(azure, SERVICENOW_BASE_URL="http://contoso.service-now.com")
    assert run.returncode == 1 and "SERVICENOW_BASE_URL must be an https:// URL" in run.stderr


def test_a_ticket_system_before_its_vault_exists_says_what_to_do(azure: FakeAzure) -> None:
    run = preprovision(azure, JIRA_BASE_URL="https://contoso.atlassian.net")
    assert run.returncode == 1
    assert "the ticket-credentials vault does not exist yet: provision once without it" in run.stderr


def test_a_ticket_system_without_its_secret_names_the_command(azure: FakeAzure) -> None:
    _credentials_vault(azure, "jira-api-token")
    run = preprovision(
        azure,
        JIRA_BASE_URL="https://contoso.atlassian.net",
        SERVICENOW_BASE_URL="https://contoso.service-now.com",
    )
    assert run.returncode == 1
    assert "az keyvault secret set --vault-name kv-tkt-abc --name servicenow-password" in run.stderr


def test_a_ticket_system_with_its_secret_passes(azure: FakeAzure) -> None:
    _credentials_vault(azure, "jira-api-token", "servicenow-password")
    run = preprovision(
        azure,
        JIRA_BASE_URL="https://contoso.atlassian.net",
        SERVICENOW_BASE_URL="https://contoso.service-now.com",
    )
    assert run.returncode == 0, run.stderr
    shown = [c[c.index("--ids") + 1] for c in azure.calls("az") if c[:2] == ["resource", "show"]]
    assert shown == [f"{VAULT_ID}/secrets/jira-api-token", f"{VAULT_ID}/secrets/servicenow-password"]


def test_a_recovered_vault_brings_its_secrets_back(azure: FakeAzure) -> None:
    azure.update(deleted_vaults=[_deleted("kv-tkt-abc", GROUP, "prod", "ticket-credentials")])
    run = preprovision(azure, JIRA_BASE_URL="https://contoso.atlassian.net")
    assert run.returncode == 0, run.stderr
    assert printed(run)["TICKET_CREDENTIALS_VAULT_CREATE_MODE"] == "recover"


# --- the Graph Bicep grant: once, then skipped ---------------------------------------------------


def test_the_graph_grant_waits_for_the_identity_to_exist(azure: FakeAzure) -> None:
    run = preprovision(azure, GRANT_MDE_PERMISSIONS_WITH_BICEP="true")
    assert run.returncode == 0, run.stderr
    assert printed(run)["MDE_GRANT_VIA_BICEP"] == "false"
    assert "runs on the next `azd provision`" in run.stderr


def test_the_graph_grant_runs_while_a_role_is_missing_and_is_skipped_once_held(azure: FakeAzure) -> None:
    principal = azure.state()["identities"]["rg-mde/id-mde-abc"]
    env = {"GRANT_MDE_PERMISSIONS_WITH_BICEP": "true", "AZURE_MANAGED_IDENTITY_PRINCIPAL_ID": principal}
    first = preprovision(azure, **env)
    assert first.returncode == 0, first.stderr
    assert printed(first)["MDE_GRANT_VIA_BICEP"] == "true"
    # The roles got granted (by the module, or by anyone): the next provision must skip the module.
    grant = azure.run(
        ["bash", str(ROOT / "infra" / "scripts" / "grant-mde-permissions.sh"), "--principal-id", principal]
    )
    assert grant.returncode == 0, grant.stderr
    second = preprovision(azure, **env)
    assert second.returncode == 0, second.stderr
    assert printed(second)["MDE_GRANT_VIA_BICEP"] == "false"
    assert "already granted; the Graph module is skipped" in second.stderr


# --- postprovision -------------------------------------------------------------------------------


def test_after_the_graph_grant_ran_the_opt_in_is_switched_off(azure: FakeAzure) -> None:
    principal = azure.state()["identities"]["rg-mde/id-mde-abc"]
    run = postprovision(
        azure, "--azd", MDE_GRANT_VIA_BICEP="true", AZURE_MANAGED_IDENTITY_PRINCIPAL_ID=principal
    )
    assert run.returncode == 0, run.stderr
    assert azure.state()["azd_env"] == {
        "GRANT_MDE_PERMISSIONS_WITH_BICEP": "false",
        "MDE_GRANT_VIA_BICEP": "false",
    }


def test_grant_mde_permissions_runs_the_script_every_time_without_harm(azure: FakeAzure) -> None:
    principal = azure.state()["identities"]["rg-mde/id-mde-abc"]
    env = {"GRANT_MDE_PERMISSIONS": "true", "AZURE_MANAGED_IDENTITY_PRINCIPAL_ID": principal}
    for _ in range(2):
        run = postprovision(azure, "--azd", **env)
        assert run.returncode == 0, run.stderr
    assert len(azure.state()["assignments"]) == 2
    assert run.stdout.count("already granted:") == 2


def test_without_grant_mde_permissions_it_says_who_grants_and_how(azure: FakeAzure) -> None:
    principal = azure.state()["identities"]["rg-mde/id-mde-abc"]
    run = postprovision(azure, "--azd", AZURE_MANAGED_IDENTITY_PRINCIPAL_ID=principal)
    assert run.returncode == 0, run.stderr
    assert f"infra/scripts/grant-mde-permissions.sh --principal-id {principal}" in run.stderr
    assert azure.state()["assignments"] == [] and azure.calls("az") == []


REFERENCE_ENV = {
    "AZURE_MANAGED_IDENTITY_PRINCIPAL_ID": "1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b",
    "AZURE_FUNCTION_APP_NAME": "func-mde-abc",
    "JIRA_BASE_URL": "https://contoso.atlassian.net",
    "REFERENCE_POLL_SECONDS": "0",
}


def test_unresolved_key_vault_references_are_refreshed_until_they_resolve(azure: FakeAzure) -> None:
    azure.update(
        references={"JIRA_API_TOKEN": "AccessToKeyVaultDenied", "DRY_RUN": "Resolved"}, refreshes_to_resolve=3
    )
    run = postprovision(azure, **REFERENCE_ENV)
    assert run.returncode == 0, run.stderr
    assert "Key Vault references resolved: JIRA_API_TOKEN" in run.stderr
    refreshes = [c for c in azure.calls("az") if c[:3] == ["rest", "--method", "post"]]
    assert len(refreshes) == 3
    site = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}/providers/Microsoft.Web/sites/func-mde-abc"
    assert all(site + "/config/configreferences/appsettings/refresh?api-version=" in c[4] for c in refreshes)


def test_references_that_do_not_resolve_in_time_are_a_warning(azure: FakeAzure) -> None:
    azure.update(references={"JIRA_API_TOKEN": "SecretNotFound"}, refreshes_to_resolve=1000)
    run = postprovision(azure, **REFERENCE_ENV, REFERENCE_WAIT_SECONDS="0")
    assert run.returncode == 0, run.stderr
    assert "warning: Key Vault references not resolved: JIRA_API_TOKEN (SecretNotFound)" in run.stderr
    assert "configreferences/appsettings/refresh" in run.stderr


def test_no_ticket_system_no_reference_check(azure: FakeAzure) -> None:
    env = {k: v for k, v in REFERENCE_ENV.items() if k != "JIRA_BASE_URL"}
    run = postprovision(azure, **env)
    assert run.returncode == 0, run.stderr
    assert azure.calls("az") == []


# --- the staged package --------------------------------------------------------------------------


def test_the_package_holds_the_runtime_code_and_the_locked_requirements(tmp_path: Path) -> None:
    stage = _hook_module("stage_package")
    out = tmp_path / "functionapp"
    entries = stage.stage(ROOT, out)
    assert entries == ["host.json", "isolate_fn", "release_fn", "requirements.txt", "shared"]
    assert (out / "requirements.txt").read_text() == (ROOT / "requirements-deploy.txt").read_text()
    assert not list(out.rglob("__pycache__")) and not list(out.rglob("*.pyc"))
    shipped = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert "shared/settings.py" in shipped and "isolate_fn/function.json" in shipped
    assert not any(name.startswith(("tests/", "infra/", "devstack/", "docs/")) for name in shipped)


def test_a_stale_lock_is_refused(tmp_path: Path) -> None:
    stage = _hook_module("stage_package")
    root = tmp_path / "repo"
    root.mkdir()
    for name in ("host.json", "requirements-deploy.txt"):
        (root / name).write_text((ROOT / name).read_text())
    (root / "requirements.txt").write_text((ROOT / "requirements.txt").read_text().replace("==", "==9", 1))
    with pytest.raises(SystemExit, match=r"regenerate it with infra/scripts/lock_requirements[.]py"):
        stage.stage(root, root / "out")
    assert not (root / "out").exists()


def test_the_package_folder_stays_inside_the_repository(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(HOOKS / "stage_package.py"), "--out", str(tmp_path / "elsewhere")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode != 0 and "must be inside the repository" in run.stderr
    assert not (tmp_path / "elsewhere").exists()


def test_every_value_the_hooks_write_is_read_by_the_bicepparam_file() -> None:
    """A hook-owned name nobody reads would be a check that changes nothing."""
    common = _hook_module("common")
    bicepparam = (ROOT / "infra" / "main.bicepparam").read_text(encoding="utf-8")
    written = {common.OPERATOR_PRINCIPAL_TYPE, common.GRANT_VIA_BICEP, *common.VAULT_CREATE_MODES.values()}
    for name in written:
        assert f"readEnvironmentVariable('{name}'" in bicepparam, name
    # A type set by hand wins over the one the hook works out.
    line = next(line for line in bicepparam.splitlines() if line.startswith("param operatorPrincipalType = "))
    assert line.index("'AZURE_PRINCIPAL_TYPE'") < line.index("'OPERATOR_PRINCIPAL_TYPE', 'User'")
