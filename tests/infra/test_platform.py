"""Rules of the platform the templates must follow, which no linter here checks:

* Flex Consumption refuses site properties and app settings other plans take;
* every audit source sends its logs to the one Log Analytics workspace;
* the ticket-system secrets reach the app only as Key Vault references, resolved by the MDE
  identity, granted per secret, and no template ever holds a value;
* a vault soft-deleted by ``azd down`` is recovered, not re-created.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from .test_bicep import (
    INFRA,
    KEY_VAULT_SECRETS_OFFICER,
    KEY_VAULT_SECRETS_USER,
    MODULES,
    Template,
    bicep_files,
    body,
    dotted,
    parse,
    walk,
)

DIAGNOSTICS = "Microsoft.Insights/diagnosticSettings"
ROLE = "Microsoft.Authorization/roleAssignments"

# Microsoft's list of what Flex Consumption deprecates, "Flex Consumption plan deprecations":
# https://learn.microsoft.com/azure/azure-functions/functions-app-settings#flex-consumption-plan-deprecations
# Site properties (under properties or properties.siteConfig). The platform refuses them: "site
# configuration properties (Site.SiteConfig.FtpsState ...) for Flex Consumption sites is invalid".
FLEX_DEPRECATED_PROPERTIES = {
    "alwaysOn",
    "containerSize",
    "ftpsState",
    "functionAppScaleLimit",
    "isReserved",
    "isXenon",
    "javaVersion",
    "linuxFxVersion",
    "netFrameworkVersion",
    "powerShellVersion",
    "preWarmedInstanceCount",
    "use32BitWorkerProcess",
    "windowsFxVersion",
}
# App settings: the same list, with the ones Microsoft's own migration script drops as not applying
# to Flex Consumption (https://learn.microsoft.com/azure/azure-functions/migration/migrate-plan-consumption-to-flex,
# "Apply migrated app settings in the new app").
FLEX_DEPRECATED_SETTINGS = {
    "ENABLE_ORYX_BUILD",
    "FUNCTIONS_EXTENSION_VERSION",
    "FUNCTIONS_MAX_HTTP_CONCURRENCY",
    "FUNCTIONS_WORKER_DYNAMIC_CONCURRENCY_ENABLED",
    "FUNCTIONS_WORKER_PROCESS_COUNT",
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_WORKER_RUNTIME_VERSION",
    "SCM_DO_BUILD_DURING_DEPLOYMENT",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "WEBSITE_CONTENTOVERVNET",
    "WEBSITE_CONTENTSHARE",
    "WEBSITE_DNS_SERVER",
    "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT",
    "WEBSITE_MOUNT_ENABLED",
    "WEBSITE_NODE_DEFAULT_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_SKIP_CONTENTSHARE_VALIDATION",
    "WEBSITE_USE_PLACEHOLDER_DOTNETISOLATED",
    "WEBSITE_VNET_ROUTE_ALL",
}


@pytest.fixture(scope="module")
def main() -> Template:
    return Template(INFRA / "main.bicep")


def template(name: str) -> Template:
    return Template(MODULES / name)


def _keys(node: Any) -> set[str]:
    """Every property name in a (parsed) object, at any depth; Bicep's quotes dropped."""
    return {key.strip("'") for n in walk(node) if isinstance(n, dict) for key in n}


def _bicepparam_object(name: str) -> dict[str, str] | None:
    """The keys of ``param <name> = { ... }`` in main.bicepparam (one level), or None when unset."""
    text = (INFRA / "main.bicepparam").read_text(encoding="utf-8")
    match = re.search(rf"^param {name} = \{{(.*?)^\}}", text, re.M | re.S)
    if not match:
        return None
    return dict(re.findall(r"^\s*'?([\w.-]+)'?\s*:\s*(.+?)\s*$", match[1], re.M))


# --- Flex Consumption ----------------------------------------------------------------------------


