"""Least privilege for the producers and the results consumer (infra/modules/*), and their payloads.

Each producer runs as its own system-assigned identity with exactly one role, Storage Queue Data
Message Sender, on exactly the queue it feeds; the consumer reads only the results queue. None of
them can touch the account, the ledger table, another queue or the function app's identity.
The payload fixtures in tests/fixtures/producers are checked against the documented producers.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from typing import Any
from xml.etree import ElementTree

import pytest

from shared.domain.events import parse_alert_event
from shared.errors import InvalidRequest

from .logic_apps import Run
from .test_bicep import INFRA, MODULES, ROOT, Template, body, dotted, walk

FIXTURES = ROOT / "tests" / "fixtures" / "producers"
DOC = ROOT / "docs" / "producers.md"
MACHINE_ID = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
# A queue message holds at most 64 KiB (Put Message, https://learn.microsoft.com/rest/api/storageservices/put-message).
QUEUE_MESSAGE_LIMIT = 64 * 1024
HOST_FQDN = "ws-0142.corp.contoso.com"

QUEUE_SENDER = "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a"
QUEUE_READER = "19e7f393-937e-4f77-808e-94535e297925"
QUEUE_PROCESSOR = "8a0f0c08-91a1-4084-bc3d-661d67233fed"
SENTINEL_AUTOMATION_CONTRIBUTOR = "f4c81013-99ee-4d62-a7ee-b3f1f648599a"
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
QUEUE_TYPE = "Microsoft.Storage/storageAccounts/queueServices/queues"
ROLE_TYPE = "Microsoft.Authorization/roleAssignments"
WORKFLOW_TYPE = "Microsoft.Logic/workflows"

# module file -> (main.bicep's switch for it, the queue it may use, its workflows' symbols)
PRODUCERS = {
    "sentinel-playbook.bicep": (
        "deploySentinelPlaybooks",
        "isolation-requests",
        {"incidentPlaybook", "alertPlaybook"},
    ),
    "ticket-intake.bicep": ("deployTicketIntake", "release-requests", {"intake"}),
}
CONSUMER = ("results-consumer.bicep", "deployResultsConsumer", "machine-action-results", {"consumer"})
ALL_MODULES = {**{name: spec[:2] for name, spec in PRODUCERS.items()}, CONSUMER[0]: CONSUMER[1:3]}


@pytest.fixture(scope="module")
def main() -> Template:
    return Template(INFRA / "main.bicep")


def template(name: str) -> Template:
    return Template(MODULES / name)


def unescape(text: str) -> str:
    """pycep keeps Bicep's \\' escapes: the string as ARM will see it."""
    return text.replace("\\'", "'")


def role_id(assignment: dict[str, Any], tpl: Template) -> str:
    """The built-in role id an assignment grants (roles.<key> looked up in the template)."""
    fn = body(assignment)["properties"]["roleDefinitionId"]["function"]
    assert fn["type"] == "subscription_resource_id", "roles by subscriptionResourceId(...)"
    assert fn["parameters"]["resource_type"] == "Microsoft.Authorization/roleDefinitions"
    key = dotted(fn["parameters"]["resource_name_1"])
    assert key and key.startswith("roles."), key
    value = tpl.resolve("roles")[key.split(".", 1)[1]]
    assert isinstance(value, str)
    return value


def principal(assignment: dict[str, Any]) -> str | None:
    return dotted(body(assignment)["properties"]["principalId"])


def assignments(tpl: Template) -> dict[str, dict[str, Any]]:
    return tpl.resources_of_type(ROLE_TYPE)


def the_queue(tpl: Template) -> str:
    """The symbol of the template's one queue, checked to be an existing queue named by queueName."""
    (name, queue), *others = tpl.resources_of_type(QUEUE_TYPE).items()
    assert not others, f"{tpl.path.name} should name exactly one queue"
    assert queue["existing"] is True and body(queue)["name"] == "queueName"
    service = tpl.resources[body(queue)["parent"]]
    assert service["type"] == "Microsoft.Storage/storageAccounts/queueServices" and service["existing"]
    assert tpl.resources[body(service)["parent"]]["existing"] is True
    return name


# --- wiring in main.bicep ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ALL_MODULES))
def test_producer_and_consumer_modules_are_optional_and_off_by_default(main: Template, name: str) -> None:
    switch, queue = ALL_MODULES[name]
    use = main.module(name)["config"]
    assert use["condition"] == switch
    assert main.params[switch]["type"] == "bool" and main.params[switch]["default"] is False
    assert main.resolve(use["config"]["params"]["queueName"]) == queue
    bicepparam = (INFRA / "main.bicepparam").read_text(encoding="utf-8")
    assert re.search(
        rf"^param {switch} = readEnvironmentVariable\('\w+', 'false'\) == 'true'$", bicepparam, re.M
    )


