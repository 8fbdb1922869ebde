"""The stand-in Azure CLI and azd (fake_azure_cli.py) as a fixture: a bin/ directory put first on
PATH, and the JSON state the stand-ins play Azure from."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
INFRA_PYTHON = ROOT / ".venv-infra" / "bin" / "python"
FAKE = Path(__file__).with_name("fake_azure_cli.py")
DEFENDER_ATP_APP_ID = "fc780465-2017-40d4-a0c5-307022471b92"
SUBSCRIPTION = "6f1c7e2a-3b4d-4c5e-8f90-1a2b3c4d5e6f"


def app_role(value: str, member_types: list[str]) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "value": value, "allowedMemberTypes": member_types, "isEnabled": True}


@dataclass
class FakeAzure:
    """The stand-ins' state file and the environment that puts them on PATH."""

    path: Path
    env: dict[str, str]

    def state(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8"))
        return document

    def update(self, **changes: Any) -> None:
        self.path.write_text(json.dumps({**self.state(), **changes}), encoding="utf-8")

    def calls(self, program: str) -> list[list[str]]:
        return [call[1:] for call in self.state()["calls"] if call[0] == program]

    def run(
        self, command: list[str], env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command,
            env={**self.env, **(env or {})},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


@pytest.fixture
def fake_azure(tmp_path: Path) -> FakeAzure:
    if not INFRA_PYTHON.exists():
        if os.environ.get("CI"):
            pytest.fail(".venv-infra is missing (CI must install it)")
        pytest.skip(".venv-infra is missing: it provides jmespath for the stand-in az")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program in ("az", "azd"):
        wrapper = bin_dir / program
        wrapper.write_text(f'#!/bin/sh\nexec "{INFRA_PYTHON}" "{FAKE}" {program} "$@"\n', encoding="utf-8")
        wrapper.chmod(0o755)
    state: dict[str, Any] = {
        "subscription": SUBSCRIPTION,
        "azd_version": "1.18.2",
        "azd_env": {},
        "token": "",
        "providers": {},
        "may_register": [],
        "unreadable_providers": [],
        "deleted_vaults": [],
        "vaults": [],
        "secrets": [],
        "sp": {
            "id": str(uuid.uuid4()),
            "appId": DEFENDER_ATP_APP_ID,
            "appRoles": [
                app_role("Machine.Scan", ["Application"]),
                app_role("Machine.Isolate", ["Application"]),
                app_role("Machine.Read.All", ["Application"]),
                app_role("Machine.Offboard", ["Application"]),
            ],
        },
        "identities": {"rg-mde/id-mde-abc": str(uuid.uuid4())},
        "assignments": [],
        "graph_hidden_reads": 0,
        "directory": {},
        "references": {},
        "refreshes_to_resolve": 1,
        "calls": [],
    }
    path = tmp_path / "state.json"
    path.write_text(json.dumps(state), encoding="utf-8")
    # Only what the scripts need: PATH (the stand-ins first), the state, and no stray Azure settings.
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_AZ_STATE": str(path),
        "HOME": str(tmp_path),
        "GRANT_WAIT_SECONDS": "0",
    }
    return FakeAzure(path=path, env=env)