def test_the_deprecation_lists_hold_what_the_issue_names() -> None:
    """Guards the lists themselves: the names the platform refused first must stay in them."""
    assert {"ftpsState", "alwaysOn", "use32BitWorkerProcess", "linuxFxVersion", "netFrameworkVersion"} <= (
        FLEX_DEPRECATED_PROPERTIES
    )
    assert {"javaVersion", "powerShellVersion"} <= FLEX_DEPRECATED_PROPERTIES
    assert {
        "FUNCTIONS_WORKER_RUNTIME",
        "FUNCTIONS_EXTENSION_VERSION",
        "WEBSITE_RUN_FROM_PACKAGE",
        "WEBSITE_CONTENTSHARE",
        "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
        "WEBSITE_NODE_DEFAULT_VERSION",
    } <= FLEX_DEPRECATED_SETTINGS


def test_the_flex_site_sets_no_property_flex_consumption_deprecates() -> None:
    app = template("app.bicep")
    (site,) = app.resources_of_type("Microsoft.Web/sites").values()
    (plan,) = app.resources_of_type("Microsoft.Web/serverfarms").values()
    assert body(plan)["sku"]["tier"] == "FlexConsumption", "the rule applies to Flex Consumption sites"
    properties = body(site)["properties"]
    used = {key.lower() for key in _keys(properties)}
    refused = sorted(p for p in FLEX_DEPRECATED_PROPERTIES if p.lower() in used)
    assert not refused, f"Flex Consumption refuses these site properties: {refused}"
    # Runtime, scale and deployment live in functionAppConfig instead.
    assert {"runtime", "scaleAndConcurrency", "deployment"} <= set(properties["functionAppConfig"])


def _names(settings: Any) -> set[str]:
    return {name.strip("'").upper() for name in settings}


def test_no_app_setting_flex_consumption_deprecates_is_set(main: Template) -> None:
    settings = _names(main.variables["appSettings"]["value"])
    assert settings, "the template's app settings"
    refused = sorted(settings & FLEX_DEPRECATED_SETTINGS)
    assert not refused, f"Flex Consumption deprecates these app settings: {refused}"


def test_no_deprecated_setting_comes_in_through_app_setting_overrides(main: Template) -> None:
    """appSettingOverrides is applied last (union): its default and whatever main.bicepparam
    sets must keep to the same rule."""
    passed = main.module("app.bicep")["config"]["params"]["appSettings"]["function"]
    assert passed["type"] == "union" and list(passed["parameters"].values())[-1] == "appSettingOverrides"
    default = main.params["appSettingOverrides"].get("default")
    assert isinstance(default, dict)
    overrides = _names(default) | _names(_bicepparam_object("appSettingOverrides") or {})
    refused = sorted(overrides & FLEX_DEPRECATED_SETTINGS)
    assert not refused, f"appSettingOverrides sets what Flex Consumption deprecates: {refused}"


def test_the_bicepparam_reader_sees_an_override_block() -> None:
    """The reader above must find a block when there is one, or the overrides check proves nothing."""
    sample = "param appSettingOverrides = {\n  'WEBSITE_RUN_FROM_PACKAGE': '1'\n  FOO__bar: 'x'\n}\n"
    block = re.search(r"^param appSettingOverrides = \{(.*?)^\}", sample, re.M | re.S)
    assert block is not None
    keys = dict(re.findall(r"^\s*'?([\w.-]+)'?\s*:\s*(.+?)\s*$", block[1], re.M))
    assert _names(keys) & FLEX_DEPRECATED_SETTINGS == {"WEBSITE_RUN_FROM_PACKAGE"}


# --- diagnostics ---------------------------------------------------------------------------------

# module -> {scope symbol: log categories that must be on}
AUDIT_LOGS = {
    "storage.bicep": {
        "queueService": {"StorageWrite", "StorageDelete"},
        "tableService": {"StorageWrite", "StorageDelete"},
    },
    "ticket-credentials.bicep": {"vault": {"AuditEvent"}},
    "ticket-intake.bicep": {"vault": {"AuditEvent"}, "intake": {"WorkflowRuntime"}},
    "sentinel-playbook.bicep": {
        "incidentPlaybook": {"WorkflowRuntime"},
        "alertPlaybook": {"WorkflowRuntime"},
    },
    "results-consumer.bicep": {"consumer": {"WorkflowRuntime"}},
    "app.bicep": {"site": {"FunctionAppLogs"}},
}


def _categories(logs: Any, tpl: Template) -> dict[str, Any]:
    if isinstance(logs, str):
        logs = tpl.variables[logs]["value"]
    return {entry["category"]: entry["enabled"] for entry in logs}