@pytest.mark.parametrize("name", sorted(ALL_MODULES))
def test_the_function_identity_is_not_handed_to_or_named_by_producer_modules(
    main: Template, name: str
) -> None:
    passed = body(main.module(name))["params"]
    handed = {
        d
        for node in walk(passed)
        if (d := dotted(node))
        and d.startswith(("hostIdentity.", "mdeIdentity.", "rbac.", "app.", "ticketCredentials."))
    }
    assert not handed, f"main.bicep hands {name} the app's identity or its wiring: {handed}"
    text = (MODULES / name).read_text(encoding="utf-8")
    for needle in ("Microsoft.ManagedIdentity", "userAssignedIdentities", "UserAssigned"):
        assert needle not in text, f"{name} names a user-assigned identity ({needle})"
    for workflow in template(name).resources_of_type(WORKFLOW_TYPE).values():
        assert body(workflow)["identity"] == {"type": "SystemAssigned"}


# --- producers: one role, one queue --------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PRODUCERS))
def test_each_producer_identity_is_a_queue_sender_on_its_single_queue(main: Template, name: str) -> None:
    tpl = template(name)
    _, queue_name, workflows = PRODUCERS[name]
    assert set(tpl.resources_of_type(WORKFLOW_TYPE)) == workflows
    queue = the_queue(tpl)
    for workflow in workflows:
        granted = {
            a_name: a
            for a_name, a in assignments(tpl).items()
            if principal(a) == f"{workflow}.identity.principalId"
        }
        assert len(granted) == 1, f"{workflow}: exactly one role assignment, found {sorted(granted)}"
        ((a_name, assignment),) = granted.items()
        config = body(assignment)
        assert role_id(assignment, tpl) == QUEUE_SENDER, f"{a_name}: Storage Queue Data Message Sender only"
        assert config["scope"] == queue, f"{a_name}: scoped to the queue, not {config.get('scope')}"
        assert config["properties"]["principalType"] == "ServicePrincipal"
        guid_args = [dotted(arg) for arg in config["name"]["function"]["parameters"].values()]
        assert config["name"]["function"]["type"] == "guid" and guid_args[:2] == [
            f"{queue}.id",
            f"{workflow}.id",
        ]
    assert main.resolve(body(main.module(name))["params"]["queueName"]) == queue_name


@pytest.mark.parametrize("name", sorted(PRODUCERS))
def test_no_producer_has_a_role_on_the_account_table_results_or_another_identity(name: str) -> None:
    tpl = template(name)
    queue = the_queue(tpl)
    kinds = {r["type"] for r in tpl.resources.values()}
    assert not {t for t in kinds if "tableServices" in t or "blobServices" in t or "ManagedIdentity" in t}
    for a_name, assignment in assignments(tpl).items():
        config = body(assignment)
        role = role_id(assignment, tpl)
        who = principal(assignment)
        if role == QUEUE_SENDER:
            assert config["scope"] == queue and who and who.endswith(".identity.principalId"), a_name
        elif role == SENTINEL_AUTOMATION_CONTRIBUTOR:
            # Microsoft Sentinel's own service account, so automation rules can run the playbooks.
            assert name == "sentinel-playbook.bicep" and who == "sentinelAutomationPrincipalId", a_name
            assert assignment["config"]["condition"]["operator"]["type"] == "not", "only when asked for"
        elif role == KEY_VAULT_SECRETS_USER:
            # The operator who copies the intake URL into Jira / ServiceNow: that one secret only.
            assert name == "ticket-intake.bicep" and who == "urlReaderPrincipalId", a_name
            assert config["scope"] == "callbackUrl", a_name
        else:
            pytest.fail(f"{name}: {a_name} grants an unexpected role {role}")
    text = (MODULES / name).read_text(encoding="utf-8")
    assert "machine-action-results" not in text and "tableServices" not in text


def test_sentinel_automation_contributor_goes_only_to_sentinel_and_only_when_asked(main: Template) -> None:
    tpl = template("sentinel-playbook.bicep")
    granted = [a for a in assignments(tpl).values() if role_id(a, tpl) == SENTINEL_AUTOMATION_CONTRIBUTOR]
    (assignment,) = granted
    assert "scope" not in body(assignment), "the playbooks' resource group, where Sentinel looks for it"
    assert tpl.params["sentinelAutomationPrincipalId"]["default"] == ""
    passed = body(main.module("sentinel-playbook.bicep"))["params"]["sentinelAutomationPrincipalId"]
    assert passed == "sentinelAutomationPrincipalId" and main.params[passed]["default"] == ""


