"""infra/scripts/grant-mde-permissions.sh against the stand-in az (fake_azure_cli.py) playing
Microsoft Graph, with the real JMESPath applied to the script's queries."""

from __future__ import annotations

import subprocess
from typing import Any

from .conftest import ROOT, FakeAzure

SCRIPT = ROOT / "infra" / "scripts" / "grant-mde-permissions.sh"


def _run(fake: FakeAzure, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    run = fake.run(["bash", str(SCRIPT), *args])
    return run, fake.state()


def _principal(fake: FakeAzure) -> str:
    principal: str = fake.state()["identities"]["rg-mde/id-mde-abc"]
    return principal


def _role_id(state: dict[str, Any], value: str) -> str:
    return next(r["id"] for r in state["sp"]["appRoles"] if r["value"] == value)


def _posts(state: dict[str, Any]) -> list[list[str]]:
    return [c for c in state["calls"] if c[:4] == ["az", "rest", "--method", "post"]]


def test_grants_both_roles_resolved_by_value_to_the_identity(fake_azure: FakeAzure) -> None:
    run, state = _run(fake_azure, "--identity-name", "id-mde-abc", "--resource-group", "rg-mde")
    assert run.returncode == 0, run.stderr
    granted = {(a["principalId"], a["resourceId"], a["appRoleId"]) for a in state["assignments"]}
    sp = state["sp"]["id"]
    assert granted == {
        (_principal(fake_azure), sp, _role_id(state, "Machine.Isolate")),
        (_principal(fake_azure), sp, _role_id(state, "Machine.Read.All")),
    }
    assert "granted: Machine.Isolate" in run.stdout and "granted: Machine.Read.All" in run.stdout


def test_a_second_run_changes_nothing(fake_azure: FakeAzure) -> None:
    first, _ = _run(fake_azure, "--principal-id", _principal(fake_azure))
    assert first.returncode == 0, first.stderr
    second, state = _run(fake_azure, "--principal-id", _principal(fake_azure))
    assert second.returncode == 0, second.stderr
    assert len(state["assignments"]) == 2 and len(_posts(state)) == 2
    assert second.stdout.count("already granted:") == 2


def test_dry_run_grants_nothing(fake_azure: FakeAzure) -> None:
    run, state = _run(fake_azure, "--principal-id", _principal(fake_azure), "--dry-run")
    assert run.returncode == 0, run.stderr
    assert state["assignments"] == [] and _posts(state) == []
    assert run.stdout.count("would grant:") == 2


def test_check_says_by_its_exit_code_whether_a_role_is_missing(fake_azure: FakeAzure) -> None:
    missing, state = _run(fake_azure, "--principal-id", _principal(fake_azure), "--check")
    assert missing.returncode == 3, missing.stderr
    assert _posts(state) == []
    granted, _ = _run(fake_azure, "--principal-id", _principal(fake_azure))
    assert granted.returncode == 0
    held, _ = _run(fake_azure, "--principal-id", _principal(fake_azure), "--check")
    assert held.returncode == 0, held.stderr
    assert held.stdout.count("already granted:") == 2


def test_waits_for_a_new_identity_to_reach_graph(fake_azure: FakeAzure) -> None:
    fake_azure.update(graph_hidden_reads=2)
    run, state = _run(fake_azure, "--principal-id", _principal(fake_azure))
    assert run.returncode == 0, run.stderr
    assert run.stderr.count("waiting for Microsoft Graph") == 2
    assert len(state["assignments"]) == 2


def test_gives_up_on_a_principal_graph_never_sees(fake_azure: FakeAzure) -> None:
    fake_azure.update(graph_hidden_reads=100)
    run = fake_azure.run(
        ["bash", str(SCRIPT), "--principal-id", _principal(fake_azure)], env={"GRANT_WAIT_ATTEMPTS": "3"}
    )
    assert run.returncode == 1 and "does not know the principal" in run.stderr
    assert run.stderr.count("waiting for Microsoft Graph") == 2
    assert _posts(fake_azure.state()) == []


def test_a_tenant_without_defender_for_endpoint_is_reported(fake_azure: FakeAzure) -> None:
    fake_azure.update(sp=None)
    run, after = _run(fake_azure, "--principal-id", _principal(fake_azure))
    assert run.returncode != 0
    assert "no WindowsDefenderATP service principal" in run.stderr
    assert _posts(after) == []


def test_an_identity_must_be_named(fake_azure: FakeAzure) -> None:
    run, state = _run(fake_azure)
    assert run.returncode != 0 and "--principal-id" in run.stderr
    assert state["calls"] == []