@pytest.mark.parametrize("name", sorted(AUDIT_LOGS))
def test_every_audit_source_logs_to_the_workspace(main: Template, name: str) -> None:
    tpl = template(name)
    settings = tpl.resources_of_type(DIAGNOSTICS)
    scopes = {}
    for symbol, setting in settings.items():
        config = body(setting)
        assert config["properties"]["workspaceId"] == "logAnalyticsWorkspaceId", symbol
        scopes[config["scope"]] = _categories(config["properties"]["logs"], tpl)
    assert set(scopes) == set(AUDIT_LOGS[name]), f"{name}: diagnostic settings on {sorted(scopes)}"
    for scope, wanted in AUDIT_LOGS[name].items():
        on = {category for category, enabled in scopes[scope].items() if enabled is True}
        assert wanted <= on, f"{name}: {scope} must log {sorted(wanted - on)}"
    passed = body(main.module(name))["params"]["logAnalyticsWorkspaceId"]
    assert dotted(passed) == "monitoring.outputs.workspaceId", f"{name} logs to the one workspace"


def test_storage_reads_are_logged_only_when_asked_for(main: Template) -> None:
    storage = template("storage.bicep")
    logs = _categories("storageLogs", storage)
    assert logs["StorageRead"] == "logStorageReads"
    assert storage.params["logStorageReads"]["default"] is False
    assert main.params["logStorageReads"]["default"] is False
    assert body(main.module("storage.bicep"))["params"]["logStorageReads"] == "logStorageReads"


def test_every_key_vault_and_logic_app_has_a_diagnostic_setting() -> None:
    """A new vault or workflow anywhere must come with its audit log."""
    audited = {"Microsoft.KeyVault/vaults", "Microsoft.Logic/workflows"}
    for path in bicep_files():
        tpl = Template(path)
        scoped = {body(s)["scope"] for s in tpl.resources_of_type(DIAGNOSTICS).values()}
        for symbol, resource in tpl.resources.items():
            if resource["type"] in audited and not resource.get("existing"):
                assert symbol in scoped, f"{path.name}: {symbol} sends no logs to Log Analytics"


# --- ticket-system credentials -------------------------------------------------------------------

SECRET_SETTINGS = {
    "JIRA_API_TOKEN": ("jiraConfigured", "jiraTokenSecretName", "jira-api-token"),
    "SERVICENOW_PASSWORD": ("serviceNowConfigured", "serviceNowSecretName", "servicenow-password"),
}
PLAIN_SETTINGS = {
    "JIRA_BASE_URL": "jiraBaseUrl",
    "JIRA_USER_EMAIL": "jiraUserEmail",
    "JIRA_API_VERSION": "jiraApiVersion",
    "SERVICENOW_BASE_URL": "serviceNowBaseUrl",
    "SERVICENOW_USERNAME": "serviceNowUsername",
}


def test_ticket_settings_are_plain_parameters_empty_by_default(main: Template) -> None:
    settings = main.variables["appSettings"]["value"]
    for setting, param in PLAIN_SETTINGS.items():
        assert settings[setting] == param, setting
        expected = "3" if param == "jiraApiVersion" else ""
        assert main.params[param]["default"] == expected, param
        assert main.params[param]["type"] == "string"
    allowed = next(
        d["argument"] for d in main.params["jiraApiVersion"]["decorators"] if d["type"] == "allowed"
    )
    assert set(allowed) == {"2", "3"}
    assert main.resolve("jiraConfigured") is False and main.resolve("serviceNowConfigured") is False
    bicepparam = (INFRA / "main.bicepparam").read_text(encoding="utf-8")
    for setting, param in PLAIN_SETTINGS.items():
        default = "3" if param == "jiraApiVersion" else ""
        assert f"param {param} = readEnvironmentVariable('{setting}', '{default}')" in bicepparam
    for secret in SECRET_SETTINGS:
        assert secret not in bicepparam, f"{secret} must never be a parameter"