def test_the_operator_may_read_the_intake_url_and_nothing_more(main: Template) -> None:
    tpl = template("ticket-intake.bicep")
    (reader,) = [a for a in assignments(tpl).values() if role_id(a, tpl) == KEY_VAULT_SECRETS_USER]
    assert body(reader)["scope"] == "callbackUrl"
    assert tpl.resources["callbackUrl"]["type"] == "Microsoft.KeyVault/vaults/secrets"
    passed = body(main.module("ticket-intake.bicep"))["params"]
    assert passed["urlReaderPrincipalId"] == "operatorPrincipalId"


# --- consumer: read and delete on the results queue only -----------------------------------------


def test_the_results_consumer_reads_only_the_results_queue(main: Template) -> None:
    name, _, queue_name, workflows = CONSUMER
    tpl = template(name)
    queue = the_queue(tpl)
    assert set(tpl.resources_of_type(WORKFLOW_TYPE)) == workflows
    granted = {role_id(a, tpl): body(a) for a in assignments(tpl).values()}
    assert set(granted) == {QUEUE_READER, QUEUE_PROCESSOR}, "Reader + Message Processor, no Sender"
    for config in granted.values():
        assert config["scope"] == queue
        assert dotted(config["properties"]["principalId"]) == "consumer.identity.principalId"
    assert main.resolve(body(main.module(name))["params"]["queueName"]) == queue_name


def test_the_results_consumer_comments_once_per_result_and_then_deletes_it() -> None:
    text = unescape((MODULES / "results-consumer.bicep").read_text(encoding="utf-8"))
    # The comment is named by the result's resultId: a redelivered result rewrites the same comment.
    assert "/comments/@{outputs('Result')?['resultId']}?api-version=" in text
    assert "method: 'DELETE'" in text and "popreceipt=@{encodeUriComponent(" in text
    assert "audience: '@parameters('armEndpoint')'" in text and "environment().resourceManager" in text


INCIDENT = (
    "/subscriptions/b6a1e0d4-3c2f-4e8a-9d71-5f0c2a9e8b13/resourceGroups/rg-sentinel/providers/"
    "Microsoft.OperationalInsights/workspaces/law-sentinel-prod/providers/Microsoft.SecurityInsights/"
    "Incidents/f3c9a0de-1b7e-4c55-9a3e-2d8f6b4c7e10"
)
RESULT_ID = "5d0c1f9e-7a3b-4e2d-8c6f-0b1a2c3d4e5f"
ARM = "https://management.azure.com/"


def comments_made(source_id: Any, result_id: Any = RESULT_ID, **fields: Any) -> list[dict[str, Any]]:
    """The ARM calls the consumer's Sentinel branch makes for one result message."""
    tpl = template(CONSUMER[0])
    definition = body(tpl.resources["consumer"])["properties"]["definition"]
    each = resolved_unescaped(tpl.resolve(definition["actions"]))["For_each_result"]["actions"]
    sentinel = each["By_source"]["cases"]["Sentinel"]["actions"]
    result = {
        "resultId": result_id,
        "action": "Isolate",
        "outcome": "Succeeded",
        "sequence": 2,
        "requestId": "req-1",
        "source": {"system": "sentinel", "id": source_id},
        "machine": {"id": MACHINE_ID, "computerDnsName": HOST_FQDN},
        "machineAction": {"id": "7f1a2b3c-0000-4000-8000-000000000001", "status": "Succeeded"},
        "error": None,
        **fields,
    }
    run = Run(trigger_body=None, parameters={"armEndpoint": ARM}, outputs={"Result": result})
    run.run_actions(sentinel)
    return run.http_requests


@pytest.mark.parametrize(
    "source_id", [INCIDENT, INCIDENT.lower(), INCIDENT.upper().replace("/SUBSCRIPTIONS", "/subscriptions")]
)
def test_the_consumer_comments_on_a_sentinel_incident_named_by_its_arm_id(source_id: str) -> None:
    (call,) = comments_made(source_id)
    assert call["method"] == "PUT"
    assert call["uri"] == f"{ARM}{source_id[1:]}/comments/{RESULT_ID}?api-version=2024-03-01"
    assert "Isolate Succeeded on ws-0142.corp.contoso.com" in call["body"]["properties"]["message"]


def test_a_lease_reminder_tells_the_incident_how_long_the_device_has_been_isolated() -> None:
    lease = {"outcome": "LeaseExpired", "sequence": 3, "isolatedHours": 24.002, "leasePeriod": 1}
    (call,) = comments_made(INCIDENT, **lease)
    message = call["body"]["properties"]["message"]
    assert "Isolate LeaseExpired on ws-0142.corp.contoso.com" in message
    assert "still isolated by this service after 24.002 h (lease period 1): release it" in message
    (plain,) = comments_made(INCIDENT)
    assert "still isolated" not in plain["body"]["properties"]["message"]


