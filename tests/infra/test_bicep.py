"""Checks of infra/ that run without the bicep CLI (which cannot be installed here).

* every .bicep file parses with pycep-parser (the newer one, in the main venv);
* checkov's bicep scan has no finding outside the reviewed skip list (checkov-skips.toml);
* the wiring: queues, app settings, identities and role assignments agree with the app's code.

checkov lives in its own venv, .venv-infra (requirements-infra.txt): without it these tests are
skipped locally and fail under CI, which installs it.
"""

from __future__ import annotations

import ast
import functools
import json
import os
import re
import subprocess
import tomllib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MODULES = INFRA / "modules"
VENV_INFRA = ROOT / ".venv-infra"
SKIPS_FILE = Path(__file__).with_name("checkov-skips.toml")
IN_CI = bool(os.environ.get("CI"))

DEFENDER_ATP_APP_ID = "fc780465-2017-40d4-a0c5-307022471b92"
GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")

# Settings the code will read once the features in flight land (policy, dry run, tracking, and the
# ticket systems the release path verifies every release with).
FUTURE_SETTINGS = {
    "TICKET_MAPPINGS",
    "ISOLATION_POLICY",
    "DRY_RUN",
    "LEDGER_TABLE",
    "JIRA_BASE_URL",
    "JIRA_USER_EMAIL",
    "JIRA_API_TOKEN",
    "JIRA_API_VERSION",
    "SERVICENOW_BASE_URL",
    "SERVICENOW_USERNAME",
    "SERVICENOW_PASSWORD",
}
# Read by the code but deliberately not set in Azure, with the reason.
NOT_SET_IN_AZURE = {
    "CONTAINMENT_STORAGE": "a connection string, for the local dev stack only; Azure uses the "
    "identity-based CONTAINMENT_STORAGE__queueServiceUri form",
}
BUILT_IN_ROLES = {
    "queueDataReader": "19e7f393-937e-4f77-808e-94535e297925",
    "queueDataMessageProcessor": "8a0f0c08-91a1-4084-bc3d-661d67233fed",
    "queueDataMessageSender": "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a",
    "tableDataContributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "blobDataOwner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "monitoringMetricsPublisher": "3913510d-42f4-4e42-8a64-420c390055eb",
}
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
KEY_VAULT_SECRETS_OFFICER = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"


def _missing(reason: str) -> None:
    """Skip locally, fail under CI: CI installs every tool these tests need."""
    if IN_CI:
        pytest.fail(f"{reason} (CI must install it)")
    pytest.skip(reason)


# --- parsing -------------------------------------------------------------------------------------


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


def uses_extension(path: Path) -> bool:
    return re.search(r"^extension\s", path.read_text(encoding="utf-8"), re.MULTILINE) is not None


@functools.cache
def _parser() -> Any:
    try:
        from pycep import BicepParser
    except ImportError:
        _missing("pycep-parser is not installed in this venv (requirements-dev.txt)")
    return BicepParser()


