"""infra/scripts/grant-mde-permissions.sh against a stand-in `az` that plays Microsoft Graph.

The stand-in applies `--query` with the real JMESPath library (from .venv-infra, where checkov
brings it), so the script's queries are exercised as the Azure CLI would run them.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "infra" / "scripts" / "grant-mde-permissions.sh"
INFRA_PYTHON = ROOT / ".venv-infra" / "bin" / "python"
DEFENDER_ATP_APP_ID = "fc780465-2017-40d4-a0c5-307022471b92"

FAKE_AZ = r"""
import json, os, sys, urllib.parse
import jmespath

state_path = os.environ["FAKE_AZ_STATE"]
state = json.load(open(state_path))
args = sys.argv[1:]
state["calls"].append(args)


def opt(name, default=None):
    return args[args.index(name) + 1] if name in args else default


def emit(document):
    query = opt("--query")
    if query:
        document = jmespath.search(query, document)
    if opt("--output") == "tsv":
        rows = document if isinstance(document, list) else [document]
        print("\n".join("" if r is None else str(r) for r in rows))
    elif opt("--output") != "none":
        print(json.dumps(document))


def save():
    json.dump(state, open(state_path, "w"))


if args[:2] == ["cloud", "show"]:
    emit({"endpoints": {"microsoftGraphResourceId": "https://graph.microsoft.com/"}})
elif args[:2] == ["identity", "show"]:
    emit({"principalId": state["identities"][opt("--resource-group") + "/" + opt("--name")]})
elif args[0] == "rest":
    url = urllib.parse.unquote(opt("--url"))
    base = "https://graph.microsoft.com/v1.0/servicePrincipals"
    sp = state["sp"]
    if opt("--method") == "get" and url.startswith(base + "?$filter=appId eq "):
        found = sp is not None and f"'{sp['appId']}'" in url
        emit({"value": [sp] if found else []})
    elif opt("--method") == "get" and url.endswith("/appRoleAssignments"):
        principal = url[len(base) + 1 : -len("/appRoleAssignments")]
        emit({"value": [a for a in state["assignments"] if a["principalId"] == principal]})
    elif opt("--method") == "post" and sp and url == f"{base}/{sp['id']}/appRoleAssignedTo":
        body = json.loads(opt("--body"))
        role_ids = {r["id"] for r in sp["appRoles"]}
        if body["resourceId"] != sp["id"] or body["appRoleId"] not in role_ids:
            sys.exit("Graph: 400 invalid assignment")
        state["assignments"].append(body)
        save()
        emit(body)
    else:
        sys.exit(f"fake az: unexpected request {args}")
else:
    sys.exit(f"fake az: unexpected command {args}")
save()
"""


def _role(value: str, member_types: list[str]) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "value": value, "allowedMemberTypes": member_types, "isEnabled": True}


@pytest.fixture
def graph(tmp_path: Path) -> dict[str, Any]:
    if not INFRA_PYTHON.exists():
        if os.environ.get("CI"):
            pytest.fail(".venv-infra is missing (CI must install it)")
        pytest.skip(".venv-infra is missing: it provides jmespath for the stand-in az")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "az"
    fake.write_text(f"#!{INFRA_PYTHON}\n{FAKE_AZ}", encoding="utf-8")
    fake.chmod(0o755)
    state: dict[str, Any] = {
        "sp": {
            "id": str(uuid.uuid4()),
            "appId": DEFENDER_ATP_APP_ID,
            "appRoles": [
                _role("Machine.Scan", ["Application"]),
                _role("Machine.Isolate", ["Application"]),
                _role("Machine.Read.All", ["Application"]),
                _role("Machine.Offboard", ["Application"]),
            ],
        },
        "identities": {"rg-mde/id-mde-abc": str(uuid.uuid4())},
        "assignments": [],
        "calls": [],
    }
    state_path = tmp_path / "state.json"
    state_path.write_text(json.dumps(state), encoding="utf-8")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_AZ_STATE": str(state_path),
    }
    return {"env": env, "path": state_path, "principal": state["identities"]["rg-mde/id-mde-abc"]}


def _run(graph: dict[str, Any], *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    run = subprocess.run(
        ["bash", str(SCRIPT), *args],
        env=graph["env"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    state: dict[str, Any] = json.loads(graph["path"].read_text(encoding="utf-8"))
    return run, state


def _role_id(state: dict[str, Any], value: str) -> str:
    return next(r["id"] for r in state["sp"]["appRoles"] if r["value"] == value)


def _posts(state: dict[str, Any]) -> list[list[str]]:
    return [c for c in state["calls"] if c[:3] == ["rest", "--method", "post"]]


def test_grants_both_roles_resolved_by_value_to_the_identity(graph: dict[str, Any]) -> None:
    run, state = _run(graph, "--identity-name", "id-mde-abc", "--resource-group", "rg-mde")
    assert run.returncode == 0, run.stderr
    granted = {(a["principalId"], a["resourceId"], a["appRoleId"]) for a in state["assignments"]}
    sp = state["sp"]["id"]
    assert granted == {
        (graph["principal"], sp, _role_id(state, "Machine.Isolate")),
        (graph["principal"], sp, _role_id(state, "Machine.Read.All")),
    }
    assert "granted: Machine.Isolate" in run.stdout and "granted: Machine.Read.All" in run.stdout


def test_a_second_run_changes_nothing(graph: dict[str, Any]) -> None:
    first, _ = _run(graph, "--principal-id", graph["principal"])
    assert first.returncode == 0, first.stderr
    second, state = _run(graph, "--principal-id", graph["principal"])
    assert second.returncode == 0, second.stderr
    assert len(state["assignments"]) == 2 and len(_posts(state)) == 2
    assert second.stdout.count("already granted:") == 2


def test_dry_run_grants_nothing(graph: dict[str, Any]) -> None:
    run, state = _run(graph, "--principal-id", graph["principal"], "--dry-run")
    assert run.returncode == 0, run.stderr
    assert state["assignments"] == [] and _posts(state) == []
    assert run.stdout.count("would grant:") == 2


def test_a_tenant_without_defender_for_endpoint_is_reported(graph: dict[str, Any]) -> None:
    state = json.loads(graph["path"].read_text(encoding="utf-8"))
    state["sp"] = None
    graph["path"].write_text(json.dumps(state), encoding="utf-8")
    run, after = _run(graph, "--principal-id", graph["principal"])
    assert run.returncode != 0
    assert "no WindowsDefenderATP service principal" in run.stderr
    assert _posts(after) == []


def test_an_identity_must_be_named(graph: dict[str, Any]) -> None:
    run, state = _run(graph)
    assert run.returncode != 0 and "--principal-id" in run.stderr
    assert state["calls"] == []