HOSTILE_SOURCE_IDS = {
    "query": INCIDENT + "?api-version=2015-01-01",
    "fragment": INCIDENT + "#x",
    "query in the name": INCIDENT.replace("/Incidents/", "/Incidents/x?y="),
    "parent directory": INCIDENT.replace("rg-sentinel", ".."),
    "climbing out": INCIDENT + "/../../../../../providers/Microsoft.Authorization/roleAssignments/x",
    "dot segment": INCIDENT.replace("law-sentinel-prod", "."),
    "two dots in a name": INCIDENT.replace("rg-sentinel", "rg..sentinel"),
    "encoded": INCIDENT.replace("rg-sentinel", "%2e%2e"),
    "space": INCIDENT.replace("rg-sentinel", "rg sentinel"),
    "newline": INCIDENT + "\n",
    "tab": INCIDENT.replace("rg-sentinel", "rg\tsentinel"),
    "unicode": INCIDENT.replace("rg-sentinel", "rg-sentinél"),
    "backslash": INCIDENT.replace("/resourceGroups/", "\\resourceGroups/"),
    "another resource type": INCIDENT.replace("/Incidents/", "/watchlists/"),
    "another provider": INCIDENT.replace("Microsoft.SecurityInsights", "Microsoft.Compute"),
    "a virtual machine": "/subscriptions/b6a1e0d4-3c2f-4e8a-9d71-5f0c2a9e8b13/resourceGroups/rg/providers/"
    "Microsoft.Compute/virtualMachines/vm1/providers/Microsoft.SecurityInsights/Incidents/x",
    "a sub-resource": INCIDENT + "/comments/x",
    "trailing slash": INCIDENT + "/",
    "empty name": INCIDENT.replace("rg-sentinel", ""),
    "name ending in a dot": INCIDENT.replace("law-sentinel-prod", "law."),
    "subscription not a guid": INCIDENT.replace("b6a1e0d4-3c2f-4e8a-9d71-5f0c2a9e8b13", "my-subscription"),
    "subscription guid cut": INCIDENT.replace("b6a1e0d4-3c2f-4e8a-9d71-5f0c2a9e8b13", "b6a1e0d4-3c2f-4e8a"),
    "subscription dashes moved": INCIDENT.replace(
        "b6a1e0d4-3c2f-4e8a-9d71-5f0c2a9e8b13", "b6a1e0d-43c2f-4e8a-9d71-5f0c2a9e8b13"
    ),
    "relative": INCIDENT[1:],
    "absolute URL": "https://evil.example" + INCIDENT,
    "empty": "",
    "absent": None,
    "a number": 4711,
}


@pytest.mark.parametrize("source_id", list(HOSTILE_SOURCE_IDS.values()), ids=list(HOSTILE_SOURCE_IDS))
def test_the_consumer_refuses_a_source_id_that_is_not_exactly_an_incident(source_id: Any) -> None:
    assert comments_made(source_id) == []


@pytest.mark.parametrize(
    "result_id", ["..", "x?y=1", "5d0c1f9e-7a3b-4e2d-8c6f-0b1a2c3d4e5", None, RESULT_ID + "/x"]
)
def test_the_consumer_names_comments_only_by_a_guid_result_id(result_id: Any) -> None:
    assert comments_made(INCIDENT, result_id) == []


# --- how the producers write ---------------------------------------------------------------------


def put_body(of: str) -> str:
    """The Put Message body the producers send: ``of`` (a Logic Apps expression) as JSON text,
    with &, < and > escaped for the XML."""
    return (
        f"<QueueMessage><MessageText>@{{replace(replace(replace(string({of}), '&', '&amp;'), "
        "'<', '&lt;'), '>', '&gt;')}</MessageText></QueueMessage>"
    )


# What each workflow puts on its queue: the trigger body as it came, except the Sentinel incident,
# which is cut to what isolation needs (Incident_for_isolation).
FORWARDS = {
    "incidentPlaybook": "outputs('Incident_for_isolation')",
    "alertPlaybook": "triggerBody()",
    "intake": "triggerBody()",
}


def resolved_unescaped(value: Any) -> Any:
    """A resolved template value as ARM hands it to Logic Apps: Bicep's \\' escapes undone."""
    if isinstance(value, dict):
        return {key: resolved_unescaped(item) for key, item in value.items()}
    if isinstance(value, list):
        return [resolved_unescaped(item) for item in value]
    return unescape(value) if isinstance(value, str) else value