@functools.cache
def parse(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = _parser().parse(file_path=path)
    return doc


def body(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource's or module's own properties, under any loop or condition."""
    config: dict[str, Any] = resource["config"]
    while "loop_type" in config or "condition" in config:
        config = config["config"]
    return config


def dotted(expr: Any) -> str | None:
    """``a.b.c`` for a chain of property accessors (pycep nests them), else None."""
    if isinstance(expr, str):
        return expr
    if isinstance(expr, dict) and "operator" in expr:
        op = expr["operator"]
        left, right = dotted(op["operands"].get("operand_1")), dotted(op["operands"].get("operand_2"))
        if op["type"] == "property_accessor" and left and right:
            return f"{left}.{right}"
        if op["type"] == "index_accessor" and left and right:
            return f"{left}[{right}]"
    return None


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


UNRESOLVED = object()


class Template:
    """One parsed .bicep file, with just enough evaluation to follow names to literal values."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.doc = parse(path)
        self.params: dict[str, Any] = self.doc.get("parameters", {})
        self.variables: dict[str, Any] = self.doc.get("variables", {})
        self.resources: dict[str, Any] = self.doc.get("resources", {})
        self.modules: dict[str, Any] = self.doc.get("modules", {})

    def resources_of_type(self, type_: str) -> dict[str, dict[str, Any]]:
        return {name: r for name, r in self.resources.items() if r["type"] == type_}

    def module(self, file_name: str) -> dict[str, Any]:
        matches = [m for m in self.modules.values() if m["detail"]["path"] == f"modules/{file_name}"]
        assert len(matches) == 1, f"{self.path.name} should use modules/{file_name} exactly once"
        return matches[0]

    def resolve(self, expr: Any, names: dict[str, Any] | None = None) -> Any:
        names = names or {}
        if isinstance(expr, str):
            if expr in names:
                return names[expr]
            if expr in self.variables:
                return self.resolve(self.variables[expr]["value"], names)
            if expr in self.params:
                default = self.params[expr].get("default")
                return UNRESOLVED if default is None else self.resolve(default, names)
            if "${" in expr:
                parts = re.split(r"\$\{([^}]*)\}", expr)
                out = []
                for i, part in enumerate(parts):
                    value = self.resolve(part, names) if i % 2 else part
                    if not isinstance(value, str):
                        return UNRESOLVED
                    out.append(value)
                return "".join(out)
            return expr
        if isinstance(expr, bool | int) or expr is None:
            return expr
        if isinstance(expr, list):
            return [self.resolve(item, names) for item in expr]
        if "loop_type" in expr:
            detail = expr["loop_type"]["detail"]
            items = self.resolve(detail["array_name"], names)
            if expr["loop_type"]["type"] != "array" or not isinstance(items, list):
                return UNRESOLVED
            return [self.resolve(expr["config"], {**names, detail["item_name"]: item}) for item in items]
        if "function" in expr:
            fn = expr["function"]
            args = [self.resolve(arg, names) for arg in fn["parameters"].values() if arg is not None]
            if fn["type"] == "concat" and all(isinstance(a, list) for a in args):
                return [item for arg in args for item in arg]
            if fn["type"] == "union" and all(isinstance(a, dict) for a in args):
                return functools.reduce(lambda a, b: {**a, **b}, args, {})
            if fn["type"] == "empty" and args[0] is not UNRESOLVED:
                return not args[0]
            if fn["type"] == "string" and isinstance(args[0], dict | list):
                return json.dumps(args[0])
            return UNRESOLVED
        if "operator" in expr:
            op = expr["operator"]
            if op["type"] == "conditional":
                condition = self.resolve(op["operands"]["condition"], names)
                if isinstance(condition, bool):
                    return self.resolve(op["operands"]["true_value" if condition else "false_value"], names)
            if op["type"] == "not":
                value = self.resolve(op["operands"]["bool_value"], names)
                return (not value) if isinstance(value, bool) else UNRESOLVED
            return UNRESOLVED
        return {key.strip("'"): self.resolve(value, names) for key, value in expr.items()}


@pytest.fixture(scope="session")
def main() -> Template:
    return Template(INFRA / "main.bicep")


@pytest.fixture(scope="session")
def module() -> Any:
    return lambda name: Template(MODULES / name)


@pytest.fixture(scope="session")
def app_settings(main: Template) -> dict[str, Any]:
    """The app settings main.bicep gives the Function App (raw pycep expressions)."""
    passed = main.module("app.bicep")["config"]["params"]["appSettings"]
    assert passed["function"]["type"] == "union", "app settings: union(appSettings, appSettingOverrides)"
    first, overrides = passed["function"]["parameters"].values()
    assert (first, overrides) == ("appSettings", "appSettingOverrides")
    settings: dict[str, Any] = main.variables["appSettings"]["value"]
    return settings


@pytest.fixture(scope="session")
def resolved_settings(main: Template, app_settings: dict[str, Any]) -> dict[str, Any]:
    return {name: main.resolve(value) for name, value in app_settings.items()}


@pytest.fixture(scope="session")
def created_queues(main: Template, module: Any) -> set[str]:
    storage = module("storage.bicep")
    (queues,) = storage.resources_of_type("Microsoft.Storage/storageAccounts/queueServices/queues").values()
    assert queues["config"]["loop_type"]["detail"]["array_name"] == "queueNames"
    assert body(queues)["parent"] == "queueService"
    names = main.resolve(main.module("storage.bicep")["config"]["params"]["queueNames"])
    assert isinstance(names, list) and all(isinstance(n, str) for n in names), names
    return set(names)


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: str(p.relative_to(INFRA)))
def test_every_bicep_file_parses_with_pycep(path: Path) -> None:
    doc = parse(path)
    assert doc.get("resources") or doc.get("modules"), f"{path.name} declares nothing"


def test_the_parser_is_new_enough_for_the_graph_extension() -> None:
    _parser()
    version = tuple(int(part) for part in metadata.version("pycep-parser").split(".")[:2])
    assert version >= (0, 7), "pycep-parser >= 0.7 reads the `extension` statement"


# --- checkov -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def checkov() -> dict[str, Any]:
    """One checkov scan of infra/ per session, without the files its own parser cannot read."""
    checkov_bin = VENV_INFRA / "bin" / "checkov"
    if not checkov_bin.exists():
        _missing(
            ".venv-infra is missing: python3 -m venv .venv-infra && "
            ".venv-infra/bin/pip install -r requirements-infra.txt"
        )
    unreadable = [p for p in bicep_files() if uses_extension(p)]
    command = [
        str(checkov_bin),
        "--framework",
        "bicep",
        "--skip-download",
        "--quiet",
        "--compact",
        "--output",
        "json",
        "--directory",
        "infra",
    ]
    for path in unreadable:
        command += ["--skip-path", re.escape(str(path.relative_to(ROOT)))]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    try:
        report = json.loads(run.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"checkov printed no JSON (exit {run.returncode}):\n{run.stderr[-3000:]}")
    reports = report if isinstance(report, list) else [report]
    (bicep,) = [r for r in reports if r.get("check_type") == "bicep"]
    bicep["skipped_paths"] = unreadable
    return dict(bicep)


def _checkov_can_parse(paths: list[Path]) -> dict[str, bool]:
    """Whether checkov's own (older) pycep-parser reads each file, asked in .venv-infra."""
    code = (
        "import json, sys\nfrom pathlib import Path\nfrom pycep import BicepParser\n"
        "p = BicepParser()\nout = {}\nfor f in sys.argv[1:]:\n"
        "    try:\n        p.parse(file_path=Path(f)); out[f] = True\n"
        "    except Exception:\n        out[f] = False\nprint(json.dumps(out))\n"
    )
    run = subprocess.run(
        [str(VENV_INFRA / "bin" / "python"), "-c", code, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, bool] = json.loads(run.stdout)
    return result


def _skip_list() -> list[dict[str, str]]:
    skips: list[dict[str, str]] = tomllib.loads(SKIPS_FILE.read_text(encoding="utf-8"))["skip"]
    return skips


def _key(check: str, file: str, resource: str) -> tuple[str, str, str]:
    return check, file, resource


def test_checkov_reads_every_file_it_scans(checkov: dict[str, Any]) -> None:
    summary = checkov["summary"]
    assert summary["parsing_errors"] == 0, "checkov could not parse a template: it would check nothing there"
    assert summary["resource_count"] >= 30, summary


def test_only_files_checkovs_parser_cannot_read_are_kept_out_of_it(checkov: dict[str, Any]) -> None:
    skipped: list[Path] = checkov["skipped_paths"]
    assert [p.name for p in skipped] == ["mde-permissions.bicep"]
    readable = _checkov_can_parse(skipped)
    assert not any(readable.values()), f"checkov can read these now: stop skipping them: {readable}"


def test_checkov_finds_nothing_outside_the_reviewed_skip_list(checkov: dict[str, Any]) -> None:
    allowed = {_key(s["check"], s["file"], s["resource"]) for s in _skip_list()}
    findings = [
        f"{f['check_id']} {f['resource']} ({f['file_path']}): {f['check_name']}"
        for f in checkov["results"]["failed_checks"]
        if _key(f["check_id"], f["file_path"], f["resource"]) not in allowed
    ]
    assert not findings, "fix the template, or add a reviewed skip to checkov-skips.toml:\n" + "\n".join(
        findings
    )


def test_every_skip_still_matches_a_finding(checkov: dict[str, Any]) -> None:
    found = {_key(f["check_id"], f["file_path"], f["resource"]) for f in checkov["results"]["failed_checks"]}
    stale = [s for s in _skip_list() if _key(s["check"], s["file"], s["resource"]) not in found]
    assert not stale, f"these skips no longer match a finding: remove them: {stale}"


def test_every_skip_says_why() -> None:
    for skip in _skip_list():
        assert set(skip) == {"check", "file", "resource", "reason"}, skip
        assert len(skip["reason"].split()) >= 15, f"{skip['check']}: say why it does not apply"


# --- wiring: queues and settings -----------------------------------------------------------------


def _code_settings() -> set[str]:
    """App setting names shared/settings.py reads: ``helper(env, "NAME", ...)`` calls."""
    tree = ast.parse((ROOT / "shared" / "settings.py").read_text(encoding="utf-8"))
    constants = {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        for target in node.targets
        if isinstance(target, ast.Name) and isinstance(node.value.value, str)
    }

    def literal(arg: ast.expr) -> str | None:
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return arg.value
        if isinstance(arg, ast.Name):
            return constants.get(arg.id)
        if isinstance(arg, ast.JoinedStr):
            parts = [
                literal(v.value) if isinstance(v, ast.FormattedValue) else literal(v) for v in arg.values
            ]
            return None if None in parts else "".join(p for p in parts if p is not None)
        return None

    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and len(node.args) >= 2:
            first, second = node.args[0], node.args[1]
            if isinstance(first, ast.Name) and first.id == "env" and (name := literal(second)):
                names.add(name)
    assert {"ISOLATION_QUEUE", "MDE_CLOUD", "CONTAINMENT_STORAGE__queueServiceUri"} <= names, names
    return names


def test_every_setting_the_code_reads_is_set_by_the_template(app_settings: dict[str, Any]) -> None:
    wanted = (_code_settings() | FUTURE_SETTINGS) - set(NOT_SET_IN_AZURE)
    missing = sorted(wanted - set(app_settings))
    assert not missing, f"main.bicep sets no app setting for: {missing}"


def _function_bindings() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(ROOT.glob("*/function.json")):
        for binding in json.loads(path.read_text(encoding="utf-8"))["bindings"]:
            if binding["type"].startswith("queue"):
                yield path.parent.name, binding


def test_every_queue_a_function_binds_exists_in_the_template(
    resolved_settings: dict[str, Any], app_settings: dict[str, Any], created_queues: set[str]
) -> None:
    bindings = list(_function_bindings())
    assert {fn for fn, _ in bindings} >= {"isolate_fn", "release_fn"}
    for function, binding in bindings:
        queue = binding["queueName"]
        if match := re.fullmatch(r"%(\w+)%", queue):
            assert match[1] in resolved_settings, f"{function}: no app setting {match[1]}"
            queue = resolved_settings[match[1]]
        assert queue in created_queues, (
            f"{function} binds queue {queue!r}, which the template does not create"
        )
        assert f"{binding['connection']}__queueServiceUri" in app_settings, binding


def test_every_queue_named_in_an_app_setting_exists(
    resolved_settings: dict[str, Any], created_queues: set[str]
) -> None:
    queue_settings = {k: v for k, v in resolved_settings.items() if k.endswith("_QUEUE")}
    assert set(queue_settings) == {"ISOLATION_QUEUE", "RELEASE_QUEUE", "RESULTS_QUEUE"}
    for name, queue in queue_settings.items():
        assert queue in created_queues, f"{name}={queue!r} is not created"
    assert resolved_settings["ISOLATION_QUEUE"] == "isolation-requests"
    assert resolved_settings["RELEASE_QUEUE"] == "release-requests"
    assert resolved_settings["RESULTS_QUEUE"] == "machine-action-results"


def test_every_trigger_queue_has_its_poison_queue(main: Template, created_queues: set[str]) -> None:
    triggers = main.resolve("triggerQueues")
    # Tracking follow-ups go onto each function's own trigger queue: there is no tracking queue.
    assert set(triggers) == {"isolation-requests", "release-requests"}
    for queue in triggers:
        assert f"{queue}-poison" in created_queues
    assert created_queues == {
        "isolation-requests",
        "release-requests",
        "machine-action-results",
        "isolation-requests-poison",
        "release-requests-poison",
    }


def test_the_ledger_setting_names_the_table_the_template_creates(
    main: Template, module: Any, resolved_settings: dict[str, Any]
) -> None:
    storage = module("storage.bicep")
    (table,) = storage.resources_of_type("Microsoft.Storage/storageAccounts/tableServices/tables").values()
    assert body(table)["name"] == "ledgerTableName" and body(table)["parent"] == "tableService"
    created = main.resolve(main.module("storage.bicep")["config"]["params"]["ledgerTableName"])
    assert created == resolved_settings["LEDGER_TABLE"] == "containmentledger"


def test_new_deployments_start_in_dry_run_with_a_known_cloud(
    main: Template, resolved_settings: dict[str, Any]
) -> None:
    assert resolved_settings["DRY_RUN"] == "true"
    assert main.params["dryRun"]["default"] is True
    assert resolved_settings["MDE_CLOUD"] == "Commercial"
    allowed = next(d["argument"] for d in main.params["mdeCloud"]["decorators"] if d["type"] == "allowed")
    assert set(allowed) == {"Commercial", "GCC", "GCCHigh", "DoD"}
    bicepparam = (INFRA / "main.bicepparam").read_text(encoding="utf-8")
    assert "param dryRun = readEnvironmentVariable('DRY_RUN', 'true') != 'false'" in bicepparam


def test_policy_settings_are_json_of_the_parameters(resolved_settings: dict[str, Any]) -> None:
    # Empty object by default: the code then applies its built-in policy and mappings.
    assert resolved_settings["ISOLATION_POLICY"] == ""
    assert resolved_settings["TICKET_MAPPINGS"] == ""


# --- wiring: no secrets, two identities -----------------------------------------------------------


def test_connections_are_identity_based_on_the_right_identity(app_settings: dict[str, Any]) -> None:
    """The host's storage and telemetry run as the host identity; everything the app's code does
    (queues, ledger, MDE tokens) runs as the MDE identity."""
    for prefix, identity in (("AzureWebJobsStorage", "hostIdentity"), ("CONTAINMENT_STORAGE", "mdeIdentity")):
        assert prefix not in app_settings, f"{prefix} as a connection string"
        assert app_settings[f"{prefix}__credential"] == "managedidentity"
        assert dotted(app_settings[f"{prefix}__clientId"]) == f"{identity}.outputs.clientId", prefix
    assert dotted(app_settings["AZURE_CLIENT_ID"]) == "mdeIdentity.outputs.clientId"
    assert app_settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == (
        "Authorization=AAD;ClientId=${hostIdentity.outputs.clientId}"
    )
    assert dotted(app_settings["CONTAINMENT_STORAGE__queueServiceUri"]) == "storage.outputs.queueEndpoint"
    assert dotted(app_settings["CONTAINMENT_STORAGE__tableServiceUri"]) == "storage.outputs.tableEndpoint"
    assert dotted(app_settings["AzureWebJobsStorage__blobServiceUri"]) == "storage.outputs.blobEndpoint"


# The only list*() calls allowed, and why. Everything else that lists keys or secrets is refused.
LIST_CALLS_ALLOWED = {
    # Logic Apps expression in the Sentinel triggers: hands the trigger's own callback URL to Sentinel.
    "sentinel-playbook.bicep": "'@{listCallbackUrl()}'",
    # The intake's signed URL is the shared secret by design: written to Key Vault, never output.
    "ticket-intake.bicep": "intakeTrigger.listCallbackUrl().value",
}


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: str(p.relative_to(INFRA)))
def test_no_keys_connection_strings_or_secrets(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    if allowed := LIST_CALLS_ALLOWED.get(path.name):
        assert allowed in text, f"{path.name}: update LIST_CALLS_ALLOWED"
        text = text.replace(allowed, "")
    for pattern in (
        r"\blist\w*\(",
        r"\.list\w*\(",
        r"AccountKey",
        r"SharedAccessSignature",
        r"@secure\(\)",
        r"DefaultEndpointsProtocol",
        r"InstrumentationKey",
    ):
        assert not re.search(pattern, text), f"{path.name}: {pattern}"


# Stand-ins for two bicep linter rules that bicepconfig.json raises to errors (`az bicep build` in
# CI fails on them; the CLI cannot run here).
SECRET_LIKE_NAME = re.compile(r"password|pwd|secret|accountkey|acctkey", re.I)
SECRET_LIKE_ALLOWED = re.compile(r"secretpermissions|secretversion|secretur[il]|secretname", re.I)
DISALLOWED_HOSTS = re.compile(
    r"(?<![\w.-])(?:[\w-]+\.)*(?:management\.azure\.com|login\.microsoftonline\.com|vault\.azure\.net|"
    r"core\.windows\.net|database\.windows\.net|graph\.windows\.net|management\.core\.windows\.net)"
)


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: str(p.relative_to(INFRA)))
def test_params_that_look_like_secrets_are_secure(path: Path) -> None:
    """secure-secrets-in-params: a string/object param named like a secret must be @secure()."""
    for name, param in parse(path).get("parameters", {}).items():
        secure = any(d["type"] == "secure" for d in param.get("decorators", []))
        if param["type"] in ("string", "object") and not secure:
            looks_secret = SECRET_LIKE_NAME.search(name) and not SECRET_LIKE_ALLOWED.search(name)
            assert not looks_secret, f"{path.name}: rename {name} or mark it @secure()"


def _without_comment(line: str) -> str:
    """The line up to a // that is outside a '...' string (Bicep escapes a quote as \\')."""
    in_string = False
    i = 0
    while i < len(line):
        if line[i] == "\\" and in_string:
            i += 2
            continue
        if line[i] == "'":
            in_string = not in_string
        elif line.startswith("//", i) and not in_string:
            return line[:i]
        i += 1
    return line


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: str(p.relative_to(INFRA)))
def test_no_hard_coded_cloud_hosts(path: Path) -> None:
    """no-hardcoded-env-urls: cloud endpoints come from environment() or resource properties."""
    code = "\n".join(_without_comment(line) for line in path.read_text(encoding="utf-8").splitlines())
    hosts = {m[0] for m in DISALLOWED_HOSTS.finditer(code)} - {"schema.management.azure.com"}
    assert not hosts, f"{path.name}: {hosts}"


