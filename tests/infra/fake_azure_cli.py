"""A stand-in for ``az`` and ``azd`` that plays Azure, Microsoft Graph and azd from a JSON state file.

Run as ``fake_azure_cli.py az|azd <args>`` (the test's bin/az and bin/azd wrappers do). Every call
is recorded in the state. ``--query`` is applied with the real JMESPath library (from .venv-infra,
where checkov brings it), so scripts' queries run as the Azure CLI would run them. Anything it does
not know fails loudly, like an unexpected request would.

State keys: subscription, azd_version, azd_env, token, providers, may_register, unreadable_providers,
deleted_vaults, vaults, secrets, sp, identities, assignments, graph_hidden_reads, directory,
references, refreshes_to_resolve, calls.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.parse
from typing import Any, NoReturn

STATE_PATH = os.environ["FAKE_AZ_STATE"]
with open(STATE_PATH, encoding="utf-8") as handle:
    state: dict[str, Any] = json.load(handle)
program, args = sys.argv[1], sys.argv[2:]
state["calls"].append([program, *args])


def save() -> None:
    with open(STATE_PATH, "w", encoding="utf-8") as out:
        json.dump(state, out)


def fail(message: str, code: int = 1) -> NoReturn:
    save()
    print(message, file=sys.stderr)
    sys.exit(code)


def opt(name: str, default: str | None = None) -> str | None:
    return args[args.index(name) + 1] if name in args else default


def emit(document: Any) -> None:
    query = opt("--query")
    if query:
        import jmespath

        document = jmespath.search(query, document)
    output = opt("--output")
    if output == "tsv":
        rows = document if isinstance(document, list) else [document]
        print("\n".join("" if r is None else str(r) for r in rows))
    elif output != "none":
        print(json.dumps(document))


def azd() -> None:
    if args[:1] == ["version"]:
        emit({"azd": {"version": state["azd_version"], "commit": "0" * 40}})
    elif args[:2] == ["env", "set"]:
        state["azd_env"][args[2]] = args[3]
    elif args[:2] == ["auth", "token"]:
        emit({"token": state["token"], "expiresOn": "2030-01-01T00:00:00Z"})
    else:
        fail(f"fake azd: unexpected command {args}")


GRAPH = "https://graph.microsoft.com/v1.0"
ARM = "https://management.azure.com"


def graph(method: str, url: str) -> None:
    sps = f"{GRAPH}/servicePrincipals"
    sp = state["sp"]
    if method == "get" and url.startswith(sps + "?$filter=appId eq "):
        emit({"value": [sp] if sp is not None and f"'{sp['appId']}'" in url else []})
    elif method == "get" and url.startswith(sps + "/") and url.endswith("?$select=id"):
        principal = url[len(sps) + 1 : -len("?$select=id")]
        if state.get("graph_hidden_reads", 0) > 0:
            state["graph_hidden_reads"] -= 1
            fail("Graph: 404 Request_ResourceNotFound")
        emit({"id": principal})
    elif method == "get" and url.endswith("/appRoleAssignments"):
        principal = url[len(sps) + 1 : -len("/appRoleAssignments")]
        emit({"value": [a for a in state["assignments"] if a["principalId"] == principal]})
    elif method == "post" and sp and url == f"{sps}/{sp['id']}/appRoleAssignedTo":
        body = json.loads(opt("--body") or "{}")
        if body["resourceId"] != sp["id"] or body["appRoleId"] not in {r["id"] for r in sp["appRoles"]}:
            fail("Graph: 400 invalid assignment")
        state["assignments"].append(body)
        emit(body)
    elif method == "get" and url.startswith(f"{GRAPH}/directoryObjects/"):
        found = state["directory"].get(url.rsplit("/", 1)[1])
        if found is None:
            fail("Graph: 403 Authorization_RequestDenied")
        emit({"@odata.type": found})
    else:
        fail(f"fake az: unexpected Graph request {method} {url}")


def arm(method: str, url: str) -> None:
    path, _, query = url[len(ARM) :].partition("?")
    assert "api-version=" in query, url
    if path.endswith("/config/configreferences/appsettings") and method == "get":
        emit({"value": [{"name": k, "properties": {"status": v}} for k, v in state["references"].items()]})
    elif path.endswith("/config/configreferences/appsettings/refresh") and method == "post":
        state["refreshes_to_resolve"] -= 1
        if state["refreshes_to_resolve"] <= 0:
            state["references"] = {name: "Resolved" for name in state["references"]}
        emit(None)
    else:
        fail(f"fake az: unexpected ARM request {method} {url}")


def az() -> None:
    subscription = opt("--subscription")
    if subscription is not None and subscription != state["subscription"]:
        fail(f"fake az: wrong subscription {subscription}")
    if args[:2] == ["cloud", "show"]:
        emit(
            {
                "endpoints": {
                    "microsoftGraphResourceId": "https://graph.microsoft.com/",
                    "resourceManager": ARM + "/",
                }
            }
        )
    elif args[:2] == ["identity", "show"]:
        emit({"principalId": state["identities"][f"{opt('--resource-group')}/{opt('--name')}"]})
    elif args[:2] == ["account", "get-access-token"]:
        emit({"accessToken": state["token"], "expiresOn": "2030-01-01 00:00:00.000000"})
    elif args[:2] == ["provider", "show"]:
        namespace = opt("--namespace")
        if namespace in state["unreadable_providers"]:
            fail("AuthorizationFailed: no read access to the subscription's providers")
        emit(
            {"namespace": namespace, "registrationState": state["providers"].get(namespace, "NotRegistered")}
        )
    elif args[:2] == ["provider", "register"]:
        namespace = opt("--namespace")
        if namespace not in state["may_register"]:
            fail(f"AuthorizationFailed: cannot register {namespace}")
        state["providers"][namespace] = "Registered"
    elif args[:2] == ["keyvault", "list-deleted"]:
        emit(state["deleted_vaults"])
    elif args[:2] == ["keyvault", "list"]:
        group = (opt("--resource-group") or "").lower()
        emit([v for v in state["vaults"] if f"/resourcegroups/{group}/" in v["id"].lower()])
    elif args[:2] == ["resource", "show"]:
        resource_id = opt("--ids")
        if resource_id not in state["secrets"]:
            fail(f"(ResourceNotFound) {resource_id} was not found", 3)
        emit({"id": resource_id, "properties": {}})
    elif args[0] == "rest":
        url = urllib.parse.unquote(opt("--url") or "")
        method = opt("--method") or "get"
        graph(method, url) if url.startswith(GRAPH) else arm(method, url)
    else:
        fail(f"fake az: unexpected command {args}")


azd() if program == "azd" else az()
save()