def workflow_actions(tpl: Template, symbol: str) -> dict[str, Any]:
    """A workflow's actions, resolved, with those nested in If branches flattened in."""
    definition = body(tpl.resources[symbol])["properties"]["definition"]
    actions: dict[str, Any] = resolved_unescaped(tpl.resolve(definition["actions"]))
    flat: dict[str, Any] = {}
    pending = dict(actions)
    while pending:
        name, action = pending.popitem()
        flat[name] = action
        pending.update(action.get("actions") or {})
        pending.update((action.get("else") or {}).get("actions") or {})
    return flat


def _put_actions(tpl: Template, symbol: str) -> list[dict[str, Any]]:
    return [
        action
        for action in workflow_actions(tpl, symbol).values()
        if action["type"] == "Http" and action["inputs"]["method"] == "POST"
    ]


@pytest.mark.parametrize("name", sorted(PRODUCERS))
def test_producers_put_one_message_with_their_own_token(name: str) -> None:
    tpl = template(name)
    for symbol in PRODUCERS[name][2]:
        (put,) = _put_actions(tpl, symbol)
        inputs = put["inputs"]
        assert inputs["uri"] == "@parameters('queueMessagesUrl')"
        assert inputs["body"] == put_body(FORWARDS[symbol]), symbol
        assert inputs["authentication"] == {
            "type": "ManagedServiceIdentity",
            "audience": "https://storage.azure.com/",
        }
        # Entra ID needs x-ms-version 2017-11-09 or later on every call.
        assert inputs["headers"]["x-ms-version"] >= "2017-11-09"
    for workflow in tpl.resources_of_type(WORKFLOW_TYPE).values():
        values = body(workflow)["properties"]["parameters"]
        if isinstance(values, str):  # a variable shared by the workflows
            values = tpl.variables[values]["value"]
        url = values["queueMessagesUrl"]["value"]
        assert url == "${storage.properties.primaryEndpoints.queue}${queueName}/messages"
    # The Azure Queues managed connector would need an account key: the account has none.
    assert "azurequeues" not in (MODULES / name).read_text(encoding="utf-8")


def test_sentinel_playbooks_use_the_sentinel_triggers_through_a_managed_identity_connection() -> None:
    tpl = template("sentinel-playbook.bicep")
    (connection,) = tpl.resources_of_type("Microsoft.Web/connections").values()
    props = body(connection)["properties"]
    assert props["parameterValueType"] == "Alternative", "managed identity: nobody signs the connection in"
    api = tpl.resolve("sentinelApiId")
    assert api is not None
    api_fn = tpl.variables["sentinelApiId"]["value"]["function"]
    assert api_fn["type"] == "subscription_resource_id"
    assert "azuresentinel" in api_fn["parameters"].values()
    connections = tpl.variables["connections"]["value"]["azuresentinel"]
    assert connections["connectionProperties"] == {"authentication": {"type": "ManagedServiceIdentity"}}
    paths = {}
    for symbol, workflow in tpl.resources_of_type(WORKFLOW_TYPE).items():
        ((trigger_name, trigger),) = body(workflow)["properties"]["definition"]["triggers"].items()
        assert trigger["type"] == "ApiConnectionWebhook"
        assert trigger["inputs"]["host"]["connection"] == "sentinelConnectionReference"
        assert trigger["inputs"]["body"] == {"callback_url": "@{listCallbackUrl()}"}
        paths[symbol] = (trigger_name, trigger["inputs"]["path"])
        actions = workflow_actions(tpl, symbol)
        assert "Put_message_on_isolation_requests" in actions
        # Nothing calls Sentinel or anything else: the incident is cut and put, the alert put.
        assert {a["type"] for a in actions.values()} <= {"Query", "Select", "Compose", "Http"}
    assert paths == {
        "incidentPlaybook": ("Microsoft_Sentinel_incident", "/incident-creation"),
        "alertPlaybook": ("Microsoft_Sentinel_alert", "/subscribe"),
    }


def test_the_intake_takes_a_schemaless_post_and_tells_the_caller_what_happened() -> None:
    tpl = template("ticket-intake.bicep")
    (workflow,) = tpl.resources_of_type(WORKFLOW_TYPE).values()
    definition = body(workflow)["properties"]["definition"]
    assert definition["triggers"] == {
        "manual": {"type": "Request", "kind": "Http", "inputs": {"method": "POST"}}
    }, "POST only, no schema: the body goes on unchanged"
    assert (
        tpl.resolve("triggerName") == "manual"
        and body(tpl.resources["intakeTrigger"])["name"] == "triggerName"
    )
    responses = {
        node["inputs"]["statusCode"]
        for node in walk(definition)
        if isinstance(node, dict) and node.get("type") == "Response"
    }
    assert responses == {202, 415, 502}