@pytest.mark.parametrize("setting", sorted(SECRET_SETTINGS))
def test_secret_settings_are_key_vault_references_only_when_configured(main: Template, setting: str) -> None:
    switch, secret_var, secret_name = SECRET_SETTINGS[setting]
    value = main.variables["appSettings"]["value"][setting]["operator"]
    assert value["type"] == "conditional" and value["operands"]["condition"] == switch
    assert value["operands"]["false_value"] == ""
    reference = value["operands"]["true_value"]
    assert reference == (
        f"@Microsoft.KeyVault(VaultName=${{ticketCredentialsVaultName}};SecretName=${{{secret_var}}})"
    )
    assert main.resolve(secret_var) == secret_name
    # Not configured (the default): no reference, so nothing to resolve and no secret needed.
    assert main.resolve(main.variables["appSettings"]["value"][setting]) == ""


def test_the_vault_the_references_name_is_the_one_the_module_creates(main: Template) -> None:
    use = body(main.module("ticket-credentials.bicep"))["params"]
    assert use["vaultName"] == "ticketCredentialsVaultName"
    assert use["jiraTokenSecretName"] == "jiraTokenSecretName"
    assert use["serviceNowSecretName"] == "serviceNowSecretName"
    assert use["jiraConfigured"] == "jiraConfigured" and use["serviceNowConfigured"] == "serviceNowConfigured"
    assert dotted(use["readerPrincipalId"]) == "mdeIdentity.outputs.principalId"
    vault_name = main.variables["ticketCredentialsVaultName"]["value"]
    assert vault_name == "kv-tkt-${resourceToken}" and len("kv-tkt-") + 13 <= 24
    # The app starts only once the MDE identity may read what its settings refer to.
    depends = body(main.module("app.bicep"))["dependsOn"]
    assert {"rbac", "ticketCredentials"} <= set(depends)


def test_only_the_mde_identity_reads_the_secrets_and_only_each_configured_one() -> None:
    tpl = template("ticket-credentials.bicep")
    readers = {}
    for symbol, assignment in tpl.resources_of_type(ROLE).items():
        config = body(assignment)
        role = dotted(config["properties"]["roleDefinitionId"]["function"]["parameters"]["resource_name_1"])
        readers[symbol] = (role, config["scope"], config["properties"]["principalId"], assignment["config"])
    assert tpl.resolve("roles") == {
        "keyVaultSecretsUser": KEY_VAULT_SECRETS_USER,
        "keyVaultSecretsOfficer": KEY_VAULT_SECRETS_OFFICER,
    }
    assert {symbol: r[:3] for symbol, r in readers.items()} == {
        "jiraTokenReader": ("roles.keyVaultSecretsUser", "jiraToken", "readerPrincipalId"),
        "serviceNowCredentialReader": (
            "roles.keyVaultSecretsUser",
            "serviceNowCredential",
            "readerPrincipalId",
        ),
        # The operator sets the values: on the vault, only when an operator is named.
        "operatorSetsSecrets": ("roles.keyVaultSecretsOfficer", "vault", "operatorPrincipalId"),
    }
    assert readers["jiraTokenReader"][3]["condition"] == "jiraConfigured"
    assert readers["serviceNowCredentialReader"][3]["condition"] == "serviceNowConfigured"
    assert readers["operatorSetsSecrets"][3]["condition"]["operator"]["type"] == "not"


def test_no_template_writes_or_outputs_a_ticket_secret() -> None:
    """The secrets exist only as `existing` references: a re-deployment cannot overwrite a value
    an operator set, and no value passes through a template, parameter or output."""
    tpl = template("ticket-credentials.bicep")
    secrets = tpl.resources_of_type("Microsoft.KeyVault/vaults/secrets")
    assert set(secrets) == {"jiraToken", "serviceNowCredential"}
    for symbol, secret in secrets.items():
        assert secret["existing"] is True, f"{symbol} must not be created or written here"
        assert "properties" not in body(secret), symbol
        assert body(secret)["parent"] == "vault"
    for output in tpl.doc.get("outputs", {}):
        assert output in ("name", "id"), output
    # Only the intake writes a secret (its own URL); nothing else in infra/ does.
    writers = {
        path.name
        for path in bicep_files()
        for resource in Template(path).resources_of_type("Microsoft.KeyVault/vaults/secrets").values()
        if not resource.get("existing")
    }
    assert writers == {"ticket-intake.bicep"}