def test_storage_account_is_hardened(module: Any) -> None:
    storage = module("storage.bicep")
    (account,) = storage.resources_of_type("Microsoft.Storage/storageAccounts").values()
    props = body(account)["properties"]
    assert props["allowSharedKeyAccess"] is False
    assert props["allowBlobPublicAccess"] is False
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props["supportsHttpsTrafficOnly"] is True
    assert props["defaultToOAuthAuthentication"] is True
    assert props["publicNetworkAccess"] == "Enabled"


def test_monitoring_accepts_only_entra_authenticated_telemetry(module: Any) -> None:
    monitoring = module("monitoring.bicep")
    (appi,) = monitoring.resources_of_type("Microsoft.Insights/components").values()
    (workspace,) = monitoring.resources_of_type("Microsoft.OperationalInsights/workspaces").values()
    assert body(appi)["properties"]["DisableLocalAuth"] is True
    assert body(workspace)["properties"]["features"]["disableLocalAuth"] is True


def test_the_app_runs_as_both_identities_on_flex_consumption_python_311(main: Template, module: Any) -> None:
    params = main.module("app.bicep")["config"]["params"]
    assert dotted(params["hostIdentityId"]) == "hostIdentity.outputs.id"
    assert dotted(params["mdeIdentityId"]) == "mdeIdentity.outputs.id"
    app = module("app.bicep")
    (plan,) = app.resources_of_type("Microsoft.Web/serverfarms").values()
    assert body(plan)["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    (site,) = app.resources_of_type("Microsoft.Web/sites").values()
    site_body = body(site)
    assert site_body["kind"] == "functionapp,linux"
    assert site_body["identity"] == {
        "type": "UserAssigned",
        "userAssignedIdentities": {"'${hostIdentityId}'": {}, "'${mdeIdentityId}'": {}},
    }
    # A user-assigned identity resolves Key Vault references only when named here.
    assert site_body["properties"]["keyVaultReferenceIdentity"] == "mdeIdentityId"
    config = site_body["properties"]["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "pythonVersion"}
    assert app.resolve("pythonVersion") == "3.11"
    assert config["deployment"]["storage"]["authentication"] == {
        "type": "UserAssignedIdentity",
        "userAssignedIdentityResourceId": "hostIdentityId",
    }
    settings_loop = site_body["properties"]["siteConfig"]["appSettings"]["loop_type"]["detail"]["array_name"]
    assert settings_loop == {"function": {"type": "items", "parameters": {"arg_1": "appSettings"}}}
    assert site_body["properties"]["httpsOnly"] is True
    for policy in app.resources_of_type("Microsoft.Web/sites/basicPublishingCredentialsPolicies").values():
        assert body(policy)["properties"]["allow"] is False


def test_one_instance_per_function_group_by_default(main: Template, module: Any) -> None:
    """MDE's call limits, not compute, set the pace, and the app spends its MDE budget per process:
    a second instance of a function only buys 429s. Flex accepts a maximum of 1 per function group
    (https://learn.microsoft.com/azure/azure-functions/event-driven-scaling#limit-scale-out)."""
    app = module("app.bicep")
    assert app.resolve("maximumInstanceCount") == main.resolve("maximumInstanceCount") == 1
    for template in (app, main):
        decorators = {
            d["type"]: d.get("argument") for d in template.params["maximumInstanceCount"]["decorators"]
        }
        assert decorators["min_value"] == 1, template.path.name
    bicepparam = (INFRA / "main.bicepparam").read_text(encoding="utf-8")
    assert re.search(r"^param maximumInstanceCount = 1$", bicepparam, re.M)
    assert (
        dotted(main.module("app.bicep")["config"]["params"]["maximumInstanceCount"]) == "maximumInstanceCount"
    )


def _role_assignments(template: Template) -> dict[str, dict[str, Any]]:
    return template.resources_of_type("Microsoft.Authorization/roleAssignments")


def _role_keys(assignment: dict[str, Any]) -> set[str]:
    return {
        d.split(".", 1)[1]
        for node in walk(body(assignment))
        if (d := dotted(node)) and d.startswith("roles.")
    }


def test_each_role_assignment_targets_one_of_the_apps_identities(main: Template, module: Any) -> None:
    params = main.module("rbac.bicep")["config"]["params"]
    assert dotted(params["hostPrincipalId"]) == "hostIdentity.outputs.principalId"
    assert dotted(params["mdePrincipalId"]) == "mdeIdentity.outputs.principalId"
    rbac = module("rbac.bicep")
    assignments = _role_assignments(rbac)
    assert len(assignments) == 6
    for name, assignment in assignments.items():
        config = body(assignment)
        principal = config["properties"]["principalId"]
        assert principal in ("hostPrincipalId", "mdePrincipalId"), name
        assert config["properties"]["principalType"] == "ServicePrincipal", name
        guid_args = config["name"]["function"]
        assert guid_args["type"] == "guid" and principal in guid_args["parameters"].values(), name
        assert config["properties"]["roleDefinitionId"]["function"]["type"] == "subscription_resource_id"


def test_each_identity_gets_exactly_the_documented_roles_at_the_narrowest_scope(module: Any) -> None:
    rbac = module("rbac.bicep")
    assert rbac.resolve("roles") == BUILT_IN_ROLES
    granted = {
        name: (body(a)["properties"]["principalId"], _role_keys(a), dotted(body(a)["scope"]))
        for name, a in _role_assignments(rbac).items()
    }
    assert granted == {
        # The host: its containers (not the account) and telemetry.
        "hostBlobOwner": ("hostPrincipalId", {"blobDataOwner"}, "hostContainers[i]"),
        "hostMetricsPublisher": ("hostPrincipalId", {"monitoringMetricsPublisher"}, "appInsights"),
        # The app's code: its queues and its table, nothing of the host's.
        "triggerQueueReader": ("mdePrincipalId", {"queueDataReader"}, "triggerQueues[i]"),
        "triggerQueueProcessor": ("mdePrincipalId", {"queueDataMessageProcessor"}, "triggerQueues[i]"),
        "queueSender": ("mdePrincipalId", {"queueDataMessageSender"}, "sendQueues[i]"),
        "ledgerContributor": ("mdePrincipalId", {"tableDataContributor"}, "ledgerTable"),
    }
    (containers,) = [
        r
        for r in rbac.resources_of_type("Microsoft.Storage/storageAccounts/blobServices/containers").values()
    ]
    assert containers["existing"] is True
    assert containers["config"]["loop_type"]["detail"]["array_name"] == "hostContainerNames"


def test_the_host_owns_exactly_the_containers_the_template_creates(main: Template, module: Any) -> None:
    """Blob roles scoped to containers work only if every container the host writes exists: the
    host's own two (it cannot create them) and the deployment container."""
    owned = main.resolve(main.module("rbac.bicep")["config"]["params"]["hostContainerNames"])
    assert set(owned) == {"azure-webjobs-hosts", "azure-webjobs-secrets", "app-package"}
    storage_params = main.module("storage.bicep")["config"]["params"]
    created = set(main.resolve(storage_params["hostContainerNames"])) | {
        main.resolve(storage_params["deploymentContainerName"])
    }
    assert created == set(owned)
    storage = module("storage.bicep")
    containers = storage.resources_of_type("Microsoft.Storage/storageAccounts/blobServices/containers")
    assert set(containers) == {"deploymentContainer", "hostContainers"}
    assert containers["hostContainers"]["config"]["loop_type"]["detail"]["array_name"] == "hostContainerNames"
    for container in containers.values():
        assert body(container)["properties"] == {"publicAccess": "None"}


def test_the_app_can_send_to_every_queue_it_writes(
    main: Template, module: Any, created_queues: set[str]
) -> None:
    params = main.module("rbac.bicep")["config"]["params"]
    triggers = set(main.resolve(params["triggerQueueNames"]))
    send_only = set(main.resolve(params["sendOnlyQueueNames"]))
    # Triggers are re-enqueued to (fan-out, 429 delays, tracking), results and poison queues written.
    assert triggers | send_only == created_queues
    assert "machine-action-results" in send_only and not triggers & send_only


def test_operator_access_is_optional_and_limited_to_posting_and_peeking(main: Template, module: Any) -> None:
    use = main.module("operator-access.bicep")["config"]
    assert use["condition"] == {
        "operator": {
            "type": "not",
            "operands": {
                "bool_value": {
                    "function": {"type": "empty", "parameters": {"item_to_test": "operatorPrincipalId"}}
                }
            },
        }
    }
    assert main.resolve(use["condition"]) is False, "off unless an operator is named"
    assert main.resolve(use["config"]["params"]["requestQueueNames"]) == [
        "isolation-requests",
        "release-requests",
    ]
    operator = module("operator-access.bicep")
    for name, assignment in _role_assignments(operator).items():
        assert body(assignment)["properties"]["principalId"] == "principalId", name
        assert _role_keys(assignment) <= {"queueDataMessageSender", "queueDataReader"}, name


# --- the MDE app roles ---------------------------------------------------------------------------


def test_graph_module_grants_mde_roles_resolved_by_value(main: Template, module: Any) -> None:
    graph = module("mde-permissions.bicep")
    assert "microsoftGraphV1" in graph.doc["extensions"]
    (sp,) = graph.resources_of_type("Microsoft.Graph/servicePrincipals").values()
    assert sp["existing"] is True and graph.resolve(body(sp)["appId"]) == DEFENDER_ATP_APP_ID
    grants = graph.resources_of_type("Microsoft.Graph/appRoleAssignedTo")
    granted = set()
    for name, grant in grants.items():
        config = body(grant)
        assert config["principalId"] == "principalId", name
        assert dotted(config["resourceId"]) == "defenderAtp.id", name
        filters = [
            n["function"] for n in walk(config["appRoleId"]) if isinstance(n, dict) and "function" in n
        ]
        assert [f["type"] for f in filters] == ["filter"], f"{name}: look the role id up with filter()"
        assert dotted(filters[0]["parameters"]["input_array"]) == "defenderAtp.appRoles", name
        leaves = {n for n in walk(filters[0]["parameters"]["expression"]) if isinstance(n, str)}
        assert "value" in leaves, f"{name}: match roles on their value"
        granted |= leaves & {"Machine.Isolate", "Machine.Read.All"}
    assert len(grants) == 2 and granted == {"Machine.Isolate", "Machine.Read.All"}
    use = main.module("mde-permissions.bicep")["config"]
    assert use["condition"] == "grantMdePermissionsWithBicep"
    assert main.params["grantMdePermissionsWithBicep"]["default"] is False
    assert dotted(use["config"]["params"]["principalId"]) == "mdeIdentity.outputs.principalId"
    # The module is opt-in and one-shot: only the hook's effective value turns it on.
    bicepparam = (INFRA / "main.bicepparam").read_text(encoding="utf-8")
    effective = "readEnvironmentVariable('MDE_GRANT_VIA_BICEP', 'false') == 'true'"
    assert f"param grantMdePermissionsWithBicep = {effective}\n" in bicepparam


@pytest.mark.parametrize(
    "path",
    [MODULES / "mde-permissions.bicep", INFRA / "scripts" / "grant-mde-permissions.sh"],
    ids=lambda p: p.name,
)
def test_graph_role_ids_are_not_hard_coded(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert set(GUID.findall(text)) == {DEFENDER_ATP_APP_ID}, (
        "only the WindowsDefenderATP appId may be a literal"
    )
    assert "Machine.Isolate" in text and "Machine.Read.All" in text


def test_bicepconfig_enables_the_graph_extension_the_module_uses() -> None:
    config = json.loads((INFRA / "bicepconfig.json").read_text(encoding="utf-8"))
    reference = config["extensions"]["microsoftGraphV1"]
    assert reference.startswith("br:mcr.microsoft.com/bicep/extensions/microsoftgraph/v1.0:")
    assert re.search(r"^extension microsoftGraphV1$", (MODULES / "mde-permissions.bicep").read_text(), re.M)


def test_grant_script_is_valid_bash_and_says_who_must_run_it() -> None:
    script = INFRA / "scripts" / "grant-mde-permissions.sh"
    assert os.access(script, os.X_OK), "grant-mde-permissions.sh must be executable"
    subprocess.run(["bash", "-n", str(script)], check=True, timeout=30)
    text = script.read_text(encoding="utf-8")
    assert "AppRoleAssignment.ReadWrite.All" in text and "Privileged Role Administrator" in text
    assert "appRoleAssignedTo" in text and "az rest" in text


# --- deployment entry points ---------------------------------------------------------------------


def _yaml(path: Path) -> Any:
    """A YAML file as data, read by PyYAML in .venv-infra (checkov brings it; the main venv has none)."""
    if not (VENV_INFRA / "bin" / "python").exists():
        _missing(".venv-infra is missing: it provides PyYAML")
    code = "import json, sys, yaml\nprint(json.dumps(yaml.safe_load(open(sys.argv[1], encoding='utf-8'))))"
    run = subprocess.run(
        [str(VENV_INFRA / "bin" / "python"), "-c", code, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(run.stdout)


def test_azd_project_deploys_the_staged_package_as_a_python_function() -> None:
    project = _yaml(ROOT / "azure.yaml")
    assert project["infra"] == {"provider": "bicep", "path": "infra", "module": "main"}
    api = project["services"]["api"]
    assert {k: api[k] for k in ("project", "language", "host", "dist")} == {
        "project": ".",
        "language": "python",
        "host": "function",
        "dist": "build/functionapp",
    }
    # The package is staged before azd zips it: runtime code and the locked requirements.
    for shell in ("posix", "windows"):
        assert api["hooks"]["prepackage"][shell]["run"].split()[1:] == ["infra/hooks/stage_package.py"]
    assert "'azd-service-name': 'api'" in (MODULES / "app.bicep").read_text(encoding="utf-8")


def test_azd_older_than_1_18_stops_before_anything_runs() -> None:
    """azd checks requiredVersions when it loads azure.yaml; the preprovision hook checks again
    with its own message. 1.17 brought the Bicep the Graph extension needs, 1.18 .funcignore
    (https://github.com/Azure/azure-dev/blob/main/cli/azd/CHANGELOG.md)."""
    project = _yaml(ROOT / "azure.yaml")
    assert project["requiredVersions"] == {"azd": ">= 1.18.0"}
    hooks_common = (INFRA / "hooks" / "common.py").read_text(encoding="utf-8")
    assert "AZD_MINIMUM = (1, 18, 0)" in hooks_common


def test_azd_runs_the_hooks_around_every_provision() -> None:
    hooks = _yaml(ROOT / "azure.yaml")["hooks"]
    for event, script in (("preprovision", "preprovision.py"), ("postprovision", "postprovision.py")):
        for shell, config in hooks[event].items():
            assert config["shell"] == {"posix": "sh", "windows": "pwsh"}[shell]
            interpreter, path, *args = config["run"].split()
            assert interpreter == {"posix": "python3", "windows": "python"}[shell]
            assert path == f"infra/hooks/{script}" and args == ["--azd"]
            assert (ROOT / path).is_file()


WORKFLOW = ROOT / ".github" / "workflows" / "deploy.yml"


def test_workflow_logs_in_with_oidc_checks_provisions_stages_and_deploys() -> None:
    text = WORKFLOW.read_text(encoding="utf-8")
    for needle in (
        "id-token: write",
        "client-id:",
        "tenant-id:",
        "subscription-id:",
        "az bicep build --file infra/main.bicep",
        'python3 infra/hooks/preprovision.py >> "$GITHUB_ENV"',
        "az deployment group create",
        "python3 infra/hooks/stage_package.py --zip app.zip",
        "az functionapp deployment source config-zip",
        "--build-remote true",
        "python3 infra/hooks/postprovision.py",
    ):
        assert needle in text, needle
    assert not re.search(r"client-secret|creds:", text), "federated credentials only: no client secret"
    assert "persist-credentials: false" in text


def test_every_action_is_pinned_by_commit_sha() -> None:
    """A tag can be moved to other code; a commit cannot. The comment names the release."""
    uses = re.findall(r"^\s*(?:-\s*)?uses:\s*(\S+)(.*)$", WORKFLOW.read_text(encoding="utf-8"), re.M)
    assert {ref.split("@")[0] for ref, _ in uses} == {"actions/checkout", "azure/login"}
    for ref, comment in uses:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", ref), f"{ref}: pin the commit SHA"
        assert re.fullmatch(r"\s*# v\d+\.\d+\.\d+", comment), f"{ref}: name the release it is"


def test_the_first_deployment_retries_while_the_blob_role_propagates() -> None:
    """The platform uploads the package with the host identity; its role assignment can take
    minutes to apply (https://learn.microsoft.com/azure/role-based-access-control/troubleshooting)."""
    workflow = _yaml(WORKFLOW)
    (deploy,) = [s for s in workflow["jobs"]["deploy"]["steps"] if "config-zip" in s.get("run", "")]
    script = deploy["run"]
    assert re.search(r"for attempt in( \d)+; do", script), "a bounded number of attempts"
    assert "grep -qiE '403|Forbidden|AuthorizationPermissionMismatch' deploy.err || exit 1" in script
    assert script.rstrip().endswith("exit 1"), "out of attempts: fail"