def test_the_intake_ip_restriction_is_left_out_rather_than_empty() -> None:
    tpl = template("ticket-intake.bicep")
    (workflow,) = tpl.resources_of_type(WORKFLOW_TYPE).values()
    access = body(workflow)["properties"]["accessControl"]["operator"]
    # An empty allowedCallerIpAddresses list would admit only other Logic Apps.
    assert access["type"] == "conditional"
    assert access["operands"]["true_value"] == {}
    assert access["operands"]["false_value"] == {"triggers": {"allowedCallerIpAddresses": "callerRanges"}}
    assert tpl.params["allowedCallerIpRanges"]["default"] == []


def test_the_intake_url_is_kept_in_a_firewalled_key_vault_and_never_output() -> None:
    """RBAC only and purge protection: test_platform.py checks them on every vault."""
    tpl = template("ticket-intake.bicep")
    (vault,) = tpl.resources_of_type("Microsoft.KeyVault/vaults").values()
    assert body(vault)["properties"]["networkAcls"]["defaultAction"] == "Deny"
    secret = body(tpl.resources["callbackUrl"])
    assert dotted(secret["properties"]["value"]) is None  # a call, not a plain reference
    assert "intakeTrigger.listCallbackUrl().value" in (MODULES / "ticket-intake.bicep").read_text()
    for output_name, output in tpl.doc.get("outputs", {}).items():
        assert "listCallbackUrl" not in json.dumps(output), output_name
        assert output_name != "callbackUrl"
    main_text = (INFRA / "main.bicep").read_text(encoding="utf-8")
    assert "listCallbackUrl" not in main_text


# --- payload fixtures ----------------------------------------------------------------------------