@pytest.mark.parametrize("name", ["ticket-credentials.bicep", "ticket-intake.bicep"])
def test_every_vault_is_rbac_only_and_purge_protected(name: str) -> None:
    tpl = template(name)
    (vault,) = tpl.resources_of_type("Microsoft.KeyVault/vaults").values()
    props = body(vault)["properties"]
    assert props["enableRbacAuthorization"] is True and props["accessPolicies"] == []
    assert props["enableSoftDelete"] is True and props["enablePurgeProtection"] is True
    assert props["enabledForTemplateDeployment"] is False and props["enabledForDeployment"] is False


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: str(p.relative_to(INFRA)))
def test_no_output_is_named_like_a_password(path: Path) -> None:
    """outputs-should-not-contain-secrets (an error in bicepconfig.json) flags an output whose name
    contains "password" (Azure/bicep, OutputsShouldNotContainSecretsRule); the secret names the
    templates output are names, not values."""
    for name in parse(path).get("outputs", {}):
        assert "password" not in name.lower(), f"{path.name}: output {name}"


# --- vaults survive `azd down` + `azd up` --------------------------------------------------------

VAULTS = {
    "ticket-credentials.bicep": ("createMode", "ticketCredentialsVaultCreateMode", "ticket-credentials"),
    "ticket-intake.bicep": ("keyVaultCreateMode", "ticketIntakeVaultCreateMode", "ticket-intake"),
}


@pytest.mark.parametrize("name", sorted(VAULTS))
def test_a_soft_deleted_vault_is_recovered_under_its_name(main: Template, name: str) -> None:
    """Purge protection keeps a deleted vault's name for its retention period, so re-creating it
    fails; createMode 'recover' brings it back. The preprovision hook finds the deleted vault by
    its tags and sets the mode."""
    module_param, main_param, role = VAULTS[name]
    tpl = template(name)
    (vault,) = tpl.resources_of_type("Microsoft.KeyVault/vaults").values()
    assert body(vault)["properties"]["createMode"] == module_param
    allowed = next(d["argument"] for d in tpl.params[module_param]["decorators"] if d["type"] == "allowed")
    assert set(allowed) == {"default", "recover"} and tpl.params[module_param]["default"] == "default"
    assert body(main.module(name))["params"][module_param] == main_param
    assert main.params[main_param]["default"] == "default"
    # Tags the hook matches a deleted vault by: the azd environment (in tags) and the vault's role.
    assert body(vault)["tags"]["function"]["type"] == "union"
    assert tpl.resolve(body(vault)["tags"], {"tags": {"azd-env-name": "prod"}}) == {
        "azd-env-name": "prod",
        "mde-vault-role": role,
    }
    assert main.resolve("allTags", {"environmentName": "prod"})["azd-env-name"] == "prod"
    env = {"ticket-credentials": "TICKET_CREDENTIALS", "ticket-intake": "TICKET_INTAKE"}[role]
    bicepparam = (INFRA / "main.bicepparam").read_text(encoding="utf-8")
    assert f"param {main_param} = readEnvironmentVariable('{env}_VAULT_CREATE_MODE', 'default')" in bicepparam


# --- the deployment guide ------------------------------------------------------------------------


def test_the_deploy_guide_walks_both_deployments_and_names_every_pitfall() -> None:
    guide = (INFRA.parent / "docs" / "deploy.md").read_text(encoding="utf-8")
    for heading in ("### First deployment", "### Re-deployment", "### Known platform pitfalls"):
        assert heading in guide, heading
    assert "**1.18 or newer**" in guide and "1.10" not in guide
    pitfalls = guide.split("### Known platform pitfalls", 1)[1].split("\n### ", 1)[0]
    for symptom in (
        "FtpsState",
        "UnmatchedPrincipalType",
        "EntitlementGrant entry already exists",
        "413",
        "purge protection",
        "403",
        "MissingSubscriptionRegistration",
        "@Microsoft.KeyVault",
    ):
        assert symptom in pitfalls, f"the pitfalls table lacks {symptom}"
    for row in (line for line in pitfalls.splitlines() if line.startswith("| ") and "---" not in line):
        assert row.count(" | ") >= 2 and row.split(" | ")[-1].strip(" |"), (
            f"a pitfall without its remedy: {row}"
        )
    for setting in (*PLAIN_SETTINGS, *SECRET_SETTINGS):
        assert f"`{setting}`" in guide, setting
    assert "az keyvault secret set --vault-name" in guide