def _fixture(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return document


def test_every_fixture_is_described_in_the_readme() -> None:
    readme = (FIXTURES / "README.md").read_text(encoding="utf-8")
    names = sorted(p.name for p in FIXTURES.glob("*.json"))
    assert names == [
        "jira-automation-release.json",
        "sentinel-alert.json",
        "sentinel-incident.json",
        "servicenow-flow-release.json",
    ]
    for fixture in names:
        assert f"`{fixture}`" in readme, fixture
        assert len(json.dumps(_fixture(fixture)).encode()) < QUEUE_MESSAGE_LIMIT


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.json")))
def test_put_message_escaping_delivers_the_body_unchanged(name: str) -> None:
    """The playbooks' expression, replayed: escape &, <, > into <MessageText>; the queue stores
    the element's text, which is the trigger body's JSON again (the fixtures contain an &)."""
    document = _fixture(name)
    text = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    xml = f"<QueueMessage><MessageText>{escaped}</MessageText></QueueMessage>"
    stored = ElementTree.fromstring(xml)  # noqa: S314 - built here from the repository's fixtures
    message_text = stored.findtext("MessageText")
    assert message_text == text and json.loads(message_text) == document


def test_sentinel_fixtures_name_the_device_by_its_mde_id() -> None:
    incident = _fixture("sentinel-incident.json")["object"]
    assert "/providers/Microsoft.SecurityInsights/Incidents/" in incident["id"]
    props = incident["properties"]
    assert {"incidentNumber", "title", "severity", "relatedEntities"} <= set(props)
    hosts = [e for e in props["relatedEntities"] if e["kind"] == "Host"]
    assert hosts and all(h["properties"]["additionalData"]["MdatpDeviceId"] == MACHINE_ID for h in hosts)
    alert = _fixture("sentinel-alert.json")
    (host,) = [e for e in alert["Entities"] if e["Type"] == "host"]
    assert host["MdatpDeviceId"] == MACHINE_ID and f"{host['HostName']}.{host['DnsDomain']}" == HOST_FQDN


def test_ticket_fixtures_carry_an_approval_a_device_and_a_requester() -> None:
    jira = _fixture("jira-automation-release.json")
    assert jira["webhookEvent"] == "jira:issue_updated"
    assert jira["issue"]["fields"]["customfield_10050"] == MACHINE_ID
    assert {"field": "status", "toString": "Approved for release"}.items() <= jira["changelog"]["items"][
        0
    ].items()
    assert jira["user"]["emailAddress"]
    snow = _fixture("servicenow-flow-release.json")
    assert {"number", "sys_id", "state", "approval", "short_description", "requested_for", "cmdb_ci"} <= set(
        snow
    )
    assert snow["approval"] == "approved" and snow["cmdb_ci"]["display_value"] == HOST_FQDN
    for reference in (snow["requested_for"], snow["cmdb_ci"]):
        assert set(reference) == {"link", "value", "display_value"}
        assert reference["link"].endswith("/" + reference["value"])


# --- the incident playbook cuts the incident to what isolation needs -------------------------------


def _machine_id(seed: str) -> str:
    return hashlib.sha1(seed.encode()).hexdigest()  # noqa: S324 - a made-up 40-hex id, not security


def _host(index: int, *, with_id: bool = True, mde_name: bool = False) -> dict[str, Any]:
    """A Sentinel Host entity as an incident lists it, with the additionalData Sentinel adds."""
    extra: dict[str, Any] = {
        "OSFamily": "Windows",
        "OSVersion": "10.0.22631",
        "AvStatus": "Updated",
        "HealthStatus": "Active",
        "RiskScore": "High",
        "LastExternalIpAddress": f"198.51.100.{index % 250}",
        "LoggedOnUsers": json.dumps([{"UserName": f"user{index}", "DomainName": "CORP"}]),
    }
    if with_id:
        extra["MdatpDeviceId"] = _machine_id(f"host-{index}")
    if mde_name:
        extra["DeviceDnsName"] = f"ws-{1000 + index}.corp.contoso.com"
    return {
        "id": f"/subscriptions/x/providers/Microsoft.SecurityInsights/Entities/host-{index}",
        "name": f"host-{index}",
        "type": "Microsoft.SecurityInsights/Entities",
        "kind": "Host",
        "properties": {
            "hostName": f"ws-{1000 + index}",
            "dnsDomain": "corp.contoso.com",
            "osFamily": "Windows",
            "friendlyName": f"ws-{1000 + index}",
            "additionalData": extra,
        },
    }


def _busy_incident(hosts: list[dict[str, Any]]) -> dict[str, Any]:
    """The incident fixture as a busy incident arrives: many alerts, many entities of every kind."""
    incident = _fixture("sentinel-incident.json")
    props = incident["object"]["properties"]
    alert = props["alerts"][0]
    props["alerts"] = []
    for i in range(60):
        copy_ = copy.deepcopy(alert)
        copy_["properties"]["alertDisplayName"] = f"Suspicious process chain {i} & lateral movement"
        copy_["properties"]["description"] = "A process created a remote service on another device. " * 8
        props["alerts"].append(copy_)
    others: list[dict[str, Any]] = [e for e in props["relatedEntities"] if e["kind"] != "Host"]
    for i in range(120):
        others.append(
            {
                "kind": "Process",
                "properties": {
                    "processId": str(4000 + i),
                    "commandLine": f"powershell.exe -NoProfile -EncodedCommand {'QQB' * 60}{i}",
                    "additionalData": {
                        "ImageFileName": "powershell.exe",
                        "CreationTimeUtc": "2026-11-23T09:58:12Z",
                    },
                },
            }
        )
        others.append({"kind": "Ip", "properties": {"address": f"203.0.113.{i % 250}", "friendlyName": "ip"}})
    props["relatedEntities"] = [*others[:3], *hosts, *others[3:]]
    return incident


def _forward(incident: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Run the incident playbook's actions on ``incident``: the MessageText it sends, as sent
    (XML-escaped), and the message the queue stores."""
    tpl = template("sentinel-playbook.bicep")
    queue_url = "https://stmde.queue.core.windows.net/isolation-requests/messages"
    run = Run(trigger_body=incident, parameters={"queueMessagesUrl": queue_url})
    run.run_actions(workflow_actions(tpl, "incidentPlaybook"))
    (request,) = run.http_requests
    assert request["method"] == "POST" and request["uri"] == queue_url
    sent = re.fullmatch(
        r"<QueueMessage><MessageText>(.*)</MessageText></QueueMessage>", request["body"], re.S
    )
    assert sent, request["body"][:200]
    stored = ElementTree.fromstring(request["body"]).findtext("MessageText")  # noqa: S314 - built by the replay
    assert stored is not None
    message: dict[str, Any] = json.loads(stored)
    return sent[1], message


def _requests_or_error(document: dict[str, Any]) -> Any:
    try:
        return parse_alert_event(document, "queue-message-1")
    except InvalidRequest as error:
        return error.code


def test_a_busy_incident_over_64_kib_is_forwarded_under_the_queue_limit_with_every_host() -> None:
    hosts = [_host(i, mde_name=i % 3 == 0) for i in range(12)]
    hosts.append(_host(12, with_id=False))  # known to Sentinel by name only: the resolver looks it up
    incident = _busy_incident(hosts)
    assert len(json.dumps(incident).encode()) > 2 * QUEUE_MESSAGE_LIMIT, "the whole body would not fit"

    sent, message = _forward(incident)

    assert len(sent.encode()) < QUEUE_MESSAGE_LIMIT
    full, cut = incident["object"], message["object"]
    assert cut["id"] == full["id"] and cut["name"] == full["name"]
    assert set(cut["properties"]) == {"incidentNumber", "title", "severity", "incidentUrl", "relatedEntities"}
    for key in ("incidentNumber", "title", "severity", "incidentUrl"):
        assert cut["properties"][key] == full["properties"][key], key
    entities = cut["properties"]["relatedEntities"]
    assert [e["kind"] for e in entities] == ["Host"] * 13, "Host entities only, all of them, in order"
    # The function reads the same requests from the cut message as from the whole incident.
    requests = parse_alert_event(message, "queue-message-1")
    assert requests == parse_alert_event(incident, "queue-message-1")
    assert len(requests) == 13 and {r.device.machine_id for r in requests} >= {
        h["properties"]["additionalData"]["MdatpDeviceId"] for h in hosts[:12]
    }


@pytest.mark.parametrize(
    ("change", "refused"),
    [
        ("as documented", False),
        ("no host entity", True),
        ("no relatedEntities", True),
        ("host kind in lower case", False),
    ],
)
def test_the_cut_incident_means_what_the_whole_one_means(change: str, refused: bool) -> None:
    """Whatever the incident holds, the function decides the same on the cut message: the same
    requests, or the same refusal (NoDevice), never a silent drop."""
    incident = _fixture("sentinel-incident.json")
    props = incident["object"]["properties"]
    if change == "no host entity":
        props["relatedEntities"] = [e for e in props["relatedEntities"] if e["kind"] != "Host"]
    elif change == "no relatedEntities":
        del props["relatedEntities"]
    elif change == "host kind in lower case":
        for entity in props["relatedEntities"]:
            entity["kind"] = entity["kind"].lower()
    _, message = _forward(incident)
    outcome = _requests_or_error(message)
    assert outcome == _requests_or_error(incident)
    assert outcome == "NoDevice" if refused else len(outcome) == 1


def test_at_least_ninety_hosts_with_the_longest_names_fit_in_one_message() -> None:
    """The bound docs/deploy.md gives: the cut message grows with the hosts only, at worst by a
    63-character host name, a 190-character domain and a 253-character MDE name each."""
    domain = ".".join(["d" * 62, "e" * 62, "f" * 62])
    hosts = []
    for i in range(90):
        host = _host(i, mde_name=True)
        host["properties"]["hostName"] = f"{i:02d}" + "h" * 61
        host["properties"]["dnsDomain"] = domain
        host["properties"]["additionalData"]["DeviceDnsName"] = (f"{i:02d}" + "h" * 61 + "." + domain)[:253]
        hosts.append(host)
    incident = _busy_incident(hosts)
    incident["object"]["properties"]["title"] = "T&<" * 85  # a long title, escaping included
    sent, message = _forward(incident)
    assert len(sent.encode()) < QUEUE_MESSAGE_LIMIT
    assert len(message["object"]["properties"]["relatedEntities"]) == 90


# The smart values of the documented Jira rule, and where the fixture holds each one's value.
JIRA_SMART_VALUES = {
    "{{initiator.accountId}}": ("user", "accountId"),
    "{{initiator.displayName.jsonEncode}}": ("user", "displayName"),
    "{{initiator.emailAddress}}": ("user", "emailAddress"),
    "{{issue.id}}": ("issue", "id"),
    "{{issue.key}}": ("issue", "key"),
    "{{issue.summary.jsonEncode}}": ("issue", "fields", "summary"),
    "{{issue.status.name}}": ("issue", "fields", "status", "name"),
    "{{issue.customfield_10050.jsonEncode}}": ("issue", "fields", "customfield_10050"),
    "{{fromStatus.name}}": ("changelog", "items", 0, "fromString"),
    "{{toStatus.name}}": ("changelog", "items", 0, "toString"),
}


def _doc_block(marker: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    match = re.search(rf"<!-- {re.escape(marker)} -->\s*```\w*\n(.*?)```", text, re.S)
    assert match, f"docs/producers.md has no block marked <!-- {marker} -->"
    return match[1]


def test_the_jira_fixture_is_what_the_documented_rule_sends() -> None:
    fixture = _fixture("jira-automation-release.json")
    template_text = _doc_block("jira-automation-body")
    assert set(re.findall(r"\{\{[^}]+\}\}", template_text)) == set(JIRA_SMART_VALUES)
    rendered = template_text
    for smart_value, path in JIRA_SMART_VALUES.items():
        value: Any = fixture
        for step in path:
            value = value[step]
        rendered = rendered.replace(smart_value, json.dumps(value)[1:-1])
    assert json.loads(rendered) == fixture


def test_the_servicenow_fixture_is_what_the_documented_script_builds() -> None:
    fixture = _fixture("servicenow-flow-release.json")
    script = _doc_block("servicenow-script-step")
    keys = re.findall(r"^\s+(\w+): ", script.split("JSON.stringify(", 1)[1], re.M)
    assert keys == list(fixture), "the script's body keys, in order"
    assert set(re.findall(r"^\s+(link|value|display_value): ", script, re.M)) == {
        "link",
        "value",
        "display_value",
    }
